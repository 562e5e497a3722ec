"""The queue interface every backend implements.

The dispatcher, the bot, the web server and the CLI speak only to this
interface, so a PostgreSQL backend can stand beside the SQLite one without any
of them changing. Each method is one transaction: a caller never sees a
half-written job.
"""

from __future__ import annotations

import abc
import enum
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from stat_bot.hardware.loop import Memory
from stat_bot.jobs.model import Job, JobRequest, JobRequester, JobStatus, ReportState
from stat_bot.queue.alert_model import Alert, AlertChange, AlertEvent, AlertFiring
from stat_bot.queue.incident_model import Incident, IncidentDraft, IncidentMessages, TimelineEntry
from stat_bot.queue.runbook_model import (
    PageChange,
    RunbookAnswer,
    RunbookAnswerDraft,
    RunbookAnswerSummary,
    RunbookHit,
    RunbookPage,
    RunbookPageDraft,
)

T = TypeVar("T")


class KEEP:
    """Sentinel for "leave this as it is" where None already means "clear the override"."""


class QueueError(Exception):
    """The queue could not do what was asked (for example, the database is unreachable)."""


class QueueMissingError(QueueError):
    """There is no database where the settings say (never created, or deleted while in use)."""


class QueueBusyError(QueueError):
    """A call made with `call_nowait` found another writer holding the lock; nothing was done."""


@dataclass(frozen=True, slots=True)
class EnqueueResult:
    """What enqueue did: the job, whether it merged into one already queued, and what runs."""

    job: Job
    coalesced: bool = False
    running: tuple[Job, ...] = ()
    suppressed_until: float | None = None


class CancelOutcome(enum.StrEnum):
    NOT_FOUND = "not_found"
    CANCELLED = "cancelled"  # was queued, now cancelled
    REQUESTED = "requested"  # was running; its dispatcher will stop it
    ALREADY_FINISHED = "already_finished"


@dataclass(frozen=True, slots=True)
class CancelResult:
    outcome: CancelOutcome
    job: Job | None = None


@dataclass(frozen=True, slots=True)
class Suppression:
    id: int
    namespace: str
    job_type: str
    start_at: float
    end_at: float
    user: str | None = None


@dataclass(frozen=True, slots=True)
class ScheduleRow:
    """A schedule as the queue keeps it: the config's cron and when it last fired.

    `interval_seconds` and `enabled_override` are changes made from the web (the
    active-tickets interval, enable/disable): kept apart from the config's values so
    they survive restarts and config reloads. With an interval the schedule fires at
    `interval_since + k * interval_seconds` (k >= 1) instead of at its cron times.
    `enabled` is what is in force: the override if there is one, else the config's.
    """

    key: str
    namespace: str
    job_type: str
    cron: str
    args: dict[str, str] = field(default_factory=dict)
    channel: str | None = None
    enabled: bool = True
    last_fired_at: float | None = None
    interval_seconds: float | None = None
    interval_since: float | None = None
    enabled_override: bool | None = None
    has_fired: bool = True  # False until its first fire (last_fired_at is then when it was added)


@dataclass(frozen=True, slots=True)
class Beat:
    """A long-running component's latest word on its health (the bot: connected or not)."""

    component: str
    hostname: str
    pid: int
    state: str
    detail: str
    at: float


@dataclass(frozen=True, slots=True)
class JobCount:
    namespace: str
    job_type: str
    status: JobStatus
    report_state: ReportState
    count: int


@dataclass(frozen=True, slots=True)
class JobTiming:
    """When a job was asked for, due, started and finished: for charts and histograms."""

    id: int
    namespace: str
    job_type: str
    status: JobStatus
    created_at: float
    start_after: float
    started_at: float | None
    finished_at: float | None


@dataclass(frozen=True, slots=True)
class Worker:
    id: str
    hostname: str
    pid: int
    started_at: float
    heartbeat_at: float


@dataclass(frozen=True, slots=True)
class Recovered:
    """A job whose dispatcher died: re-queued while retries remain, otherwise lost.

    `pid` is the process group the lost attempt ran in (a re-queued job's row no
    longer holds it), so the recovering dispatcher can kill what is left of it.
    """

    job: Job
    requeued: bool
    worker: Worker | None
    pid: int | None = None


class OutboxState(enum.StrEnum):
    """Where a message STAT bot sends on its own is on its way to Slack."""

    PENDING = "pending"  # waiting for its first try or a retry
    DELIVERED = "delivered"  # Slack accepted it
    FAILED = "failed"  # Slack refused it for good (channel_not_found, ...)
    EXPIRED = "expired"  # not accepted before its expiry: given up, and said so
    DROPPED = "dropped"  # superseded before it was sent (a progress note once the job ended)


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """A message to send, written in the same transaction as the change that causes it.

    `payload` is opaque here (report/outbox.py encodes and decodes it): the queue keeps
    messages, it does not know what they say. `kind` is for people and metrics (report,
    start, progress, repost, notice, relay); a `progress` message is kept once per job
    and re-armed by each new note instead of piling up.
    """

    kind: str
    payload: str
    channel: str | None = None
    job_id: int | None = None
    expires_at: float | None = None  # None: the queue's default expiry from now
    ref: str | None = None  # what caused it ("trac:<event id>"), to find it again


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """A stored outbox message with its delivery state."""

    id: int
    kind: str
    payload: str
    channel: str | None
    job_id: int | None
    state: OutboxState
    created_at: float
    expires_at: float
    attempts: int
    next_attempt_at: float
    last_error: str | None
    parts_done: int
    posted_channel: str | None
    ts: str | None
    delivered_at: float | None
    version: int
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class OutboxSummary:
    """What /metrics, /readyz, `status` and the dashboard say about undelivered messages."""

    undelivered: int
    oldest_created_at: float | None
    by_state: dict[str, int] = field(default_factory=dict)
    last_error: str | None = None


@dataclass(frozen=True, slots=True)
class NodeHealthRow:
    """A node's latest health as a hardware check recorded it (`data`: NodeHealth.to_dict())."""

    xname: str
    state: str
    checked_at: float
    data: dict[str, Any]
    job_id: int | None = None


@dataclass(frozen=True, slots=True)
class SweepRow:
    """One finished hardware sweep: its scope (the target as typed), when, and every result."""

    id: int
    scope: str
    started_at: float
    finished_at: float
    results: list[dict[str, Any]]
    job_id: int | None = None


class ConfirmationState(enum.StrEnum):
    """Where an offer to run a guarded job stands."""

    PENDING = "pending"
    CONFIRMED = "confirmed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class Confirmation:
    """A guarded job offered with Confirm/Cancel buttons, waiting for someone allowed to answer.

    `request` is the job as it will be queued (its nodes and locks computed already);
    `confirmers` who besides the requester may confirm (user ids and @group handles);
    `offer_id` the outbox message carrying the buttons, which every decision edits.
    """

    code: str
    request: JobRequest
    requested_by: str | None
    channel: str | None
    thread_ts: str | None
    summary: str
    created_at: float
    expires_at: float
    state: ConfirmationState = ConfirmationState.PENDING
    confirmers: tuple[str, ...] = ()
    requested_by_name: str | None = None
    decided_by: str | None = None
    decided_at: float | None = None
    job_id: int | None = None
    offer_id: int | None = None


class Decision(enum.StrEnum):
    """What `decide_confirmation` did."""

    CONFIRMED = "confirmed"  # the job is queued
    CANCELLED = "cancelled"
    EXPIRED = "expired"  # too late: marked expired now, nothing queued
    ALREADY = "already"  # decided before (by someone else, or a second click): nothing changed
    NOT_FOUND = "not_found"


@dataclass(frozen=True, slots=True)
class DecisionResult:
    decision: Decision
    confirmation: Confirmation | None = None
    enqueued: EnqueueResult | None = None


class WakeupListener(abc.ABC):
    """A file descriptor that becomes readable when the queue changed (new job, cancel, ...)."""

    @abc.abstractmethod
    def fileno(self) -> int: ...

    @abc.abstractmethod
    def drain(self) -> None:
        """Consume pending notifications so the descriptor is quiet until the next one."""

    @abc.abstractmethod
    def close(self) -> None: ...


class Queue(abc.ABC):
    """A durable job queue shared by every STAT bot process."""

    # lifecycle -------------------------------------------------------------
    @abc.abstractmethod
    def migrate(self) -> int:
        """Create or upgrade the schema; returns the schema version now in force."""

    @abc.abstractmethod
    def close(self) -> None: ...

    # writing ---------------------------------------------------------------
    @abc.abstractmethod
    def enqueue(self, request: JobRequest, *, now: float | None = None) -> EnqueueResult:
        """Add a job, or merge the request into a queued job and keep its requester.

        `request.coalesce` True merges into a queued job of the same type and the same
        args; "type" into any queued job of the type, whose args become the request's;
        False never merges. A merged request's requester is stored in the same
        transaction (see `requesters`); the job keeps its first requester.
        """

    @abc.abstractmethod
    def claim(self, worker_id: str, limit: int, *, now: float | None = None) -> list[Job]:
        """Atomically move up to `limit` due jobs to running, honouring concurrency and suppressions.

        An exclusive job (one with lock keys, `JobRequest.locks`) is skipped while a running
        job holds a key that overlaps one of its own (one is a prefix of the other: the same
        xname or an ancestor); jobs without locks never wait for locks.
        """

    @abc.abstractmethod
    def mark_started(
        self, job_id: int, pid: int, log_dir: str, *, outbox: Sequence[OutboxMessage] = ()
    ) -> None:
        """Record the process group and log folder of a job that has just been spawned.

        `outbox`: its start notice, stored in the same transaction.
        """

    @abc.abstractmethod
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
        """End a running job; False if it was no longer running (for example, declared lost).

        Whether, not the row: the one caller (the dispatcher) has the job already, and
        reading the whole row back cost about as much as the update (BENCHMARKS.md).

        `worker_id`: only if that dispatcher runs it, so a dispatcher cut off from the
        database for longer than LOST_AFTER, whose job was re-queued and claimed by
        another meanwhile, cannot record its copy's end over the new run.

        `outbox`: its report, stored in the same transaction, and only if the job was
        still running (a job declared lost meanwhile is reported by its recovery). The
        job's unsent progress note is dropped: the report replaces it. `progress` False
        says it has none (the dispatcher knows which jobs it tried to write one for),
        which spares that statement on the end of nearly every job.
        """

    @abc.abstractmethod
    def heartbeat(self, worker_id: str, *, now: float | None = None) -> list[int]:
        """Say this worker and its jobs are alive; returns ids of its jobs asked to cancel."""

    @abc.abstractmethod
    def cancel_requests(self, worker_id: str) -> list[int]:
        """Ids of this worker's running jobs someone asked to cancel (a read: no lock).

        The dispatcher asks on every turn while it runs jobs, so a cancel reaches a job
        between heartbeats; `heartbeat` returns the same ids.
        """

    @abc.abstractmethod
    def request_cancel(self, job_id: int, *, now: float | None = None) -> CancelResult: ...

    @abc.abstractmethod
    def cancel_queued(
        self, namespace: str, job_type: str, *, now: float | None = None
    ) -> list[Job]:
        """Cancel every queued job of a type (ebmbot's cancel_job action)."""

    @abc.abstractmethod
    def suppress(
        self, namespace: str, job_type: str, start_at: float, end_at: float, user: str | None = None
    ) -> Suppression: ...

    @abc.abstractmethod
    def unsuppress(self, namespace: str, job_type: str) -> int:
        """Remove the suppressions of a type; returns how many there were."""

    @abc.abstractmethod
    def record_report(self, job_id: int, state: ReportState, error: str | None = None) -> None: ...

    @abc.abstractmethod
    def prune(self, before: float) -> list[Job]:
        """Delete finished jobs older than `before` and expired suppressions; returns the jobs."""

    # workers ---------------------------------------------------------------
    @abc.abstractmethod
    def register_worker(
        self, worker_id: str, hostname: str, pid: int, *, now: float | None = None
    ) -> None: ...

    @abc.abstractmethod
    def unregister_worker(self, worker_id: str) -> None: ...

    @abc.abstractmethod
    def workers(self) -> list[Worker]: ...

    @abc.abstractmethod
    def recover_lost(
        self,
        is_dead: Callable[[Worker], bool],
        *,
        notices: Callable[[Recovered], Sequence[OutboxMessage]] | None = None,
        now: float | None = None,
    ) -> list[Recovered]:
        """Re-queue or mark lost the running jobs of workers `is_dead` judges gone.

        `notices` gives the messages that tell each job's asker, stored in the same
        transaction as the change they report.
        """

    # schedules ---------------------------------------------------------------
    @abc.abstractmethod
    def sync_schedules(self, rows: Sequence[ScheduleRow], *, now: float | None = None) -> None:
        """Make the stored schedules match the config, keeping when each last fired."""

    @abc.abstractmethod
    def schedules(self) -> list[ScheduleRow]: ...

    @abc.abstractmethod
    def fire_schedule(self, key: str, due: float, request: JobRequest) -> EnqueueResult | None:
        """Enqueue for one due time of a schedule, at most once however many dispatchers ask."""

    @abc.abstractmethod
    def set_schedule(
        self,
        key: str,
        *,
        interval_seconds: float | type[KEEP] | None = KEEP,
        enabled: bool | type[KEEP] | None = KEEP,
        now: float | None = None,
    ) -> ScheduleRow | None:
        """Override a schedule's interval and/or enabled state (None: back to the config's).

        Returns the schedule as it is now, or None if there is no schedule `key`.
        """

    # webhooks ----------------------------------------------------------------
    @abc.abstractmethod
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
        """Record a webhook delivery and enqueue its jobs, in one transaction.

        None, with nothing enqueued, if `delivery_id` was already accepted from
        `source` (a replay or a redelivery): each delivery enqueues exactly once.
        `notices` turns what was enqueued into the messages the delivery causes (the
        ticket in the STAT channel, a suppressed deploy's notice), stored with it.
        Likewise when `digest` (a hash of the signed body) was already accepted from
        `source`: a captured body sent again under a new delivery id. Both are kept
        until `prune` drops deliveries older than its cutoff.

        With `counter`, the delivery is also counted there (as `count` would), once, in
        the same transaction: `accepted` (jobs enqueued), `ignored` (none) or `duplicate`.
        A webhook route's busiest path then takes the write lock once instead of twice.
        """

    # confirmations (guarded jobs: confirm before they are queued) ---------------
    @abc.abstractmethod
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
        """Store a pending confirmation under a new unguessable code, with its offer.

        `outbox` turns the stored confirmation (its code known) into the message with the
        buttons, stored in the same transaction; the first is the offer every decision edits.
        """

    @abc.abstractmethod
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
        """Confirm (enqueue the job with `confirmed_by`) or cancel, in ONE transaction.

        Only a pending confirmation changes: one past its expiry becomes expired instead
        (nothing queued), one decided before is returned as it is (Decision.ALREADY), so
        a second click, from anyone, queues nothing. `outbox` gives the messages the
        change causes (the offer edited to say what happened), stored with it. Whether
        `by` may decide is the caller's check, made before (a refusal changes nothing).
        """

    @abc.abstractmethod
    def expire_confirmations(
        self,
        *,
        outbox: Callable[[Confirmation, Job | None], Sequence[OutboxMessage]] | None = None,
        now: float | None = None,
    ) -> list[Confirmation]:
        """Mark pending confirmations past their expiry expired, with their messages."""

    @abc.abstractmethod
    def get_confirmation(self, code: str) -> Confirmation | None: ...

    @abc.abstractmethod
    def confirmations(
        self, *, states: Sequence[ConfirmationState] = (), limit: int = 50
    ) -> list[Confirmation]:
        """Newest first."""

    @abc.abstractmethod
    def job_locks(self, job_id: int) -> list[str]:
        """The lock keys an exclusive job holds while it runs (jobs/targets.py)."""

    # closing the loop (hardware rules: stat_bot/tasks/hw_loop.py) ----------------
    @abc.abstractmethod
    def loop_memory(self, xnames: Sequence[str]) -> dict[str, Memory]:
        """What the hardware rules remember about these xnames (absent: nothing yet)."""

    @abc.abstractmethod
    def remember_loop(self, memories: Sequence[Memory], *, now: float | None = None) -> None:
        """Store (replace) what the hardware rules remember about each memory's xname."""

    # incidents (stat_bot/incidents/) ---------------------------------------
    @abc.abstractmethod
    def open_incident(
        self,
        draft: IncidentDraft,
        *,
        entries: Sequence[TimelineEntry] = (),
        outbox: Callable[[Incident], IncidentMessages] | None = None,
        now: float | None = None,
    ) -> Incident:
        """Store a new incident, its first timeline entries and the messages it causes,
        in one transaction; the control and digest messages' outbox ids are kept on it."""

    @abc.abstractmethod
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
        """Change an incident (only the columns of incident_model.CHANGEABLE), add timeline
        entries and store the messages the new state causes, in one transaction.

        With `version`, the change applies only to that version (IncidentConflictError
        otherwise: read again and decide again); every update makes a new version.
        KeyError for an unknown incident.
        """

    @abc.abstractmethod
    def incident(self, incident_id: int) -> Incident | None:
        """One incident by number."""

    @abc.abstractmethod
    def incident_by_channel(self, channel_id: str) -> Incident | None:
        """The incident whose Slack channel this is (the newest, should ids repeat)."""

    @abc.abstractmethod
    def incidents(self, *, resolved_since: float | None = None, limit: int = 100) -> list[Incident]:
        """Open incidents and those resolved at or after `resolved_since` (None: all),
        newest first."""

    @abc.abstractmethod
    def incident_timeline(self, incident_id: int) -> list[TimelineEntry]:
        """An incident's stored timeline entries, oldest first."""

    # on-call alerts (stat_bot/oncall/) ---------------------------------------
    @abc.abstractmethod
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
        """Record alert events and the messages they cause, in one transaction.

        `runbooks`: the runbook sections answering the changes (stored before the
        messages, in the same transaction; a firing already answered keeps its answer).

        An event for a (source, fingerprint) seen before changes that alert: fired again
        (counted), reported again (the same start: not counted), resolved. With
        `delivery` (source, id), a delivery seen before records nothing: None.
        `jobs` gives, for each change, the jobs its alert rules ask for, each under a
        dedupe key: a key seen before (kept as an `alert-rule` delivery) queues nothing,
        so one firing queues a rule's job once. The changes handed to `outbox` carry the
        ids of the jobs queued for them.
        """

    @abc.abstractmethod
    def alert(self, alert_id: int) -> Alert | None:
        """One alert by id."""

    @abc.abstractmethod
    def alerts(self, *, since: float = 0.0, limit: int = 500) -> list[Alert]:
        """Alerts that fired at or after `since`, the latest first."""

    # runbooks (stat_bot/oncall/runbook_index.py, runbook_match.py) ---------
    @abc.abstractmethod
    def store_runbook_page(
        self, page: RunbookPageDraft, *, touch_only: bool = False, now: float | None = None
    ) -> PageChange:
        """Store a page read from a source: its sections are replaced (in one transaction)
        only when its content hash changed; otherwise only its fetched time moves.

        `touch_only`: the caller did not parse the page, believing its hash unchanged; if
        the stored hash differs after all (another run stored a newer version meanwhile),
        nothing is written and the change is "stale": parse it and store it in full."""

    @abc.abstractmethod
    def prune_runbook_pages(self, source: str, keep: Collection[str]) -> list[str]:
        """Delete the source's pages whose key is not in `keep` (gone from the source);
        the keys removed. A page that could not be read this time belongs in `keep`."""

    @abc.abstractmethod
    def runbook_pages(self, source: str | None = None) -> list[RunbookPage]:
        """The stored pages (of one source), by source and key."""

    @abc.abstractmethod
    def runbook_section_count(self) -> int:
        """How many sections the index holds (0: never indexed)."""

    @abc.abstractmethod
    def search_runbooks(self, text: str, limit: int = 5) -> list[RunbookHit]:
        """Sections matching the words of `text`, best first, each with a 0..1 score that
        both backends compute alike; sections sharing no word with it are not returned."""

    @abc.abstractmethod
    def record_runbook_answer(
        self, draft: RunbookAnswerDraft, *, now: float | None = None
    ) -> RunbookAnswer | None:
        """Record the section posted for an alert firing; None if that firing has one."""

    @abc.abstractmethod
    def runbook_answer(
        self, answer_id: int | None = None, *, ref: str | None = None
    ) -> RunbookAnswer | None:
        """One answer by id, or by the outbox ref of the reply that posted it."""

    @abc.abstractmethod
    def rate_runbook(
        self, answer_id: int, user: str, helpful: bool, *, now: float | None = None
    ) -> tuple[int, int] | None:
        """A person's rating of an answer (one per person: a new click changes it); the
        answer's (helpful, not helpful) counts after it, or None for no such answer."""

    @abc.abstractmethod
    def runbook_answers(self, alert_ids: Sequence[int]) -> dict[int, RunbookAnswerSummary]:
        """Per alert id (those answered), its latest answer's section and rating counts."""

    @abc.abstractmethod
    def alert_by_key(self, source: str, fingerprint: str) -> Alert | None:
        """The alert of a source's fingerprint (a PagerDuty incident id)."""

    @abc.abstractmethod
    def acknowledge_alert(
        self,
        alert_id: int,
        by: str,
        *,
        at: float | None = None,
        outbox: Callable[[Alert], Sequence[OutboxMessage]] | None = None,
    ) -> tuple[Alert, bool] | None:
        """Acknowledge an alert: the first acknowledgement wins, later ones change nothing.

        Returns the alert and whether this call acknowledged it (False: it was already,
        and `outbox` is not called); None when there is no such alert. The messages the
        acknowledgement causes are written in the same transaction.
        """

    @abc.abstractmethod
    def alert_firings(self, since: float, until: float) -> list[AlertFiring]:
        """Every firing in [since, until), oldest first: for counts by day and by alert."""

    @abc.abstractmethod
    def alerts_between(self, since: float, until: float) -> list[Alert]:
        """Alerts that fired, resolved or were acknowledged in [since, until), by id."""

    # web sessions (held on the server, so logout ends them) ----------------
    @abc.abstractmethod
    def open_session(
        self, id_hash: str, user: str, *, max_age: float, now: float | None = None
    ) -> None:
        """Record a dashboard session (by a hash of its id); drops those older than `max_age`."""

    @abc.abstractmethod
    def session_user(self, id_hash: str, *, max_age: float, now: float | None = None) -> str | None:
        """The user of a session still open and younger than `max_age` seconds, else None."""

    @abc.abstractmethod
    def close_session(self, id_hash: str) -> bool:
        """End one session (logout); True if it was open."""

    @abc.abstractmethod
    def close_user_sessions(self, user: str) -> int:
        """End every session of a user; returns how many there were."""

    # throttling (rate-limit counters every web worker shares) ---------------
    @abc.abstractmethod
    def throttle_hit(
        self, key: str, expiry: float, amount: int = 1, *, now: float | None = None
    ) -> int:
        """Add to `key`'s count in its window (a new window of `expiry` s if none is open)."""

    @abc.abstractmethod
    def throttle_get(self, key: str, *, now: float | None = None) -> tuple[int, float | None]:
        """`key`'s count in its open window and when that window ends ((0, None): none open)."""

    @abc.abstractmethod
    def throttle_clear(self, key: str | None = None) -> int:
        """Forget one key's count, or (None) every count; returns how many were dropped."""

    @abc.abstractmethod
    def count(self, name: str, label: str, by: int = 1) -> None:
        """Add to a named counter (for /metrics: shared by every process and worker)."""

    @abc.abstractmethod
    def counters(self, name: str) -> dict[str, int]:
        """A counter's values by label."""

    # component health ----------------------------------------------------------
    @abc.abstractmethod
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
        """Record a component's state (the bot's connection) for /readyz."""

    @abc.abstractmethod
    def beats(self) -> list[Beat]: ...

    # hardware ----------------------------------------------------------------
    # The `hw` tasks' memory: each node's latest health (for `hw show`), and finished
    # sweeps, so the next sweep of a scope, on whichever host it runs, says what changed.
    @abc.abstractmethod
    def record_node_health(self, rows: Sequence[NodeHealthRow]) -> int:
        """Keep each row as its node's latest health, unless a later check is already kept
        (two checks finishing out of order never leave the older one). Returns rows kept."""

    @abc.abstractmethod
    def node_health(self, xnames: Sequence[str] | None = None) -> dict[str, NodeHealthRow]:
        """The latest health of these nodes (None: every node ever checked), by xname."""

    @abc.abstractmethod
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
        """Store a finished sweep and its nodes' latest health in one transaction; only the
        `keep` latest sweeps of a scope are kept."""

    @abc.abstractmethod
    def last_sweep(self, scope: str, *, before_id: int | None = None) -> SweepRow | None:
        """The latest finished sweep of `scope` (with `before_id`: the latest before that one)."""

    # outbox ------------------------------------------------------------------
    # Every message STAT bot sends on its own goes through here: written with the change
    # that causes it (finish, mark_started, accept_delivery, recover_lost take `outbox`),
    # then claimed, sent and recorded by report/outbox.py's sender, whichever process runs it.
    @abc.abstractmethod
    def post(self, messages: Sequence[OutboxMessage], *, now: float | None = None) -> list[int]:
        """Store messages to send that no other change causes (a relayed ticket); their ids."""

    @abc.abstractmethod
    def post_progress(
        self, job_id: int, message: OutboxMessage, *, now: float | None = None
    ) -> int:
        """Arm the job's one progress message with new content (kept unsent once it ended)."""

    @abc.abstractmethod
    def claim_outbox(
        self,
        owner: str,
        *,
        limit: int = 20,
        lease: float = 120.0,
        only: int | None = None,
        now: float | None = None,
    ) -> list[OutboxItem]:
        """Lease up to `limit` due messages (only id `only`, if given), oldest first.

        Messages past their expiry are marked expired in the same transaction (and their
        job's report failed, saying so). A leased message is not handed out again until
        the lease ends, so a crashed sender's messages are retried, never lost.
        """

    @abc.abstractmethod
    def outbox_renew(self, item_id: int, owner: str, lease: float) -> bool:
        """Extend `owner`'s lease just before sending; False if it is no longer theirs to send
        (the lease ended and another sender took it, or it was given up meanwhile)."""

    @abc.abstractmethod
    def outbox_sent_part(
        self, item_id: int, parts_done: int, posted_channel: str | None, ts: str | None
    ) -> None:
        """Part of a several-message report went out: a retry resumes after it."""

    @abc.abstractmethod
    def outbox_delivered(
        self,
        item: OutboxItem,
        posted_channel: str | None,
        ts: str | None,
        *,
        follow_ups: Sequence[OutboxMessage] = (),
        now: float | None = None,
    ) -> None:
        """Slack accepted it: record where, mark its job's report delivered, queue follow-ups."""

    @abc.abstractmethod
    def outbox_retry(self, item_id: int, error: str, retry_at: float) -> None:
        """A try failed for a reason that may pass: count it, release it until `retry_at`."""

    @abc.abstractmethod
    def outbox_defer(self, until: float) -> None:
        """Slack is down for every message: none is tried before `until` (kept across restarts,
        so the oldest message is still the first to go when Slack returns)."""

    @abc.abstractmethod
    def outbox_failed(
        self,
        item_id: int,
        error: str,
        *,
        state: OutboxState = OutboxState.FAILED,
        now: float | None = None,
    ) -> None:
        """Given up (refused for good, or expired): record why, on its job's report too."""

    @abc.abstractmethod
    def outbox_release(self, item_ids: Sequence[int]) -> None:
        """Hand leased messages back untried (a sender stopping, or pausing after an error)."""

    @abc.abstractmethod
    def outbox_get(self, item_id: int) -> OutboxItem | None: ...

    @abc.abstractmethod
    def outbox_find(self, ref: str) -> list[OutboxItem]:
        """The messages stored with `ref` (a web request finds what its change stored)."""

    @abc.abstractmethod
    def outbox_items(
        self, *, states: Sequence[OutboxState] = (), limit: int = 50
    ) -> list[OutboxItem]:
        """Messages newest first (the dashboard's list)."""

    @abc.abstractmethod
    def outbox_summary(self) -> OutboxSummary: ...

    @abc.abstractmethod
    def outbox_next_due(self) -> float | None:
        """When the earliest pending message may be tried, to sleep exactly that long.

        A message another sender holds counts from the end of its lease.
        """

    @abc.abstractmethod
    def progress_posted(self, job_id: int) -> tuple[str, str] | None:
        """(channel, ts) of the job's progress message once Slack has it: a report replaces it."""

    # reading ---------------------------------------------------------------
    @abc.abstractmethod
    def get(self, job_id: int) -> Job | None: ...

    @abc.abstractmethod
    def requesters(self, job_id: int) -> list[JobRequester]:
        """Who else asked for this job (requests merged into it), in the order they asked.

        The job's own requester (its channel, thread and user) is not among them.
        """

    @abc.abstractmethod
    def job_counts(self) -> list[JobCount]:
        """How many jobs there are by namespace, type, status and report state."""

    @abc.abstractmethod
    def job_timings(self, *, since: float, limit: int = 100_000) -> list[JobTiming]:
        """Jobs created at or after `since`, oldest first, with their times."""

    @abc.abstractmethod
    def jobs(
        self,
        *,
        namespace: str | None = None,
        statuses: Sequence[JobStatus] = (),
        limit: int = 50,
        hidden: Sequence[str] = (),
    ) -> list[Job]:
        """History, newest first; none from the `hidden` namespaces (those the reader may not see)."""

    @abc.abstractmethod
    def suppressions(self, *, active_at: float | None = None) -> list[Suppression]: ...

    @abc.abstractmethod
    def next_due(self, *, now: float | None = None) -> float | None:
        """When the earliest delayed job becomes due, to sleep exactly that long.

        With `now`, only jobs not yet due at `now` count: a due job that must wait
        (its type at its limit, or suppressed) would otherwise make a caller that
        sleeps until "the next due time" never sleep at all.
        """

    def running_jobs(self) -> list[Job]:
        """Every job in state `running`, whoever runs it (the dispatcher's safety net)."""
        return self.jobs(statuses=[JobStatus.RUNNING], limit=1_000_000)

    # health ------------------------------------------------------------------
    def probe_write(self) -> None:
        """Commit a small real write; raises QueueError while writes fail (for /readyz).

        This default records a beat; a backend may write something cheaper.
        """
        self.beat("readyz-probe", "probe")

    def file_problem(self) -> str | None:
        """What is wrong with the storage this process has open (deleted, replaced), or None."""
        return None

    # group commit ------------------------------------------------------------
    GROUPED_WRITES = frozenset({"mark_started", "finish", "record_report"})

    def write_many(
        self, writes: Sequence[tuple[str, tuple[Any, ...], dict[str, Any]]]
    ) -> list[Any]:
        """Several per-job writes (`GROUPED_WRITES` by name, with their arguments), in order.

        The dispatcher makes these for every job; a backend that can should commit them
        in one transaction (one commit instead of one per write: a group commit), all or
        none. This default makes them one by one, each its own transaction.
        """
        self._check_grouped(writes)
        return [getattr(self, name)(*args, **kwargs) for name, args, kwargs in writes]

    def _check_grouped(self, writes: Sequence[tuple[str, tuple[Any, ...], dict[str, Any]]]) -> None:
        """ValueError, before anything is written, for a write that cannot be grouped."""
        for name, _, _ in writes:
            if name not in self.GROUPED_WRITES:
                raise ValueError(
                    f"{name} cannot be grouped; use one of {sorted(self.GROUPED_WRITES)}"
                )

    # calling without waiting -----------------------------------------------
    def call_nowait(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run one of this queue's methods now, failing with QueueBusyError rather than waiting.

        Lets an event loop make its short, frequent queue calls itself (no hand-over to
        a thread) while never stalling on another process's lock: on QueueBusyError the
        caller hands the call to a thread that may wait. A backend that cannot promise
        not to wait keeps this default, which always sends callers to the thread.
        """
        raise QueueBusyError(f"{type(self).__name__} has no calls that cannot wait")

    # time ------------------------------------------------------------------
    def now(self) -> float:
        """The time by the queue's clock, in seconds since the epoch.

        Every `now` argument defaults to it, and whatever compares with the times the
        queue stores (heartbeats, due times, schedules) must use it rather than the
        host's clock: a backend shared by several hosts answers with the database
        server's clock, so hosts whose clocks disagree still agree on who is late.
        """
        return time.time()

    # waking ----------------------------------------------------------------
    @abc.abstractmethod
    def wakeup_listener(self, name: str) -> WakeupListener:
        """A descriptor that is readable soon after any process changes the queue."""

    @abc.abstractmethod
    def notify(self) -> None:
        """Wake listeners (done after every commit that may give a dispatcher work)."""
