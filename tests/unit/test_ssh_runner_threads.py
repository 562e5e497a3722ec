"""SshRunner's connections under threads: building one must not disturb another's settings,
and Fabric's timer thread must not fail where the runner has already dropped a connection.

Fabric's Connection writes some of its own settings into its Config, and each write
rebuilds that Config from empty. The runner once shared one Config among all its
connections, so a host whose command was starting while another host's connection was
being built could find its settings empty for a moment (seen as "No attribute or config
key found for 'runners'" on 1 of 64 hosts in the SSH benchmark). Building connections
does not connect, so no server is needed to show it.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest
from fabric.runners import Remote

from stat_bot.integrations.ssh import SshConfig, SshRunner


def test_building_connections_never_empties_a_built_ones_settings(tmp_path: Path):
    runner = SshRunner(SshConfig(known_hosts="off", known_hosts_file=tmp_path / "known_hosts"))
    first = runner._connection("n01")
    stop = threading.Event()
    failures: list[str] = []

    def build() -> None:
        number = 2
        while not stop.is_set():
            runner._connection(f"n{number:05d}")
            number += 1

    builder = threading.Thread(target=build, daemon=True)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads often, as a busy fan-out does
    builder.start()
    try:
        for _ in range(5_000):
            try:
                # What a command's start reads: the runner class and the run defaults.
                assert first.config.runners.remote is not None
                assert first.config.run.warn is False
            except (AttributeError, KeyError) as exc:
                failures.append(f"{type(exc).__name__}: {str(exc)[:80]}")
    finally:
        stop.set()
        builder.join(timeout=10)
        sys.setswitchinterval(interval)
        runner.close()
    assert not failures, f"{len(failures)} reads of 5,000 failed, first: {failures[0]}"


def test_each_connection_has_its_own_settings_from_the_same_ssh_config(tmp_path: Path):
    ssh_config = tmp_path / "ssh_config"
    ssh_config.write_text("Host n*\n    HostName 127.0.0.1\n    Port 2299\n    User checker\n")
    cfg = SshConfig(
        known_hosts="off", known_hosts_file=tmp_path / "known_hosts", ssh_config_file=ssh_config
    )
    with SshRunner(cfg) as runner:
        one, two = runner._connection("n1"), runner._connection("n2")
        assert one.config is not two.config
        for connection in (one, two):
            assert (connection.host, connection.port, connection.user) == (
                "127.0.0.1",
                2299,
                "checker",
            )


class _ChannelOfAClosedConnection:
    """What paramiko's channel does when its connection was closed under it: the close
    message cannot be sent."""

    def close(self) -> None:
        raise EOFError


def test_the_kill_at_the_time_limit_tolerates_a_connection_already_dropped(tmp_path: Path):
    # Fabric's timer thread kills a command at its time limit by closing the channel; the
    # runner may have dropped the connection by then. An exception there would be an
    # unhandled one in a thread, printed on the stderr a workspace script's job reports.
    with SshRunner(SshConfig(known_hosts="off", known_hosts_file=tmp_path / "kh")) as runner:
        connection = runner._connection("n1")
        remote_class = connection.config.runners.remote
        assert remote_class is not Remote
        assert issubclass(remote_class, Remote)
        remote = remote_class(context=connection)
        remote.channel = _ChannelOfAClosedConnection()
        remote.kill()  # no EOFError
        with pytest.raises(EOFError):  # Fabric's own kill, on the same channel
            Remote.kill(remote)
