"""The embedded queue: one SQLite file in WAL mode shared by every process.

All of STAT bot's SQL for SQLite lives in this module. Writes run in
`BEGIN IMMEDIATE` transactions so concurrent writers queue on SQLite's lock
(bounded by the busy timeout) instead of failing half-way; each thread has its
own connection, as sqlite3 connections must not be shared across threads.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import secrets
import socket
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, TypeVar

import structlog

from stat_bot.hardware.loop import Memory
from stat_bot.jobs.model import Job, JobRequest, JobRequester, JobStatus, ReportState
from stat_bot.queue.base import (
    KEEP,
    Beat,
    CancelOutcome,
    CancelResult,
    Confirmation,
    ConfirmationState,
    Decision,
    DecisionResult,
    EnqueueResult,
    JobCount,
    JobTiming,
    NodeHealthRow,
    OutboxItem,
    OutboxMessage,
    OutboxState,
    OutboxSummary,
    Queue,
    QueueBusyError,
    QueueError,
    QueueMissingError,
    Recovered,
    ScheduleRow,
    Suppression,
    SweepRow,
    WakeupListener,
    Worker,
)
from stat_bot.queue.wakeup import WakeupDirectory

T = TypeVar("T")
log = structlog.get_logger(__name__)

WAL_AUTOCHECKPOINT_PAGES = 4000
MAX_ID = 2**63 - 1  # SQLite's largest INTEGER: a larger job id names no job
BUSY_FIRST_SLEEP = 0.0001
BUSY_MAX_SLEEP = 0.002
BUSY_CODES = frozenset(
    {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, 517, 261}
)  # + _SNAPSHOT, _RECOVERY
FILE_CHECK_EVERY = 1.0  # seconds between checks that the database file is still the one open
# What a failed statement means, in words a person can act on (by primary result code).
PROBLEMS = {
    sqlite3.SQLITE_FULL: "the disk is full",
    sqlite3.SQLITE_READONLY: "it is read-only",
    sqlite3.SQLITE_CORRUPT: "it is corrupt (not a valid SQLite database)",
    sqlite3.SQLITE_NOTADB: "it is not an SQLite database (corrupt, or another kind of file)",
    sqlite3.SQLITE_CANTOPEN: "it cannot be opened",
    sqlite3.SQLITE_IOERR: "the disk answered with an I/O error",
    sqlite3.SQLITE_PERM: "permission denied",
}
READONLY_DBMOVED = 1032  # SQLITE_READONLY_DBMOVED: the file was deleted or moved while open


def is_fault(error: sqlite3.Error) -> bool:
    """Whether an error comes from the database's file or disk rather than from the SQL.

    Faults (full, read-only, corrupt, unreadable) are the world's doing and are raised as
    QueueError for callers to retry or report; a mistake in a statement stays itself.
    """
    code = getattr(error, "sqlite_errorcode", None) or 0
    return (code & 0xFF) in PROBLEMS or (isinstance(error, sqlite3.DatabaseError) and not code)


def describe(error: sqlite3.Error) -> str:
    """An SQLite error as a reason: what it means first, SQLite's own words after."""
    code = getattr(error, "sqlite_errorcode", None) or 0
    if code == READONLY_DBMOVED:
        return f"the file was deleted or moved while it was open ({error})"
    meaning = PROBLEMS.get(code & 0xFF)
    return f"{meaning} ({error})" if meaning else str(error)


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
    -- Everyone whose request was merged into a queued job after its first requester,
    -- so each gets the result in their own thread. Goes when the job is pruned.
    CREATE TABLE job_requesters (
        id            INTEGER PRIMARY KEY,
        job_id        INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
        channel       TEXT,
        thread_ts     TEXT,
        user          TEXT,
        user_name     TEXT,
        is_im         INTEGER NOT NULL DEFAULT 0,
        source        TEXT    NOT NULL,
        args          TEXT    NOT NULL DEFAULT '{}',
        replaced_args INTEGER NOT NULL DEFAULT 0,
        created_at    REAL    NOT NULL
    );
    CREATE INDEX job_requesters_job ON job_requesters (job_id);
    """,
    """
    -- Every message STAT bot sends on its own, written with the change that causes it and
    -- delivered by report/outbox.py until Slack accepts it, refuses it for good or it expires.
    CREATE TABLE outbox (
        id              INTEGER PRIMARY KEY,
        kind            TEXT    NOT NULL,
        payload         TEXT    NOT NULL,
        channel         TEXT,
        job_id          INTEGER,
        state           TEXT    NOT NULL DEFAULT 'pending',
        created_at      REAL    NOT NULL,
        expires_at      REAL    NOT NULL,
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL    NOT NULL,
        last_error      TEXT,
        parts_done      INTEGER NOT NULL DEFAULT 0,
        posted_channel  TEXT,
        ts              TEXT,
        delivered_at    REAL,
        claimed_by      TEXT,
        claimed_until   REAL,
        version         INTEGER NOT NULL DEFAULT 0,
        ref             TEXT
    );
    CREATE INDEX outbox_ref ON outbox (ref) WHERE ref IS NOT NULL;
    CREATE INDEX outbox_pending ON outbox (next_attempt_at, id) WHERE state = 'pending';
    CREATE INDEX outbox_given_up ON outbox (state) WHERE state IN ('failed', 'expired');
    CREATE INDEX outbox_job ON outbox (job_id) WHERE job_id IS NOT NULL;
    CREATE UNIQUE INDEX outbox_progress ON outbox (job_id) WHERE kind = 'progress';
    -- Reports a STAT bot before the outbox left pending (killed between posting and
    -- recording) can never be confirmed: say so rather than leave them pending forever.
    UPDATE jobs SET report_state = 'failed',
        report_error = 'not known whether it was delivered: STAT bot stopped before recording it'
    WHERE report_state = 'pending' AND finished_at IS NOT NULL;
    """,
    """
    -- Dashboard sessions held on the server (a hash of the cookie's id), so logout ends
    -- one for good: a cookie copied before logout finds no row afterwards.
    CREATE TABLE web_sessions (
        id_hash    TEXT PRIMARY KEY,
        user       TEXT NOT NULL,
        created_at REAL NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX web_sessions_user ON web_sessions (user);

    -- Rate-limit counters (login throttling) shared by every web worker: one fixed window each.
    CREATE TABLE throttle (
        key        TEXT PRIMARY KEY,
        hits       INTEGER NOT NULL,
        expires_at REAL    NOT NULL
    ) WITHOUT ROWID;

    -- Digests of accepted webhook bodies, so a captured body sent again under a new
    -- delivery id enqueues nothing (kept as long as the deliveries are).
    CREATE TABLE delivery_digests (
        source      TEXT NOT NULL,
        digest      TEXT NOT NULL,
        received_at REAL NOT NULL,
        PRIMARY KEY (source, digest)
    ) WITHOUT ROWID;
    CREATE INDEX delivery_digests_received ON delivery_digests (received_at);
    """,
    """
    -- Whether a schedule has fired since it was added. `last_fired_at` starts at the time it
    -- was added (so it never fires for due times before that), and this tells the two apart, so
    -- `status` can say "never". Schedules from before this column count as having fired.
    ALTER TABLE schedules ADD COLUMN has_fired INTEGER NOT NULL DEFAULT 1;
    """,
    """
    -- The hw namespace's memory: each node's latest health (what `hw show` says), and
    -- finished sweeps with every node's result, so the next sweep of the same scope
    -- reports what changed, whichever dispatcher host runs it.
    CREATE TABLE node_health (
        xname      TEXT PRIMARY KEY,
        state      TEXT NOT NULL,
        checked_at REAL NOT NULL,
        data       TEXT NOT NULL,
        job_id     INTEGER
    ) WITHOUT ROWID;
    CREATE TABLE sweeps (
        id          INTEGER PRIMARY KEY,
        scope       TEXT NOT NULL,
        started_at  REAL NOT NULL,
        finished_at REAL NOT NULL,
        job_id      INTEGER,
        results     TEXT NOT NULL
    );
    CREATE INDEX sweeps_scope ON sweeps (scope, id);
    """,
    """
    -- Guarded jobs: who confirmed one, the xnames an exclusive one locks while it runs
    -- (lock keys whose prefix test is containment: jobs/targets.py), and the offers
    -- waiting for a Confirm or Cancel.
    ALTER TABLE jobs ADD COLUMN confirmed_by TEXT;
    CREATE TABLE job_locks (
        job_id INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
        key    TEXT    NOT NULL,
        PRIMARY KEY (job_id, key)
    ) WITHOUT ROWID;
    CREATE TABLE confirmations (
        code              TEXT PRIMARY KEY,
        namespace         TEXT NOT NULL,
        job_type          TEXT NOT NULL,
        request           TEXT NOT NULL,
        requested_by      TEXT,
        requested_by_name TEXT,
        channel           TEXT,
        thread_ts         TEXT,
        confirmers        TEXT NOT NULL DEFAULT '[]',
        summary           TEXT NOT NULL,
        state             TEXT NOT NULL DEFAULT 'pending',
        created_at        REAL NOT NULL,
        expires_at        REAL NOT NULL,
        decided_by        TEXT,
        decided_at        REAL,
        job_id            INTEGER,
        offer_id          INTEGER
    ) WITHOUT ROWID;
    CREATE INDEX confirmations_pending ON confirmations (expires_at) WHERE state = 'pending';
    """,
    """
    -- Closing the loop (stat_bot/hardware/loop.py): per xname, the ticket the hardware rules
    -- opened or commented and the problem recorded there, whether the last acted-on check
    -- failed, and the drain / resume offers made, so checks never repeat them.
    CREATE TABLE hw_loop (
        xname        TEXT PRIMARY KEY,
        ticket       INTEGER,
        problem      TEXT,
        failing      INTEGER NOT NULL DEFAULT 0,
        drain_offer  TEXT,
        resume_offer TEXT,
        updated_at   REAL NOT NULL
    ) WITHOUT ROWID;
    """,
)

JOB_COLUMNS = (
    "id, namespace, job_type, args, channel, thread_ts, user, source, status, created_at, "
    "start_after, started_at, finished_at, attempts, max_retries, concurrency, worker_id, "
    "heartbeat_at, pid, exit_code, log_dir, cancel_requested, report_state, report_error, is_im, note, "
    "user_name, confirmed_by"
)

SQL_INSERT_JOB = (
    """
    INSERT INTO jobs (namespace, job_type, args, channel, thread_ts, user, source, status,
                      created_at, start_after, max_retries, concurrency, is_im, report_state,
                      user_name, confirmed_by)
    VALUES (?, ?, ?, ?, ?, ?, ?, 'queued', ?, ?, ?, ?, ?, 'pending', ?, ?)
    RETURNING """
    + JOB_COLUMNS
)

SQL_FIND_QUEUED_OF_TYPE = """
    SELECT id, args FROM jobs WHERE status = 'queued' AND namespace = ? AND job_type = ?
    ORDER BY id LIMIT 1
"""
# Arguments are stored as canonical JSON (sorted keys), so equal arguments are equal text.
SQL_FIND_QUEUED_SAME_ARGS = """
    SELECT id, args FROM jobs
    WHERE status = 'queued' AND namespace = ? AND job_type = ? AND args = ?
    ORDER BY id LIMIT 1
"""

# The job keeps its first requester (channel, thread, user, source); a merged request
# moves when it starts (ebmbot's "the latest request's delay") and, by type, its args.
SQL_COALESCE = (
    """
    UPDATE jobs SET args = ?, start_after = ?, max_retries = ?, concurrency = ?
    WHERE id = ? RETURNING """
    + JOB_COLUMNS
)

# A requester already answered where the job reports (same channel and thread as the
# job or as an earlier requester: a schedule firing again, a repeated command in one
# thread) is not kept twice.
SQL_ADD_REQUESTER = """
    INSERT INTO job_requesters (job_id, channel, thread_ts, user, user_name, is_im, source, args,
                                replaced_args, created_at)
    SELECT :job_id, :channel, :thread_ts, :user, :user_name, :is_im, :source, :args,
           :replaced_args, :now
    WHERE NOT EXISTS (SELECT 1 FROM jobs
                      WHERE id = :job_id AND channel IS :channel AND thread_ts IS :thread_ts)
      AND NOT EXISTS (SELECT 1 FROM job_requesters
                      WHERE job_id = :job_id AND channel IS :channel AND thread_ts IS :thread_ts)
"""
SQL_MARK_ARGS_REPLACED = (
    "UPDATE job_requesters SET replaced_args = 1 WHERE job_id = :job_id AND :replaced_args "
    "AND channel IS :channel AND thread_ts IS :thread_ts"
)
SQL_REQUESTERS = """
    SELECT job_id, channel, thread_ts, user, user_name, is_im, source, args, replaced_args,
           created_at
    FROM job_requesters WHERE job_id = ? ORDER BY id
"""

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
      AND NOT EXISTS (
            SELECT 1 FROM job_locks AS mine
                CROSS JOIN jobs AS r INDEXED BY jobs_running
                CROSS JOIN job_locks AS held
            WHERE mine.job_id = j.id AND r.status = 'running' AND held.job_id = r.id
              AND (substr(held.key, 1, length(mine.key)) = mine.key
                   OR substr(mine.key, 1, length(held.key)) = held.key))
    ORDER BY j.start_after, j.id
    LIMIT 1
"""
# An exclusive job's locks (above: skipped while a running job holds an overlapping key,
# one key a prefix of the other; CROSS JOIN fixes the order: the candidate's few keys,
# then only the running jobs, by their partial index, then their keys by primary key,
# so a job without locks costs one index probe and history never is scanned).
# A merged request's target replaces the job's locks.
SQL_DROP_LOCKS = "DELETE FROM job_locks WHERE job_id = ?"
SQL_ADD_LOCK = "INSERT OR IGNORE INTO job_locks (job_id, key) VALUES (?, ?)"
SQL_JOB_LOCKS = "SELECT key FROM job_locks WHERE job_id = ? ORDER BY key"

CONFIRMATION_COLUMNS = (
    "code, request, requested_by, channel, thread_ts, summary, created_at, expires_at, state, "
    "confirmers, requested_by_name, decided_by, decided_at, job_id, offer_id"
)
SQL_CONFIRMATION_EXISTS = "SELECT 1 FROM confirmations WHERE code = ?"
SQL_INSERT_CONFIRMATION = (
    """
    INSERT INTO confirmations (code, namespace, job_type, request, requested_by,
        requested_by_name, channel, thread_ts, confirmers, summary, created_at, expires_at)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING """
    + CONFIRMATION_COLUMNS
)
SQL_CONFIRMATION_OFFER = "UPDATE confirmations SET offer_id = ? WHERE code = ?"
SQL_GET_CONFIRMATION = "SELECT " + CONFIRMATION_COLUMNS + " FROM confirmations WHERE code = ?"
SQL_DECIDE_CONFIRMATION = (
    """
    UPDATE confirmations SET state = ?, decided_by = ?, decided_at = ?, job_id = ?
    WHERE code = ? AND state = 'pending' RETURNING """
    + CONFIRMATION_COLUMNS
)
SQL_EXPIRE_CONFIRMATIONS = (
    """
    UPDATE confirmations SET state = 'expired', decided_at = :now
    WHERE state = 'pending' AND expires_at <= :now RETURNING """
    + CONFIRMATION_COLUMNS
)
SQL_PRUNE_CONFIRMATIONS = "DELETE FROM confirmations WHERE state != 'pending' AND created_at < ?"
CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read aloud and typed back
CODE_LENGTH = 6

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
SQL_DIGEST_SEEN = "SELECT 1 FROM delivery_digests WHERE source = ? AND digest = ?"
SQL_INSERT_DIGEST = "INSERT INTO delivery_digests (source, digest, received_at) VALUES (?, ?, ?)"
SQL_PRUNE_DIGESTS = "DELETE FROM delivery_digests WHERE received_at < ?"

SQL_OPEN_SESSION = "INSERT INTO web_sessions (id_hash, user, created_at) VALUES (?, ?, ?)"
SQL_EXPIRE_SESSIONS = "DELETE FROM web_sessions WHERE created_at < ?"
SQL_SESSION_USER = "SELECT user FROM web_sessions WHERE id_hash = ? AND created_at >= ?"
SQL_CLOSE_SESSION = "DELETE FROM web_sessions WHERE id_hash = ?"
SQL_CLOSE_USER_SESSIONS = "DELETE FROM web_sessions WHERE user = ?"

# A fixed window per key: the first hit after the window ended starts a new one.
SQL_THROTTLE_HIT = """
    INSERT INTO throttle (key, hits, expires_at) VALUES (:key, :amount, :now + :expiry)
    ON CONFLICT (key) DO UPDATE SET
        hits = CASE WHEN expires_at <= :now THEN excluded.hits ELSE hits + excluded.hits END,
        expires_at = CASE WHEN expires_at <= :now THEN excluded.expires_at ELSE expires_at END
    RETURNING hits
"""
SQL_THROTTLE_GET = "SELECT hits, expires_at FROM throttle WHERE key = ? AND expires_at > ?"
SQL_THROTTLE_CLEAR = "DELETE FROM throttle WHERE key = ?"
SQL_THROTTLE_CLEAR_ALL = "DELETE FROM throttle"
SQL_PRUNE_THROTTLE = "DELETE FROM throttle WHERE expires_at <= ?"
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
SQL_LOOP_MEMORY = """
    SELECT xname, ticket, problem, failing, drain_offer, resume_offer, updated_at FROM hw_loop
    WHERE xname IN (SELECT value FROM json_each(?))
"""
SQL_REMEMBER_LOOP = """
    INSERT INTO hw_loop (xname, ticket, problem, failing, drain_offer, resume_offer, updated_at)
    VALUES (?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (xname) DO UPDATE SET ticket = excluded.ticket, problem = excluded.problem,
        failing = excluded.failing, drain_offer = excluded.drain_offer,
        resume_offer = excluded.resume_offer, updated_at = excluded.updated_at
"""
SQL_BEATS = "SELECT component, hostname, pid, state, detail, at FROM beats ORDER BY component"
SQL_NODE_HEALTH_UPSERT = """
    INSERT INTO node_health (xname, state, checked_at, data, job_id) VALUES (?, ?, ?, ?, ?)
    ON CONFLICT (xname) DO UPDATE SET state = excluded.state, checked_at = excluded.checked_at,
        data = excluded.data, job_id = excluded.job_id
    WHERE excluded.checked_at >= node_health.checked_at
"""
SQL_NODE_HEALTH = "SELECT xname, state, checked_at, data, job_id FROM node_health"
SQL_INSERT_SWEEP = """
    INSERT INTO sweeps (scope, started_at, finished_at, job_id, results) VALUES (?, ?, ?, ?, ?)
    RETURNING id
"""
SQL_PRUNE_SWEEPS = """
    DELETE FROM sweeps WHERE scope = ? AND id NOT IN
        (SELECT id FROM sweeps WHERE scope = ? ORDER BY id DESC LIMIT ?)
"""
SQL_LAST_SWEEP = """
    SELECT id, scope, started_at, finished_at, results, job_id FROM sweeps
    WHERE scope = ? AND id < ? ORDER BY id DESC LIMIT 1
"""
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

OUTBOX_COLUMNS = (
    "id, kind, payload, channel, job_id, state, created_at, expires_at, attempts, "
    "next_attempt_at, last_error, parts_done, posted_channel, ts, delivered_at, version, ref"
)
SQL_OUTBOX_INSERT = """
    INSERT INTO outbox (kind, payload, channel, job_id, created_at, expires_at, next_attempt_at,
                        ref)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id
"""
# One progress message per job, re-armed by each note; never for a job that has ended,
# and never again once Slack refused it.
SQL_OUTBOX_PROGRESS = """
    INSERT INTO outbox (kind, payload, channel, job_id, created_at, expires_at, next_attempt_at)
    SELECT 'progress', :payload, :channel, :job_id, :now, :expires, :now
    WHERE EXISTS (SELECT 1 FROM jobs WHERE id = :job_id AND status = 'running')
    ON CONFLICT (job_id) WHERE kind = 'progress' DO UPDATE SET
        payload = excluded.payload, expires_at = excluded.expires_at, version = version + 1,
        state = CASE WHEN state IN ('pending', 'delivered') THEN 'pending' ELSE state END,
        next_attempt_at = CASE WHEN state = 'pending' THEN next_attempt_at ELSE :now END
    RETURNING id
"""
SQL_OUTBOX_DROP_PROGRESS = """
    UPDATE outbox SET state = 'dropped', version = version + 1
    WHERE kind = 'progress' AND job_id = ? AND state = 'pending'
"""
SQL_OUTBOX_EXPIRE = (
    """
    UPDATE outbox SET state = 'expired', claimed_by = NULL, claimed_until = NULL,
        last_error = 'not delivered before it expired; last error: '
                     || coalesce(last_error, 'none: it was never tried')
    WHERE state = 'pending' AND expires_at <= :now
      AND (claimed_until IS NULL OR claimed_until <= :now)
    RETURNING """
    + OUTBOX_COLUMNS
)
# Due messages, oldest first. A relayed ticket is only ever sent by the web request that
# waits for it (and expired by anyone). A job's messages go one at a time, in order:
# none while an older one of the same job is leased to a sender (its progress edit
# must not land after its report).
SQL_OUTBOX_DUE = """
    SELECT id FROM outbox WHERE state = 'pending' AND next_attempt_at <= :now
      AND kind != 'relay' AND (claimed_until IS NULL OR claimed_until <= :now)
      AND (job_id IS NULL OR NOT EXISTS (
            SELECT 1 FROM outbox AS o WHERE o.job_id = outbox.job_id AND o.id < outbox.id
              AND o.claimed_until > :now))
    ORDER BY id LIMIT :limit
"""
SQL_OUTBOX_RENEW = """
    UPDATE outbox SET claimed_until = ? WHERE id = ? AND claimed_by = ? AND state = 'pending'
"""
SQL_OUTBOX_ONE = (
    "SELECT id FROM outbox WHERE id = :only AND state = 'pending' "
    "AND (claimed_until IS NULL OR claimed_until <= :now)"
)
SQL_OUTBOX_LEASE = (
    "UPDATE outbox SET claimed_by = :owner, claimed_until = :until WHERE id = :id RETURNING "
    + OUTBOX_COLUMNS
)
SQL_OUTBOX_PART = "UPDATE outbox SET parts_done = ?, posted_channel = ?, ts = ? WHERE id = ?"
# A progress note re-armed while it was being sent (its version moved on) stays pending.
SQL_OUTBOX_DELIVERED = """
    UPDATE outbox SET state = CASE WHEN version = :version AND state = 'pending'
                                   THEN 'delivered' ELSE state END,
        posted_channel = coalesce(:channel, posted_channel), ts = coalesce(:ts, ts),
        delivered_at = :now, attempts = attempts + 1, last_error = NULL,
        claimed_by = NULL, claimed_until = NULL
    WHERE id = :id
"""
SQL_OUTBOX_RETRY = """
    UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_attempt_at = ?,
        claimed_by = NULL, claimed_until = NULL
    WHERE id = ? AND state = 'pending'
"""
SQL_OUTBOX_DEFER = (
    "UPDATE outbox SET next_attempt_at = ? WHERE state = 'pending' AND next_attempt_at < ?"
)
SQL_OUTBOX_GIVE_UP = """
    UPDATE outbox SET state = ?, last_error = ?, attempts = attempts + 1,
        claimed_by = NULL, claimed_until = NULL
    WHERE id = ? AND state = 'pending' RETURNING kind, job_id
"""
SQL_OUTBOX_RELEASE = "UPDATE outbox SET claimed_by = NULL, claimed_until = NULL WHERE id = ?"
SQL_OUTBOX_GET = "SELECT " + OUTBOX_COLUMNS + " FROM outbox WHERE id = ?"
SQL_OUTBOX_FIND = "SELECT " + OUTBOX_COLUMNS + " FROM outbox WHERE ref = ? ORDER BY id"
SQL_OUTBOX_PENDING_SUMMARY = "SELECT count(*), min(created_at) FROM outbox WHERE state = 'pending'"
SQL_OUTBOX_GIVEN_UP = (
    "SELECT state, count(*) FROM outbox WHERE state IN ('failed', 'expired') GROUP BY state"
)
SQL_OUTBOX_LAST_ERROR = (
    "SELECT last_error FROM outbox WHERE state = 'pending' AND last_error IS NOT NULL "
    "ORDER BY id DESC LIMIT 1"
)
# A message leased by a sender is not due for the others until its lease ends; a relayed
# ticket is due only to be expired, once its waiting request is gone.
SQL_OUTBOX_NEXT_DUE = """
    SELECT min(max(CASE WHEN kind = 'relay' THEN expires_at ELSE next_attempt_at END,
                   coalesce(claimed_until, 0)))
    FROM outbox WHERE state = 'pending'
"""
SQL_OUTBOX_PROGRESS_POSTED = (
    "SELECT posted_channel, ts FROM outbox WHERE kind = 'progress' AND job_id = ? "
    "AND ts IS NOT NULL"
)
SQL_OUTBOX_REPORTS_LEFT = (
    "SELECT count(*) FROM outbox WHERE job_id = ? AND kind = 'report' AND state = 'pending'"
)
SQL_REPORT_DELIVERED = (
    "UPDATE jobs SET report_state = 'delivered' WHERE id = ? AND report_state = 'pending'"
)
SQL_REPORT_GIVEN_UP = "UPDATE jobs SET report_state = 'failed', report_error = ? WHERE id = ?"
SQL_PRUNE_OUTBOX = "DELETE FROM outbox WHERE state != 'pending' AND created_at < ?"

SQL_NEXT_DUE = "SELECT min(start_after) FROM jobs WHERE status = 'queued'"
SQL_NEXT_DUE_AFTER = SQL_NEXT_DUE + " AND start_after > ?"


def _job(row: Sequence[object]) -> Job:
    (
        id_, namespace, job_type, args, channel, thread_ts, user, source, status, created_at,
        start_after, started_at, finished_at, attempts, max_retries, concurrency, worker_id,
        heartbeat_at, pid, exit_code, log_dir, cancel_requested, report_state, report_error, is_im, note,
        user_name, confirmed_by,
    ) = row  # fmt: skip
    return Job(
        id=id_, namespace=namespace, job_type=job_type, args=json.loads(args), channel=channel,
        thread_ts=thread_ts, user=user, source=source, status=JobStatus(status),
        created_at=created_at, start_after=start_after, started_at=started_at,
        finished_at=finished_at, attempts=attempts, max_retries=max_retries,
        concurrency=concurrency, worker_id=worker_id, heartbeat_at=heartbeat_at, pid=pid,
        exit_code=exit_code, log_dir=log_dir, cancel_requested=bool(cancel_requested),
        report_state=report_state, report_error=report_error, is_im=bool(is_im), note=note,
        user_name=user_name, confirmed_by=confirmed_by,
    )  # fmt: skip  # type: ignore[arg-type]


def _confirmation(row: Sequence[Any]) -> Confirmation:
    (
        code, request, requested_by, channel, thread_ts, summary, created_at, expires_at, state,
        confirmers, requested_by_name, decided_by, decided_at, job_id, offer_id,
    ) = row  # fmt: skip
    return Confirmation(
        code=code, request=JobRequest.from_dict(json.loads(request)), requested_by=requested_by,
        channel=channel, thread_ts=thread_ts, summary=summary, created_at=created_at,
        expires_at=expires_at, state=ConfirmationState(state),
        confirmers=tuple(json.loads(confirmers)), requested_by_name=requested_by_name,
        decided_by=decided_by, decided_at=decided_at, job_id=job_id, offer_id=offer_id,
    )  # fmt: skip


def _outbox_item(row: Sequence[Any]) -> OutboxItem:
    values = list(row)
    values[5] = OutboxState(values[5])
    return OutboxItem(*values)


def _requester(row: Sequence[Any]) -> JobRequester:
    job_id, channel, thread_ts, user, user_name, is_im, source, args, replaced, created_at = row
    return JobRequester(
        job_id=job_id, channel=channel, thread_ts=thread_ts, user=user, user_name=user_name,
        is_im=bool(is_im), source=source, args=json.loads(args), replaced_args=bool(replaced),
        created_at=created_at,
    )  # fmt: skip


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
        outbox_expiry: float = 86400.0,
        create: bool = True,
    ) -> None:
        """`create`: whether `migrate` may create a missing database (the service's start,
        `stat-bot db migrate`). Nothing else ever creates one: a database deleted under a
        running service, or missing when a CLI command asks, is an error that says so."""
        self.path = Path(path).absolute()
        self.outbox_expiry = outbox_expiry
        self._busy_ms = int(busy_timeout * 1000)
        self._synchronous = synchronous
        self._create = create
        self._creating = False
        self._local = threading.local()
        self._wakeup = WakeupDirectory(self.path)

    # connections -----------------------------------------------------------
    def _missing(self) -> QueueMissingError:
        return QueueMissingError(
            f"no database at {self.path} (deleted, or never created): start the service "
            "(`stat-bot run`) or run `stat-bot db migrate` to create one"
        )

    def _file_id(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return st.st_dev, st.st_ino

    def _wal_id(self) -> tuple[int, int] | None:
        try:
            st = os.stat(f"{self.path}-wal")
        except FileNotFoundError:
            return None
        return st.st_dev, st.st_ino

    @contextmanager
    def _folder_locked(self) -> Iterator[None]:
        """An exclusive lock on the database's folder, between every process that uses it."""
        fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _set_aside(self) -> None:
        """Rename the -wal and -shm at the path (the caller holds `_folder_locked`).

        SQLite would read a write-ahead log left by a deleted or replaced database into
        the file now at the path (a WAL does not say which database it belongs to), and
        a database whose file was moved does not delete its WAL when closed. Renamed,
        not deleted: it may hold the last changes of the database that was removed.
        """
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for suffix in ("-wal", "-shm"):
            orphan = Path(f"{self.path}{suffix}")
            aside = Path(f"{self.path}{suffix}.orphaned-{stamp}-{os.getpid()}")
            try:
                orphan.rename(aside)
            except FileNotFoundError:
                continue
            log.warning(
                "set aside the write-ahead file of a database that is gone",
                path=str(self.path),
                kept_as=str(aside),
            )

    def _set_aside_stale(self, stale: tuple[int, int]) -> None:
        """Set aside the -wal/-shm if the -wal is still `stale` (the old database's).

        A -wal with another inode was made for the new file (by `db migrate`, or another
        process that got here first) and is left alone.
        """
        with self._folder_locked():
            if self._wal_id() == stale:
                self._set_aside()

    def _drop(self) -> None:
        """Forget this thread's connection: the next call opens a fresh one.

        After an error that may have left it unusable (opened read-only while the file
        was, the file deleted or replaced, an I/O error), reopening is what lets the
        service recover by itself once the cause is gone.
        """
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            with suppress(sqlite3.Error):
                conn.close()

    def _drop_after(self, error: QueueError) -> None:
        """`_drop` after a fault; a lock held by another writer leaves the connection be."""
        cause = error.__cause__
        if isinstance(cause, sqlite3.Error) and is_fault(cause):
            self._drop()

    def file_problem(self) -> str | None:
        """What is wrong with the database file this process uses, or None.

        Compares the file at DATABASE_URL's path with the one this thread has open
        (device and inode), so a database deleted or replaced under a running
        service is named rather than silently written into a ghost.
        """
        now = self._file_id()
        if now is None:
            return f"the database {self.path} was deleted: restore it, or run `stat-bot db migrate`"
        opened = getattr(self._local, "ident", None)
        if getattr(self._local, "conn", None) is not None and opened and opened != now:
            return f"the database {self.path} was replaced by another file while in use"
        return None

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            if time.monotonic() < self._local.checked:
                return conn
            self._local.checked = time.monotonic() + FILE_CHECK_EVERY
            now = self._file_id()
            if now == self._local.ident:
                self._local.wal = self._wal_id()  # ours while this connection is open
                return conn
            # The write-ahead log at the path is still the old database's: it must not be
            # read into whatever file is there now (see `_set_aside_stale`).
            self._local.stale_wal = self._local.wal
            self._drop()
            if now is None:
                log.error("queue database deleted while in use", path=str(self.path))
                raise self._missing()
            log.warning(
                "queue database replaced while in use; opening the new file", path=str(self.path)
            )
        stale = getattr(self._local, "stale_wal", None)
        if stale is not None:
            self._set_aside_stale(stale)
            self._local.stale_wal = None
        mode = "rwc" if self._creating else "rw"
        uri = f"file:{urllib.parse.quote(str(self.path))}?mode={mode}"
        try:
            conn = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=0)
        except sqlite3.Error as error:
            if not self.path.exists():
                raise self._missing() from error
            raise QueueError(
                f"could not open the queue database {self.path}: {describe(error)}"
            ) from error
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
            # Reading the schema finds a file that is not a database (garbage bytes) now,
            # with a clear message, rather than at the first real statement.
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()

        try:
            self._when_free(setup, "open")
        except BaseException:
            conn.close()
            raise
        self._local.conn = conn
        self._local.pid = os.getpid()
        self._local.ident = self._file_id()
        self._local.wal = self._wal_id()
        self._local.checked = time.monotonic() + FILE_CHECK_EVERY
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
            except sqlite3.Error as error:
                busy = (
                    isinstance(error, sqlite3.OperationalError)
                    and ((getattr(error, "sqlite_errorcode", 0) or 0) & 0xFF) in BUSY_CODES
                )
                if not busy:
                    raise QueueError(
                        f"could not {what} the queue database {self.path}: {describe(error)}"
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
        """One IMMEDIATE transaction: the write lock up front, so no upgrade can deadlock.

        Any SQLite failure - in a statement or in the COMMIT (a full disk, a read-only
        file) - rolls back, so the connection is never left inside a transaction, and is
        raised as a QueueError that says what it means. After such a failure the
        connection is reopened for the next call (see `_drop`).
        """
        conn = self._conn()
        try:
            self._when_free(lambda: conn.execute("BEGIN IMMEDIATE"), "lock")
        except QueueError as error:
            self._drop_after(error)
            raise
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException as error:
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    self._drop()
            if isinstance(error, sqlite3.Error) and is_fault(error):
                self._drop()
                raise QueueError(
                    f"could not write to the queue database {self.path}: {describe(error)}"
                ) from error
            raise

    def _read(self, sql: str, params: Sequence[object] | dict[str, object] = ()) -> list[tuple]:
        conn = self._conn()
        try:
            return self._when_free(lambda: conn.execute(sql, params).fetchall(), "read")
        except QueueError as error:
            self._drop_after(error)
            raise

    def probe_write(self) -> None:
        """A real write, committed (for /readyz): fails while the disk is full or read-only.

        It rewrites one row of `beats`, so every probe dirties a page and appends to the
        WAL: a write that changed nothing would commit without touching the disk.
        """
        now = time.time()
        with self._write() as conn:
            conn.execute(SQL_BEAT, ("readyz-probe", "", os.getpid(), "probe", "", now))

    # lifecycle -------------------------------------------------------------
    def migrate(self) -> int:
        if self._create and not self.path.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._folder_locked():
                if not self.path.exists():
                    self._set_aside()  # a WAL without its database belongs to no new one
            self._creating = True
        try:
            first = self._conn()
        finally:
            self._creating = False
        if self._schema_version(first) == len(MIGRATIONS):
            return len(MIGRATIONS)  # up to date: nothing to write (works on a read-only file)
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
        self._local.wal = self._wal_id()  # the first write in WAL mode made it
        return len(MIGRATIONS)

    def _schema_version(self, conn: sqlite3.Connection) -> int | None:
        """The schema version in force, or None for a database not yet set up (a read)."""

        def read() -> int | None:
            found = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
            ).fetchone()
            if not found:
                return None
            return conn.execute("SELECT max(version) FROM schema_version").fetchone()[0]

        mode = self._when_free(lambda: conn.execute("PRAGMA journal_mode").fetchone()[0], "read")
        return self._when_free(read, "read") if str(mode).lower() == "wal" else None

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
        """Insert the job, or merge the request into a queued one and keep who asked.

        `coalesce` True merges into a queued job of the type with the same arguments
        (bennettbot's rule), "type" into any queued job of the type, whose arguments
        become this request's (ebmbot's); either way the requester is stored beside
        the job, in this transaction, so their answer cannot be lost.
        """
        args = json.dumps(request.args, ensure_ascii=False, sort_keys=True)
        if request.coalesce:
            if request.coalesce == "type":
                existing = conn.execute(
                    SQL_FIND_QUEUED_OF_TYPE, (request.namespace, request.job_type)
                ).fetchone()
            else:
                existing = conn.execute(
                    SQL_FIND_QUEUED_SAME_ARGS, (request.namespace, request.job_type, args)
                ).fetchone()
            if existing:
                job_id, old_args = existing
                row = conn.execute(
                    SQL_COALESCE,
                    (args, start_after, request.retries, request.concurrency, job_id),
                ).fetchone()
                requester = {
                    "job_id": job_id, "channel": request.channel,
                    "thread_ts": request.thread_ts, "user": request.user,
                    "user_name": request.user_name, "is_im": int(request.is_im),
                    "source": str(request.source), "args": args,
                    "replaced_args": int(old_args != args), "now": created,
                }  # fmt: skip
                if conn.execute(SQL_ADD_REQUESTER, requester).rowcount == 0:
                    # Already answered where this request came from: keep that the
                    # arguments changed, for the note in the report.
                    conn.execute(SQL_MARK_ARGS_REPLACED, requester)
                if request.locks:  # the arguments (its target) may have changed: its locks too
                    conn.execute(SQL_DROP_LOCKS, (job_id,))
                    conn.executemany(SQL_ADD_LOCK, [(job_id, key) for key in request.locks])
                return row, True
        row = conn.execute(
            SQL_INSERT_JOB,
            (request.namespace, request.job_type, args, request.channel, request.thread_ts,
             request.user, request.source, created, start_after, request.retries,
             request.concurrency, int(request.is_im), request.user_name, request.confirmed_by),
        ).fetchone()  # fmt: skip
        if request.locks:
            conn.executemany(SQL_ADD_LOCK, [(row[0], key) for key in request.locks])
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

    def mark_started(
        self, job_id: int, pid: int, log_dir: str, *, outbox: Sequence[OutboxMessage] = ()
    ) -> None:
        with self._write() as conn:
            self._mark_started(conn, job_id, pid, log_dir, outbox=outbox)

    def _mark_started(
        self,
        conn: sqlite3.Connection,
        job_id: int,
        pid: int,
        log_dir: str,
        *,
        outbox: Sequence[OutboxMessage] = (),
    ) -> None:
        conn.execute(SQL_MARK_STARTED, (pid, log_dir, job_id))
        self._store(conn, outbox)

    def finish(
        self,
        job_id: int,
        status: JobStatus,
        exit_code: int | None = None,
        *,
        note: str | None = None,
        report_state: ReportState = ReportState.PENDING,
        outbox: Sequence[OutboxMessage] = (),
        now: float | None = None,
    ) -> Job | None:
        with self._write() as conn:
            return self._finish(
                conn, job_id, status, exit_code, note, report_state, outbox=outbox, now=now
            )

    def _finish(
        self,
        conn: sqlite3.Connection,
        job_id: int,
        status: JobStatus,
        exit_code: int | None = None,
        note: str | None = None,
        report_state: ReportState = ReportState.PENDING,
        *,
        outbox: Sequence[OutboxMessage] = (),
        now: float | None = None,
    ) -> Job | None:
        now = time.time() if now is None else now
        row = conn.execute(
            SQL_FINISH, (status, exit_code, now, note, report_state, job_id)
        ).fetchone()
        if row is None:
            return None
        conn.execute(SQL_OUTBOX_DROP_PROGRESS, (job_id,))
        self._store(conn, outbox, now)
        return _job(row)

    def heartbeat(self, worker_id: str, *, now: float | None = None) -> list[int]:
        now = time.time() if now is None else now
        with self._write() as conn:
            if conn.execute(SQL_WORKER_HEARTBEAT, (now, worker_id)).rowcount == 0:
                # Its row is gone (a new database file, or a peer judged it dead during an
                # outage): alive after all, it registers again rather than beat unseen.
                conn.execute(
                    SQL_REGISTER_WORKER, (worker_id, socket.gethostname(), os.getpid(), now, now)
                )
            conn.execute(SQL_JOBS_HEARTBEAT, (now, worker_id))
            return [r[0] for r in conn.execute(SQL_CANCEL_REQUESTED, (worker_id,))]

    def cancel_requests(self, worker_id: str) -> list[int]:
        """Ids of this worker's running jobs that someone asked to cancel (a read, no lock)."""
        return [r[0] for r in self._read(SQL_CANCEL_REQUESTED, (worker_id,))]

    def request_cancel(self, job_id: int, *, now: float | None = None) -> CancelResult:
        now = time.time() if now is None else now
        if not 0 < job_id <= MAX_ID:
            return CancelResult(CancelOutcome.NOT_FOUND)
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

    # outbox ------------------------------------------------------------------
    def _store(
        self, conn: sqlite3.Connection, messages: Sequence[OutboxMessage], now: float | None = None
    ) -> list[int]:
        """Insert messages in the caller's transaction; their ids."""
        if not messages:
            return []
        now = time.time() if now is None else now
        ids = []
        for m in messages:
            expires = m.expires_at if m.expires_at is not None else now + self.outbox_expiry
            (id_,) = conn.execute(
                SQL_OUTBOX_INSERT,
                (m.kind, m.payload, m.channel, m.job_id, now, expires, now, m.ref),
            ).fetchone()
            ids.append(id_)
        return ids

    def post(self, messages: Sequence[OutboxMessage], *, now: float | None = None) -> list[int]:
        with self._write() as conn:
            ids = self._store(conn, messages, now)
        self._wakeup.notify()
        return ids

    def post_progress(
        self, job_id: int, message: OutboxMessage, *, now: float | None = None
    ) -> int:
        now = time.time() if now is None else now
        with self._write() as conn:
            row = conn.execute(
                SQL_OUTBOX_PROGRESS,
                {"payload": message.payload, "channel": message.channel, "job_id": job_id,
                 "now": now, "expires": now + self.outbox_expiry},
            ).fetchone()  # fmt: skip
        return row[0] if row else 0

    def claim_outbox(
        self,
        owner: str,
        *,
        limit: int = 20,
        lease: float = 120.0,
        only: int | None = None,
        now: float | None = None,
    ) -> list[OutboxItem]:
        now = time.time() if now is None else now
        items: list[OutboxItem] = []
        with self._write() as conn:
            for row in conn.execute(SQL_OUTBOX_EXPIRE, {"now": now}).fetchall():
                item = _outbox_item(row)
                if item.kind == "report" and item.job_id is not None:
                    conn.execute(SQL_REPORT_GIVEN_UP, (item.last_error, item.job_id))
                items.append(item)
            if only is not None:
                ids = conn.execute(SQL_OUTBOX_ONE, {"only": only, "now": now}).fetchall()
            else:
                ids = conn.execute(SQL_OUTBOX_DUE, {"now": now, "limit": limit}).fetchall()
            for (id_,) in ids:
                row = conn.execute(
                    SQL_OUTBOX_LEASE, {"owner": owner, "until": now + lease, "id": id_}
                ).fetchone()
                items.append(_outbox_item(row))
        return items

    def outbox_renew(self, item_id: int, owner: str, lease: float) -> bool:
        with self._write() as conn:
            cur = conn.execute(SQL_OUTBOX_RENEW, (time.time() + lease, item_id, owner))
            return cur.rowcount == 1

    def outbox_sent_part(
        self, item_id: int, parts_done: int, posted_channel: str | None, ts: str | None
    ) -> None:
        with self._write() as conn:
            conn.execute(SQL_OUTBOX_PART, (parts_done, posted_channel, ts, item_id))

    def outbox_delivered(
        self,
        item: OutboxItem,
        posted_channel: str | None,
        ts: str | None,
        *,
        follow_ups: Sequence[OutboxMessage] = (),
        now: float | None = None,
    ) -> None:
        now = time.time() if now is None else now
        with self._write() as conn:
            conn.execute(
                SQL_OUTBOX_DELIVERED,
                {"version": item.version, "channel": posted_channel, "ts": ts, "now": now,
                 "id": item.id},
            )  # fmt: skip
            if item.kind == "report" and item.job_id is not None:
                (left,) = conn.execute(SQL_OUTBOX_REPORTS_LEFT, (item.job_id,)).fetchone()
                if not left:
                    conn.execute(SQL_REPORT_DELIVERED, (item.job_id,))
            self._store(conn, follow_ups, now)
        if follow_ups:
            self._wakeup.notify()

    def outbox_retry(self, item_id: int, error: str, retry_at: float) -> None:
        with self._write() as conn:
            conn.execute(SQL_OUTBOX_RETRY, (error, retry_at, item_id))

    def outbox_defer(self, until: float) -> None:
        with self._write() as conn:
            conn.execute(SQL_OUTBOX_DEFER, (until, until))

    def outbox_failed(
        self,
        item_id: int,
        error: str,
        *,
        state: OutboxState = OutboxState.FAILED,
        now: float | None = None,
    ) -> None:
        with self._write() as conn:
            row = conn.execute(SQL_OUTBOX_GIVE_UP, (state, error, item_id)).fetchone()
            if row and row[0] == "report" and row[1] is not None:
                conn.execute(SQL_REPORT_GIVEN_UP, (error, row[1]))

    def outbox_release(self, item_ids: Sequence[int]) -> None:
        if not item_ids:
            return
        with self._write() as conn:
            conn.executemany(SQL_OUTBOX_RELEASE, [(i,) for i in item_ids])

    def outbox_get(self, item_id: int) -> OutboxItem | None:
        rows = self._read(SQL_OUTBOX_GET, (item_id,))
        return _outbox_item(rows[0]) if rows else None

    def outbox_find(self, ref: str) -> list[OutboxItem]:
        return [_outbox_item(r) for r in self._read(SQL_OUTBOX_FIND, (ref,))]

    def outbox_items(
        self, *, states: Sequence[OutboxState] = (), limit: int = 50
    ) -> list[OutboxItem]:
        where = ""
        if states:
            where = f"WHERE state IN ({', '.join('?' for _ in states)})"
        sql = f"SELECT {OUTBOX_COLUMNS} FROM outbox {where} ORDER BY id DESC LIMIT ?"
        return [_outbox_item(r) for r in self._read(sql, (*[str(s) for s in states], limit))]

    def outbox_summary(self) -> OutboxSummary:
        ((count, oldest),) = self._read(SQL_OUTBOX_PENDING_SUMMARY)
        by_state = {str(OutboxState.PENDING): count, **dict(self._read(SQL_OUTBOX_GIVEN_UP))}
        last = self._read(SQL_OUTBOX_LAST_ERROR) if count else []
        return OutboxSummary(count, oldest, by_state, last[0][0] if last else None)

    def outbox_next_due(self) -> float | None:
        return self._read(SQL_OUTBOX_NEXT_DUE)[0][0]

    def progress_posted(self, job_id: int) -> tuple[str, str] | None:
        rows = self._read(SQL_OUTBOX_PROGRESS_POSTED, (job_id,))
        return (rows[0][0], rows[0][1]) if rows and rows[0][0] else None

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
            conn.execute(SQL_PRUNE_OUTBOX, (before,))
            conn.execute(SQL_PRUNE_DIGESTS, (before,))
            conn.execute(SQL_PRUNE_THROTTLE, (time.time(),))
            conn.execute(SQL_PRUNE_CONFIRMATIONS, (before,))
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
        self,
        is_dead: Callable[[Worker], bool],
        *,
        notices: Callable[[Recovered], Sequence[OutboxMessage]] | None = None,
        now: float | None = None,
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
                    conn.execute(SQL_OUTBOX_DROP_PROGRESS, (job.id,))
                    recovered.append(Recovered(_job(new), True, worker, job.pid))
                else:
                    note = f"lost: {who} stopped while it ran"
                    new = conn.execute(SQL_MARK_LOST, (now, note, job.id)).fetchone()
                    conn.execute(SQL_OUTBOX_DROP_PROGRESS, (job.id,))
                    recovered.append(Recovered(_job(new), False, worker, job.pid))
            for wid in dead:
                conn.execute(SQL_UNREGISTER_WORKER, (wid,))
            if notices is not None:
                for item in recovered:
                    self._store(conn, notices(item), now)
        if recovered:
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
        notices: Callable[[list[EnqueueResult]], Sequence[OutboxMessage]] | None = None,
        digest: str | None = None,
        now: float | None = None,
    ) -> list[EnqueueResult] | None:
        now = time.time() if now is None else now
        results: list[EnqueueResult] = []
        stored: list[int] = []
        with self._write() as conn:
            if digest is not None and conn.execute(SQL_DIGEST_SEEN, (source, digest)).fetchone():
                return None  # a captured body under a new delivery id: nothing is written
            if conn.execute(SQL_INSERT_DELIVERY, (source, delivery_id, now)).rowcount != 1:
                return None
            if digest is not None:
                conn.execute(SQL_INSERT_DIGEST, (source, digest, now))
            for request in requests:
                start_after = now + request.delay_seconds
                row, coalesced = self._insert_or_coalesce(conn, request, now, start_after)
                until = conn.execute(
                    SQL_ACTIVE_SUPPRESSION_END,
                    (request.namespace, request.job_type, start_after, start_after),
                ).fetchone()[0]
                results.append(EnqueueResult(_job(row), coalesced, (), until))
            if notices is not None:
                stored = self._store(conn, notices(results), now)
        if results or stored:
            self._wakeup.notify()
        return results

    # confirmations ------------------------------------------------------------
    def offer_confirmation(
        self,
        request: JobRequest,
        *,
        requested_by: str | None,
        channel: str | None,
        thread_ts: str | None,
        summary: str,
        expires_in: float,
        confirmers: Sequence[str] = (),
        requested_by_name: str | None = None,
        outbox: Callable[[Confirmation], Sequence[OutboxMessage]] | None = None,
        now: float | None = None,
    ) -> Confirmation:
        now = time.time() if now is None else now
        body = json.dumps(request.to_dict(), ensure_ascii=False, sort_keys=True)
        with self._write() as conn:
            while True:
                code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
                if not conn.execute(SQL_CONFIRMATION_EXISTS, (code,)).fetchone():
                    break
            row = conn.execute(
                SQL_INSERT_CONFIRMATION,
                (code, request.namespace, request.job_type, body, requested_by,
                 requested_by_name, channel, thread_ts, json.dumps(list(confirmers)), summary,
                 now, now + expires_in),
            ).fetchone()  # fmt: skip
            offer = _confirmation(row)
            ids = self._store(conn, outbox(offer) if outbox else (), now)
            if ids:
                conn.execute(SQL_CONFIRMATION_OFFER, (ids[0], code))
                offer = dataclasses.replace(offer, offer_id=ids[0])
        if ids:
            self._wakeup.notify()
        return offer

    def decide_confirmation(
        self,
        code: str,
        *,
        confirm: bool,
        by: str,
        by_name: str | None = None,
        outbox: Callable[[Confirmation, Job | None], Sequence[OutboxMessage]] | None = None,
        now: float | None = None,
    ) -> DecisionResult:
        now = time.time() if now is None else now
        code = code.strip().upper()
        enqueued: EnqueueResult | None = None
        with self._write() as conn:
            row = conn.execute(SQL_GET_CONFIRMATION, (code,)).fetchone()
            if row is None:
                return DecisionResult(Decision.NOT_FOUND)
            offer = _confirmation(row)
            if offer.state is not ConfirmationState.PENDING:
                return DecisionResult(Decision.ALREADY, offer)
            if offer.expires_at <= now:
                row = conn.execute(
                    SQL_DECIDE_CONFIRMATION, ("expired", None, now, None, code)
                ).fetchone()
                decided = _confirmation(row)
                self._store(conn, outbox(decided, None) if outbox else (), now)
                decision = Decision.EXPIRED
            elif confirm:
                request = dataclasses.replace(offer.request, confirmed_by=by_name or by)
                start_after = now + request.delay_seconds
                job_row, coalesced = self._insert_or_coalesce(conn, request, now, start_after)
                job = _job(job_row)
                running = conn.execute(
                    SQL_RUNNING_OF_TYPE, (request.namespace, request.job_type)
                ).fetchall()
                enqueued = EnqueueResult(job, coalesced, tuple(_job(r) for r in running))
                row = conn.execute(
                    SQL_DECIDE_CONFIRMATION, ("confirmed", by, now, job.id, code)
                ).fetchone()
                decided = _confirmation(row)
                self._store(conn, outbox(decided, job) if outbox else (), now)
                decision = Decision.CONFIRMED
            else:
                row = conn.execute(
                    SQL_DECIDE_CONFIRMATION, ("cancelled", by, now, None, code)
                ).fetchone()
                decided = _confirmation(row)
                self._store(conn, outbox(decided, None) if outbox else (), now)
                decision = Decision.CANCELLED
        self._wakeup.notify()
        return DecisionResult(decision, decided, enqueued)

    def expire_confirmations(
        self,
        *,
        outbox: Callable[[Confirmation, Job | None], Sequence[OutboxMessage]] | None = None,
        now: float | None = None,
    ) -> list[Confirmation]:
        now = time.time() if now is None else now
        # A read first: the dispatcher asks on every turn, and mostly nothing is due.
        due = self._read(
            "SELECT 1 FROM confirmations WHERE state = 'pending' AND expires_at <= ? LIMIT 1",
            (now,),
        )
        if not due:
            return []
        with self._write() as conn:
            expired = [
                _confirmation(r) for r in conn.execute(SQL_EXPIRE_CONFIRMATIONS, {"now": now})
            ]
            for offer in expired:
                self._store(conn, outbox(offer, None) if outbox else (), now)
        if expired:
            self._wakeup.notify()
        return expired

    def get_confirmation(self, code: str) -> Confirmation | None:
        rows = self._read(SQL_GET_CONFIRMATION, (code.strip().upper(),))
        return _confirmation(rows[0]) if rows else None

    def confirmations(
        self, *, states: Sequence[ConfirmationState] = (), limit: int = 50
    ) -> list[Confirmation]:
        sql = "SELECT " + CONFIRMATION_COLUMNS + " FROM confirmations"
        params: list[object] = []
        if states:
            sql += f" WHERE state IN ({', '.join('?' for _ in states)})"
            params += [str(s) for s in states]
        sql += " ORDER BY created_at DESC, code LIMIT ?"
        return [_confirmation(r) for r in self._read(sql, [*params, limit])]

    def job_locks(self, job_id: int) -> list[str]:
        return [r[0] for r in self._read(SQL_JOB_LOCKS, (job_id,))]

    # closing the loop (hardware rules) ------------------------------------------
    def loop_memory(self, xnames: Sequence[str]) -> dict[str, Memory]:
        rows = self._read(SQL_LOOP_MEMORY, (json.dumps(list(xnames)),))
        return {r[0]: Memory(r[0], r[1], r[2], bool(r[3]), r[4], r[5], float(r[6])) for r in rows}

    def remember_loop(self, memories: Sequence[Memory], *, now: float | None = None) -> None:
        now = time.time() if now is None else now
        with self._write() as conn:
            conn.executemany(
                SQL_REMEMBER_LOOP,
                [
                    (
                        m.xname,
                        m.ticket,
                        m.problem,
                        int(m.failing),
                        m.drain_offer,
                        m.resume_offer,
                        now,
                    )
                    for m in memories
                ],
            )

    # web sessions -----------------------------------------------------------
    def open_session(
        self, id_hash: str, user: str, *, max_age: float, now: float | None = None
    ) -> None:
        now = time.time() if now is None else now
        with self._write() as conn:
            conn.execute(SQL_EXPIRE_SESSIONS, (now - max_age,))
            conn.execute(SQL_OPEN_SESSION, (id_hash, user, now))

    def session_user(self, id_hash: str, *, max_age: float, now: float | None = None) -> str | None:
        now = time.time() if now is None else now
        rows = self._read(SQL_SESSION_USER, (id_hash, now - max_age))
        return rows[0][0] if rows else None

    def close_session(self, id_hash: str) -> bool:
        with self._write() as conn:
            return conn.execute(SQL_CLOSE_SESSION, (id_hash,)).rowcount > 0

    def close_user_sessions(self, user: str) -> int:
        with self._write() as conn:
            return conn.execute(SQL_CLOSE_USER_SESSIONS, (user,)).rowcount

    # throttling ---------------------------------------------------------------
    def throttle_hit(
        self, key: str, expiry: float, amount: int = 1, *, now: float | None = None
    ) -> int:
        now = time.time() if now is None else now
        params = {"key": key, "amount": amount, "now": now, "expiry": expiry}
        with self._write() as conn:
            return int(conn.execute(SQL_THROTTLE_HIT, params).fetchone()[0])

    def throttle_get(self, key: str, *, now: float | None = None) -> tuple[int, float | None]:
        now = time.time() if now is None else now
        rows = self._read(SQL_THROTTLE_GET, (key, now))
        return (int(rows[0][0]), float(rows[0][1])) if rows else (0, None)

    def throttle_clear(self, key: str | None = None) -> int:
        with self._write() as conn:
            if key is None:
                return conn.execute(SQL_THROTTLE_CLEAR_ALL).rowcount
            return conn.execute(SQL_THROTTLE_CLEAR, (key,)).rowcount

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

    # hardware ----------------------------------------------------------------
    @staticmethod
    def _health_params(rows: Sequence[NodeHealthRow]) -> list[tuple[object, ...]]:
        return [
            (r.xname, r.state, r.checked_at, json.dumps(r.data, ensure_ascii=False), r.job_id)
            for r in rows
        ]

    def record_node_health(self, rows: Sequence[NodeHealthRow]) -> int:
        if not rows:
            return 0
        with self._write() as conn:
            before = conn.total_changes
            conn.executemany(SQL_NODE_HEALTH_UPSERT, self._health_params(rows))
            return conn.total_changes - before

    def node_health(self, xnames: Sequence[str] | None = None) -> dict[str, NodeHealthRow]:
        if xnames is None:
            rows = self._read(SQL_NODE_HEALTH)
        else:
            rows = []
            names = list(dict.fromkeys(xnames))
            for start in range(0, len(names), 500):  # below SQLite's variable limit
                chunk = names[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows += self._read(SQL_NODE_HEALTH + f" WHERE xname IN ({marks})", chunk)
        return {
            x: NodeHealthRow(x, state, at, json.loads(data), job_id)
            for x, state, at, data, job_id in rows
        }

    def record_sweep(
        self,
        scope: str,
        started_at: float,
        finished_at: float,
        results: Sequence[NodeHealthRow],
        *,
        job_id: int | None = None,
        keep: int = 30,
    ) -> SweepRow:
        data = [r.data for r in results]
        with self._write() as conn:
            (sweep_id,) = conn.execute(
                SQL_INSERT_SWEEP,
                (scope, started_at, finished_at, job_id, json.dumps(data, ensure_ascii=False)),
            ).fetchone()
            conn.executemany(SQL_NODE_HEALTH_UPSERT, self._health_params(results))
            conn.execute(SQL_PRUNE_SWEEPS, (scope, scope, max(1, keep)))
        return SweepRow(sweep_id, scope, started_at, finished_at, data, job_id)

    def last_sweep(self, scope: str, *, before_id: int | None = None) -> SweepRow | None:
        rows = self._read(SQL_LAST_SWEEP, (scope, MAX_ID if before_id is None else before_id))
        if not rows:
            return None
        id_, scope_, started, finished, results, job_id = rows[0]
        return SweepRow(id_, scope_, started, finished, json.loads(results), job_id)

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

    def running_jobs(self) -> list[Job]:
        return [_job(r) for r in self._read(SQL_RUNNING_ALL)]  # the partial index: no scan

    def get(self, job_id: int) -> Job | None:
        if not 0 < job_id <= MAX_ID:
            return None  # no row can have it (SQLite would raise OverflowError)
        rows = self._read(SQL_GET, (job_id,))
        return _job(rows[0]) if rows else None

    def requesters(self, job_id: int) -> list[JobRequester]:
        return [_requester(r) for r in self._read(SQL_REQUESTERS, (job_id,))]

    def jobs(
        self,
        *,
        namespace: str | None = None,
        statuses: Sequence[JobStatus] = (),
        limit: int = 50,
        hidden: Sequence[str] = (),
    ) -> list[Job]:
        where, params = [], []
        if namespace:
            where.append("namespace = ?")
            params.append(namespace)
        if hidden:
            where.append(f"namespace NOT IN ({', '.join('?' for _ in hidden)})")
            params.extend(hidden)
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
