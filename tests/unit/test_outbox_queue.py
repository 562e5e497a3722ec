"""The outbox's SQLite-only parts: a failed write undoes everything, and upgrading old databases."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from stat_bot.jobs.model import JobStatus, ReportState
from stat_bot.queue.base import OutboxMessage
from stat_bot.queue.sqlite import MIGRATIONS, SQLiteQueue
from tests.contract.test_queue_outbox import message, running_job


def test_a_failed_write_stores_neither_the_end_nor_the_report(queue: SQLiteQueue):
    job_id = running_job(queue)
    bad = OutboxMessage(kind="report", payload=None, job_id=job_id)  # type: ignore[arg-type]
    with pytest.raises(sqlite3.IntegrityError):
        queue.finish(job_id, JobStatus.SUCCEEDED, 0, outbox=[message(job_id=job_id), bad])
    assert queue.get(job_id).status is JobStatus.RUNNING
    assert queue.outbox_items() == []


def test_upgrading_gives_up_reports_left_pending_by_an_older_stat_bot(tmp_path: Path):
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        for version, script in enumerate(MIGRATIONS[:3], start=1):
            conn.executescript(script)
            conn.execute("INSERT INTO schema_version VALUES (?)", (version,))
        conn.execute(
            "INSERT INTO jobs (namespace, job_type, source, status, created_at, start_after, "
            "finished_at, report_state) VALUES ('ns', 'a', 'cli', 'succeeded', 1, 1, 2, 'pending')"
        )
        conn.execute(
            "INSERT INTO jobs (namespace, job_type, source, status, created_at, start_after, "
            "report_state) VALUES ('ns', 'b', 'cli', 'queued', 1, 1, 'pending')"
        )
    queue = SQLiteQueue(path)
    try:
        queue.migrate()
        stuck, queued = queue.get(1), queue.get(2)
        assert stuck.report_state == ReportState.FAILED
        assert "STAT bot stopped before recording it" in stuck.report_error
        assert queued.report_state == ReportState.PENDING
    finally:
        queue.close()
