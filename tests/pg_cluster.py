"""A PostgreSQL cluster of the test's own, for tests that restart or crash the server.

The shared server (tests/postgres_fixtures.py) must never be stopped by a test: other
tests use it at the same time. A test that restarts the database gets its own cluster
on a free loopback port instead, made as DESIGN.md ("PostgreSQL") measured it:
`initdb -U postgres --auth=trust --no-sync` (~0.9 s), then `pg_ctl start` with
`fsync=off` (~0.13 s); `restart -m fast` (~0.24 s); `stop -m immediate` and start
again is a crash and its recovery (~0.23 s).

initdb refuses to run as root, so as root (CI) the cluster belongs to the system user
`statbot-pg-test`, created once under a file lock so two xdist workers cannot race on
`useradd`, and every PostgreSQL program runs as it through `runuser`. Its folder is
under /tmp with mode 0755 so that user can enter it (pytest's tmp folders are 0700).
As anyone else the cluster belongs to the current user.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.peers import free_port, require

TEST_USER = "statbot-pg-test"
USER_LOCK = Path(tempfile.gettempdir()) / "stat-bot-pg-test-user.lock"
START_TIMEOUT = 60  # seconds pg_ctl waits for the server (a busy 2-core machine)


def pg_bin() -> Path | None:
    """The folder holding initdb and pg_ctl: on PATH, else Debian's newest version's."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).resolve().parent
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda path: float(Path(path).parts[-3]),
    )
    return Path(candidates[-1]).parent if candidates else None


def cluster_user() -> str | None:
    """The user the cluster runs as: a system user made (race-safe) as root, else None (us)."""
    if os.geteuid() != 0:
        return None
    with USER_LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            pwd.getpwnam(TEST_USER)
        except KeyError:
            subprocess.run(
                ["useradd", "--system", "--no-create-home", "--shell", "/bin/sh", TEST_USER],
                check=True,
                capture_output=True,
            )
    return TEST_USER


class PgCluster:
    """One PostgreSQL cluster on 127.0.0.1:`port`, its data, socket and log in `directory`.

    Trust authentication as `postgres`: the URL needs no password. The port stays the
    same across restarts and crashes, so clients reconnect to the same URL.
    """

    def __init__(self, directory: Path, user: str | None, bin_dir: Path) -> None:
        self.directory = directory
        self.data = directory / "data"
        self.log_file = directory / "server.log"
        self.user = user
        self.bin_dir = bin_dir
        self.port = 0

    # -- running PostgreSQL's programs ---------------------------------------------------

    def _run(
        self, program: str, *args: str, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin_dir / program), *args]
        if self.user is not None:
            command = ["runuser", "-u", self.user, "--", *command]
        result = subprocess.run(
            command,
            cwd=self.directory,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT + 30,
        )
        if check and result.returncode != 0:
            raise RuntimeError(
                f"{program} {' '.join(args)} exited with {result.returncode}:\n"
                f"{result.stdout}{result.stderr}\nserver log:\n{self.log()}"
            )
        return result

    def log(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def init(self) -> None:
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
        )

    def _pg_ctl(
        self, action: str, *args: str, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        options = (
            f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off"
            # Enough sessions for several dispatchers' pools, enqueuers and the test.
            " -c max_connections=200"
        )
        return self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.log_file),
            "-w",
            "-t",
            str(START_TIMEOUT),
            "-o",
            options,
            action,
            *args,
            check=check,
        )

    # -- what tests do with it -----------------------------------------------------------

    @property
    def url(self) -> str:
        """The `postgres` database's URL (the one to connect to for CREATE DATABASE)."""
        return self.url_for("postgres")

    def url_for(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str = "statbot") -> str:
        """A new database on this cluster; its URL."""
        import psycopg

        with psycopg.connect(self.url, autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url_for(name)

    def start(self) -> None:
        """Start the server and wait until it accepts connections.

        The first start picks a free port, trying another if one is taken meanwhile.
        """
        if self.port:
            self._pg_ctl("start")
            return
        for _attempt in range(5):
            self.port = free_port()
            if self._pg_ctl("start", check=False).returncode == 0:
                return
            if "already in use" not in self.log():
                break
        self._pg_ctl("start")  # raises, with the log

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: `fast` (sessions ended cleanly) or `immediate` (a crash)."""
        self._pg_ctl("stop", "-m", mode)

    def restart(self) -> None:
        """A fast restart: every session is ended, the server is back on the same port."""
        self._pg_ctl("restart", "-m", "fast")

    def crash(self, down_for: float = 0.0) -> None:
        """Stop without a shutdown checkpoint (`-m immediate`, like a power cut to the
        server process) and start again, which runs crash recovery."""
        self.stop("immediate")
        if down_for:
            time.sleep(down_for)
        self.start()

    def running(self) -> bool:
        return self._pg_ctl("status", check=False).returncode == 0


def require_initdb() -> Path:
    """initdb's folder; skips loudly (fails under CI) where PostgreSQL's server is missing."""
    bin_dir = pg_bin()
    require(
        None
        if bin_dir is not None
        else "SKIPPED OWN-CLUSTER POSTGRESQL TESTS: initdb / pg_ctl not found "
        "(apt-get install postgresql); restarts and crashes of the database are untested here",
        "PostgreSQL server (initdb)",
    )
    assert bin_dir is not None
    return bin_dir


@contextlib.contextmanager
def start_cluster() -> Iterator[PgCluster]:
    """A new cluster, started; stopped at once (immediate) and removed afterwards."""
    bin_dir = require_initdb()
    user = cluster_user()
    directory = Path(tempfile.mkdtemp(prefix="stat-bot-pg-"))
    directory.chmod(0o755)
    if user is not None:
        shutil.chown(directory, user)
    cluster = PgCluster(directory, user, bin_dir)
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        if cluster.port and (cluster.data / "postmaster.pid").exists():
            with contextlib.suppress(Exception):
                cluster.stop("immediate")
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def pg_cluster() -> Iterator[PgCluster]:
    """A PostgreSQL cluster of the test's own, for restarting and crashing it."""
    with start_cluster() as cluster:
        yield cluster
