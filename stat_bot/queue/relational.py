"""The queue's logic, once, over any SQL database: what each method reads and writes.

A backend (sqlite.py, postgres.py) supplies its statements as a module (`sql`:
sqlite_sql.py, postgres_sql.py, the same names in each) and four primitives: a write
transaction (`_write`), a read (`_read`), a statement run for many rows (`_many`) and
`_serialize`, which makes two transactions that read, then decide, then write take
turns. SQLite's write lock already does that for every write; PostgreSQL takes an
advisory lock for the few decisions that must not race (claiming, leasing outbox
messages, recovering lost jobs, merging a request into a queued job).

Every `now` defaults to `self.now()`, the backend's clock: PostgreSQL's is the
database server's, so hosts whose clocks disagree still agree on what is due and who
is late.
"""

from __future__ import annotations

import abc
import dataclasses
import json
import os
import secrets
import socket
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from types import ModuleType
from typing import Any

from stat_bot.hardware.loop import Memory
from stat_bot.jobs.model import Job, JobRequest, JobRequester, JobStatus, ReportState
from stat_bot.queue.alert_model import (
    Alert,
    AlertChange,
    AlertChangeKind,
    AlertEvent,
    AlertFiring,
    AlertStatus,
)
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
    Recovered,
    ScheduleRow,
    Suppression,
    SweepRow,
    Worker,
)
from stat_bot.queue.incident_model import (
    CHANGEABLE,
    EntryKind,
    Incident,
    IncidentConflictError,
    IncidentDraft,
    IncidentMessages,
    TimelineEntry,
)
from stat_bot.queue.runbook_model import (
    PageChange,
    RunbookAnswer,
    RunbookAnswerDraft,
    RunbookAnswerSummary,
    RunbookHit,
    RunbookPage,
    RunbookPageDraft,
    score,
    stem,
    stems_of,
    step_lines,
    terms,
)

MAX_ID = 2**63 - 1  # the largest 64-bit id: a larger job id names no job
CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read aloud and typed back
CODE_LENGTH = 6
RUNBOOK_CANDIDATES = 50  # sections the full-text search hands to the scoring, best first
# The deliveries source under which alert rules' dedupe keys are kept (record_alerts).
ALERT_RULE_SOURCE = "alert-rule"


class _RollBackError(Exception):
    """Raised inside a write to undo all of it: another process did the same thing first."""


_JOB_STATUS = {status.value: status for status in JobStatus}  # a dict lookup: Enum() costs more


def _job(row: Sequence[object]) -> Job:
    """A jobs row (JOB_COLUMNS) as a Job.

    Positional: JOB_COLUMNS lists the Job's fields in their order (a unit test holds the
    two equal in both backends). Building a Job by 28 keywords cost more than reading its
    row; three rows are read per job.
    """
    values: list[Any] = list(row)
    values[3] = json.loads(values[3])  # args
    values[8] = _JOB_STATUS[values[8]]  # status
    values[21] = bool(values[21])  # cancel_requested
    values[24] = bool(values[24])  # is_im
    return Job(*values)


def _queued_job(request: JobRequest, args: str, created: float, start_after: float) -> Job:
    """The job `request` becomes, as SQL_INSERT_JOB writes it (its id not yet known).

    The insert's values are taken from here, and every other column is the schema's
    default for a new row, so the row is not read back: RETURNING every column cost more
    than the insert itself (the contract suite holds this Job equal to `get`'s).
    """
    return Job(
        id=0, namespace=request.namespace, job_type=request.job_type, args=json.loads(args),
        channel=request.channel, thread_ts=request.thread_ts, user=request.user,
        source=str(request.source), status=JobStatus.QUEUED, created_at=float(created),
        start_after=float(start_after), started_at=None, finished_at=None, attempts=0,
        max_retries=request.retries, concurrency=request.concurrency, worker_id=None,
        heartbeat_at=None, pid=None, exit_code=None, log_dir=None, cancel_requested=False,
        report_state=str(ReportState.PENDING), report_error=None, is_im=bool(request.is_im),
        note=None, user_name=request.user_name, confirmed_by=request.confirmed_by,
    )  # fmt: skip


# Job arguments as stored: canonical JSON (sorted keys), so equal arguments are equal text
# (coalescing compares the text). One encoder, built once, rather than one per json.dumps.
_args_json = json.JSONEncoder(ensure_ascii=False, sort_keys=True).encode


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


def _alert(row: Sequence[Any]) -> Alert:
    values = list(row)
    values[6] = json.loads(values[6])
    values[7] = AlertStatus(values[7])
    return Alert(*values)


def _alert_change(
    current: Alert | None, event: AlertEvent
) -> tuple[AlertChangeKind, dict[str, Any]]:
    """What an event does to its alert (None: not seen before): the kind and new values."""
    firing = event.status is AlertStatus.FIRING
    values: dict[str, Any] = {
        "title": event.title, "service": event.service, "severity": event.severity,
        "labels": dict(event.labels), "url": event.url,
    }  # fmt: skip
    if current is None:
        values.update(
            status=event.status, first_fired_at=event.at, last_fired_at=event.at,
            resolved_at=None if firing else event.at, fire_count=1,
        )  # fmt: skip
        return AlertChangeKind.NEW, values
    values.update(
        status=current.status, last_fired_at=current.last_fired_at,
        resolved_at=current.resolved_at, fire_count=current.fire_count,
    )  # fmt: skip
    if firing:
        if current.status is AlertStatus.FIRING and (
            event.at <= current.last_fired_at or not event.starts_known
        ):
            return AlertChangeKind.REPEATED, values  # a reminder of the same firing
        if current.status is AlertStatus.RESOLVED and event.at <= current.last_fired_at:
            # The firing it already knew, delivered late (a retry, an HA peer) after its
            # resolution: it does not open the alert again (no resolution would follow).
            return AlertChangeKind.UNCHANGED, values
        values.update(
            status=AlertStatus.FIRING, last_fired_at=max(event.at, current.last_fired_at),
            resolved_at=None, fire_count=current.fire_count + 1,
        )  # fmt: skip
        return AlertChangeKind.REFIRED, values
    if current.status is AlertStatus.RESOLVED:
        return AlertChangeKind.UNCHANGED, values
    values.update(status=AlertStatus.RESOLVED, resolved_at=event.at)
    return AlertChangeKind.RESOLVED, values


def _incident(row: Sequence[Any]) -> Incident:
    (
        id_, channel_id, channel_name, description, status, opened_by, opened_by_name,
        opened_at, resolved_at, roles, xnames, tickets, jobs, control_outbox, digest_outbox,
        postmortem, archived_at, version, updated_at,
    ) = row  # fmt: skip
    return Incident(
        id=int(id_), channel_id=channel_id, channel_name=channel_name, description=description,
        status=status, opened_by=opened_by, opened_by_name=opened_by_name,
        opened_at=float(opened_at), resolved_at=resolved_at, roles=json.loads(roles),
        xnames=tuple(json.loads(xnames)), tickets=tuple(json.loads(tickets)),
        jobs=tuple(json.loads(jobs)), control_outbox=control_outbox,
        digest_outbox=digest_outbox, postmortem=postmortem, archived_at=archived_at,
        version=int(version), updated_at=float(updated_at),
    )  # fmt: skip


def _incident_entry(row: Sequence[Any]) -> TimelineEntry:
    id_, incident_id, at, kind, user, user_name, text, data = row
    return TimelineEntry(
        kind=EntryKind(kind), text=text, user=user, user_name=user_name, at=float(at),
        data=json.loads(data), id=int(id_), incident_id=int(incident_id),
    )  # fmt: skip


def _incident_value(name: str, value: Any) -> Any:
    """A changed column as stored: roles and lists as JSON, the rest as they are."""
    if name == "roles":
        return json.dumps(dict(value), sort_keys=True)
    if name in ("xnames", "tickets", "jobs"):
        return json.dumps(list(value))
    return value


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


class RelationalQueue(Queue):
    """The Queue over SQL; a subclass gives the connection handling and `sql`."""

    sql: ModuleType

    @abc.abstractmethod
    def _write(self) -> AbstractContextManager[Any]:
        """One write transaction: committed when the block ends, rolled back if it raises."""

    @abc.abstractmethod
    def _read(self, sql: str, params: Sequence[object] | dict[str, object] = ()) -> list[tuple]:
        """The rows of one read."""

    @abc.abstractmethod
    def _many(self, conn: Any, sql: str, rows: Sequence[Sequence[object]]) -> int:
        """Run `sql` once per row in the caller's transaction; the rows it changed."""

    @abc.abstractmethod
    def _wake(self, conn: Any) -> None:
        """Wake the listening dispatchers when this transaction commits (never if it rolls back)."""

    def _serialize(self, conn: Any, name: str) -> None:
        """Make transactions that decide `name` take turns, until this one ends.

        A no-op where every write transaction already excludes the others (SQLite).
        """

    # writing ---------------------------------------------------------------
    def _insert_id(self, conn: Any, sql: str, params: Sequence[object]) -> int:
        """Run `sql`, an INSERT of one row, in the caller's transaction; the new row's id.

        Here the statement ends `RETURNING id` (PostgreSQL: the id comes back in the same
        round trip); SQLite's inserts return nothing and it reads the cursor's `lastrowid`,
        as its RETURNING costs more than the insert itself.
        """
        return conn.execute(sql, params).fetchone()[0]

    def _insert_or_coalesce(
        self, conn: Any, request: JobRequest, created: float, start_after: float
    ) -> tuple[Job, bool]:
        """Insert the job, or merge the request into a queued one and keep who asked.

        `coalesce` True merges into a queued job of the type with the same arguments
        (bennettbot's rule), "type" into any queued job of the type, whose arguments
        become this request's (ebmbot's); either way the requester is stored beside
        the job, in this transaction, so their answer cannot be lost.
        """
        args = _args_json(request.args)
        if request.coalesce:
            self._serialize(conn, f"coalesce:{request.namespace}:{request.job_type}")
            if request.coalesce == "type":
                existing = conn.execute(
                    self.sql.SQL_FIND_QUEUED_OF_TYPE, (request.namespace, request.job_type)
                ).fetchone()
            else:
                existing = conn.execute(
                    self.sql.SQL_FIND_QUEUED_SAME_ARGS,
                    {"ns": request.namespace, "jt": request.job_type, "args": args},
                ).fetchone()
            if existing:
                job_id, old_args = existing
                row = conn.execute(
                    self.sql.SQL_COALESCE,
                    (args, start_after, request.retries, request.concurrency, job_id),
                ).fetchone()
                requester = {
                    "job_id": job_id, "channel": request.channel,
                    "thread_ts": request.thread_ts, "user": request.user,
                    "user_name": request.user_name, "is_im": int(request.is_im),
                    "source": str(request.source), "args": args,
                    "replaced_args": int(old_args != args), "now": created,
                }  # fmt: skip
                if conn.execute(self.sql.SQL_ADD_REQUESTER, requester).rowcount == 0:
                    # Already answered where this request came from: keep that the
                    # arguments changed, for the note in the report.
                    conn.execute(self.sql.SQL_MARK_ARGS_REPLACED, requester)
                if request.locks:  # the arguments (its target) may have changed: its locks too
                    conn.execute(self.sql.SQL_DROP_LOCKS, (job_id,))
                    self._many(
                        conn, self.sql.SQL_ADD_LOCK, [(job_id, key) for key in request.locks]
                    )
                return _job(row), True
        job = _queued_job(request, args, created, start_after)
        job.id = self._insert_id(
            conn, self.sql.SQL_INSERT_JOB,
            (job.namespace, job.job_type, args, job.channel, job.thread_ts, job.user, job.source,
             job.status, job.created_at, job.start_after, job.max_retries, job.concurrency,
             int(job.is_im), job.report_state, job.user_name, job.confirmed_by),
        )  # fmt: skip
        if request.locks:
            self._many(conn, self.sql.SQL_ADD_LOCK, [(job.id, key) for key in request.locks])
        return job, False

    def enqueue(self, request: JobRequest, *, now: float | None = None) -> EnqueueResult:
        now = self.now() if now is None else now
        start_after = now + request.delay_seconds
        with self._write() as conn:
            job, coalesced = self._insert_or_coalesce(conn, request, now, start_after)
            until, runs = conn.execute(
                self.sql.SQL_SUPPRESSED_UNTIL_AND_RUNNING,
                {"ns": request.namespace, "jt": request.job_type, "at": start_after},
            ).fetchone()
            running = (
                conn.execute(
                    self.sql.SQL_RUNNING_OF_TYPE, (request.namespace, request.job_type)
                ).fetchall()
                if runs
                else ()
            )
            self._wake(conn)
        return EnqueueResult(job, coalesced, tuple(_job(r) for r in running), until)

    def claim(self, worker_id: str, limit: int, *, now: float | None = None) -> list[Job]:
        if limit <= 0:
            return []
        now = self.now() if now is None else now
        claimed: list[Job] = []
        with self._write() as conn:
            self._serialize(conn, "claim")  # admission (limits, locks) is decided one at a time
            params = {"now": now, "worker": worker_id}
            for _ in range(limit):
                row = conn.execute(self.sql.SQL_CLAIM_ONE, params).fetchone()
                if row is None:
                    break
                claimed.append(_job(row))
        return claimed

    def mark_started(
        self, job_id: int, pid: int, log_dir: str, *, outbox: Sequence[OutboxMessage] = ()
    ) -> None:
        with self._write() as conn:
            self._mark_started(conn, job_id, pid, log_dir, outbox=outbox)

    def _mark_started(
        self,
        conn: Any,
        job_id: int,
        pid: int,
        log_dir: str,
        *,
        outbox: Sequence[OutboxMessage] = (),
    ) -> None:
        conn.execute(self.sql.SQL_MARK_STARTED, (pid, log_dir, job_id))
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
        worker_id: str | None = None,
        progress: bool = True,
    ) -> bool:
        with self._write() as conn:
            return self._finish(
                conn, job_id, status, exit_code, note, report_state, outbox=outbox, now=now,
                worker_id=worker_id, progress=progress,
            )  # fmt: skip

    def _finish(
        self,
        conn: Any,
        job_id: int,
        status: JobStatus,
        exit_code: int | None = None,
        note: str | None = None,
        report_state: ReportState = ReportState.PENDING,
        *,
        outbox: Sequence[OutboxMessage] = (),
        now: float | None = None,
        worker_id: str | None = None,
        progress: bool = True,
    ) -> bool:
        now = self.now() if now is None else now
        if not conn.execute(
            self.sql.SQL_FINISH,
            (status, exit_code, now, note, report_state, job_id, worker_id, worker_id),
        ).rowcount:
            return False
        if progress:
            conn.execute(self.sql.SQL_OUTBOX_DROP_PROGRESS, (job_id,))
        self._store(conn, outbox, now)
        return True

    def heartbeat(self, worker_id: str, *, now: float | None = None) -> list[int]:
        now = self.now() if now is None else now
        with self._write() as conn:
            if conn.execute(self.sql.SQL_WORKER_HEARTBEAT, (now, worker_id)).rowcount == 0:
                # Its row is gone (a new database file, or a peer judged it dead during an
                # outage): alive after all, it registers again rather than beat unseen.
                conn.execute(
                    self.sql.SQL_REGISTER_WORKER,
                    (worker_id, socket.gethostname(), os.getpid(), now, now),
                )
            conn.execute(self.sql.SQL_JOBS_HEARTBEAT, (now, worker_id))
            return [r[0] for r in conn.execute(self.sql.SQL_CANCEL_REQUESTED, (worker_id,))]

    def cancel_requests(self, worker_id: str) -> list[int]:
        """Ids of this worker's running jobs that someone asked to cancel (a read, no lock)."""
        return [r[0] for r in self._read(self.sql.SQL_CANCEL_REQUESTED, (worker_id,))]

    def request_cancel(self, job_id: int, *, now: float | None = None) -> CancelResult:
        now = self.now() if now is None else now
        if not 0 < job_id <= MAX_ID:
            return CancelResult(CancelOutcome.NOT_FOUND)
        with self._write() as conn:
            row = conn.execute(self.sql.SQL_GET_FOR_UPDATE, (job_id,)).fetchone()
            if row is None:
                return CancelResult(CancelOutcome.NOT_FOUND)
            job = _job(row)
            if job.status is JobStatus.QUEUED:
                row = conn.execute(
                    self.sql.SQL_CANCEL_QUEUED, (now, "cancelled before it started", job_id)
                ).fetchone()
                outcome = CancelResult(CancelOutcome.CANCELLED, _job(row))
            elif job.status is JobStatus.RUNNING:
                conn.execute(self.sql.SQL_REQUEST_CANCEL, (job_id,))
                outcome = CancelResult(CancelOutcome.REQUESTED, job)
            else:
                return CancelResult(CancelOutcome.ALREADY_FINISHED, job)
            self._wake(conn)
        return outcome

    def cancel_queued(
        self, namespace: str, job_type: str, *, now: float | None = None
    ) -> list[Job]:
        now = self.now() if now is None else now
        with self._write() as conn:
            rows = conn.execute(
                self.sql.SQL_CANCEL_QUEUED_OF_TYPE,
                (now, "cancelled by a cancel_job command", namespace, job_type),
            ).fetchall()
        return [_job(r) for r in rows]

    def suppress(
        self, namespace: str, job_type: str, start_at: float, end_at: float, user: str | None = None
    ) -> Suppression:
        with self._write() as conn:
            (id_,) = conn.execute(
                self.sql.SQL_INSERT_SUPPRESSION,
                (namespace, job_type, start_at, end_at, user, self.now()),
            ).fetchone()
        return Suppression(id_, namespace, job_type, start_at, end_at, user)

    def unsuppress(self, namespace: str, job_type: str) -> int:
        with self._write() as conn:
            count = conn.execute(self.sql.SQL_DELETE_SUPPRESSIONS, (namespace, job_type)).rowcount
            self._wake(conn)
        return count

    def record_report(self, job_id: int, state: ReportState, error: str | None = None) -> None:
        with self._write() as conn:
            self._record_report(conn, job_id, state, error)

    def _record_report(
        self, conn: Any, job_id: int, state: ReportState, error: str | None = None
    ) -> None:
        conn.execute(self.sql.SQL_RECORD_REPORT, (state, error, job_id))

    # outbox ------------------------------------------------------------------
    def _store(
        self, conn: Any, messages: Sequence[OutboxMessage], now: float | None = None
    ) -> list[int]:
        """Insert messages in the caller's transaction; their ids."""
        if not messages:
            return []
        now = self.now() if now is None else now
        ids = []
        for m in messages:
            expires = m.expires_at if m.expires_at is not None else now + self.outbox_expiry
            (id_,) = conn.execute(
                self.sql.SQL_OUTBOX_INSERT,
                (m.kind, m.payload, m.channel, m.job_id, now, expires, now, m.ref),
            ).fetchone()
            ids.append(id_)
        return ids

    def post(self, messages: Sequence[OutboxMessage], *, now: float | None = None) -> list[int]:
        with self._write() as conn:
            ids = self._store(conn, messages, now)
            self._wake(conn)
        return ids

    def post_progress(
        self, job_id: int, message: OutboxMessage, *, now: float | None = None
    ) -> int:
        now = self.now() if now is None else now
        with self._write() as conn:
            row = conn.execute(
                self.sql.SQL_OUTBOX_PROGRESS,
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
        now = self.now() if now is None else now
        items: list[OutboxItem] = []
        with self._write() as conn:
            self._serialize(conn, "outbox")  # a job's messages are leased in order, one at a time
            for row in conn.execute(self.sql.SQL_OUTBOX_EXPIRE, {"now": now}).fetchall():
                item = _outbox_item(row)
                if item.kind == "report" and item.job_id is not None:
                    conn.execute(self.sql.SQL_REPORT_GIVEN_UP, (item.last_error, item.job_id))
                items.append(item)
            if only is not None:
                ids = conn.execute(self.sql.SQL_OUTBOX_ONE, {"only": only, "now": now}).fetchall()
            else:
                ids = conn.execute(self.sql.SQL_OUTBOX_DUE, {"now": now, "limit": limit}).fetchall()
            for (id_,) in ids:
                row = conn.execute(
                    self.sql.SQL_OUTBOX_LEASE, {"owner": owner, "until": now + lease, "id": id_}
                ).fetchone()
                items.append(_outbox_item(row))
        return items

    def outbox_renew(self, item_id: int, owner: str, lease: float) -> bool:
        with self._write() as conn:
            cur = conn.execute(self.sql.SQL_OUTBOX_RENEW, (self.now() + lease, item_id, owner))
            return cur.rowcount == 1

    def outbox_sent_part(
        self, item_id: int, parts_done: int, posted_channel: str | None, ts: str | None
    ) -> None:
        with self._write() as conn:
            conn.execute(self.sql.SQL_OUTBOX_PART, (parts_done, posted_channel, ts, item_id))

    def outbox_delivered(
        self,
        item: OutboxItem,
        posted_channel: str | None,
        ts: str | None,
        *,
        follow_ups: Sequence[OutboxMessage] = (),
        now: float | None = None,
    ) -> None:
        now = self.now() if now is None else now
        with self._write() as conn:
            conn.execute(
                self.sql.SQL_OUTBOX_DELIVERED,
                {"version": item.version, "channel": posted_channel, "ts": ts, "now": now,
                 "id": item.id},
            )  # fmt: skip
            if item.kind == "report" and item.job_id is not None:
                (left,) = conn.execute(self.sql.SQL_OUTBOX_REPORTS_LEFT, (item.job_id,)).fetchone()
                if not left:
                    conn.execute(self.sql.SQL_REPORT_DELIVERED, (item.job_id,))
            self._store(conn, follow_ups, now)
            if follow_ups:
                self._wake(conn)

    def outbox_retry(self, item_id: int, error: str, retry_at: float) -> None:
        with self._write() as conn:
            conn.execute(self.sql.SQL_OUTBOX_RETRY, (error, retry_at, item_id))

    def outbox_defer(self, until: float) -> None:
        with self._write() as conn:
            conn.execute(self.sql.SQL_OUTBOX_DEFER, (until, until))

    def outbox_failed(
        self,
        item_id: int,
        error: str,
        *,
        state: OutboxState = OutboxState.FAILED,
        now: float | None = None,
    ) -> None:
        with self._write() as conn:
            row = conn.execute(self.sql.SQL_OUTBOX_GIVE_UP, (state, error, item_id)).fetchone()
            if row and row[0] == "report" and row[1] is not None:
                conn.execute(self.sql.SQL_REPORT_GIVEN_UP, (error, row[1]))

    def outbox_release(self, item_ids: Sequence[int]) -> None:
        if not item_ids:
            return
        with self._write() as conn:
            self._many(conn, self.sql.SQL_OUTBOX_RELEASE, [(i,) for i in item_ids])

    def outbox_get(self, item_id: int) -> OutboxItem | None:
        rows = self._read(self.sql.SQL_OUTBOX_GET, (item_id,))
        return _outbox_item(rows[0]) if rows else None

    def outbox_find(self, ref: str) -> list[OutboxItem]:
        return [_outbox_item(r) for r in self._read(self.sql.SQL_OUTBOX_FIND, (ref,))]

    def outbox_items(
        self, *, states: Sequence[OutboxState] = (), limit: int = 50
    ) -> list[OutboxItem]:
        where = ""
        if states:
            where = f"WHERE state IN ({', '.join(self.sql.P for _ in states)})"
        sql = f"{self.sql.SQL_OUTBOX_ITEMS} {where} ORDER BY id DESC LIMIT {self.sql.P}"
        return [_outbox_item(r) for r in self._read(sql, (*[str(s) for s in states], limit))]

    def outbox_summary(self) -> OutboxSummary:
        ((count, oldest),) = self._read(self.sql.SQL_OUTBOX_PENDING_SUMMARY)
        by_state = {
            str(OutboxState.PENDING): count,
            **dict(self._read(self.sql.SQL_OUTBOX_GIVEN_UP)),
        }
        last = self._read(self.sql.SQL_OUTBOX_LAST_ERROR) if count else []
        return OutboxSummary(count, oldest, by_state, last[0][0] if last else None)

    def outbox_next_due(self) -> float | None:
        return self._read(self.sql.SQL_OUTBOX_NEXT_DUE)[0][0]

    def progress_posted(self, job_id: int) -> tuple[str, str] | None:
        rows = self._read(self.sql.SQL_OUTBOX_PROGRESS_POSTED, (job_id,))
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
            rows = conn.execute(self.sql.SQL_PRUNE, (before,)).fetchall()
            conn.execute(self.sql.SQL_PRUNE_SUPPRESSIONS, (self.now(),))
            conn.execute(self.sql.SQL_PRUNE_DELIVERIES, (before,))
            conn.execute(self.sql.SQL_PRUNE_OUTBOX, (before,))
            conn.execute(self.sql.SQL_PRUNE_DIGESTS, (before,))
            conn.execute(self.sql.SQL_PRUNE_THROTTLE, (self.now(),))
            conn.execute(self.sql.SQL_PRUNE_CONFIRMATIONS, (before,))
            conn.execute(self.sql.SQL_PRUNE_FIRINGS, (before,))
        return [_job(r) for r in rows]

    # workers ---------------------------------------------------------------
    def register_worker(
        self, worker_id: str, hostname: str, pid: int, *, now: float | None = None
    ) -> None:
        now = self.now() if now is None else now
        with self._write() as conn:
            conn.execute(self.sql.SQL_REGISTER_WORKER, (worker_id, hostname, pid, now, now))

    def unregister_worker(self, worker_id: str) -> None:
        with self._write() as conn:
            conn.execute(self.sql.SQL_UNREGISTER_WORKER, (worker_id,))

    def workers(self) -> list[Worker]:
        return [Worker(*r) for r in self._read(self.sql.SQL_WORKERS)]

    def recover_lost(
        self,
        is_dead: Callable[[Worker], bool],
        *,
        notices: Callable[[Recovered], Sequence[OutboxMessage]] | None = None,
        now: float | None = None,
    ) -> list[Recovered]:
        now = self.now() if now is None else now
        recovered: list[Recovered] = []
        with self._write() as conn:
            self._serialize(conn, "recover")  # two dispatchers never recover the same job
            # Running jobs first, then workers: a dispatcher that registers and claims between
            # the two reads (each its own snapshot on PostgreSQL) is then seen with its job.
            running = conn.execute(self.sql.SQL_RUNNING_ALL).fetchall()
            workers = {r[0]: Worker(*r) for r in conn.execute(self.sql.SQL_WORKERS)}
            dead = {wid for wid, w in workers.items() if is_dead(w)}
            for row in running:
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
                    new = conn.execute(self.sql.SQL_REQUEUE, (now, note, job.id)).fetchone()
                    if new is None:
                        continue  # it ended meanwhile
                    conn.execute(self.sql.SQL_OUTBOX_DROP_PROGRESS, (job.id,))
                    recovered.append(Recovered(_job(new), True, worker, job.pid))
                else:
                    note = f"lost: {who} stopped while it ran"
                    new = conn.execute(self.sql.SQL_MARK_LOST, (now, note, job.id)).fetchone()
                    if new is None:
                        continue
                    conn.execute(self.sql.SQL_OUTBOX_DROP_PROGRESS, (job.id,))
                    recovered.append(Recovered(_job(new), False, worker, job.pid))
            for wid in dead:
                conn.execute(self.sql.SQL_UNREGISTER_WORKER, (wid,))
            if notices is not None:
                for item in recovered:
                    self._store(conn, notices(item), now)
            if recovered:
                self._wake(conn)
        return recovered

    # schedules ---------------------------------------------------------------
    def sync_schedules(self, rows: Sequence[ScheduleRow], *, now: float | None = None) -> None:
        now = self.now() if now is None else now
        with self._write() as conn:
            self._serialize(conn, "schedules")  # every dispatcher syncs them at its start
            keep = {r.key for r in rows}
            for (key,) in conn.execute(self.sql.SQL_SCHEDULE_KEYS).fetchall():
                if key not in keep:
                    conn.execute(self.sql.SQL_DELETE_SCHEDULE, (key,))
            for r in rows:
                conn.execute(
                    self.sql.SQL_UPSERT_SCHEDULE,
                    {
                        "key": r.key, "namespace": r.namespace, "job_type": r.job_type,
                        "cron": r.cron, "args": json.dumps(r.args, sort_keys=True),
                        "channel": r.channel, "enabled": int(r.enabled), "now": now,
                    },
                )  # fmt: skip

    def schedules(self) -> list[ScheduleRow]:
        return [_schedule(r) for r in self._read(self.sql.SQL_SCHEDULES)]

    def set_schedule(
        self,
        key: str,
        *,
        interval_seconds: float | type[KEEP] | None = KEEP,
        enabled: bool | type[KEEP] | None = KEEP,
        now: float | None = None,
    ) -> ScheduleRow | None:
        now = self.now() if now is None else now
        with self._write() as conn:
            if conn.execute(self.sql.SQL_SCHEDULE, (key,)).fetchone() is None:
                return None
            if interval_seconds is not KEEP:
                since = None if interval_seconds is None else now
                conn.execute(
                    self.sql.SQL_SET_SCHEDULE_INTERVAL, (interval_seconds, since, now, key)
                )
            if enabled is not KEEP:
                value = None if enabled is None else int(bool(enabled))
                conn.execute(self.sql.SQL_SET_SCHEDULE_ENABLED, (value, now, key))
            row = conn.execute(self.sql.SQL_SCHEDULE, (key,)).fetchone()
            self._wake(conn)
        return _schedule(row)

    def fire_schedule(self, key: str, due: float, request: JobRequest) -> EnqueueResult | None:
        try:
            with self._write() as conn:
                if conn.execute(self.sql.SQL_FIRE_SCHEDULE, (due, key, due)).rowcount != 1:
                    return None
                if conn.execute(self.sql.SQL_RECORD_FIRING, (key, due, self.now())).rowcount != 1:
                    raise _RollBackError  # this due time has fired already
                job, coalesced = self._insert_or_coalesce(conn, request, due, due)
                self._wake(conn)
        except _RollBackError:
            return None
        return EnqueueResult(job, coalesced)

    # webhooks ----------------------------------------------------------------
    def accept_delivery(
        self,
        source: str,
        delivery_id: str,
        requests: Sequence[JobRequest],
        *,
        notices: Callable[[list[EnqueueResult]], Sequence[OutboxMessage]] | None = None,
        digest: str | None = None,
        counter: str | None = None,
        now: float | None = None,
    ) -> list[EnqueueResult] | None:
        now = self.now() if now is None else now
        results: list[EnqueueResult] = []
        stored: list[int] = []

        def tally(conn: Any, label: str) -> None:
            if counter is not None:
                conn.execute(self.sql.SQL_COUNT, (counter, label, 1))

        try:
            with self._write() as conn:
                insert = self.sql.SQL_INSERT_DIGEST  # nothing if the body was seen before
                if digest is not None and conn.execute(insert, (source, digest, now)).rowcount != 1:
                    tally(conn, "duplicate")  # a captured body, perhaps under a new delivery id
                    return None
                insert = self.sql.SQL_INSERT_DELIVERY
                if conn.execute(insert, (source, delivery_id, now)).rowcount != 1:
                    if digest is not None:
                        raise _RollBackError  # a new body under a used id: nor its digest kept
                    tally(conn, "duplicate")
                    return None
                for request in requests:
                    start_after = now + request.delay_seconds
                    job, coalesced = self._insert_or_coalesce(conn, request, now, start_after)
                    until = conn.execute(
                        self.sql.SQL_ACTIVE_SUPPRESSION_END,
                        (request.namespace, request.job_type, start_after, start_after),
                    ).fetchone()[0]
                    results.append(EnqueueResult(job, coalesced, (), until))
                if notices is not None:
                    stored = self._store(conn, notices(results), now)
                tally(conn, "accepted" if results else "ignored")
                if results or stored:
                    self._wake(conn)
        except _RollBackError:
            # Rolled back: the delivery id is not kept either, nor its count.
            if counter is not None:
                self.count(counter, "duplicate")
            return None
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
        now = self.now() if now is None else now
        body = json.dumps(request.to_dict(), ensure_ascii=False, sort_keys=True)
        with self._write() as conn:
            while True:
                code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
                if not conn.execute(self.sql.SQL_CONFIRMATION_EXISTS, (code,)).fetchone():
                    break
            row = conn.execute(
                self.sql.SQL_INSERT_CONFIRMATION,
                (code, request.namespace, request.job_type, body, requested_by,
                 requested_by_name, channel, thread_ts, json.dumps(list(confirmers)), summary,
                 now, now + expires_in),
            ).fetchone()  # fmt: skip
            offer = _confirmation(row)
            ids = self._store(conn, outbox(offer) if outbox else (), now)
            if ids:
                conn.execute(self.sql.SQL_CONFIRMATION_OFFER, (ids[0], code))
                offer = dataclasses.replace(offer, offer_id=ids[0])
            if ids:
                self._wake(conn)
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
        now = self.now() if now is None else now
        code = code.strip().upper()
        enqueued: EnqueueResult | None = None
        with self._write() as conn:
            row = conn.execute(self.sql.SQL_GET_CONFIRMATION_FOR_UPDATE, (code,)).fetchone()
            if row is None:
                return DecisionResult(Decision.NOT_FOUND)
            offer = _confirmation(row)
            if offer.state is not ConfirmationState.PENDING:
                return DecisionResult(Decision.ALREADY, offer)
            if offer.expires_at <= now:
                row = conn.execute(
                    self.sql.SQL_DECIDE_CONFIRMATION, ("expired", None, now, None, code)
                ).fetchone()
                decided = _confirmation(row)
                self._store(conn, outbox(decided, None) if outbox else (), now)
                decision = Decision.EXPIRED
            elif confirm:
                request = dataclasses.replace(offer.request, confirmed_by=by_name or by)
                start_after = now + request.delay_seconds
                job, coalesced = self._insert_or_coalesce(conn, request, now, start_after)
                running = conn.execute(
                    self.sql.SQL_RUNNING_OF_TYPE, (request.namespace, request.job_type)
                ).fetchall()
                enqueued = EnqueueResult(job, coalesced, tuple(_job(r) for r in running))
                row = conn.execute(
                    self.sql.SQL_DECIDE_CONFIRMATION, ("confirmed", by, now, job.id, code)
                ).fetchone()
                decided = _confirmation(row)
                self._store(conn, outbox(decided, job) if outbox else (), now)
                decision = Decision.CONFIRMED
            else:
                row = conn.execute(
                    self.sql.SQL_DECIDE_CONFIRMATION, ("cancelled", by, now, None, code)
                ).fetchone()
                decided = _confirmation(row)
                self._store(conn, outbox(decided, None) if outbox else (), now)
                decision = Decision.CANCELLED
            self._wake(conn)
        return DecisionResult(decision, decided, enqueued)

    def expire_confirmations(
        self,
        *,
        outbox: Callable[[Confirmation, Job | None], Sequence[OutboxMessage]] | None = None,
        now: float | None = None,
    ) -> list[Confirmation]:
        now = self.now() if now is None else now
        # A read first: the dispatcher asks on every turn, and mostly nothing is due.
        due = self._read(self.sql.SQL_CONFIRMATIONS_DUE, (now,))
        if not due:
            return []
        with self._write() as conn:
            expired = [
                _confirmation(r)
                for r in conn.execute(self.sql.SQL_EXPIRE_CONFIRMATIONS, {"now": now})
            ]
            for offer in expired:
                self._store(conn, outbox(offer, None) if outbox else (), now)
            if expired:
                self._wake(conn)
        return expired

    def get_confirmation(self, code: str) -> Confirmation | None:
        rows = self._read(self.sql.SQL_GET_CONFIRMATION, (code.strip().upper(),))
        return _confirmation(rows[0]) if rows else None

    def confirmations(
        self, *, states: Sequence[ConfirmationState] = (), limit: int = 50
    ) -> list[Confirmation]:
        sql = self.sql.SQL_CONFIRMATIONS
        params: list[object] = []
        if states:
            sql += f" WHERE state IN ({', '.join(self.sql.P for _ in states)})"
            params += [str(s) for s in states]
        sql += f" ORDER BY created_at DESC, code LIMIT {self.sql.P}"
        return [_confirmation(r) for r in self._read(sql, [*params, limit])]

    def job_locks(self, job_id: int) -> list[str]:
        return [r[0] for r in self._read(self.sql.SQL_JOB_LOCKS, (job_id,))]

    # on-call alerts -----------------------------------------------------------------
    def record_alerts(
        self,
        events: Sequence[AlertEvent],
        *,
        delivery: tuple[str, str] | None = None,
        outbox: Callable[[list[AlertChange]], Sequence[OutboxMessage]] | None = None,
        runbooks: Callable[[list[AlertChange]], Sequence[RunbookAnswerDraft]] | None = None,
        jobs: Callable[[AlertChange], Sequence[tuple[str, JobRequest]]] | None = None,
        now: float | None = None,
    ) -> list[AlertChange] | None:
        now = self.now() if now is None else now
        changes: list[AlertChange] = []
        queued_any = False
        with self._write() as conn:
            insert = self.sql.SQL_INSERT_DELIVERY
            if delivery is not None and conn.execute(insert, (*delivery, now)).rowcount != 1:
                return None
            self._serialize(conn, "alerts")  # one writer decides new-or-repeat at a time
            for event in events:
                rows = conn.execute(
                    self.sql.SQL_GET_ALERT_BY_KEY, (event.source, event.fingerprint)
                ).fetchall()
                current = _alert(rows[0]) if rows else None
                kind, v = _alert_change(current, event)
                labels = json.dumps(v["labels"], sort_keys=True)
                if current is None:
                    row = conn.execute(
                        self.sql.SQL_INSERT_ALERT,
                        (event.source, event.fingerprint, v["title"], v["service"],
                         v["severity"], labels, str(v["status"]), v["first_fired_at"],
                         v["last_fired_at"], v["resolved_at"], v["url"], now),
                    ).fetchone()  # fmt: skip
                else:
                    row = conn.execute(
                        self.sql.SQL_UPDATE_ALERT,
                        (v["title"], v["service"], v["severity"], labels, str(v["status"]),
                         v["last_fired_at"], v["resolved_at"], v["fire_count"], v["url"], now,
                         current.id),
                    ).fetchone()  # fmt: skip
                stored = _alert(row)
                if event.status is AlertStatus.FIRING and kind in (
                    AlertChangeKind.NEW,
                    AlertChangeKind.REFIRED,
                ):
                    conn.execute(self.sql.SQL_INSERT_ALERT_FIRING, (stored.id, event.at))
                    if stored.acknowledged_at is not None:
                        ack_row = conn.execute(self.sql.SQL_CLEAR_ALERT_ACK, (stored.id,))
                        stored = _alert(ack_row.fetchone())
                elif kind is AlertChangeKind.RESOLVED:
                    conn.execute(self.sql.SQL_RESOLVE_ALERT_FIRING, (event.at, stored.id))
                change = AlertChange(stored, kind, current.status if current else None)
                if jobs is not None:
                    queued = []
                    for key, request in jobs(change):
                        insert = self.sql.SQL_INSERT_DELIVERY
                        if conn.execute(insert, (ALERT_RULE_SOURCE, key, now)).rowcount != 1:
                            continue  # this firing queued the rule's job already
                        start_after = now + request.delay_seconds
                        job, _ = self._insert_or_coalesce(conn, request, now, start_after)
                        queued.append(job.id)
                    change = dataclasses.replace(change, jobs=tuple(queued))
                    queued_any = queued_any or bool(queued)
                changes.append(change)
            if runbooks is not None:
                self._store_answers(conn, runbooks(changes), now)
            said = self._store(conn, outbox(changes), now) if outbox is not None else []
            if queued_any or said:
                self._wake(conn)
        return changes

    def alert(self, alert_id: int) -> Alert | None:
        rows = self._read(self.sql.SQL_GET_ALERT, (alert_id,))
        return _alert(rows[0]) if rows else None

    def alerts(self, *, since: float = 0.0, limit: int = 500) -> list[Alert]:
        return [_alert(r) for r in self._read(self.sql.SQL_ALERTS, (since, limit))]

    # runbooks ---------------------------------------------------------------------
    def store_runbook_page(
        self, page: RunbookPageDraft, *, touch_only: bool = False, now: float | None = None
    ) -> PageChange:
        now = self.now() if now is None else now
        sql = self.sql
        with self._write() as conn:
            self._serialize(conn, f"runbook:{page.source}")
            row = conn.execute(sql.SQL_RUNBOOK_PAGE_HASH, (page.source, page.key)).fetchone()
            if row is not None and row[1] == page.content_hash:
                conn.execute(sql.SQL_RUNBOOK_TOUCH_PAGE, (now, row[0]))
                return PageChange(page.key, "unchanged", len(page.sections))
            if touch_only:
                return PageChange(page.key, "stale", 0)
            if row is None:
                (page_id,) = conn.execute(
                    sql.SQL_RUNBOOK_INSERT_PAGE,
                    (page.source, page.key, page.url, page.title, page.content_hash, now, now),
                ).fetchone()
            else:
                page_id = row[0]
                conn.execute(
                    sql.SQL_RUNBOOK_UPDATE_PAGE,
                    (page.url, page.title, page.content_hash, now, now, page_id),
                )
                conn.execute(sql.SQL_RUNBOOK_DROP_SECTIONS, (page_id,))
            self._many(
                conn,
                sql.SQL_RUNBOOK_INSERT_SECTION,
                [
                    (page_id, i, s.anchor, s.title, s.body, s.url)
                    for i, s in enumerate(page.sections)
                ],
            )
        return PageChange(page.key, "new" if row is None else "changed", len(page.sections))

    def prune_runbook_pages(self, source: str, keep: Collection[str]) -> list[str]:
        kept = set(keep)
        removed = []
        with self._write() as conn:
            self._serialize(conn, f"runbook:{source}")
            for row in conn.execute(self.sql.SQL_RUNBOOK_PAGES, (source, source)).fetchall():
                if row[2] not in kept:
                    conn.execute(self.sql.SQL_RUNBOOK_DELETE_PAGE, (row[0],))
                    removed.append(row[2])
        return removed

    def runbook_pages(self, source: str | None = None) -> list[RunbookPage]:
        return [RunbookPage(*r) for r in self._read(self.sql.SQL_RUNBOOK_PAGES, (source, source))]

    def runbook_section_count(self) -> int:
        return int(self._read(self.sql.SQL_RUNBOOK_SECTION_COUNT)[0][0])

    def search_runbooks(self, text: str, limit: int = 5) -> list[RunbookHit]:
        query = terms(text)
        if not query or limit <= 0:
            return []
        rows = self._read(
            self.sql.SQL_RUNBOOK_SEARCH,
            self.sql.runbook_search_params(query, max(RUNBOOK_CANDIDATES, limit)),
        )
        wanted = {stem(t) for t in query}
        known: set[str] = set()
        for row in rows:
            known |= stems_of(row[4], row[5]) & wanted
        hits = [
            RunbookHit(r[0], r[1], r[2], r[3], r[4], r[5], r[6], score(query, r[4], r[5], known))
            for r in rows
        ]
        # Equal scores: the section with more steps (numbered or bulleted lines) first.
        hits.sort(key=lambda h: (-h.score, -step_lines(h.body), h.section_id))
        return [h for h in hits if h.score > 0][:limit]

    def _store_answers(
        self, conn: Any, drafts: Sequence[RunbookAnswerDraft], now: float
    ) -> list[RunbookAnswer]:
        stored = []
        for d in drafts:
            row = conn.execute(
                self.sql.SQL_RUNBOOK_INSERT_ANSWER,
                (d.alert_id, d.fire_count, d.section_id, d.title, d.url, d.score, d.ref, now),
            ).fetchone()
            if row is not None:
                stored.append(RunbookAnswer(*row))
        return stored

    def record_runbook_answer(
        self, draft: RunbookAnswerDraft, *, now: float | None = None
    ) -> RunbookAnswer | None:
        now = self.now() if now is None else now
        with self._write() as conn:
            stored = self._store_answers(conn, [draft], now)
        return stored[0] if stored else None

    def runbook_answer(
        self, answer_id: int | None = None, *, ref: str | None = None
    ) -> RunbookAnswer | None:
        if ref is not None:
            rows = self._read(self.sql.SQL_RUNBOOK_ANSWER_BY_REF, (ref,))
        else:
            rows = self._read(self.sql.SQL_RUNBOOK_ANSWER, (answer_id,))
        return RunbookAnswer(*rows[0]) if rows else None

    def rate_runbook(
        self, answer_id: int, user: str, helpful: bool, *, now: float | None = None
    ) -> tuple[int, int] | None:
        now = self.now() if now is None else now
        with self._write() as conn:
            if not conn.execute(self.sql.SQL_RUNBOOK_ANSWER, (answer_id,)).fetchall():
                return None
            conn.execute(self.sql.SQL_RUNBOOK_RATE, (answer_id, user, int(helpful), now))
            yes, no = conn.execute(self.sql.SQL_RUNBOOK_RATING_COUNTS, (answer_id,)).fetchone()
        return int(yes), int(no)

    def runbook_answers(self, alert_ids: Sequence[int]) -> dict[int, RunbookAnswerSummary]:
        ids = [int(i) for i in alert_ids]
        if not ids:
            return {}
        sql = self.sql.SQL_RUNBOOK_ANSWERS_FOR.format(marks=", ".join(self.sql.P for _ in ids))
        return {
            int(r[0]): RunbookAnswerSummary(
                int(r[0]), int(r[1]), r[2], r[3], float(r[4]), int(r[5]), int(r[6])
            )
            for r in self._read(sql, ids)
        }

    def alert_by_key(self, source: str, fingerprint: str) -> Alert | None:
        rows = self._read(self.sql.SQL_GET_ALERT_BY_KEY, (source, fingerprint))
        return _alert(rows[0]) if rows else None

    def acknowledge_alert(
        self,
        alert_id: int,
        by: str,
        *,
        at: float | None = None,
        outbox: Callable[[Alert], Sequence[OutboxMessage]] | None = None,
    ) -> tuple[Alert, bool] | None:
        now = self.now()
        at = now if at is None else at
        with self._write() as conn:
            row = conn.execute(self.sql.SQL_ACKNOWLEDGE_ALERT, (at, by, now, alert_id)).fetchone()
            if row is None:
                rows = conn.execute(self.sql.SQL_GET_ALERT, (alert_id,)).fetchall()
                return (_alert(rows[0]), False) if rows else None
            alert = _alert(row)
            conn.execute(self.sql.SQL_ACKNOWLEDGE_ALERT_FIRING, (at, alert_id))
            if outbox is not None:
                self._store(conn, outbox(alert), now)
        return alert, True

    def alert_firings(self, since: float, until: float) -> list[AlertFiring]:
        rows = self._read(self.sql.SQL_ALERT_FIRINGS, (since, until))
        return [
            AlertFiring(
                int(a), float(f), None if r is None else float(r), None if k is None else float(k)
            )
            for a, f, r, k in rows
        ]

    def alerts_between(self, since: float, until: float) -> list[Alert]:
        rows = self._read(self.sql.SQL_ALERTS_BETWEEN, (since, until) * 3)
        return [_alert(r) for r in rows]

    # incidents --------------------------------------------------------------------
    def open_incident(
        self,
        draft: IncidentDraft,
        *,
        entries: Sequence[TimelineEntry] = (),
        outbox: Callable[[Incident], IncidentMessages] | None = None,
        now: float | None = None,
    ) -> Incident:
        now = self.now() if now is None else now
        with self._write() as conn:
            row = conn.execute(
                self.sql.SQL_INSERT_INCIDENT,
                (draft.channel_id, draft.channel_name, draft.description, draft.status,
                 draft.opened_by, draft.opened_by_name, now, json.dumps(list(draft.xnames)),
                 json.dumps(list(draft.tickets)), now),
            ).fetchone()  # fmt: skip
            incident = _incident(row)
            self._store_entries(conn, incident.id, entries, now)
            if outbox is None:
                return incident
            messages = outbox(incident)
            ids = {}
            for name in ("control", "digest"):
                message = getattr(messages, name)
                if message is not None:
                    ids[f"{name}_outbox"] = self._store(conn, [message], now)[0]
            self._store(conn, list(messages.others), now)
            if ids:
                incident = self._set_incident(conn, incident.id, ids, now)
            return incident

    def update_incident(
        self,
        incident_id: int,
        *,
        version: int | None,
        changes: Mapping[str, Any] | None = None,
        entries: Sequence[TimelineEntry] = (),
        outbox: Callable[[Incident], Sequence[OutboxMessage]] | None = None,
        now: float | None = None,
    ) -> Incident:
        changes = dict(changes or {})
        unknown = set(changes) - CHANGEABLE
        if unknown:
            raise ValueError(f"incidents have no changeable {', '.join(sorted(unknown))}")
        now = self.now() if now is None else now
        with self._write() as conn:
            rows = conn.execute(self.sql.SQL_GET_INCIDENT_FOR_UPDATE, (incident_id,)).fetchall()
            if not rows:
                raise KeyError(incident_id)
            current = _incident(rows[0])
            if version is not None and current.version != version:
                raise IncidentConflictError(
                    f"incident {incident_id} is at version {current.version}, not {version}"
                )
            incident = self._set_incident(conn, incident_id, changes, now)
            self._store_entries(conn, incident_id, entries, now)
            if outbox is not None:
                self._store(conn, outbox(incident), now)
            return incident

    def _set_incident(
        self, conn: Any, incident_id: int, changes: Mapping[str, Any], now: float
    ) -> Incident:
        names = sorted(changes)
        assignments = "".join(f"{name} = {self.sql.P}, " for name in names)
        row = conn.execute(
            self.sql.SQL_UPDATE_INCIDENT.format(assignments=assignments),
            [*(_incident_value(n, changes[n]) for n in names), now, incident_id],
        ).fetchone()
        return _incident(row)

    def _store_entries(
        self, conn: Any, incident_id: int, entries: Sequence[TimelineEntry], now: float
    ) -> None:
        self._many(
            conn,
            self.sql.SQL_INSERT_INCIDENT_EVENT,
            [
                (incident_id, now if e.at is None else e.at, str(e.kind), e.user, e.user_name,
                 e.text, json.dumps(dict(e.data), sort_keys=True))
                for e in entries
            ],
        )  # fmt: skip

    def incident(self, incident_id: int) -> Incident | None:
        rows = self._read(self.sql.SQL_GET_INCIDENT, (incident_id,))
        return _incident(rows[0]) if rows else None

    def incident_by_channel(self, channel_id: str) -> Incident | None:
        rows = self._read(self.sql.SQL_INCIDENT_BY_CHANNEL, (channel_id,))
        return _incident(rows[0]) if rows else None

    def incidents(self, *, resolved_since: float | None = None, limit: int = 100) -> list[Incident]:
        since = -1.0 if resolved_since is None else resolved_since
        return [_incident(r) for r in self._read(self.sql.SQL_INCIDENTS, (since, limit))]

    def incident_timeline(self, incident_id: int) -> list[TimelineEntry]:
        return [
            _incident_entry(r) for r in self._read(self.sql.SQL_INCIDENT_EVENTS, (incident_id,))
        ]

    # closing the loop (hardware rules) ------------------------------------------
    def loop_memory(self, xnames: Sequence[str]) -> dict[str, Memory]:
        rows = self._read(self.sql.SQL_LOOP_MEMORY, (json.dumps(list(xnames)),))
        return {r[0]: Memory(r[0], r[1], r[2], bool(r[3]), r[4], r[5], float(r[6])) for r in rows}

    def remember_loop(self, memories: Sequence[Memory], *, now: float | None = None) -> None:
        now = self.now() if now is None else now
        with self._write() as conn:
            self._many(
                conn,
                self.sql.SQL_REMEMBER_LOOP,
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
                    for m in sorted(memories, key=lambda m: m.xname)
                ],
            )

    # web sessions -----------------------------------------------------------
    def open_session(
        self, id_hash: str, user: str, *, max_age: float, now: float | None = None
    ) -> None:
        now = self.now() if now is None else now
        with self._write() as conn:
            conn.execute(self.sql.SQL_EXPIRE_SESSIONS, (now - max_age,))
            conn.execute(self.sql.SQL_OPEN_SESSION, (id_hash, user, now))

    def session_user(self, id_hash: str, *, max_age: float, now: float | None = None) -> str | None:
        now = self.now() if now is None else now
        rows = self._read(self.sql.SQL_SESSION_USER, (id_hash, now - max_age))
        return rows[0][0] if rows else None

    def close_session(self, id_hash: str) -> bool:
        with self._write() as conn:
            return conn.execute(self.sql.SQL_CLOSE_SESSION, (id_hash,)).rowcount > 0

    def close_user_sessions(self, user: str) -> int:
        with self._write() as conn:
            return conn.execute(self.sql.SQL_CLOSE_USER_SESSIONS, (user,)).rowcount

    # throttling ---------------------------------------------------------------
    def throttle_hit(
        self, key: str, expiry: float, amount: int = 1, *, now: float | None = None
    ) -> int:
        now = self.now() if now is None else now
        params = {"key": key, "amount": amount, "now": now, "expiry": expiry}
        with self._write() as conn:
            return int(conn.execute(self.sql.SQL_THROTTLE_HIT, params).fetchone()[0])

    def throttle_get(self, key: str, *, now: float | None = None) -> tuple[int, float | None]:
        now = self.now() if now is None else now
        rows = self._read(self.sql.SQL_THROTTLE_GET, (key, now))
        return (int(rows[0][0]), float(rows[0][1])) if rows else (0, None)

    def throttle_clear(self, key: str | None = None) -> int:
        with self._write() as conn:
            if key is None:
                return conn.execute(self.sql.SQL_THROTTLE_CLEAR_ALL).rowcount
            return conn.execute(self.sql.SQL_THROTTLE_CLEAR, (key,)).rowcount

    def count(self, name: str, label: str, by: int = 1) -> None:
        with self._write() as conn:
            conn.execute(self.sql.SQL_COUNT, (name, label, by))

    def counters(self, name: str) -> dict[str, int]:
        return dict(self._read(self.sql.SQL_COUNTERS, (name,)))

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
        now = self.now() if now is None else now
        with self._write() as conn:
            conn.execute(self.sql.SQL_BEAT, (component, hostname, pid, state, detail, now))

    def beats(self) -> list[Beat]:
        return [Beat(*r) for r in self._read(self.sql.SQL_BEATS)]

    # hardware ----------------------------------------------------------------
    @staticmethod
    def _health_params(rows: Sequence[NodeHealthRow]) -> list[tuple[object, ...]]:
        """Sorted by xname: two writers then take their row locks in one order (no deadlock)."""
        return [
            (r.xname, r.state, r.checked_at, json.dumps(r.data, ensure_ascii=False), r.job_id)
            for r in sorted(rows, key=lambda r: r.xname)
        ]

    def record_node_health(self, rows: Sequence[NodeHealthRow]) -> int:
        if not rows:
            return 0
        with self._write() as conn:
            return self._many(conn, self.sql.SQL_NODE_HEALTH_UPSERT, self._health_params(rows))

    def node_health(self, xnames: Sequence[str] | None = None) -> dict[str, NodeHealthRow]:
        if xnames is None:
            rows = self._read(self.sql.SQL_NODE_HEALTH)
        else:
            names = list(dict.fromkeys(xnames))
            rows = self._read(self.sql.SQL_NODE_HEALTH_OF, (json.dumps(names),))
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
                self.sql.SQL_INSERT_SWEEP,
                (scope, started_at, finished_at, job_id, json.dumps(data, ensure_ascii=False)),
            ).fetchone()
            self._many(conn, self.sql.SQL_NODE_HEALTH_UPSERT, self._health_params(results))
            conn.execute(self.sql.SQL_PRUNE_SWEEPS, (scope, scope, max(1, keep)))
        return SweepRow(sweep_id, scope, started_at, finished_at, data, job_id)

    def last_sweep(self, scope: str, *, before_id: int | None = None) -> SweepRow | None:
        rows = self._read(
            self.sql.SQL_LAST_SWEEP, (scope, MAX_ID if before_id is None else before_id)
        )
        if not rows:
            return None
        id_, scope_, started, finished, results, job_id = rows[0]
        return SweepRow(id_, scope_, started, finished, json.loads(results), job_id)

    # reading ---------------------------------------------------------------
    def job_counts(self) -> list[JobCount]:
        return [
            JobCount(ns, jt, JobStatus(status), ReportState(report), n)
            for ns, jt, status, report, n in self._read(self.sql.SQL_JOB_COUNTS)
        ]

    def job_timings(self, *, since: float, limit: int = 100_000) -> list[JobTiming]:
        return [
            JobTiming(id_, ns, jt, JobStatus(status), created, due, started, finished)
            for id_, ns, jt, status, created, due, started, finished in self._read(
                self.sql.SQL_JOB_TIMINGS, (since, limit)
            )
        ]

    def running_jobs(self) -> list[Job]:
        return [_job(r) for r in self._read(self.sql.SQL_RUNNING_ALL)]  # the partial index: no scan

    def get(self, job_id: int) -> Job | None:
        if not 0 < job_id <= MAX_ID:
            return None  # no row can have it (SQLite would raise OverflowError)
        rows = self._read(self.sql.SQL_GET, (job_id,))
        return _job(rows[0]) if rows else None

    def requesters(self, job_id: int) -> list[JobRequester]:
        return [_requester(r) for r in self._read(self.sql.SQL_REQUESTERS, (job_id,))]

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
            where.append(f"namespace = {self.sql.P}")
            params.append(namespace)
        if hidden:
            where.append(f"namespace NOT IN ({', '.join(self.sql.P for _ in hidden)})")
            params.extend(hidden)
        if statuses:
            where.append(f"status IN ({', '.join(self.sql.P for _ in statuses)})")
            params.extend(str(s) for s in statuses)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        sql = f"{self.sql.SQL_JOBS} {clause} ORDER BY id DESC LIMIT {self.sql.P}"
        return [_job(r) for r in self._read(sql, (*params, limit))]

    def suppressions(self, *, active_at: float | None = None) -> list[Suppression]:
        if active_at is None:
            return [
                _suppression(r)
                for r in self._read(self.sql.SQL_SUPPRESSIONS + " ORDER BY start_at")
            ]
        return [_suppression(r) for r in self._read(self.sql.SQL_ACTIVE_SUPPRESSIONS, (active_at,))]

    def next_due(self, *, now: float | None = None) -> float | None:
        if now is None:
            return self._read(self.sql.SQL_NEXT_DUE)[0][0]
        return self._read(self.sql.SQL_NEXT_DUE_AFTER, (now,))[0][0]

    # moving a site (stat-bot db copy: queue/copy.py) ----------------------------
    @abc.abstractmethod
    def schema_version(self) -> int | None:
        """The schema version the database is at, or None before its first migration."""

    def expected_schema_version(self) -> int:
        """The version this STAT bot's migrations bring a database to."""
        return len(self.sql.MIGRATIONS)

    def table_columns(self, table: str) -> list[str]:
        """A table's columns in order (empty for a table the database does not have)."""
        return [r[0] for r in self._read(self.sql.SQL_TABLE_COLUMNS, (table,))]

    def table_count(self, table: str) -> int:
        return self._read(f'SELECT count(*) FROM "{_known(self, table)}"')[0][0]

    def dump_rows(self, table: str, columns: Sequence[str]) -> Iterator[tuple]:
        names = ", ".join(f'"{c}"' for c in columns)
        yield from self._read(f'SELECT {names} FROM "{_known(self, table)}"')

    def load_rows(
        self,
        table: str,
        columns: Sequence[str],
        batches: Iterator[Sequence[tuple]],
        *,
        replace: bool = False,
    ) -> None:
        """Insert rows keeping their keys, or bring a row with the same key up to date
        (a job that ended since the last copy, a message delivered, a session closed);
        one transaction for the table, after which new ids continue above the copied ones.
        `replace`: the table's rows are the source's alone (rows not there are deleted)."""
        names = ", ".join(f'"{c}"' for c in columns)
        marks = ", ".join(self.sql.P for _ in columns)
        keys = [r[0] for r in self._read(self.sql.SQL_TABLE_KEY, (_known(self, table),))]
        rest = [c for c in columns if c not in keys]
        conflict = "ON CONFLICT DO NOTHING"
        if keys and rest:
            key = ", ".join(f'"{k}"' for k in keys)
            update = ", ".join(f'"{c}" = excluded."{c}"' for c in rest)
            conflict = f"ON CONFLICT ({key}) DO UPDATE SET {update}"
        sql = f'INSERT INTO "{table}" ({names}) VALUES ({marks}) {conflict}'
        with self._write() as conn:
            if replace:
                conn.execute(f'DELETE FROM "{table}"')
            for batch in batches:
                self._many(conn, sql, batch)
            if "id" in columns and self.sql.SQL_RESET_ID:
                conn.execute(self.sql.SQL_RESET_ID.format(table=table), (table,))


def _known(queue: RelationalQueue, table: str) -> str:
    """`table`, if it is one of the queue's own (names are put into SQL text)."""
    if not queue.table_columns(table):
        raise ValueError(f"no table {table!r} in the queue database")
    return table
