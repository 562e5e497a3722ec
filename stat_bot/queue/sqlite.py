"""The embedded queue: one SQLite file in WAL mode shared by every process.

All of STAT bot's SQL for SQLite lives in this module. Writes run in
`BEGIN IMMEDIATE` transactions so concurrent writers queue on SQLite's lock
(bounded by the busy timeout) instead of failing half-way; each thread has its
own connection, as sqlite3 connections must not be shared across threads.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from stat_bot.jobs.model import Job, JobRequest, JobStatus, ReportState
from stat_bot.queue.base import (
    KEEP,
    Beat,
    CancelOutcome,
    CancelResult,
    EnqueueResult,
    JobCount,
    JobTiming,
    Queue,
    QueueBusyError,
    QueueError,
    Recovered,
    ScheduleRow,
    Suppression,
    WakeupListener,
    Worker,
)
from stat_bot.queue.wakeup import WakeupDirectory

T = TypeVar("T")

WAL_AUTOCHECKPOINT_PAGES = 4000
BUSY_FIRST_SLEEP = 0.0001
BUSY_MAX_SLEEP = 0.002
BUSY_CODES = frozenset(
    {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, 517, 261}
)  # + _SNAPSHOT, _RECOVERY

# Forward-only migrations; the index + 1 is the schema version it produces.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE jobs (
        id               INTEGER PRIMARY KEY,
        namespace        TEXT    NOT NULL,
        job_type         TEXT    NOT NULL,
        args             TEXT    NOT NULL DEFAULT '{}',
        channel          TEXT,
        thread_ts        TEXT,
        user             TEXT,
        source           TEXT    NOT NULL,
        status           TEXT    NOT NULL,
        created_at       REAL    NOT NULL,
        start_after      REAL    NOT NULL,
        started_at       REAL,
        finished_at      REAL,
        attempts         INTEGER NOT NULL DEFAULT 0,
        max_retries      INTEGER NOT NULL DEFAULT 0,
        concurrency      INTEGER NOT NULL DEFAULT 1,
        worker_id        TEXT,
        heartbeat_at     REAL,
        pid              INTEGER,
        exit_code        INTEGER,
        log_dir          TEXT,
        cancel_requested INTEGER NOT NULL DEFAULT 0,
        report_state     TEXT    NOT NULL DEFAULT 'pending',
        report_error     TEXT,
        is_im            INTEGER NOT NULL DEFAULT 0,
        note             TEXT
    );
    CREATE INDEX jobs_queued ON jobs (start_after, id) WHERE status = 'queued';
    CREATE INDEX jobs_queued_type ON jobs (namespace, job_type) WHERE status = 'queued';
    CREATE INDEX jobs_running ON jobs (namespace, job_type) WHERE status = 'running';
    -- Only the unfinished jobs are indexed beyond the primary key: every index is
    -- another write in each of a job's three transactions. History is read newest
    -- first by id, and pruned by a scan every few hours.

    CREATE TABLE suppressions (
        id         INTEGER PRIMARY KEY,
        namespace  TEXT NOT NULL,
        job_type   TEXT NOT NULL,
        start_at   REAL NOT NULL,
        end_at     REAL NOT NULL,
        user       TEXT,
        created_at REAL NOT NULL
    );
    CREATE INDEX suppressions_type ON suppressions (namespace, job_type);

    CREATE TABLE schedules (
        key           TEXT PRIMARY KEY,
        namespace     TEXT NOT NULL,
        job_type      TEXT NOT NULL,
        cron          TEXT NOT NULL,
        args          TEXT NOT NULL DEFAULT '{}',
        channel       TEXT,
        enabled       INTEGER NOT NULL DEFAULT 1,
        last_fired_at REAL,
        updated_at    REAL NOT NULL
    );

    CREATE TABLE workers (
        id           TEXT PRIMARY KEY,
        hostname     TEXT NOT NULL,
        pid          INTEGER NOT NULL,
        started_at   REAL NOT NULL,
        heartbeat_at REAL NOT NULL
    );
    """,
    """
    -- The web server's changes to a schedule, kept apart from what the config says.
    ALTER TABLE schedules ADD COLUMN interval_seconds REAL;
    ALTER TABLE schedules ADD COLUMN interval_since REAL;
    ALTER TABLE schedules ADD COLUMN enabled_override INTEGER;

    -- Webhook deliveries already accepted, so a replay enqueues nothing.
    CREATE TABLE deliveries (
        source      TEXT NOT NULL,
        delivery_id TEXT NOT NULL,
        received_at REAL NOT NULL,
        PRIMARY KEY (source, delivery_id)
    ) WITHOUT ROWID;
    CREATE INDEX deliveries_received ON deliveries (received_at);

    -- Counters every process adds to (web workers, bot, dispatcher), read by /metrics.
    CREATE TABLE counters (
        name  TEXT    NOT NULL,
        label TEXT    NOT NULL,
        value INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (name, label)
    ) WITHOUT ROWID;

    -- Each long-running component's latest state (the bot's connection), for /readyz.
    CREATE TABLE beats (
        component TEXT PRIMARY KEY,
        hostname  TEXT    NOT NULL,
        pid       INTEGER NOT NULL,
        state     TEXT    NOT NULL,
        detail    TEXT    NOT NULL,
        at        REAL    NOT NULL
    );
    """,
    """
    -- The asker's Slack name beside their id, for what people read (Trac, the dashboard).
    ALTER TABLE jobs ADD COLUMN user_name TEXT;
    """,
    """
    -- Whether a schedule has fired since it was added. `last_fired_at` starts at the time it
    -- was added (so it never fires for due times before that), and this tells the two apart, so
    -- `status` can say "never". Schedules from before this column count as having fired.
    ALTER TABLE schedules ADD COLUMN has_fired INTEGER NOT NULL DEFAULT 1;
    """,
)

JOB_COLUMNS = (
    "id, namespace, job_type, args, channel, thread_ts, user, source, status, created_at, "
    "start_after, started_at, finished_at, attempts, max_retries, concurrency, worker_id, "
    "heartbeat_at, pid, exit_code, log_dir, cancel_requested, report_state, report_error, is_im, note, "
    "user_name"
)

SQL_INSERT_JOB = (
    """
    INSERT INTO jobs (namespace, job_type, args, channel, thread_ts, user, source, status,
                      created_at, start_after, max_retries, concurrency, is_im, report_state,
                      user_name)
    VALUES (?, ?, ?, ?, ?, ?, ?, 'queued', ?, ?, ?, ?, ?, 'pending', ?)
    RETURNING """
    + JOB_COLUMNS
)

SQL_FIND_QUEUED_OF_TYPE = """
    SELECT id FROM jobs WHERE status = 'queued' AND namespace = ? AND job_type = ?
    ORDER BY id LIMIT 1
"""

SQL_COALESCE = (
    """
    UPDATE jobs SET args = ?, channel = ?, thread_ts = ?, user = ?, source = ?, start_after = ?,
                    max_retries = ?, concurrency = ?, is_im = ?, user_name = ?
    WHERE id = ? RETURNING """
    + JOB_COLUMNS
)

SQL_RUNNING_OF_TYPE = (
    "SELECT "
    + JOB_COLUMNS
    + " FROM jobs WHERE status = 'running' AND namespace = ? AND job_type = ?"
)

SQL_ACTIVE_SUPPRESSION_END = """
    SELECT max(end_at) FROM suppressions
    WHERE namespace = ? AND job_type = ? AND start_at <= ? AND end_at > ?
"""

# The next claimable job: due, its type below its concurrency limit, not suppressed.
# Both subqueries are uncorrelated, so SQLite evaluates each once per statement.
SQL_CLAIM_NEXT = """
    SELECT id FROM jobs AS j
    WHERE j.status = 'queued' AND j.start_after <= :now
      AND (j.namespace, j.job_type) NOT IN (
            SELECT namespace, job_type FROM jobs WHERE status = 'running'
            GROUP BY namespace, job_type HAVING count(*) >= max(concurrency))
      AND (j.namespace, j.job_type) NOT IN (
            SELECT namespace, job_type FROM suppressions WHERE start_at <= :now AND end_at > :now)
    ORDER BY j.start_after, j.id
    LIMIT 1
"""

SQL_MARK_RUNNING = (
    """
    UPDATE jobs SET status = 'running', started_at = :now, heartbeat_at = :now, worker_id = :worker,
                    attempts = attempts + 1, cancel_requested = 0, pid = NULL, exit_code = NULL
    WHERE id = :id RETURNING """
    + JOB_COLUMNS
)

SQL_MARK_STARTED = "UPDATE jobs SET pid = ?, log_dir = ? WHERE id = ?"

SQL_FINISH = (
    """
    UPDATE jobs SET status = ?, exit_code = ?, finished_at = ?, note = coalesce(?, note),
                    report_state = ?
    WHERE id = ? AND status = 'running' RETURNING """
    + JOB_COLUMNS
)

SQL_WORKER_HEARTBEAT = "UPDATE workers SET heartbeat_at = ? WHERE id = ?"
SQL_JOBS_HEARTBEAT = "UPDATE jobs SET heartbeat_at = ? WHERE worker_id = ? AND status = 'running'"
SQL_CANCEL_REQUESTED = (
    "SELECT id FROM jobs WHERE worker_id = ? AND status = 'running' AND cancel_requested = 1"
)

SQL_GET = "SELECT " + JOB_COLUMNS + " FROM jobs WHERE id = ?"
SQL_CANCEL_QUEUED = (
    """
    UPDATE jobs SET status = 'cancelled', finished_at = ?, report_state = 'none', note = ?
    WHERE id = ? AND status = 'queued' RETURNING """
    + JOB_COLUMNS
)
SQL_REQUEST_CANCEL = "UPDATE jobs SET cancel_requested = 1 WHERE id = ? AND status = 'running'"
SQL_CANCEL_QUEUED_OF_TYPE = (
    """
    UPDATE jobs SET status = 'cancelled', finished_at = ?, report_state = 'none', note = ?
    WHERE status = 'queued' AND namespace = ? AND job_type = ? RETURNING """
    + JOB_COLUMNS
)

SQL_INSERT_SUPPRESSION = """
    INSERT INTO suppressions (namespace, job_type, start_at, end_at, user, created_at)
    VALUES (?, ?, ?, ?, ?, ?) RETURNING id
"""
SQL_DELETE_SUPPRESSIONS = "DELETE FROM suppressions WHERE namespace = ? AND job_type = ?"
SQL_SUPPRESSIONS = "SELECT id, namespace, job_type, start_at, end_at, user FROM suppressions"
SQL_ACTIVE_SUPPRESSIONS = SQL_SUPPRESSIONS + " WHERE end_at > ? ORDER BY start_at"

SQL_RECORD_REPORT = "UPDATE jobs SET report_state = ?, report_error = ? WHERE id = ?"

SQL_PRUNE = (
    "DELETE FROM jobs WHERE finished_at IS NOT NULL AND finished_at < ? RETURNING " + JOB_COLUMNS
)
SQL_PRUNE_SUPPRESSIONS = "DELETE FROM suppressions WHERE end_at < ?"

SQL_REGISTER_WORKER = """
    INSERT INTO workers (id, hostname, pid, started_at, heartbeat_at) VALUES (?, ?, ?, ?, ?)
    ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at
"""
SQL_UNREGISTER_WORKER = "DELETE FROM workers WHERE id = ?"
SQL_WORKERS = "SELECT id, hostname, pid, started_at, heartbeat_at FROM workers ORDER BY started_at"
SQL_RUNNING_ALL = "SELECT " + JOB_COLUMNS + " FROM jobs WHERE status = 'running'"
SQL_REQUEUE = (
    """
    UPDATE jobs SET status = 'queued', worker_id = NULL, pid = NULL, heartbeat_at = NULL,
                    started_at = NULL, start_after = ?, note = ?
    WHERE id = ? AND status = 'running' RETURNING """
    + JOB_COLUMNS
)
SQL_MARK_LOST = (
    """
    UPDATE jobs SET status = 'lost', finished_at = ?, note = ?, report_state = 'pending'
    WHERE id = ? AND status = 'running' RETURNING """
    + JOB_COLUMNS
)

SCHEDULE_COLUMNS = """
    key, namespace, job_type, cron, args, channel, coalesce(enabled_override, enabled),
    last_fired_at, interval_seconds, interval_since, enabled_override, has_fired
"""
SQL_SCHEDULES = "SELECT " + SCHEDULE_COLUMNS + " FROM schedules ORDER BY key"
SQL_SCHEDULE = "SELECT " + SCHEDULE_COLUMNS + " FROM schedules WHERE key = ?"
SQL_SET_SCHEDULE_INTERVAL = (
    "UPDATE schedules SET interval_seconds = ?, interval_since = ?, updated_at = ? WHERE key = ?"
)
SQL_SET_SCHEDULE_ENABLED = "UPDATE schedules SET enabled_override = ?, updated_at = ? WHERE key = ?"

SQL_INSERT_DELIVERY = """
    INSERT INTO deliveries (source, delivery_id, received_at) VALUES (?, ?, ?)
    ON CONFLICT (source, delivery_id) DO NOTHING
"""
SQL_PRUNE_DELIVERIES = "DELETE FROM deliveries WHERE received_at < ?"
SQL_COUNT = """
    INSERT INTO counters (name, label, value) VALUES (?, ?, ?)
    ON CONFLICT (name, label) DO UPDATE SET value = value + excluded.value
"""
SQL_COUNTERS = "SELECT label, value FROM counters WHERE name = ?"
SQL_BEAT = """
    INSERT INTO beats (component, hostname, pid, state, detail, at) VALUES (?, ?, ?, ?, ?, ?)
    ON CONFLICT (component) DO UPDATE SET hostname = excluded.hostname, pid = excluded.pid,
        state = excluded.state, detail = excluded.detail, at = excluded.at
"""
SQL_BEATS = "SELECT component, hostname, pid, state, detail, at FROM beats ORDER BY component"
SQL_JOB_COUNTS = """
    SELECT namespace, job_type, status, report_state, count(*) FROM jobs
    GROUP BY namespace, job_type, status, report_state
"""
SQL_JOB_TIMINGS = """
    SELECT id, namespace, job_type, status, created_at, start_after, started_at, finished_at
    FROM jobs WHERE created_at >= ? ORDER BY id LIMIT ?
"""
SQL_UPSERT_SCHEDULE = """
    INSERT INTO schedules (key, namespace, job_type, cron, args, channel, enabled, last_fired_at,
                           updated_at, has_fired)
    VALUES (:key, :namespace, :job_type, :cron, :args, :channel, :enabled, :now, :now, 0)
    ON CONFLICT (key) DO UPDATE SET
        namespace = excluded.namespace, job_type = excluded.job_type, cron = excluded.cron,
        args = excluded.args, channel = excluded.channel, enabled = excluded.enabled,
        updated_at = excluded.updated_at
"""
SQL_DELETE_SCHEDULE = "DELETE FROM schedules WHERE key = ?"
SQL_FIRE_SCHEDULE = """
    UPDATE schedules SET last_fired_at = ?, has_fired = 1
    WHERE key = ? AND coalesce(enabled_override, enabled) = 1
      AND (last_fired_at IS NULL OR last_fired_at < ?)
"""

SQL_NEXT_DUE = "SELECT min(start_after) FROM jobs WHERE status = 'queued'"
SQL_NEXT_DUE_AFTER = SQL_NEXT_DUE + " AND start_after > ?"


def _job(row: Sequence[object]) -> Job:
    (
        id_, namespace, job_type, args, channel, thread_ts, user, source, status, created_at,
        start_after, started_at, finished_at, attempts, max_retries, concurrency, worker_id,
        heartbeat_at, pid, exit_code, log_dir, cancel_requested, report_state, report_error, is_im, note,
        user_name,
    ) = row  # fmt: skip
    return Job(
        id=id_, namespace=namespace, job_type=job_type, args=json.loads(args), channel=channel,
        thread_ts=thread_ts, user=user, source=source, status=JobStatus(status),
        created_at=created_at, start_after=start_after, started_at=started_at,
        finished_at=finished_at, attempts=attempts, max_retries=max_retries,
        concurrency=concurrency, worker_id=worker_id, heartbeat_at=heartbeat_at, pid=pid,
        exit_code=exit_code, log_dir=log_dir, cancel_requested=bool(cancel_requested),
        report_state=report_state, report_error=report_error, is_im=bool(is_im), note=note,
        user_name=user_name,
    )  # fmt: skip  # type: ignore[arg-type]


def _suppression(row: Sequence[object]) -> Suppression:
    return Suppression(*row)  # type: ignore[arg-type]


def _schedule(row: Sequence[Any]) -> ScheduleRow:
    key, ns, jt, cron, args, channel, enabled, last, interval, since, override, fired = row
    return ScheduleRow(
        key, ns, jt, cron, json.loads(args), channel, bool(enabled), last, interval, since,
        None if override is None else bool(override), bool(fired),
    )  # fmt: skip


class SQLiteQueue(Queue):
    """The Queue on one SQLite file; safe for many threads and processes at once."""

    def __init__(
        self,
        path: Path,
        *,
        busy_timeout: float = 30.0,
        synchronous: str = "NORMAL",
    ) -> None:
        self.path = Path(path).absolute()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._busy_ms = int(busy_timeout * 1000)
        self._synchronous = synchronous
        self._local = threading.local()
        self._wakeup = WakeupDirectory(self.path)

    # connections -----------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None or self._local.pid != os.getpid():
            conn = sqlite3.connect(
                self.path, isolation_level=None, timeout=0, check_same_thread=True
            )
            # No SQLite busy handler: `_when_free` waits for locks instead (see there).
            conn.execute("PRAGMA busy_timeout = 0")

            def setup() -> None:
                # These read the file's header: they meet the lock of a process that is
                # creating the database or switching it to WAL at this moment, and wait.
                conn.execute(f"PRAGMA synchronous = {self._synchronous}")
                conn.execute("PRAGMA foreign_keys = ON")
                # Checkpoint every ~16 MiB of WAL instead of 4: a hot page (index roots,
                # the queued-jobs index) is copied back once per checkpoint however often
                # it changed.
                conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES}")

            self._when_free(setup, "open")
            self._local.conn = conn
            self._local.pid = os.getpid()
        return conn

    def call_nowait(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        # With `nowait` set, `_when_free` gives up at the first busy answer.
        self._local.nowait = True
        try:
            return fn(*args, **kwargs)
        finally:
            self._local.nowait = False

    def _when_free(self, attempt: Callable[[], T], what: str) -> T:
        """`attempt` (a statement that may find the database locked), retried until it is free.

        SQLite's own busy handler sleeps 1, 2, 5, 10, 15, 20, 25 ms... between tries, so a
        writer that just misses a lock held for a fraction of a millisecond (the usual
        here: bot, dispatcher and CLI each commit in ~0.1 ms) waits tens of milliseconds.
        Retrying after 0.1 ms, doubling to 2 ms, keeps such waits near the time the lock
        is really held, up to the same overall timeout.
        """
        delay = BUSY_FIRST_SLEEP
        deadline: float | None = None
        while True:
            try:
                return attempt()
            except sqlite3.OperationalError as error:
                if (getattr(error, "sqlite_errorcode", 0) & 0xFF) not in BUSY_CODES:
                    raise QueueError(
                        f"could not {what} the queue database {self.path}: {error}"
                    ) from error
                if getattr(self._local, "nowait", False):
                    raise QueueBusyError(f"{self.path} is locked by another writer") from error
                now = time.monotonic()
                if deadline is None:
                    deadline = now + self._busy_ms / 1000
                elif now >= deadline:
                    raise QueueError(
                        f"could not {what} the queue database {self.path}: {error} "
                        f"(waited {self._busy_ms / 1000:g} s)"
                    ) from error
                time.sleep(delay)
                delay = min(delay * 2, BUSY_MAX_SLEEP)

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction: the write lock up front, so no upgrade can deadlock."""
        conn = self._conn()
        self._when_free(lambda: conn.execute("BEGIN IMMEDIATE"), "lock")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        else:
            conn.execute("COMMIT")

    def _read(self, sql: str, params: Sequence[object] | dict[str, object] = ()) -> list[tuple]:
        conn = self._conn()
        return self._when_free(lambda: conn.execute(sql, params).fetchall(), "read")

    # lifecycle -------------------------------------------------------------
    def migrate(self) -> int:
        first = self._conn()
        mode = self._when_free(
            lambda: first.execute("PRAGMA journal_mode = WAL").fetchone()[0], "open"
        )
        if mode.lower() != "wal":
            raise QueueError(f"{self.path}: could not switch to WAL journal mode (got {mode})")
        with self._write() as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
            current = row[0] or 0
            if current > len(MIGRATIONS):
                raise QueueError(
                    f"{self.path} has schema version {current}, newer than this STAT bot "
                    f"understands ({len(MIGRATIONS)}); upgrade STAT bot"
                )
            for version in range(current + 1, len(MIGRATIONS) + 1):
                for statement in MIGRATIONS[version - 1].split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
        return len(MIGRATIONS)

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
        self._wakeup.close()

    # writing ---------------------------------------------------------------
    @staticmethod
    def _insert_or_coalesce(
        conn: sqlite3.Connection, request: JobRequest, created: float, start_after: float
    ) -> tuple[tuple, bool]:
        """Insert the job, or with coalescing update the queued one of its type (ebmbot)."""
        args = json.dumps(request.args, ensure_ascii=False, sort_keys=True)
        if request.coalesce:
            existing = conn.execute(
                SQL_FIND_QUEUED_OF_TYPE, (request.namespace, request.job_type)
            ).fetchone()
            if existing:
                row = conn.execute(
                    SQL_COALESCE,
                    (args, request.channel, request.thread_ts, request.user, request.source,
                     start_after, request.retries, request.concurrency, int(request.is_im),
                     request.user_name, existing[0]),
                ).fetchone()  # fmt: skip
                return row, True
        row = conn.execute(
            SQL_INSERT_JOB,
            (request.namespace, request.job_type, args, request.channel, request.thread_ts,
             request.user, request.source, created, start_after, request.retries,
             request.concurrency, int(request.is_im), request.user_name),
        ).fetchone()  # fmt: skip
        return row, False

    def enqueue(self, request: JobRequest, *, now: float | None = None) -> EnqueueResult:
        now = time.time() if now is None else now
        start_after = now + request.delay_seconds
        with self._write() as conn:
            row, coalesced = self._insert_or_coalesce(conn, request, now, start_after)
            running = conn.execute(
                SQL_RUNNING_OF_TYPE, (request.namespace, request.job_type)
            ).fetchall()
            until = conn.execute(
                SQL_ACTIVE_SUPPRESSION_END,
                (request.namespace, request.job_type, start_after, start_after),
            ).fetchone()[0]
        self._wakeup.notify()
        return EnqueueResult(_job(row), coalesced, tuple(_job(r) for r in running), until)

    def claim(self, worker_id: str, limit: int, *, now: float | None = None) -> list[Job]:
        if limit <= 0:
            return []
        now = time.time() if now is None else now
        claimed: list[Job] = []
        with self._write() as conn:
            for _ in range(limit):
                row = conn.execute(SQL_CLAIM_NEXT, {"now": now}).fetchone()
                if row is None:
                    break
                job = conn.execute(
                    SQL_MARK_RUNNING, {"now": now, "worker": worker_id, "id": row[0]}
                ).fetchone()
                claimed.append(_job(job))
        return claimed

    def mark_started(self, job_id: int, pid: int, log_dir: str) -> None:
        with self._write() as conn:
            self._mark_started(conn, job_id, pid, log_dir)

    @staticmethod
    def _mark_started(conn: sqlite3.Connection, job_id: int, pid: int, log_dir: str) -> None:
        conn.execute(SQL_MARK_STARTED, (pid, log_dir, job_id))

    def finish(
        self,
        job_id: int,
        status: JobStatus,
        exit_code: int | None = None,
        *,
        note: str | None = None,
        report_state: ReportState = ReportState.PENDING,
        now: float | None = None,
    ) -> Job | None:
        with self._write() as conn:
            return self._finish(conn, job_id, status, exit_code, note, report_state, now)

    @staticmethod
    def _finish(
        conn: sqlite3.Connection,
        job_id: int,
        status: JobStatus,
        exit_code: int | None = None,
        note: str | None = None,
        report_state: ReportState = ReportState.PENDING,
        now: float | None = None,
    ) -> Job | None:
        now = time.time() if now is None else now
        row = conn.execute(
            SQL_FINISH, (status, exit_code, now, note, report_state, job_id)
        ).fetchone()
        return _job(row) if row else None

    def heartbeat(self, worker_id: str, *, now: float | None = None) -> list[int]:
        now = time.time() if now is None else now
        with self._write() as conn:
            conn.execute(SQL_WORKER_HEARTBEAT, (now, worker_id))
            conn.execute(SQL_JOBS_HEARTBEAT, (now, worker_id))
            return [r[0] for r in conn.execute(SQL_CANCEL_REQUESTED, (worker_id,))]

    def cancel_requests(self, worker_id: str) -> list[int]:
        """Ids of this worker's running jobs that someone asked to cancel (a read, no lock)."""
        return [r[0] for r in self._read(SQL_CANCEL_REQUESTED, (worker_id,))]

    def request_cancel(self, job_id: int, *, now: float | None = None) -> CancelResult:
        now = time.time() if now is None else now
        with self._write() as conn:
            row = conn.execute(SQL_GET, (job_id,)).fetchone()
            if row is None:
                return CancelResult(CancelOutcome.NOT_FOUND)
            job = _job(row)
            if job.status is JobStatus.QUEUED:
                row = conn.execute(
                    SQL_CANCEL_QUEUED, (now, "cancelled before it started", job_id)
                ).fetchone()
                outcome = CancelResult(CancelOutcome.CANCELLED, _job(row))
            elif job.status is JobStatus.RUNNING:
                conn.execute(SQL_REQUEST_CANCEL, (job_id,))
                outcome = CancelResult(CancelOutcome.REQUESTED, job)
            else:
                return CancelResult(CancelOutcome.ALREADY_FINISHED, job)
        self._wakeup.notify()
        return outcome

    def cancel_queued(
        self, namespace: str, job_type: str, *, now: float | None = None
    ) -> list[Job]:
        now = time.time() if now is None else now
        with self._write() as conn:
            rows = conn.execute(
                SQL_CANCEL_QUEUED_OF_TYPE,
                (now, "cancelled by a cancel_job command", namespace, job_type),
            ).fetchall()
        return [_job(r) for r in rows]

    def suppress(
        self, namespace: str, job_type: str, start_at: float, end_at: float, user: str | None = None
    ) -> Suppression:
        with self._write() as conn:
            (id_,) = conn.execute(
                SQL_INSERT_SUPPRESSION, (namespace, job_type, start_at, end_at, user, time.time())
            ).fetchone()
        return Suppression(id_, namespace, job_type, start_at, end_at, user)

    def unsuppress(self, namespace: str, job_type: str) -> int:
        with self._write() as conn:
            count = conn.execute(SQL_DELETE_SUPPRESSIONS, (namespace, job_type)).rowcount
        self._wakeup.notify()
        return count

    def record_report(self, job_id: int, state: ReportState, error: str | None = None) -> None:
        with self._write() as conn:
            self._record_report(conn, job_id, state, error)

    @staticmethod
    def _record_report(
        conn: sqlite3.Connection, job_id: int, state: ReportState, error: str | None = None
    ) -> None:
        conn.execute(SQL_RECORD_REPORT, (state, error, job_id))

    def write_many(
        self, writes: Sequence[tuple[str, tuple[Any, ...], dict[str, Any]]]
    ) -> list[Any]:
        """One transaction for all of them: one commit, the WAL written once (group commit)."""
        inner = {
            "mark_started": self._mark_started,
            "finish": self._finish,
            "record_report": self._record_report,
        }
        self._check_grouped(writes)
        with self._write() as conn:
            return [inner[name](conn, *args, **kwargs) for name, args, kwargs in writes]

    def prune(self, before: float) -> list[Job]:
        with self._write() as conn:
            rows = conn.execute(SQL_PRUNE, (before,)).fetchall()
            conn.execute(SQL_PRUNE_SUPPRESSIONS, (time.time(),))
            conn.execute(SQL_PRUNE_DELIVERIES, (before,))
        return [_job(r) for r in rows]

    # workers ---------------------------------------------------------------
    def register_worker(
        self, worker_id: str, hostname: str, pid: int, *, now: float | None = None
    ) -> None:
        now = time.time() if now is None else now
        with self._write() as conn:
            conn.execute(SQL_REGISTER_WORKER, (worker_id, hostname, pid, now, now))

    def unregister_worker(self, worker_id: str) -> None:
        with self._write() as conn:
            conn.execute(SQL_UNREGISTER_WORKER, (worker_id,))

    def workers(self) -> list[Worker]:
        return [Worker(*r) for r in self._read(SQL_WORKERS)]

    def recover_lost(
        self, is_dead: Callable[[Worker], bool], *, now: float | None = None
    ) -> list[Recovered]:
        now = time.time() if now is None else now
        recovered: list[Recovered] = []
        with self._write() as conn:
            workers = {r[0]: Worker(*r) for r in conn.execute(SQL_WORKERS)}
            dead = {wid for wid, w in workers.items() if is_dead(w)}
            for row in conn.execute(SQL_RUNNING_ALL).fetchall():
                job = _job(row)
                if job.worker_id in workers and job.worker_id not in dead:
                    continue
                worker = workers.get(job.worker_id or "")
                who = f"dispatcher {job.worker_id}" if job.worker_id else "its dispatcher"
                if job.attempts <= job.max_retries:
                    note = (
                        f"re-queued after {who} was lost "
                        f"(attempt {job.attempts} of {job.max_retries + 1} failed)"
                    )
                    new = conn.execute(SQL_REQUEUE, (now, note, job.id)).fetchone()
                    recovered.append(Recovered(_job(new), True, worker, job.pid))
                else:
                    note = f"lost: {who} stopped while it ran"
                    new = conn.execute(SQL_MARK_LOST, (now, note, job.id)).fetchone()
                    recovered.append(Recovered(_job(new), False, worker, job.pid))
            for wid in dead:
                conn.execute(SQL_UNREGISTER_WORKER, (wid,))
        if any(r.requeued for r in recovered):
            self._wakeup.notify()
        return recovered

    # schedules ---------------------------------------------------------------
    def sync_schedules(self, rows: Sequence[ScheduleRow], *, now: float | None = None) -> None:
        now = time.time() if now is None else now
        with self._write() as conn:
            keep = {r.key for r in rows}
            for (key,) in conn.execute("SELECT key FROM schedules").fetchall():
                if key not in keep:
                    conn.execute(SQL_DELETE_SCHEDULE, (key,))
            for r in rows:
                conn.execute(
                    SQL_UPSERT_SCHEDULE,
                    {
                        "key": r.key, "namespace": r.namespace, "job_type": r.job_type,
                        "cron": r.cron, "args": json.dumps(r.args, sort_keys=True),
                        "channel": r.channel, "enabled": int(r.enabled), "now": now,
                    },
                )  # fmt: skip

    def schedules(self) -> list[ScheduleRow]:
        return [_schedule(r) for r in self._read(SQL_SCHEDULES)]

    def set_schedule(
        self,
        key: str,
        *,
        interval_seconds: float | type[KEEP] | None = KEEP,
        enabled: bool | type[KEEP] | None = KEEP,
        now: float | None = None,
    ) -> ScheduleRow | None:
        now = time.time() if now is None else now
        with self._write() as conn:
            if conn.execute(SQL_SCHEDULE, (key,)).fetchone() is None:
                return None
            if interval_seconds is not KEEP:
                since = None if interval_seconds is None else now
                conn.execute(SQL_SET_SCHEDULE_INTERVAL, (interval_seconds, since, now, key))
            if enabled is not KEEP:
                value = None if enabled is None else int(bool(enabled))
                conn.execute(SQL_SET_SCHEDULE_ENABLED, (value, now, key))
            row = conn.execute(SQL_SCHEDULE, (key,)).fetchone()
        self._wakeup.notify()
        return _schedule(row)

    def fire_schedule(self, key: str, due: float, request: JobRequest) -> EnqueueResult | None:
        with self._write() as conn:
            if conn.execute(SQL_FIRE_SCHEDULE, (due, key, due)).rowcount != 1:
                return None
            row, coalesced = self._insert_or_coalesce(conn, request, due, due)
        self._wakeup.notify()
        return EnqueueResult(_job(row), coalesced)

    # webhooks ----------------------------------------------------------------
    def accept_delivery(
        self,
        source: str,
        delivery_id: str,
        requests: Sequence[JobRequest],
        *,
        now: float | None = None,
    ) -> list[EnqueueResult] | None:
        now = time.time() if now is None else now
        results: list[EnqueueResult] = []
        with self._write() as conn:
            if conn.execute(SQL_INSERT_DELIVERY, (source, delivery_id, now)).rowcount != 1:
                return None
            for request in requests:
                start_after = now + request.delay_seconds
                row, coalesced = self._insert_or_coalesce(conn, request, now, start_after)
                until = conn.execute(
                    SQL_ACTIVE_SUPPRESSION_END,
                    (request.namespace, request.job_type, start_after, start_after),
                ).fetchone()[0]
                results.append(EnqueueResult(_job(row), coalesced, (), until))
        if results:
            self._wakeup.notify()
        return results

    def count(self, name: str, label: str, by: int = 1) -> None:
        with self._write() as conn:
            conn.execute(SQL_COUNT, (name, label, by))

    def counters(self, name: str) -> dict[str, int]:
        return dict(self._read(SQL_COUNTERS, (name,)))

    # component health ----------------------------------------------------------
    def beat(
        self,
        component: str,
        state: str,
        detail: str = "",
        *,
        hostname: str = "",
        pid: int = 0,
        now: float | None = None,
    ) -> None:
        now = time.time() if now is None else now
        with self._write() as conn:
            conn.execute(SQL_BEAT, (component, hostname, pid, state, detail, now))

    def beats(self) -> list[Beat]:
        return [Beat(*r) for r in self._read(SQL_BEATS)]

    # reading ---------------------------------------------------------------
    def job_counts(self) -> list[JobCount]:
        return [
            JobCount(ns, jt, JobStatus(status), ReportState(report), n)
            for ns, jt, status, report, n in self._read(SQL_JOB_COUNTS)
        ]

    def job_timings(self, *, since: float, limit: int = 100_000) -> list[JobTiming]:
        return [
            JobTiming(id_, ns, jt, JobStatus(status), created, due, started, finished)
            for id_, ns, jt, status, created, due, started, finished in self._read(
                SQL_JOB_TIMINGS, (since, limit)
            )
        ]

    def get(self, job_id: int) -> Job | None:
        rows = self._read(SQL_GET, (job_id,))
        return _job(rows[0]) if rows else None

    def jobs(
        self,
        *,
        namespace: str | None = None,
        statuses: Sequence[JobStatus] = (),
        limit: int = 50,
    ) -> list[Job]:
        where, params = [], []
        if namespace:
            where.append("namespace = ?")
            params.append(namespace)
        if statuses:
            where.append(f"status IN ({', '.join('?' for _ in statuses)})")
            params.extend(str(s) for s in statuses)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        sql = f"SELECT {JOB_COLUMNS} FROM jobs {clause} ORDER BY id DESC LIMIT ?"
        return [_job(r) for r in self._read(sql, (*params, limit))]

    def suppressions(self, *, active_at: float | None = None) -> list[Suppression]:
        if active_at is None:
            return [_suppression(r) for r in self._read(SQL_SUPPRESSIONS + " ORDER BY start_at")]
        return [_suppression(r) for r in self._read(SQL_ACTIVE_SUPPRESSIONS, (active_at,))]

    def next_due(self, *, now: float | None = None) -> float | None:
        if now is None:
            return self._read(SQL_NEXT_DUE)[0][0]
        return self._read(SQL_NEXT_DUE_AFTER, (now,))[0][0]

    # waking ----------------------------------------------------------------
    def wakeup_listener(self, name: str) -> WakeupListener:
        return self._wakeup.listen(name)

    def notify(self) -> None:
        self._wakeup.notify()
