"""The Fabric runner against a real sshd on loopback: outputs, kept connections, failures in words."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from stat_bot.integrations.ssh import SshConfig, SshRunner, SshSetupError
from tests.sshd_fixtures import SshServer, free_port, keygen


def logins(server: SshServer) -> int:
    return server.log().count("Accepted publickey")


def test_runs_on_many_hosts_as_the_configured_user(sshd: SshServer):
    hosts = sshd.names(12)
    with SshRunner(sshd.config()) as runner:
        results = runner.run_many(hosts, "id -un; echo out; echo err >&2", fanout=4)
    assert list(results) == hosts
    for host, result in results.items():
        assert result.host == host
        assert result.ok, result.error
        assert result.exit_code == 0
        assert result.stdout == f"{sshd.user}\nout\n"
        assert result.stderr == "err\n"
        assert result.error is None


def test_a_failing_command_is_a_result_with_its_exit_code(sshd: SshServer):
    with SshRunner(sshd.config()) as runner:
        result = runner.run_many(["n01"], "echo broken >&2; exit 3")["n01"]
    assert not result.ok
    assert result.exit_code == 3
    assert result.stderr == "broken\n"
    assert result.error is None


def test_second_call_reuses_the_connections_without_logging_in_again(sshd: SshServer):
    hosts = sshd.names(8)
    with SshRunner(sshd.config()) as runner:
        before = logins(sshd)
        assert all(r.ok for r in runner.run_many(hosts, "true").values())
        after_first = logins(sshd)
        assert after_first - before == len(hosts)
        assert sorted(runner.connected) == hosts
        assert all(r.ok for r in runner.run_many(hosts, "true").values())
        assert logins(sshd) == after_first
    assert runner.connected == []


def test_an_unreachable_host_is_an_error_in_words_beside_the_good_ones(
    sshd: SshServer, tmp_path: Path
):
    closed = free_port()
    config = tmp_path / "ssh_config"
    config.write_text(
        f"Host down\n    HostName 127.0.0.1\n    Port {closed}\n" + sshd.ssh_config_file.read_text()
    )
    with SshRunner(sshd.config(ssh_config_file=config, port=None)) as runner:
        results = runner.run_many(["n01", "down", "n02"], "echo hi")
    assert results["n01"].ok
    assert results["n02"].ok
    down = results["down"]
    assert not down.ok
    assert down.exit_code is None
    assert down.error_kind == "unreachable"
    assert f"127.0.0.1:{closed}" in down.error
    assert "connection refused" in down.error


def test_a_name_that_does_not_resolve_is_unreachable(sshd: SshServer):
    with SshRunner(sshd.config(ssh_config_file=None, port=sshd.port)) as runner:
        result = runner.run_many(["no-such-node.invalid"], "true")["no-such-node.invalid"]
    assert result.error_kind == "unreachable"
    assert "does not resolve" in result.error


def test_a_refused_key_is_its_own_error(sshd: SshServer, tmp_path: Path):
    other = tmp_path / "other_ed25519"
    keygen(other, "not authorized")
    with SshRunner(sshd.config(key_file=other)) as runner:
        result = runner.run_many(["n01"], "true")["n01"]
    assert result.error_kind == "auth_refused"
    assert f"{sshd.user} was refused with {other}" in result.error
    assert "authorized_keys" in result.error


def test_strict_policy_refuses_an_unknown_host_key(sshd: SshServer, tmp_path: Path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    with SshRunner(sshd.config(known_hosts_file=empty)) as runner:
        result = runner.run_many(["n01"], "true")["n01"]
    assert result.error_kind == "host_key"
    assert f"[127.0.0.1]:{sshd.port}" in result.error
    assert "not in" in result.error
    assert "strict" in result.error
    assert empty.read_text() == ""


def test_accept_new_remembers_the_key_once_and_strict_then_accepts_it(
    sshd: SshServer, tmp_path: Path
):
    known = tmp_path / "ssh" / "known_hosts"
    with SshRunner(sshd.config(known_hosts="accept-new", known_hosts_file=known)) as runner:
        assert all(r.ok for r in runner.run_many(sshd.names(6), "true").values())
    lines = known.read_text().splitlines()
    assert lines == [f"[127.0.0.1]:{sshd.port} {' '.join(sshd.host_public_key.split()[:2])}"]
    with SshRunner(sshd.config(known_hosts_file=known)) as runner:
        assert runner.run_many(["n01"], "true")["n01"].ok


def test_a_changed_host_key_is_refused_even_with_accept_new(sshd: SshServer, tmp_path: Path):
    wrong = keygen(tmp_path / "impostor", "impostor").split()[:2]
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{sshd.port} {' '.join(wrong)}\n")
    for policy in ("strict", "accept-new"):
        with SshRunner(sshd.config(known_hosts=policy, known_hosts_file=known)) as runner:
            result = runner.run_many(["n01"], "true")["n01"]
        assert result.error_kind == "host_key", policy
        assert "differs" in result.error


def test_policy_off_logs_in_without_any_known_hosts(sshd: SshServer, tmp_path: Path):
    missing = tmp_path / "nothing"
    with SshRunner(sshd.config(known_hosts="off", known_hosts_file=missing)) as runner:
        assert runner.run_many(["n01"], "true")["n01"].ok
    assert not missing.exists()


# Fabric's timer thread closes the channel at the time limit while the runner may drop the
# connection: an exception in that thread would reach a job's stderr.
@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_slow_command_times_out_and_the_host_works_again_after(sshd: SshServer):
    hosts = ["n01", "n02"]
    with SshRunner(sshd.config()) as runner:
        # Logged in first, so a busy machine's slow login does not count against the limit.
        assert all(r.ok for r in runner.run_many(hosts, "true").values())
        slow = runner.run_many(hosts, "sleep 20", timeout=1.5)
        assert {r.error_kind for r in slow.values()} == {"timeout"}
        assert "no answer within 1.5 s" in slow["n01"].error
        assert all(r.seconds < 15 for r in slow.values())
        assert runner.run_many(["n01"], "echo back")["n01"].stdout == "back\n"


def test_a_missing_key_file_is_refused_at_once(tmp_path: Path):
    with pytest.raises(SshSetupError, match="does not exist"):
        SshRunner(SshConfig(key_file=tmp_path / "nope"))
    with pytest.raises(SshSetupError, match="not one of strict, accept-new, off"):
        SshConfig(known_hosts="sometimes")  # type: ignore[arg-type]


def _session_processes(server: SshServer) -> list[int]:
    """The sshd master's children: one per open connection."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == server.process.pid:
            children.append(int(stat.parent.name))
    return children


def test_connections_dropped_by_the_server_are_made_again(private_sshd: SshServer):
    hosts = private_sshd.names(3)
    with SshRunner(private_sshd.config()) as runner:
        assert all(r.ok for r in runner.run_many(hosts, "true").values())
        sessions = _session_processes(private_sshd)
        assert len(sessions) == len(hosts)
        for pid in sessions:
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while any(Path(f"/proc/{pid}").exists() for pid in sessions):
            assert time.monotonic() < deadline, "sshd's session processes did not end"
            time.sleep(0.02)
        again = runner.run_many(hosts, "echo again")
    assert {host: r.stdout for host, r in again.items()} == dict.fromkeys(hosts, "again\n")
    assert logins(private_sshd) == 2 * len(hosts)


def test_hashed_known_hosts_entries_are_matched(sshd: SshServer, tmp_path: Path):
    known = tmp_path / "known_hosts"
    other = keygen(tmp_path / "elsewhere", "another host").split()[:2]
    known.write_text(f"node9.example.org {' '.join(other)}\n" + sshd.known_hosts_file.read_text())
    subprocess.run(["ssh-keygen", "-q", "-H", "-f", str(known)], check=True, capture_output=True)
    assert "127.0.0.1" not in known.read_text()
    with SshRunner(sshd.config(known_hosts_file=known)) as runner:
        assert runner.run_many(["n01"], "true")["n01"].ok


def test_a_command_killed_by_a_signal_is_an_error_not_a_success(sshd: SshServer):
    with SshRunner(sshd.config()) as runner:
        result = runner.run_many(["n01"], "kill -9 $$")["n01"]
    assert not result.ok
    assert result.exit_code is None
    assert result.error_kind == "error"
    assert "killed by a signal" in result.error
