"""Jobs as the queue stores them and the states they move through."""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from typing import Any, Literal

#: How a job type merges a new request into one already queued (job_configs.py's
#: `coalesce`): True merges a request with the same arguments (bennettbot's rule),
#: "type" merges any request of the type and the latest arguments win (ebmbot's),
#: False never merges.
CoalesceMode = bool | Literal["type"]


class JobStatus(enum.StrEnum):
    """Where a job is in its life. Only `queued` and `running` are unfinished."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"
    LOST = "lost"

    @property
    def finished(self) -> bool:
        return self not in (JobStatus.QUEUED, JobStatus.RUNNING)


class Source(enum.StrEnum):
    """Who asked for a job, for history and for where to report."""

    SLACK = "slack"
    WEBHOOK = "webhook"
    SCHEDULE = "schedule"
    CLI = "cli"


class ReportState(enum.StrEnum):
    """Whether a finished job's report reached its destination."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class JobRequest:
    """What a source asks the queue to run."""

    namespace: str
    job_type: str
    args: dict[str, str] = field(default_factory=dict)
    channel: str | None = None
    thread_ts: str | None = None
    user: str | None = None
    source: Source = Source.CLI
    delay_seconds: float = 0.0
    concurrency: int = 1
    coalesce: CoalesceMode = True
    retries: int = 0
    is_im: bool = False
    user_name: str | None = None  # the asker's Slack name, for people to read (user is the id)


@dataclass(frozen=True, slots=True)
class JobRequester:
    """Someone whose request was merged into a job already queued: where to answer them.

    The job's own row keeps its first requester; each later one is kept here so
    everyone who asked gets the result in their own thread. `args` are what this
    requester asked for, and `replaced_args` whether their request changed the job's
    arguments (a job that coalesces by type, where the latest arguments win).
    """

    job_id: int
    channel: str | None
    thread_ts: str | None
    user: str | None
    user_name: str | None
    is_im: bool
    source: str
    args: dict[str, Any]
    replaced_args: bool
    created_at: float


@dataclass(slots=True)
class Job:
    """One row of the jobs table, with its whole history."""

    id: int
    namespace: str
    job_type: str
    args: dict[str, Any]
    channel: str | None
    thread_ts: str | None
    user: str | None
    source: str
    status: JobStatus
    created_at: float
    start_after: float
    started_at: float | None
    finished_at: float | None
    attempts: int
    max_retries: int
    concurrency: int
    worker_id: str | None
    heartbeat_at: float | None
    pid: int | None
    exit_code: int | None
    log_dir: str | None
    cancel_requested: bool
    report_state: str
    report_error: str | None
    is_im: bool
    note: str | None
    user_name: str | None = None

    @property
    def full_type(self) -> str:
        return f"{self.namespace} {self.job_type}"

    @property
    def duration(self) -> float | None:
        if self.started_at is None:
            return None
        end = self.finished_at if self.finished_at is not None else now()
        return max(0.0, end - self.started_at)


def now() -> float:
    """Wall-clock seconds since the epoch: the queue's one time unit."""
    return time.time()
