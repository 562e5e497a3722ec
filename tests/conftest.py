"""Fixtures shared by every test folder: isolated settings, job configs, a real SQLite queue.

Nothing here fakes the queue or the runner: tests use real SQLite files in a
temporary folder and real subprocesses.
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
from stat_bot.queue.sqlite import SQLiteQueue
from stat_bot.settings import PROXY_VARIABLES, Settings, load_settings
from tests.postgres_fixtures import postgres_url  # noqa: F401  (a fixture for every test folder)

pytest_plugins = [
    "tests.redfish_fixtures",
    "tests.slack_emulator_fixtures",
    "tests.slurm_fixtures",
    "tests.sshd_fixtures",
    "tests.trac_fixtures",
    "tests.web_fixtures",
]

ROOT = Path(__file__).resolve().parents[1]
STAT_BOT = str(Path(sys.executable).parent / "stat-bot")


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
def make_settings(home: Path) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
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
def queue(settings: Settings) -> Iterator[SQLiteQueue]:
    q = SQLiteQueue(settings.sqlite_path)
    q.migrate()
    yield q
    q.close()


@pytest.fixture
def cli_env(home: Path) -> dict[str, str]:
    """Environment for running `stat-bot` as a subprocess against the test home."""
    return subprocess_env(home)


def subprocess_env(home: Path) -> dict[str, str]:
    """Ours without any STAT_BOT_/SLACK_ variable or proxy, pointed at `home`, quick timings."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("STAT_BOT", "SLACK_")) and k not in PROXY_VARIABLES
    }
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
