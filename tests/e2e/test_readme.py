"""The README's promises, with the shipped job_configs.py and workspace, as separate processes."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from tests.conftest import ROOT, STAT_BOT


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("JOB_CONFIGS", "WORKSPACE_DIR")}
    env.update(STATE_DIR=str(tmp_path / "var"), LOG_FORMAT="json")
    return env


def test_exec_system_hello_prints_greeting(tmp_path: Path) -> None:
    result = subprocess.run(
        [STAT_BOT, "exec", "system hello Ada"],
        cwd=ROOT,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "Hello Ada"


def test_run_reports_an_enqueued_job_in_its_terminal_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    env = _env(tmp_path)
    out = (tmp_path / "run.out").open("w+")
    service = subprocess.Popen(
        [STAT_BOT, "run"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.PIPE, text=True
    )
    try:
        # `enqueue` never creates the database: the service does, as it starts.
        database = tmp_path / "var" / "stat-bot.sqlite3"
        deadline = time.monotonic() + 30
        while not database.exists():
            assert service.poll() is None, service.stderr.read() if service.stderr else ""
            assert time.monotonic() < deadline, "the service never created its database"
            time.sleep(0.05)
        enqueued = subprocess.run(
            [STAT_BOT, "enqueue", "system hello Ada"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert enqueued.returncode == 0, enqueued.stderr
        assert "queued" in enqueued.stdout
        deadline = time.monotonic() + 30
        while "Hello Ada" not in (tmp_path / "run.out").read_text():
            assert service.poll() is None, service.stderr.read() if service.stderr else ""
            assert time.monotonic() < deadline, "the report never reached the terminal"
            time.sleep(0.05)
        service.send_signal(signal.SIGINT)
        _, err = service.communicate(timeout=30)
        assert service.returncode == 0, err
        assert "local mode" in err
        assert "Traceback" not in err
    finally:
        if service.poll() is None:
            service.kill()
            service.wait()
        out.close()
