"""Helpers for unit tests: jobs and job configs built in memory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from stat_bot.jobs.config import ConfigError, parse_config
from stat_bot.jobs.model import Job, JobStatus
from stat_bot.settings import Settings, load_settings


def make_job(**overrides: Any) -> Job:
    """A finished-looking job row (#42, `example hello`); override any field."""
    values: dict[str, Any] = {
        "id": 42,
        "namespace": "example",
        "job_type": "hello",
        "args": {},
        "channel": "C123",
        "thread_ts": None,
        "user": "U1",
        "source": "slack",
        "status": JobStatus.SUCCEEDED,
        "created_at": 1000.0,
        "start_after": 1000.0,
        "started_at": 1001.0,
        "finished_at": 1002.0,
        "attempts": 1,
        "max_retries": 0,
        "concurrency": 1,
        "worker_id": "w1",
        "heartbeat_at": 1001.5,
        "pid": 1234,
        "exit_code": 0,
        "log_dir": "/var/logs/42",
        "cancel_requested": False,
        "report_state": "pending",
        "report_error": None,
        "is_im": False,
        "note": None,
    }
    values.update(overrides)
    return Job(**values)


def problems_of(raw: Any) -> list[str]:
    """The problems parse_config reports for `raw` (the test fails if it loads)."""
    with pytest.raises(ConfigError) as caught:
        parse_config(raw)
    return caught.value.problems


def one_namespace(
    jobs: dict[str, Any], slack: list[dict[str, Any]] | None = None, **extra: Any
) -> dict[str, Any]:
    """A raw_config with the single namespace `ns`."""
    body: dict[str, Any] = {"jobs": jobs, **extra}
    if slack is not None:
        body["slack"] = slack
    return {"ns": body}


def runner_settings(tmp_path: Path) -> Settings:
    """Settings for running jobs through a Runner alone (no queue): a workspace folder in
    `tmp_path`, no environment file."""
    (tmp_path / "workspace").mkdir()
    return load_settings(
        state_dir=tmp_path / "var",
        workspace_dir=tmp_path / "workspace",
        job_configs=tmp_path / "job_configs.py",
        _env_file=None,
    )
