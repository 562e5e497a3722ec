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

from benchmarks.common import BenchmarkError, Figure, file_system
from stat_bot.jobs.model import JobRequest, JobStatus, ReportState
from stat_bot.queue.base import Queue
from stat_bot.queue.sqlite import SQLiteQueue
from stat_bot.settings import Settings

TARGET_RATIO = 0.6  # SQLiteQueue jobs/s over bare sqlite3's, same run
ROUNDS = 100  # alternating slices of the service and the bare run (200 jobs each by default)
TIME_LIMIT = 300.0  # seconds


def default_synchronous() -> str:
    return str(Settings.model_fields["sqlite_synchronous"].default)


class ServiceCycle:
    """Jobs through a Queue: enqueue one, claim one, finish it; three transactions.

    Any backend's (the PostgreSQL benchmark runs the same cycle); `queue` is migrated
    and is closed by `close`.
    """

    def __init__(self, queue: Queue) -> None:
        self.queue = queue
        self.listener = self.queue.wakeup_listener("bench")  # as a running dispatcher's
        self.request = JobRequest(
            namespace="bench", job_type="cycle", args={"n": "1"}, channel="C0BENCH"
        )
        self.done = 0

    def run(self, jobs: int) -> float:
        queue, request = self.queue, self.request
        start = time.perf_counter()
        for n in range(jobs):
            queue.enqueue(request)
            (job,) = queue.claim("bench-worker", 1)
            # As the dispatcher ends a job it wrote no progress note for (nearly every job).
            queue.finish(
                job.id, JobStatus.SUCCEEDED, 0, report_state=ReportState.NONE, progress=False
            )
            if n % 100 == 99:
                self.listener.drain()  # the wake-ups a dispatcher would have read
        elapsed = time.perf_counter() - start
        self.listener.drain()
        self.done += jobs
        return elapsed

    def close(self) -> None:
        finished = self.queue.jobs(statuses=[JobStatus.SUCCEEDED], limit=self.done + 1)
        self.listener.close()
        self.queue.close()
        if len(finished) != self.done:
            raise RuntimeError(f"expected {self.done} finished jobs, found {len(finished)}")


class BareCycle:
    """The same three steps written by hand on a plain sqlite3 connection, same schema."""

    INSERT = (
        "INSERT INTO jobs (namespace, job_type, args, channel, source, status, created_at, "
        "start_after) VALUES ('bench', 'cycle', '{\"n\": \"1\"}', 'C0BENCH', 'cli', 'queued', ?, ?)"
    )
    CLAIM = (
        "UPDATE jobs SET status = 'running', started_at = ?, worker_id = 'bench-worker', "
        "attempts = attempts + 1 WHERE id = (SELECT id FROM jobs WHERE status = 'queued' "
        "AND start_after <= ? ORDER BY start_after, id LIMIT 1) RETURNING id"
    )
    FINISH = (
        "UPDATE jobs SET status = 'succeeded', exit_code = 0, finished_at = ? "
        "WHERE id = ? AND status = 'running'"
    )

    def __init__(self, path: Path, synchronous: str) -> None:
        schema = SQLiteQueue(path, synchronous=synchronous)
        schema.migrate()  # the same tables and indexes, in WAL mode
        schema.close()
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute(f"PRAGMA synchronous = {synchronous}")
        self.done = 0

    def run(self, jobs: int) -> float:
        conn = self.conn
        start = time.perf_counter()
        for _ in range(jobs):
            now = time.time()
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(self.INSERT, (now, now))
            conn.execute("COMMIT")
            conn.execute("BEGIN IMMEDIATE")
            (job_id,) = conn.execute(self.CLAIM, (now, now)).fetchone()
            conn.execute("COMMIT")
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(self.FINISH, (time.time(), job_id))
            conn.execute("COMMIT")
        elapsed = time.perf_counter() - start
        self.done += jobs
        return elapsed

    def close(self) -> None:
        (count,) = self.conn.execute(
            "SELECT count(*) FROM jobs WHERE status = 'succeeded'"
        ).fetchone()
        self.conn.close()
        if count != self.done:
            raise RuntimeError(f"expected {self.done} finished rows, found {count}")


def run(
    home: Path, *, jobs: int = 20_000, synchronous: str | None = None
) -> tuple[str, list[Figure]]:
    synchronous = (synchronous or default_synchronous()).upper()
    (home / "service").mkdir()
    (home / "bare").mkdir()
    service_queue = SQLiteQueue(home / "service" / "queue.sqlite3", synchronous=synchronous)
    service_queue.migrate()
    service = ServiceCycle(service_queue)
    bare = BareCycle(home / "bare" / "bare.sqlite3", synchronous)
    # In short alternating slices, so a burst of load from elsewhere falls on both alike
    # (with 10 slices of 2,000 the ratio of one run to the next varied by 0.1).
    service_s = bare_s = 0.0
    slices = max(1, min(ROUNDS, jobs // 100))
    deadline = time.monotonic() + TIME_LIMIT
    for n in range(slices):
        if time.monotonic() > deadline:
            raise BenchmarkError(f"stopped after {TIME_LIMIT:g} s, {n} of {slices} slices done")
        size = jobs // slices + (1 if n < jobs % slices else 0)
        if n % 2:  # each side goes first in half the slices
            bare_s += bare.run(size)
            service_s += service.run(size)
        else:
            service_s += service.run(size)
            bare_s += bare.run(size)
    service.close()
    bare.close()
    service_rate, bare_rate = jobs / service_s, jobs / bare_s
    title = (
        f"queue cycle: {jobs:,} jobs, each enqueued, claimed and finished in its own "
        f"transaction (WAL, synchronous={synchronous}, one thread, a file on "
        f"{file_system(home)})"
    )
    return title, [
        Figure("SQLiteQueue jobs/s", service_rate, "/s"),
        Figure("bare sqlite3, same 3 statements", bare_rate, "/s", note="reference, same run"),
        Figure("SQLiteQueue / bare sqlite3", service_rate / bare_rate, "", TARGET_RATIO, digits=2),
        Figure(
            "SQLiteQueue time per job",
            service_s / jobs * 1e6,
            " \u00b5s",
            digits=0,
            higher_is_better=False,
            note="3 transactions",
        ),
    ]
