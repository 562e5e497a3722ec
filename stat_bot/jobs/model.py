"""Jobs as the queue stores them and the states they move through."""

from __future__ import annotations

import dataclasses
import enum
import shlex
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

#: How a job type merges a new request into one already queued (job_configs.py's
#: `coalesce`): True merges a request with the same arguments (bennettbot's rule),
#: "type" merges any request of the type and the latest arguments win (ebmbot's),
#: False never merges.
CoalesceMode = bool | Literal["type"]

# Linux passes one argument of at most MAX_ARG_STRLEN (32 pages: 128 KiB) to a program, and a
# job's whole command is ONE argument of `bash -c`; its args (quoted, as render_template puts
# them in) may take this much of it, the rest is left for the run_args_template's own text.
# Each arg is also in the job's environment (STAT_BOT_ARG_*), under the same per-string limit.
MAX_ARG_STRLEN = 131_072
TEMPLATE_ROOM = 4_096
MAX_ARGS_BYTES = MAX_ARG_STRLEN - TEMPLATE_ROOM


class ArgsError(ValueError):
    """Job args no program could be started with; the message says which and why."""


def check_args(args: Mapping[str, Any]) -> None:
    """ArgsError unless `args` can become a job's command line and environment.

    Checked whenever a JobRequest is made, so every source (chat, the CLI, GitHub, Trac,
    schedules) is refused when it queues the job, with the reason, rather than the job
    failing later with E2BIG or "embedded null byte" from the dispatcher.
    """
    size = 0
    for name, value in args.items():
        text = str(value)
        if "\0" in name or "\0" in text:
            raise ArgsError(
                f"arg {name[:40]!r} contains a NUL byte (\\0), which no program can be given; "
                "remove it"
            )
        size += len(shlex.quote(text).encode("utf-8", "surrogateescape")) + 1
    if size > MAX_ARGS_BYTES:
        raise ArgsError(
            f"the args take {size:,} bytes of the job's command line; at most "
            f"{MAX_ARGS_BYTES:,} fit (Linux passes one argument of at most 128 KiB); "
            "pass large input in a file instead"
        )


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
class TargetSet:
    """What a hardware target selects: typed text, the nodes and the keys that lock them.

    `locks` are lock keys (stat_bot.hardware.xnames.lock_key: `x1000.c0.s0.b0.n0.`), whose
    plain prefix test is xname containment; the key "" locks every xname (a target that
    could not be resolved without an inventory is locked whole, never guessed). `exclusive`:
    whether the job holds the locks while it runs (its type's `exclusive`).
    """

    typed: str
    xnames: tuple[str, ...] = ()
    hostnames: tuple[str | None, ...] = ()
    locks: tuple[str, ...] = ()
    from_inventory: bool = False
    exclusive: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "typed": self.typed,
            "xnames": list(self.xnames),
            "hostnames": list(self.hostnames),
            "locks": list(self.locks),
            "from_inventory": self.from_inventory,
            "exclusive": self.exclusive,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TargetSet:
        return cls(
            typed=str(data["typed"]),
            xnames=tuple(data.get("xnames") or ()),
            hostnames=tuple(data.get("hostnames") or ()),
            locks=tuple(data.get("locks") or ()),
            from_inventory=bool(data.get("from_inventory")),
            exclusive=bool(data.get("exclusive")),
        )


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
    # A job type with `exclusive` (or `confirm` on a target): the nodes its target selects
    # and their lock keys (jobs/targets.py), computed once when the request is built.
    targets: TargetSet | None = None
    # Who confirmed a job type with `confirm` (a Slack user id, or a name from the CLI).
    confirmed_by: str | None = None

    def __post_init__(self) -> None:
        check_args(self.args)

    def to_dict(self) -> dict[str, Any]:
        """The request as JSON-able data (a pending confirmation keeps it until confirmed)."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["source"] = str(self.source)
        data["targets"] = self.targets.to_dict() if self.targets else None
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobRequest:
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        values["source"] = Source(values.get("source", Source.CLI))
        if values.get("targets"):
            values["targets"] = TargetSet.from_dict(values["targets"])
        return cls(**values)

    @property
    def locks(self) -> tuple[str, ...]:
        """The lock keys the job holds while it runs (empty: none; see TargetSet)."""
        return self.targets.locks if self.targets and self.targets.exclusive else ()


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
    confirmed_by: str | None = None  # who confirmed it (job types with `confirm`)

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
