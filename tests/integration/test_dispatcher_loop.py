"""The dispatcher's asyncio loop in-process (pytest-asyncio): claim, launch, finish, group
commit, persistent writes, schedules and shutdown, on the test's real queue with real jobs.

The process-level tests (test_shutdown.py, test_timeouts_cancel.py, test_schedules.py...)
run `stat-bot dispatcher` as a subprocess; these drive the same loop on the test's own
event loop, so each step can be awaited and looked at.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any, TypeVar

import psycopg
import pytest
import pytest_asyncio
from structlog.testing import capture_logs

from stat_bot.dispatcher import service
from stat_bot.dispatcher.schedules import config_rows
from stat_bot.dispatcher.service import Dispatcher
from stat_bot.jobs.config import JobConfigs
from stat_bot.jobs.model import JobStatus, ReportState, Source
from stat_bot.queue import Queue, open_queue
from stat_bot.queue.base import OutboxState
from stat_bot.queue.postgres import lock_id
from stat_bot.queue.sqlite import SQLiteQueue
from stat_bot.report.notifiers import RecordingNotifier
from stat_bot.settings import Settings
from tests.integration.conftest import request_for

T = TypeVar("T")

CONFIG = {
    "t": {
        "jobs": {
            "hello": {"run_args_template": "echo hello {name}", "report_stdout": True},
            "quick": {"run_args_template": "true", "coalesce": False, "concurrency": 8},
            "sleepy": {"run_args_template": "sleep 30", "coalesce": False},
            "naps": {"run_args_template": "sleep 30", "coalesce": False, "concurrency": 8},
        },
        "schedules": [{"cron": "* * * * * *", "job_type": "quick", "name": "every-second"}],
    }
}


async def until(check: Callable[[], T], timeout: float = 15.0, what: str = "") -> T:
    """Poll `check` on the loop (the dispatcher runs between polls) until it is truthy."""
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout:g} s waiting for {what or check}")
        await asyncio.sleep(0.02)
    return value


class Loop:
    """A Dispatcher on the test's event loop: `start()` runs it as a task, `stop()` ends it."""

    def __init__(
        self,
        settings: Settings,
        configs: JobConfigs,
        queue: Queue | None = None,
        notifier: RecordingNotifier | None = None,
    ) -> None:
        self.queue = queue or open_queue(settings)
        self.notifier = notifier or RecordingNotifier()
        self.dispatcher = Dispatcher(settings, configs, self.queue, self.notifier)
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> Loop:
        self.task = asyncio.create_task(self.dispatcher.run(install_signal_handlers=False))
        workers = self.queue.workers
        await until(
            lambda: any(w.id == self.dispatcher.worker_id for w in workers()), what="register"
        )
        return self

    async def stop(self, timeout: float = 30.0) -> None:
        self.dispatcher.stop()
        if self.task is not None:
            await asyncio.wait_for(self.task, timeout)


@asynccontextmanager
async def stopped_at_end(made: Loop) -> AsyncIterator[Loop]:
    """`made`, stopped (or its threads shut down if it never ran) and its queue closed after."""
    try:
        yield made
    finally:
        if made.task is None:  # never ran: its threads were never shut down by run()
            made.dispatcher._db.shutdown(wait=True)
        elif not made.task.done():
            await made.stop()
        made.queue.close()


@pytest_asyncio.fixture
async def loop(settings: Settings, configure) -> AsyncIterator[Loop]:
    async with stopped_at_end(Loop(settings, configure(CONFIG))) as made:
        yield made


@pytest.mark.asyncio
async def test_a_queued_job_is_claimed_run_finished_and_reported(loop: Loop, queue):
    await loop.start()
    configs = loop.dispatcher.configs
    job = queue.enqueue(request_for(configs, "t", "hello", args={"name": "Ada"})).job
    done = await until(
        lambda: (j := queue.get(job.id)) and j.status.finished and j, what="the job to finish"
    )
    assert (done.status, done.exit_code, done.attempts) == (JobStatus.SUCCEEDED, 0, 1)
    assert done.worker_id == loop.dispatcher.worker_id
    assert done.pid is not None
    assert done.log_dir is not None
    delivered = await until(
        lambda: (j := queue.get(job.id)) and j.report_state == ReportState.DELIVERED and j,
        what="the report to be recorded",
    )
    assert delivered.report_error is None
    # The every-second schedule's own reports may be delivered alongside: pick this job's.
    (report,) = [r for r in loop.notifier.reports if r.job_id == job.id]
    assert "hello Ada" in report.messages[0].text
    await loop.stop()
    assert loop.dispatcher.running == {}
    assert queue.workers() == []  # unregistered on the way out


@pytest.mark.asyncio
async def test_jobs_beyond_the_concurrency_wait_for_a_free_slot(make_settings, configure, queue):
    settings = make_settings(dispatcher_concurrency=2, shutdown_grace=0)
    runner = Loop(settings, configure(CONFIG))
    try:
        await runner.start()
        configs = runner.dispatcher.configs
        ids = [queue.enqueue(request_for(configs, "t", "naps")).job.id for _ in range(3)]
        await until(lambda: len(runner.dispatcher.running) == 2, what="two jobs running")
        await asyncio.sleep(0.3)  # several turns of the loop: the third must still wait
        assert queue.get(ids[2]).status is JobStatus.QUEUED
        assert len(runner.dispatcher.running) == 2
        queue.request_cancel(ids[0])
        await until(
            lambda: queue.get(ids[2]).status is JobStatus.RUNNING, what="the third to start"
        )
    finally:
        await runner.stop()
        runner.queue.close()
    assert {queue.get(i).status for i in ids} == {JobStatus.CANCELLED}


@pytest.mark.asyncio
async def test_writes_asked_for_in_one_turn_are_committed_together_in_order(loop: Loop, queue):
    configs = loop.dispatcher.configs
    ids = [queue.enqueue(request_for(configs, "t", "quick")).job.id for _ in range(3)]
    queue.claim("w", 3)
    batches: list[list[str]] = []
    write_many = loop.queue.write_many

    def recording(writes: Any) -> list[Any]:
        batches.append([name for name, _, _ in writes])
        return write_many(writes)

    loop.queue.write_many = recording  # type: ignore[method-assign]  # observe, then the real one
    d = loop.dispatcher
    results = await asyncio.gather(
        d._grouped("mark_started", ids[0], 11, "/logs/0"),
        d._grouped("finish", ids[1], JobStatus.SUCCEEDED, 0),
        d._grouped("finish", ids[2], JobStatus.FAILED, 3, note="boom"),
        d._grouped("record_report", ids[1], ReportState.DELIVERED),
    )
    assert batches == [["mark_started", "finish", "finish", "record_report"]]  # one commit
    assert results == [None, True, True, None]
    assert (queue.get(ids[1]).status, queue.get(ids[2]).status) == (
        JobStatus.SUCCEEDED,
        JobStatus.FAILED,
    )
    assert queue.get(ids[0]).pid == 11
    assert (queue.get(ids[2]).exit_code, queue.get(ids[2]).note) == (3, "boom")
    assert queue.get(ids[1]).report_state == ReportState.DELIVERED
    # A write in a later turn is its own group.
    await d._grouped("mark_started", ids[0], 12, "/logs/0")
    assert batches[1:] == [["mark_started"]]


@pytest_asyncio.fixture
async def short_wait_loop(settings: Settings, configure) -> AsyncIterator[Loop]:
    """A Loop whose SQLite connection gives up on a held write lock after 0.2 s, not 30."""
    queue = SQLiteQueue(settings.sqlite_path, busy_timeout=0.2)
    queue.migrate()
    async with stopped_at_end(Loop(settings, configure(CONFIG), queue)) as made:
        yield made


@pytest.mark.sqlite_only("another process holds SQLite's write lock (BEGIN IMMEDIATE)")
@pytest.mark.asyncio
async def test_a_job_end_that_cannot_be_written_is_retried_until_it_lands(
    short_wait_loop: Loop, queue, settings: Settings
):
    loop = short_wait_loop
    configs = loop.dispatcher.configs
    job = queue.enqueue(request_for(configs, "t", "quick")).job
    queue.claim("w", 1)
    holder = sqlite3.connect(settings.sqlite_path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        with capture_logs() as logs:
            persist = asyncio.create_task(
                loop.dispatcher._q_persist("finish", job.id, JobStatus.SUCCEEDED, 0)
            )
            await until(
                lambda: [e for e in logs if e["event"] == "queue write failed; retrying"],
                what="a failed write to be retried",
            )
            assert not persist.done()
            assert queue.get(job.id).status is JobStatus.RUNNING
            holder.execute("ROLLBACK")
            finished = await asyncio.wait_for(persist, 15)
    finally:
        holder.close()
    assert finished is True
    assert queue.get(job.id).status is JobStatus.SUCCEEDED


@pytest.mark.asyncio
async def test_shutdown_waits_the_grace_period_then_stops_running_jobs(
    make_settings, configure, queue
):
    settings = make_settings(shutdown_grace=0.3, kill_grace=1)
    runner = Loop(settings, configure(CONFIG))
    try:
        await runner.start()
        job = queue.enqueue(request_for(runner.dispatcher.configs, "t", "sleepy")).job
        await until(lambda: job.id in runner.dispatcher.running, what="the job to run")
        started = time.monotonic()
        await runner.stop()
        took = time.monotonic() - started
    finally:
        runner.queue.close()
    assert took >= 0.3  # it waited the grace period first
    ended = queue.get(job.id)
    assert ended.status is JobStatus.CANCELLED
    assert ended.note == "stopped: the dispatcher shut down after waiting 0.3 s for it"
    # The report went out before the loop ended (the schedule's reports may be there too).
    (report,) = [r for r in runner.notifier.reports if r.job_id == job.id]
    assert report.messages


@pytest.mark.asyncio
async def test_a_stopping_dispatcher_claims_and_fires_nothing(loop: Loop, queue):
    configs = loop.dispatcher.configs
    now = time.time()
    queue.sync_schedules(config_rows(configs), now=now - 60)  # due every second since
    job = queue.enqueue(request_for(configs, "t", "quick")).job
    loop.dispatcher.stop()
    await loop.dispatcher._dispatch_once(loop.queue.now())
    assert queue.get(job.id).status is JobStatus.QUEUED
    # The schedule loop returns at once instead of firing the due second.
    await asyncio.wait_for(loop.dispatcher._schedule_loop(), 5)
    assert [j.id for j in queue.jobs()] == [job.id]
    (row,) = queue.schedules()
    assert row.last_fired_at == now - 60  # as synced: never fired


@pytest.mark.asyncio
async def test_a_job_claimed_as_the_dispatcher_stops_gets_the_grace_and_is_stopped(
    make_settings, configure, queue
):
    """A stop that comes while a claimed job is still being started waits for it to start,
    then stops it with the rest, instead of leaving it to run its whole time."""
    runner = Loop(make_settings(shutdown_grace=0.3), configure(CONFIG))
    async with stopped_at_end(runner):
        d = runner.dispatcher
        job = queue.enqueue(request_for(d.configs, "t", "sleepy")).job
        await d._dispatch_once(d.queue.now())  # claimed; its launch is a task that has not run yet
        assert (d._launching, d.running) == (1, {})
        d.stop()
        heartbeat = asyncio.create_task(asyncio.sleep(3600))
        async with asyncio.timeout(15):  # `sleep 30` if it is left to run
            await d._shutdown(heartbeat)  # on this task: it begins before the launch can run
    ended = queue.get(job.id)
    assert ended.status is JobStatus.CANCELLED
    assert ended.note == "stopped: the dispatcher shut down after waiting 0.3 s for it"


@pytest.mark.asyncio
async def test_the_dispatcher_gives_the_cpu_to_each_job_it_starts(
    loop: Loop, queue, monkeypatch: pytest.MonkeyPatch
):
    """One yield right after each spawn: the new process, queued on the dispatcher's CPU,
    starts before the dispatcher's bookkeeping for it (BENCHMARKS.md, dispatch latency)."""
    yields = 0
    real = os.sched_yield

    def recording() -> None:
        nonlocal yields
        yields += 1
        real()

    monkeypatch.setattr(os, "sched_yield", recording)
    await loop.start()
    configs = loop.dispatcher.configs
    ids = [queue.enqueue(request_for(configs, "t", "quick")).job.id for _ in range(3)]
    await until(lambda: all(queue.get(i).status.finished for i in ids), what="the jobs to finish")
    await loop.stop()
    started = [job for job in queue.jobs() if job.pid is not None]  # schedules' jobs too
    assert len(started) >= 3
    assert yields == len(started)


@pytest.mark.asyncio
async def test_only_a_job_that_wrote_a_progress_note_has_one_dropped_at_its_end(
    make_settings, configure, queue
):
    """The end of a job that never wrote a note skips the statement that drops one; a job
    that did has its unsent note dropped, whatever became of its write."""
    settings = make_settings(progress_after=0.2, progress_interval=0.2)
    runner = Loop(settings, configure(CONFIG), notifier=RecordingNotifier(wants_progress=True))
    ends: list[tuple[int, bool]] = []
    finish = runner.queue._finish  # type: ignore[attr-defined]  # the grouped write's own

    def recording(conn: Any, job_id: int, *args: Any, **kwargs: Any) -> Any:
        ends.append((job_id, kwargs.get("progress", True)))
        return finish(conn, job_id, *args, **kwargs)

    runner.queue._finish = recording  # type: ignore[attr-defined]
    async with stopped_at_end(runner):
        await runner.start()
        configs = runner.dispatcher.configs
        asked = {"channel": "C1", "source": Source.SLACK}  # a person waits on these
        quick = queue.enqueue(request_for(configs, "t", "quick", **asked)).job
        slow = queue.enqueue(request_for(configs, "t", "sleepy", **asked)).job
        await until(lambda: queue.get(quick.id).status.finished, what="the quick job to end")
        await until(
            lambda: (
                queue.progress_posted(slow.id)
                or any(i.job_id == slow.id for i in queue.outbox_items())
            ),
            what="a progress note",
        )
        queue.request_cancel(slow.id)
        await until(lambda: queue.get(slow.id).status.finished, what="the slow job to end")
        await runner.stop()
    assert (quick.id, False) in ends
    assert (slow.id, True) in ends
    notes = [i for i in queue.outbox_items() if i.job_id == slow.id and i.kind == "progress"]
    assert notes
    assert all(i.state is not OutboxState.PENDING for i in notes)


@contextmanager
def claims_locked(settings: Settings) -> Iterator[None]:
    """Another process holding what a claim must take: SQLite's write lock, or on
    PostgreSQL the claims' advisory lock."""
    if settings.database_url.startswith("postgresql"):
        with psycopg.connect(settings.database_url) as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock_id("claim"),))
            yield
        return
    holder = sqlite3.connect(settings.sqlite_path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        yield
        holder.execute("ROLLBACK")
    finally:
        holder.close()


@pytest.mark.asyncio
async def test_a_dispatcher_claims_only_when_a_job_is_due(make_settings, configure, queue):
    """A claim is a write transaction: a wake-up or poll with nothing due (a slot freed, the
    idle poll) reads instead, so it neither waits for nor holds up other writers; a job
    queued later, or one that falls due later, is still started."""
    settings = make_settings(dispatcher_poll_interval=0.05)
    unscheduled = {"t": {"jobs": CONFIG["t"]["jobs"]}}
    runner = Loop(settings, configure(unscheduled))
    claims: list[list[int]] = []
    claim = runner.queue.claim

    def counting(*args: Any, **kwargs: Any) -> list[Any]:
        claimed = claim(*args, **kwargs)
        claims.append([job.id for job in claimed])
        return claimed

    runner.queue.claim = counting  # type: ignore[method-assign]
    async with stopped_at_end(runner):
        await runner.start()
        configs = runner.dispatcher.configs
        # Idle, then with another process holding the write lock: polls read and go on.
        await asyncio.sleep(0.5)
        with claims_locked(settings), capture_logs() as logs:
            await asyncio.sleep(0.5)
        assert claims == []
        assert not [e for e in logs if e["log_level"] in ("warning", "error")]
        # A job queued now is woken for and claimed once.
        first = queue.enqueue(request_for(configs, "t", "quick")).job.id
        await until(lambda: queue.get(first).status.finished, what="the job to finish")
        assert claims == [[first]]
        # One due in 0.4 s is not tried for before it is due (a try would have claimed
        # nothing, and been counted), then is claimed.
        later = queue.enqueue(request_for(configs, "t", "quick", delay_seconds=0.4)).job
        done = await until(
            lambda: (j := queue.get(later.id)) and j.status.finished and j, what="the later job"
        )
        assert claims == [[first], [later.id]]
        assert done.started_at is not None
        assert done.started_at >= later.start_after


@pytest.mark.asyncio
async def test_a_dead_dispatchers_job_is_killed_before_its_slot_is_given_back(
    loop: Loop, queue, monkeypatch: pytest.MonkeyPatch
):
    """Recovery frees a dead dispatcher's slots when it commits, and a job of the type may
    start at once: what is left of the lost attempt on this host must be dead by then."""
    configs = loop.dispatcher.configs
    gone = subprocess.Popen(["true"])
    gone.wait()  # a dispatcher's pid that is no longer alive: dead, on this host
    queue.register_worker("dead", socket.gethostname(), gone.pid)
    job = queue.enqueue(request_for(configs, "t", "sleepy", retries=1)).job
    queue.claim("dead", 1)
    remains = subprocess.Popen(
        ["sleep", "30"], env={**os.environ, "STAT_BOT_JOB_ID": str(job.id)}, start_new_session=True
    )
    try:
        queue.mark_started(job.id, remains.pid, "/nowhere")
        seen: list[JobStatus | None] = []
        real_kill = service.kill_group

        def kill_group(pgid: int, sig: int) -> None:
            stored = queue.get(job.id)  # as every other process sees it, at the kill
            seen.append(stored.status if stored else None)
            real_kill(pgid, sig)

        monkeypatch.setattr(service, "kill_group", kill_group)
        await loop.dispatcher._recover()
        assert remains.wait(10) == -signal.SIGKILL
    finally:
        if remains.poll() is None:
            remains.kill()
            remains.wait()
    assert seen == [JobStatus.RUNNING]
    requeued = queue.get(job.id)
    assert requeued is not None
    assert requeued.status is JobStatus.QUEUED
    assert requeued.attempts == 1
