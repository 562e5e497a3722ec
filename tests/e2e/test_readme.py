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
        enqueued = enqueue("system hello Ada", env)
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


def test_local_mode_answers_trac_active_from_its_own_trac_and_status_lists_the_schedule(
    tmp_path: Path,
) -> None:
    """The opening paragraphs: `@stat-bot trac active` answers in local mode (here queued
    with `enqueue`, as the README suggests from another terminal), and `status` lists the
    schedules, "never" for one that has not fired."""
    from stat_bot.integrations.local_trac import SAMPLE_TICKETS
    from stat_bot.settings import PROXY_VARIABLES
    from tests.trac_fixtures import require_trac

    require_trac()
    env = {
        k: v
        for k, v in _env(tmp_path).items()
        if not k.startswith(("SLACK_", "TRAC_")) and k not in PROXY_VARIABLES
    }
    env["WEB_PORT"] = "0"
    out = (tmp_path / "run.out").open("w+")
    err = (tmp_path / "run.err").open("w+")
    service = subprocess.Popen(
        [STAT_BOT, "run", "--no-console"], cwd=ROOT, env=env, stdout=out, stderr=err
    )
    try:
        deadline = time.monotonic() + 60
        while "stop with Ctrl-C" not in (tmp_path / "run.err").read_text():
            assert service.poll() is None, (tmp_path / "run.err").read_text()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        enqueued = enqueue("trac active", env)
        assert enqueued.returncode == 0, enqueued.stderr
        open_ones = [t.summary for t in SAMPLE_TICKETS if t.status != "closed"]
        deadline = time.monotonic() + 60
        while not all(s in (tmp_path / "run.out").read_text() for s in open_ones):
            assert service.poll() is None
            assert time.monotonic() < deadline, (tmp_path / "run.out").read_text()
            time.sleep(0.1)
        assert "ACTIVE TICKETS: 3 TICKETS" in (tmp_path / "run.out").read_text()
        status = subprocess.run(
            [STAT_BOT, "status"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
        )
        (row,) = [line for line in status.stdout.splitlines() if "trac.active-tickets" in line]
        assert "0 * * * *" in row
        assert " never " in row
    finally:
        service.send_signal(signal.SIGTERM)
        assert service.wait(40) == 0
        out.close()
        err.close()


def enqueue(command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`stat-bot enqueue COMMAND` from another terminal, as the README shows it."""
    return subprocess.run(
        [STAT_BOT, "enqueue", command],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
