"""The queue interface every backend implements.

The dispatcher, the bot, the web server and the CLI speak only to this
interface, so a PostgreSQL backend can stand beside the SQLite one without any
of them changing. Each method is one transaction: a caller never sees a
half-written job.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from stat_bot.jobs.model import Job, JobRequest, JobStatus, ReportState

T = TypeVar("T")


class KEEP:
    """Sentinel for "leave this as it is" where None already means "clear the override"."""


class QueueError(Exception):
    """The queue could not do what was asked (for example, the database is unreachable)."""


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
        """Add a job, or (coalesce) update the queued job of that type instead."""

    @abc.abstractmethod
    def claim(self, worker_id: str, limit: int, *, now: float | None = None) -> list[Job]:
        """Atomically move up to `limit` due jobs to running, honouring concurrency and suppressions."""

    @abc.abstractmethod
    def mark_started(self, job_id: int, pid: int, log_dir: str) -> None:
        """Record the process group and log folder of a job that has just been spawned."""

    @abc.abstractmethod
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
        """End a running job; None if it was no longer running (for example, declared lost)."""

    @abc.abstractmethod
    def heartbeat(self, worker_id: str, *, now: float | None = None) -> list[int]:
        """Say this worker and its jobs are alive; returns ids of its jobs asked to cancel."""

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
        self, is_dead: Callable[[Worker], bool], *, now: float | None = None
    ) -> list[Recovered]:
        """Re-queue or mark lost the running jobs of workers `is_dead` judges gone."""

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
        now: float | None = None,
    ) -> list[EnqueueResult] | None:
        """Record a webhook delivery and enqueue its jobs, in one transaction.

        None, with nothing enqueued, if `delivery_id` was already accepted from
        `source` (a replay or a redelivery): each delivery enqueues exactly once.
        """

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

    # reading ---------------------------------------------------------------
    @abc.abstractmethod
    def get(self, job_id: int) -> Job | None: ...

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
    ) -> list[Job]:
        """History, newest first."""

    @abc.abstractmethod
    def suppressions(self, *, active_at: float | None = None) -> list[Suppression]: ...

    @abc.abstractmethod
    def next_due(self, *, now: float | None = None) -> float | None:
        """When the earliest delayed job becomes due, to sleep exactly that long.

        With `now`, only jobs not yet due at `now` count: a due job that must wait
        (its type at its limit, or suppressed) would otherwise make a caller that
        sleeps until "the next due time" never sleep at all.
        """

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

    # waking ----------------------------------------------------------------
    @abc.abstractmethod
    def wakeup_listener(self, name: str) -> WakeupListener:
        """A descriptor that is readable soon after any process changes the queue."""

    @abc.abstractmethod
    def notify(self) -> None:
        """Wake listeners (done after every commit that may give a dispatcher work)."""
