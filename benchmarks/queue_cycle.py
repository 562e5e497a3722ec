"""(a) Queue cycle: jobs/s through SQLiteQueue, each step its own durable transaction.

For each of N jobs, in one thread: `enqueue` one job, `claim` one job, `finish`
that job: three `BEGIN IMMEDIATE ... COMMIT` transactions per job, on a real
file in WAL mode with the service's default synchronous setting
(SQLITE_SYNCHRONOUS). A dispatcher's wake-up socket is listening, as in
production, so every enqueue really sends its wake-up datagram.

For scale, the same run measures bare sqlite3: the same three steps as
hand-written statements (insert; update the oldest queued row to running; update
it to finished), one transaction each, on a plain connection to a database with
the same schema, file system and settings.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from benchmarks.common import Figure
from stat_bot.jobs.model import JobRequest, JobStatus, ReportState, Source
from stat_bot.queue.sqlite import SQLiteQueue
from stat_bot.settings import Settings

TARGET = 5000.0  # jobs/s


def default_synchronous() -> str:
    return str(Settings.model_fields["sqlite_synchronous"].default)


def service_cycle(path: Path, jobs: int, synchronous: str) -> float:
    """Seconds for `jobs` enqueue + claim + finish cycles through SQLiteQueue."""
    queue = SQLiteQueue(path, synchronous=synchronous)
    queue.migrate()
    listener = queue.wakeup_listener("bench")  # as a running dispatcher would
    request = JobRequest(
        namespace="bench", job_type="cycle", args={"n": "1"}, channel="C0BENCH", source=Source.CLI
    )
    try:
        start = time.perf_counter()
        for _ in range(jobs):
            queue.enqueue(request)
            (job,) = queue.claim("bench-worker", 1)
            queue.finish(job.id, JobStatus.SUCCEEDED, 0, report_state=ReportState.NONE)
            listener.drain()
        elapsed = time.perf_counter() - start
        done = queue.jobs(statuses=[JobStatus.SUCCEEDED], limit=jobs + 1)
        if len(done) != jobs:
            raise RuntimeError(f"expected {jobs} finished jobs, found {len(done)}")
    finally:
        listener.close()
        queue.close()
    return elapsed


def bare_cycle(path: Path, jobs: int, synchronous: str) -> float:
    """Seconds for the same three steps written by hand on a plain sqlite3 connection."""
    schema = SQLiteQueue(path, synchronous=synchronous)
    schema.migrate()  # the same tables and indexes, in WAL mode
    schema.close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    insert = (
        "INSERT INTO jobs (namespace, job_type, args, channel, source, status, created_at, "
        "start_after) VALUES ('bench', 'cycle', '{\"n\": \"1\"}', 'C0BENCH', 'cli', 'queued', ?, ?)"
    )
    claim = (
        "UPDATE jobs SET status = 'running', started_at = ?, worker_id = 'bench-worker', "
        "attempts = attempts + 1 WHERE id = (SELECT id FROM jobs WHERE status = 'queued' "
        "AND start_after <= ? ORDER BY start_after, id LIMIT 1) RETURNING id"
    )
    finish = (
        "UPDATE jobs SET status = 'succeeded', exit_code = 0, finished_at = ? "
        "WHERE id = ? AND status = 'running'"
    )
    try:
        start = time.perf_counter()
        for _ in range(jobs):
            now = time.time()
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(insert, (now, now))
            conn.execute("COMMIT")
            conn.execute("BEGIN IMMEDIATE")
            (job_id,) = conn.execute(claim, (now, now)).fetchone()
            conn.execute("COMMIT")
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(finish, (time.time(), job_id))
            conn.execute("COMMIT")
        elapsed = time.perf_counter() - start
        (count,) = conn.execute("SELECT count(*) FROM jobs WHERE status = 'succeeded'").fetchone()
        if count != jobs:
            raise RuntimeError(f"expected {jobs} finished rows, found {count}")
    finally:
        conn.close()
    return elapsed


def run(
    home: Path, *, jobs: int = 20_000, synchronous: str | None = None
) -> tuple[str, list[Figure]]:
    synchronous = (synchronous or default_synchronous()).upper()
    (home / "service").mkdir()
    (home / "bare").mkdir()
    service = service_cycle(home / "service" / "queue.sqlite3", jobs, synchronous)
    bare = bare_cycle(home / "bare" / "bare.sqlite3", jobs, synchronous)
    service_rate, bare_rate = jobs / service, jobs / bare
    title = (
        f"queue cycle: {jobs:,} jobs, each enqueued, claimed and finished in its own "
        f"transaction (WAL, synchronous={synchronous}, one thread)"
    )
    return title, [
        Figure("SQLiteQueue jobs/s", service_rate, "/s", TARGET),
        Figure(
            "bare sqlite3, same 3 statements",
            bare_rate,
            "/s",
            note=f"reference: SQLiteQueue is {service_rate / bare_rate:.2f} of it",
        ),
        Figure(
            "SQLiteQueue time per job",
            service / jobs * 1e6,
            " \u00b5s",
            digits=0,
            higher_is_better=False,
            note="3 transactions",
        ),
    ]
