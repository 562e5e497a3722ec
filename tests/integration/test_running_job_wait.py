"""How a running job's wait ends: its exit, a cancel (asked before or during the wait), or its
timeout; and its log folder, made whether or not its type's folder exists yet.

Real `bash` children through the real Runner; the wait is one future that any of the
three completes (runner.RunningJob.wait), so each way out is driven here on its own, on
both ways a job's exit is seen: its pidfd (Linux) and asyncio's child watcher (elsewhere).
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from stat_bot.dispatcher import runner as runner_module
from stat_bot.dispatcher.runner import Runner, RunningJob, open_logs
from stat_bot.jobs.config import parse_config
from stat_bot.jobs.model import JobStatus
from stat_bot.report.messages import Outcome
from stat_bot.settings import Settings
from tests.unit.helpers import make_job, runner_settings

CONFIG = parse_config(
    {
        "t": {
            "jobs": {
                "ok": {"run_args_template": "exit 0"},
                "fails": {"run_args_template": "exit 3"},
                "sleeps": {"run_args_template": "sleep 30"},
                "short": {"run_args_template": "sleep 30", "timeout": 0.5},
            }
        }
    }
)


@pytest.fixture(params=["pidfd", "child watcher"])
def exit_seen_by(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "child watcher":
        monkeypatch.setattr(runner_module, "pidfd_usable", lambda: False)
    return str(request.param)


@pytest.fixture
def settings(tmp_path: Path, exit_seen_by: str) -> Settings:
    """The Runner's settings alone: no queue is involved, so no backend either; each
    test that runs jobs runs once per way of seeing their exit."""
    return runner_settings(tmp_path)


def gone(pid: int) -> bool:
    """Whether the process (a reaped child) no longer exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def started(runner: Runner, job_type: str, job_id: int) -> RunningJob:
    job = make_job(id=job_id, namespace="t", job_type=job_type, status=JobStatus.RUNNING)
    return await runner.start(job, CONFIG.job("t", job_type), CONFIG.namespaces["t"].spec)


async def timed_wait(running: RunningJob) -> tuple[Outcome, float]:
    """The job's outcome and the seconds its wait took (never more than 10)."""
    began = time.monotonic()
    outcome = await asyncio.wait_for(running.wait(), 10)
    return outcome, time.monotonic() - began


def make_logs(folder: Path, output: bytes = b"") -> None:
    """open_logs as a job's start does, with `output` written as the job's stdout."""
    out, err = open_logs(folder)
    try:
        os.write(out, output)
    finally:
        os.close(out)
        os.close(err)


def test_the_exit_ends_the_wait_with_its_status(settings: Settings):
    async def go():
        runner = Runner(settings)
        ok = await (await started(runner, "ok", 1)).wait()
        failed = await (await started(runner, "fails", 2)).wait()
        return ok, failed

    ok, failed = asyncio.run(go())
    assert (ok.status, ok.exit_code) == (JobStatus.SUCCEEDED, 0)
    assert (failed.status, failed.exit_code) == (JobStatus.FAILED, 3)


def test_a_cancel_asked_before_the_wait_begins_still_ends_it(settings: Settings):
    async def go():
        running = await started(Runner(settings), "sleeps", 3)
        running.cancel("cancelled on request")  # as a cancel request that lands before supervision
        return running.pid, *await timed_wait(running)

    pid, outcome, took = asyncio.run(go())
    assert outcome.status is JobStatus.CANCELLED
    assert outcome.note == "cancelled on request"
    assert took < 5, f"the cancel waited {took:.1f} s"
    assert gone(pid)


def test_a_cancel_asked_before_the_wait_for_a_job_that_has_ended_reports_its_end(
    settings: Settings, exit_seen_by: str
):
    """The job ended before its wait began: the cancel came too late, as for a cancel
    asked once the wait has seen the exit, and the report says how the job ended."""

    async def go():
        runner = Runner(settings)
        done = await started(runner, "ok", 7)
        failed = await started(runner, "fails", 8)
        time.sleep(0.3)  # both exit while the loop is not looking: their pidfds unread
        if exit_seen_by == "child watcher":
            # Its thread reaps the children and hands their statuses to the loop, two
            # turns later; nothing has asked for them yet when the cancel comes.
            await asyncio.sleep(0.1)
        done.cancel("cancelled on request")
        failed.cancel("cancelled on request")
        return await done.wait(), await failed.wait()

    done, failed = asyncio.run(go())
    assert (done.status, done.exit_code) == (JobStatus.SUCCEEDED, 0)
    assert (failed.status, failed.exit_code) == (JobStatus.FAILED, 3)


def test_a_cancel_during_the_wait_ends_it(settings: Settings):
    async def go():
        running = await started(Runner(settings), "sleeps", 4)
        asyncio.get_running_loop().call_later(0.2, running.cancel)
        return running.pid, *await timed_wait(running)

    pid, outcome, took = asyncio.run(go())
    assert outcome.status is JobStatus.CANCELLED
    assert 0.2 <= took < 5
    assert gone(pid)


def test_the_timeout_ends_the_wait_and_a_later_cancel_changes_nothing(settings: Settings):
    async def go():
        running = await started(Runner(settings), "short", 5)
        outcome, took = await timed_wait(running)
        running.cancel()  # after the end: nothing left to wake
        return running.pid, outcome, took

    pid, outcome, took = asyncio.run(go())
    assert outcome.status is JobStatus.TIMED_OUT
    assert outcome.timeout == 0.5
    assert 0.5 <= took < 5
    assert gone(pid)


def test_a_wait_cut_short_by_its_caller_leaves_the_job_to_a_later_wait(settings: Settings):
    """The dispatcher stopping cancels supervision; a cancel afterwards must not fail."""

    async def go():
        running = await started(Runner(settings), "sleeps", 6)
        waiting = asyncio.ensure_future(running.wait())
        await asyncio.sleep(0.1)
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
        running.cancel("cancelled on request")  # the first wait's future: already done, skipped
        return running.pid, await asyncio.wait_for(running.wait(), 10)

    pid, outcome = asyncio.run(go())
    assert outcome.status is JobStatus.CANCELLED
    assert gone(pid)


def test_log_folders_are_made_with_their_type_folder_and_start_empty_when_run_again(
    tmp_path: Path,
):
    folder = tmp_path / "logs" / "ns" / "new-type" / "7"  # neither the type nor the ns exists
    make_logs(folder, b"first run's output")
    assert (folder / "stdout").read_bytes() == b"first run's output"
    make_logs(folder)  # the same job again (a retry): its files start empty
    assert (folder / "stdout").read_bytes() == b""
    assert (folder / "stderr").read_bytes() == b""
    sibling = folder.parent / "8"  # its type's folder exists now: made in one step
    make_logs(sibling)
    assert sorted(p.name for p in sibling.iterdir()) == ["stderr", "stdout"]


def test_a_file_where_a_log_folder_belongs_is_refused_by_its_name(tmp_path: Path):
    blocked = tmp_path / "logs" / "ns" / "type" / "9"
    blocked.parent.mkdir(parents=True)
    blocked.write_text("not a folder")
    with pytest.raises(FileExistsError) as raised:
        open_logs(blocked)
    assert raised.value.filename == str(blocked)
    assert blocked.read_text() == "not a folder"
