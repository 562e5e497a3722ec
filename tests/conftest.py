"""Fixtures shared by every test folder: isolated settings, job configs, a real queue.

Nothing here fakes the queue or the runner: tests use real SQLite files in a
temporary folder (or a real PostgreSQL database) and real subprocesses.

Backends: every test under tests/integration that uses `database_url` (through
`settings`, `queue`, `cli_env` or any fixture built on them) runs once per backend,
with ids `sqlite` and `postgres`, so what the service does is shown on both. A test
of SQLite's own mechanics (a file deleted or replaced, a WAL, a locked or read-only
file, a full disk) is marked `@pytest.mark.sqlite_only("why")` and runs on SQLite only.
Other folders get SQLite unless a test parametrizes `database_url` itself.
"""

from __future__ import annotations

import os
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from stat_bot.jobs.config import JobConfigs, load_config
from stat_bot.queue import Queue, open_queue
from stat_bot.settings import PROXY_VARIABLES, Settings, load_settings
from tests.postgres_fixtures import (
    create_database,
    drop_database,
    postgres_url,  # noqa: F401  (a fixture for every test folder)
    require_postgres,
)

pytest_plugins = [
    "tests.redfish_fixtures",
    "tests.slack_emulator_fixtures",
    "tests.slurm_fixtures",
    "tests.smtp_fixtures",
    "tests.sshd_fixtures",
    "tests.trac_fixtures",
    "tests.web_fixtures",
]

ROOT = Path(__file__).resolve().parents[1]
STAT_BOT = str(Path(sys.executable).parent / "stat-bot")

# The queue backends a test runs on, and the folders whose tests run on every one of them.
BACKENDS = ("sqlite", "postgres")
EVERY_BACKEND_IN = (ROOT / "tests" / "integration",)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run each integration test that reaches the queue (its fixture closure holds
    `database_url`) once per backend; `sqlite_only` tests, and other folders, on SQLite."""
    if "database_url" not in metafunc.fixturenames:
        return
    for mark in metafunc.definition.iter_markers("parametrize"):
        names = mark.args[0] if mark.args else mark.kwargs.get("argnames", ())
        if "database_url" in (names.split(",") if isinstance(names, str) else names):
            return  # the test chose its backends itself
    path = Path(metafunc.definition.path)
    if not any(path.is_relative_to(folder) for folder in EVERY_BACKEND_IN):
        return
    only = metafunc.definition.get_closest_marker("sqlite_only")
    if only is not None and not (only.args and str(only.args[0]).strip()):
        raise pytest.UsageError(
            f"{metafunc.definition.nodeid}: sqlite_only needs the reason as its argument"
        )
    backends = ["sqlite"] if only is not None else list(BACKENDS)
    metafunc.parametrize("database_url", backends, indirect=True, ids=backends)


def sqlite_url(home: Path) -> str:
    """The database a test home's service uses by default: STATE_DIR/stat-bot.sqlite3."""
    return f"sqlite:///{home / 'var' / 'stat-bot.sqlite3'}"


@pytest.fixture
def database_url(request: pytest.FixtureRequest, home: Path) -> Iterator[str]:
    """DATABASE_URL of the test's queue: SQLite under the test home (the default), or a
    migrated, empty PostgreSQL database of its own (reused by this process after the
    test ends and emptied for the next, which is much quicker than a new one)."""
    backend = getattr(request, "param", "sqlite")
    if backend == "sqlite":
        yield sqlite_url(home)
        return
    assert backend == "postgres", backend
    require_postgres()
    url = create_database(migrated=True)
    try:
        yield url
    finally:
        drop_database(url)


def proc_stat(pid: int) -> list[str]:
    """The fields of /proc/PID/stat after the command name (state is [0], ppid [1])."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    fields = proc_stat(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def write_configs(path: Path, raw_config: dict[str, Any] | str) -> Path:
    """Write a job_configs.py holding `raw_config` (a dict, or Python source to paste verbatim)."""
    source = raw_config if isinstance(raw_config, str) else f"raw_config = {raw_config!r}\n"
    path.write_text(textwrap.dedent(source))
    return path


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A fresh folder laid out like a checkout: workspace/, job_configs.py, var/."""
    (tmp_path / "workspace").mkdir()
    return tmp_path


@pytest.fixture
def make_settings(home: Path, database_url: str) -> Callable[..., Settings]:
    """Settings for the test home on the test's backend; keywords override any of them.

    On SQLite DATABASE_URL is left to follow STATE_DIR (so `state_dir=` moves the
    database too, as in a deployment); on PostgreSQL it is the test's database.
    """

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "database_url": "" if database_url.startswith("sqlite:") else database_url,
            "state_dir": home / "var",
            "workspace_dir": home / "workspace",
            "job_configs": home / "job_configs.py",
            "heartbeat_interval": 0.5,
            "lost_after": 5,
            "kill_grace": 1,
            "shutdown_grace": 5,
            "dispatcher_poll_interval": 0.2,
            "_env_file": None,
        }
        values.update(overrides)
        return load_settings(**values)

    return make


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


@pytest.fixture
def configure(home: Path) -> Callable[[dict[str, Any] | str], JobConfigs]:
    """Write job_configs.py into the test home and load it."""

    def configure(raw_config: dict[str, Any] | str) -> JobConfigs:
        return load_config(write_configs(home / "job_configs.py", raw_config))

    return configure


@pytest.fixture
def queue(settings: Settings) -> Iterator[Queue]:
    """The test's queue, migrated, opened as every process opens it (`open_queue`)."""
    q = open_queue(settings)
    yield q
    q.close()


@pytest.fixture
def unmigrated_queue(database_url: str, tmp_path: Path) -> Iterator[Queue]:
    """A queue on the test's backend whose database has none of STAT bot's tables, as
    when DATABASE_URL names the wrong database: every call fails with a QueueError."""
    if database_url.startswith("sqlite:"):
        from stat_bot.queue.sqlite import SQLiteQueue

        (tmp_path / "elsewhere").mkdir(exist_ok=True)
        q: Queue = SQLiteQueue(tmp_path / "elsewhere" / "other.sqlite3")
        yield q
        q.close()
        return
    from stat_bot.queue.postgres import PostgresQueue

    url = create_database("statbot_unmigrated")
    q = PostgresQueue(url)
    try:
        yield q
    finally:
        q.close()
        drop_database(url)


@pytest.fixture
def cli_env(home: Path, database_url: str) -> dict[str, str]:
    """Environment for running `stat-bot` as a subprocess against the test home."""
    return subprocess_env(home, database_url)


def subprocess_env(home: Path, database_url: str | None = None) -> dict[str, str]:
    """Ours without any STAT_BOT_/SLACK_ variable or proxy, pointed at `home`, quick timings.

    DATABASE_URL is the test's database (`database_url`); for SQLite it is left out, so
    the database follows STATE_DIR (`STATE_DIR/stat-bot.sqlite3`) as a site's does.
    Never the one of the environment pytest runs in.
    """
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("STAT_BOT", "SLACK_"))
        and k not in PROXY_VARIABLES
        and k != "DATABASE_URL"
    }
    if database_url and not database_url.startswith("sqlite:"):
        env["DATABASE_URL"] = database_url
    env.update(
        STATE_DIR=str(home / "var"),
        WORKSPACE_DIR=str(home / "workspace"),
        JOB_CONFIGS=str(home / "job_configs.py"),
        LOG_FORMAT="json",
        HEARTBEAT_INTERVAL="0.5",
        LOST_AFTER="5",
        KILL_GRACE="1",
        SHUTDOWN_GRACE="5",
        DISPATCHER_POLL_INTERVAL="0.2",
    )
    return env
