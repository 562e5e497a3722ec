"""Another process holding the queue's write lock delays the dispatcher's writes but never its loop."""

from __future__ import annotations

import asyncio
import sqlite3
import time

import pytest

from stat_bot.jobs.model import JobStatus
from tests.integration.conftest import request_for, wait_status

CONFIG = {"t": {"jobs": {"nap": {"run_args_template": "sleep 0.3"}}}}


@pytest.mark.sqlite_only("another process holds SQLite's write lock (BEGIN IMMEDIATE)")
def test_a_held_write_lock_delays_a_jobs_end_without_stalling_the_dispatcher(
    configure, queue, thread_dispatcher
):
    configs = configure(CONFIG)
    td = thread_dispatcher(configs)
    job_id = queue.enqueue(request_for(configs, "t", "nap")).job.id
    wait_status(queue, job_id, JobStatus.RUNNING)
    assert td.loop is not None

    holder = sqlite3.connect(queue.path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        # The job ends while the lock is held: its finish cannot land, and must wait on
        # the queue thread rather than on the event loop.
        lags = []
        until = time.monotonic() + 1.5
        while time.monotonic() < until:
            started = time.monotonic()
            asyncio.run_coroutine_threadsafe(asyncio.sleep(0), td.loop).result(timeout=5)
            lags.append(time.monotonic() - started)
            time.sleep(0.05)
        job = queue.get(job_id)  # WAL: reading does not need the lock
        assert job is not None
        assert job.status is JobStatus.RUNNING
        assert max(lags) < 0.25, f"the dispatcher's loop stalled for {max(lags):.2f} s"
    finally:
        if holder.in_transaction:
            holder.execute("ROLLBACK")
        holder.close()

    job = wait_status(queue, job_id, JobStatus.SUCCEEDED)
    assert job.finished_at is not None
    (report,) = td.notifier.wait_for(1)
    assert report.job_id == job_id


@pytest.mark.sqlite_only("another process holds a new SQLite file's lock while it sets it up")
def test_opening_waits_for_a_process_that_is_creating_the_database(tmp_path):
    """`stat-bot run` and `stat-bot enqueue` started together both open a new file."""
    import threading

    from stat_bot.queue.sqlite import MIGRATIONS, SQLiteQueue

    path = tmp_path / "new.sqlite3"
    creator = sqlite3.connect(path, isolation_level=None)
    creator.execute("BEGIN EXCLUSIVE")  # as while the first process sets the file up
    creator.execute("CREATE TABLE early (x)")
    outcome: list[object] = []

    def open_and_migrate() -> None:
        queue = SQLiteQueue(path)
        try:
            outcome.append(queue.migrate())
        except Exception as error:  # reported below
            outcome.append(error)
        finally:
            queue.close()

    opener = threading.Thread(target=open_and_migrate)
    opener.start()
    time.sleep(0.3)
    assert outcome == []  # still waiting, not failed
    creator.execute("COMMIT")
    creator.close()
    opener.join(timeout=10)
    assert outcome == [len(MIGRATIONS)]
