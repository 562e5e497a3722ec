"""The shipped SSH checks on a real node (the loopback sshd): one session a node, real outputs."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from stat_bot.hardware.health import Finding, State
from stat_bot.hardware.ssh_checks import (
    CheckFailure,
    build_script,
    checks_from_data,
    load_checks,
    parse_output,
    remote_command,
    run_ssh_checks,
)
from stat_bot.integrations.ssh import SshRunner
from tests.sshd_fixtures import SshServer, free_port

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = load_checks(ROOT / "workspace" / "hw" / "ssh_checks.yaml")


def test_every_shipped_check_runs_cleanly_on_a_real_node(sshd: SshServer):
    with SshRunner(sshd.config()) as runner:
        result = runner.run("n01", remote_command(build_script(SHIPPED, "tok")))
    sections = parse_output(result.stdout, "tok", len(SHIPPED))
    assert sorted(sections) == list(range(len(SHIPPED)))
    for index, check in enumerate(SHIPPED):
        assert sections[index].exit_code == 0, (check.name, sections[index].stderr)
    names = {check.name: index for index, check in enumerate(SHIPPED)}
    assert float(sections[names["load"]].stdout) >= 0
    assert 0 < float(sections[names["memory"]].stdout) <= 100


def test_number_checks_print_numbers_a_threshold_can_catch(sshd: SshServer):
    """With every limit at -1 the real load and memory must be reported: the numbers are read."""
    strict = [
        dataclasses.replace(check, critical_above=-1, warning_below=None, critical_below=None)
        for check in SHIPPED
        if check.name in ("load", "memory")
    ]
    with SshRunner(sshd.config()) as runner:
        findings = run_ssh_checks(["n01"], strict, runner)["n01"]
    assert isinstance(findings, list)
    assert [f.component for f in findings] == ["Load", "Memory"]
    assert all(f.severity == "critical" for f in findings)
    assert findings[0].text.startswith("load ")
    assert findings[0].text.endswith("per CPU (5-minute average), critical above -1")
    assert findings[1].text.endswith("%, critical above -1%")


def test_site_checks_find_problems_and_a_hung_check_does_not_stall_the_node(sshd: SshServer):
    site = checks_from_data(
        [
            {
                "name": "scratch",
                "command": "echo '/scratch 97'; echo '/home 12'",
                "judge": "number",
                "component": "Disk {label}",
                "text": "{label} {value} full",
                "unit": "%",
                "critical_above": 95,
            },
            {
                "name": "gpu",
                "command": "echo 'GPU 1 missing'; exit 2",
                "judge": "exit_code",
                "component": "GPU",
            },
            {"name": "hang", "command": "sleep 60", "judge": "lines", "timeout": 1},
            {"name": "quiet", "command": "true", "judge": "lines"},
        ]
    )
    hosts = sshd.names(3)
    started = time.monotonic()
    with SshRunner(sshd.config()) as runner:
        before = sshd.log().count("Accepted publickey")
        results = run_ssh_checks(hosts, site, runner, fanout=3)
        assert sshd.log().count("Accepted publickey") - before == len(hosts)
    assert time.monotonic() - started < 30
    for host in hosts:
        assert results[host] == [
            Finding("critical", "Disk /scratch", "/scratch 97% full, critical above 95%"),
            Finding("critical", "GPU", "GPU 1 missing"),
            Finding("warning", "hang", "check hang did not finish within 1 s"),
        ]


def test_nodes_that_cannot_be_checked_say_why(sshd: SshServer, tmp_path: Path):
    config = tmp_path / "ssh_config"
    config.write_text(
        f"Host down\n    HostName 127.0.0.1\n    Port {free_port()}\n"
        + sshd.ssh_config_file.read_text()
    )
    with SshRunner(sshd.config(ssh_config_file=config, port=None)) as runner:
        results = run_ssh_checks(["n01", "down"], SHIPPED, runner)
    assert isinstance(results["n01"], list)
    failure = results["down"]
    assert isinstance(failure, CheckFailure)
    assert failure.state is State.UNREACHABLE
    assert "connection refused" in failure.reason


def test_a_node_whose_shell_cannot_run_the_script_is_malformed(sshd: SshServer):
    """Simulated by a runner whose command is replaced: what comes back has no sections."""

    class Broken(SshRunner):
        def run(self, host, command, timeout=None):
            return super().run(host, "echo 'base64: command not found' >&2; exit 127", timeout)

    with Broken(sshd.config()) as runner:
        failure = run_ssh_checks(["n01"], SHIPPED, runner)["n01"]
    assert isinstance(failure, CheckFailure)
    assert failure.state is State.MALFORMED
    assert "base64: command not found" in failure.reason
