"""A real Slurm controller for the tests: Debian's slurmctld with munge, started by the test.

`slurmctld` (session-scoped: one per pytest process, so each xdist worker has its
own) writes a slurm.conf in a temporary folder with free loopback ports, starts
`munged` on its own socket and key and `slurmctld -D` bound to 127.0.0.1 only
(`CommunicationParameters=NoCtldInAddrAny`), with 16 nodes `nid[000001-000016]` and
no slurmd (`SlurmdTimeout=0`). Nodes that never registered are taken `down` then
`resume`d, as DESIGN.md says, so they are IDLE. `slurm` (per test) hands out the
controller with every node back to IDLE and no reason.

Clients need `SLURM_CONF`: `cluster.env` is that variable, `cluster.slurm()` a
client with it. Without slurmctld installed the tests that use it are skipped with
one loud line, unless the CI variable is set: there they fail, because CI must run them.
"""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from stat_bot.integrations.slurm import Slurm
from tests.peers import free_port, require

NODES = "nid[000001-000016]"
NODE_NAMES = [f"nid{n:06d}" for n in range(1, 17)]
START_TIMEOUT = 60.0
PROGRAMS = ("slurmctld", "scontrol", "munged", "mungekey")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slurm: needs the real slurmctld of tests/slurm_fixtures.py")


def missing_slurm() -> str | None:
    """Why a real slurmctld cannot be run here, or None when it can."""
    missing = [p for p in PROGRAMS if shutil.which(p, path=_path()) is None]
    if missing:
        return (
            f"SLURM TESTS SKIPPED: {', '.join(missing)} not installed "
            "(apt-get install -y --no-install-recommends slurmctld slurm-client munge)"
        )
    return None


def require_slurm() -> None:
    require(missing_slurm(), "Slurm")


def _path() -> str:
    # munged and slurmctld live in /usr/sbin, which a plain user's PATH may lack
    return os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])


class SlurmCluster:
    """munged + slurmctld in `root`, on free ports; `env` is what clients need."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.conf = root / "slurm.conf"
        self.socket = root / "munge.sock"
        self.ctld_port = free_port()
        self.slurmd_port = free_port()
        self.env = {"SLURM_CONF": str(self.conf)}
        self.munged: subprocess.Popen[bytes] | None = None
        self.ctld: subprocess.Popen[bytes] | None = None

    def write_config(self) -> None:
        for folder in ("state", "spool"):
            (self.root / folder).mkdir(exist_ok=True)
        root = self.root
        self.conf.write_text(
            "ClusterName=statbot\n"
            "SlurmctldHost=localhost\n"
            f"SlurmctldPort={self.ctld_port}\n"
            f"SlurmdPort={self.slurmd_port}\n"
            "AuthType=auth/munge\n"
            f"AuthInfo=socket={self.socket}\n"
            "CredType=cred/munge\n"
            f"SlurmUser={getpass.getuser()}\n"
            f"StateSaveLocation={root / 'state'}\n"
            f"SlurmdSpoolDir={root / 'spool'}\n"
            f"SlurmctldPidFile={root / 'slurmctld.pid'}\n"
            f"SlurmctldLogFile={root / 'slurmctld.log'}\n"
            "MailProg=/bin/true\n"
            "ProctrackType=proctrack/linuxproc\n"
            "TaskPlugin=task/none\n"
            "SelectType=select/cons_tres\n"
            "SlurmdTimeout=0\n"
            "CommunicationParameters=NoCtldInAddrAny\n"
            f"NodeName={NODES} NodeAddr=127.0.0.1 CPUs=1 State=UNKNOWN\n"
            "PartitionName=batch Nodes=ALL Default=YES State=UP\n"
        )

    def _spawn(self, args: list[str], log: str) -> subprocess.Popen[bytes]:
        with (self.root / log).open("ab") as out:
            return subprocess.Popen(
                args,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PATH": _path()},
                start_new_session=True,
            )

    def _wait(self, ready: Callable[[], bool], what: str, process: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while not ready():
            if process.poll() is not None:
                raise RuntimeError(f"{what} exited ({process.returncode}):\n{self.output()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} not ready in {START_TIMEOUT:g} s:\n{self.output()}")
            time.sleep(0.05)

    def start(self) -> None:
        self.write_config()
        key = self.root / "munge.key"
        subprocess.run(
            ["mungekey", "-c", "-k", str(key)],
            check=True,
            capture_output=True,
            env={**os.environ, "PATH": _path()},
        )
        self.munged = self._spawn(
            [
                "munged",
                "-F",
                "-f",
                f"--key-file={key}",
                f"--socket={self.socket}",
                f"--pid-file={self.root / 'munged.pid'}",
                f"--seed-file={self.root / 'munged.seed'}",
                f"--log-file={self.root / 'munged.log'}",
            ],
            "munged.out",
        )
        self._wait(self.socket.exists, "munged", self.munged)
        self.ctld = self._spawn(["slurmctld", "-D", "-f", str(self.conf)], "slurmctld.out")
        self._wait(self._answers, "slurmctld", self.ctld)
        self.scontrol("update", f"nodename={NODES}", "state=down", "reason=init")
        self.scontrol("update", f"nodename={NODES}", "state=resume")

    def _answers(self) -> bool:
        result = subprocess.run(
            ["scontrol", "ping"], capture_output=True, text=True, env=self.client_env(), timeout=30
        )
        return result.returncode == 0 and "UP" in result.stdout

    def client_env(self) -> dict[str, str]:
        return {**os.environ, **self.env}

    def scontrol(self, *args: str) -> str:
        """Run scontrol against this controller; its output (raises with it on failure)."""
        result = subprocess.run(
            ["scontrol", *args], capture_output=True, text=True, env=self.client_env(), timeout=60
        )
        if result.returncode != 0:
            raise RuntimeError(f"scontrol {' '.join(args)} failed: {result.stderr}{result.stdout}")
        return result.stdout

    def slurm(self) -> Slurm:
        return Slurm("scontrol", self.env)

    def reset(self) -> None:
        """Every node IDLE again, with no reason: what another test drained is resumed."""
        states = self.slurm().node_states()
        drained = [name for name, state in states.items() if state.drained or state.down]
        if drained:
            self.scontrol("update", f"nodename={','.join(drained)}", "state=resume")

    def output(self) -> str:
        texts = []
        for name in ("munged.out", "munged.log", "slurmctld.out", "slurmctld.log"):
            path = self.root / name
            if path.exists():
                texts.append(f"--- {name}\n{path.read_text(errors='replace')[-3000:]}")
        return "\n".join(texts)

    def stop(self) -> None:
        for attribute in ("ctld", "munged"):
            process = getattr(self, attribute)
            setattr(self, attribute, None)
            if process is None or process.poll() is not None:
                continue
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


@pytest.fixture(scope="session")
def slurmctld(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    """A real slurmctld (with its munged) for this pytest process; stopped at the end."""
    require_slurm()
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def slurm_cluster(slurmctld: SlurmCluster) -> SlurmCluster:
    """The controller with every node IDLE and no drain reason left by another test."""
    slurmctld.reset()
    return slurmctld
