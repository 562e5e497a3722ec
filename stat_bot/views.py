"""What the queue looks like to a person: the texts `status`, `jobs`, `logs`, `cancel` and
`help` answer with, in the terminal and in chat alike.

The command line prints these as they are; the bot wraps tables in code blocks.
Keeping them here means a person sees the same words whichever way they asked.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

from tabulate import tabulate

from stat_bot.jobs.config import JobConfigs
from stat_bot.jobs.model import Job, JobStatus
from stat_bot.jobs.schedules import row_next_due
from stat_bot.queue.base import (
    CancelOutcome,
    CancelResult,
    OutboxSummary,
    Queue,
    ScheduleRow,
    Suppression,
    Worker,
)

LogEnd = Literal["head", "tail", "all"]
LOG_STREAMS = ("stdout", "stderr")


def when(ts: float | None, tz: ZoneInfo | None = None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, tz).strftime("%Y-%m-%d %H:%M:%S")


def ago(ts: float | None, now: float | None = None) -> str:
    """`5 s ago`, `in 3 min`: how far a time is from now, roughly."""
    if ts is None:
        return "-"
    delta = (now if now is not None else time.time()) - ts
    future = delta < 0
    delta = abs(delta)
    if delta < 60:
        text = f"{delta:.0f} s"
    elif delta < 3600:
        text = f"{delta / 60:.0f} min"
    elif delta < 86400:
        text = f"{delta / 3600:.1f} h"
    else:
        text = f"{delta / 86400:.1f} d"
    return f"in {text}" if future else f"{text} ago"


def seconds(value: float) -> str:
    return f"{value:.1f} s" if value < 120 else f"{value / 60:.1f} min"


def duration(job: Job) -> str:
    return "-" if job.duration is None else seconds(job.duration)


def job_dict(job: Job) -> dict[str, Any]:
    data = dataclasses.asdict(job)
    data["status"] = str(job.status)
    data["duration"] = job.duration
    return data


def asker(job: Job) -> str:
    """Who asked, as people know them: @name for Slack users whose name is known."""
    who = f"@{job.user_name}" if job.user_name else job.user or str(job.source)
    if job.confirmed_by:
        who += f", confirmed by {confirmer(job)}"
    return who


def confirmer(job: Job) -> str:
    """Who confirmed a guarded job, as people read it (`@name`)."""
    by = job.confirmed_by or ""
    return by if by.startswith(("@", "cli:")) else f"@{by}"


def args_text(job: Job) -> str:
    text = " ".join(f"{k}={v}" for k, v in job.args.items())
    return text if len(text) <= 40 else text[:37] + "..."


def job_table(jobs: list[Job]) -> str:
    rows = [
        [
            j.id,
            f"{j.namespace} {j.job_type}",
            args_text(j),
            str(j.status) + (" (cancel requested)" if j.cancel_requested else ""),
            ago(j.created_at),
            duration(j),
            asker(j),
            (j.report_state if j.status.finished else ""),
        ]
        for j in jobs
    ]
    return tabulate(rows, ["id", "job", "args", "status", "created", "duration", "who", "report"])


def interval_text(seconds: float) -> str:
    """3600 -> "1h", 86400 -> "1d", 5400 -> "90m": as the interval choices are written."""
    whole = int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if whole >= size and whole % size == 0:
            return f"{whole // size}{unit}"
    return f"{whole}s"


def schedule_timing(row: ScheduleRow) -> str:
    """When a schedule fires: its cron, or the interval set on the web that replaces it."""
    if row.interval_seconds:
        return f"every {interval_text(row.interval_seconds)} (set on the web; config: {row.cron})"
    return row.cron


@dataclass(frozen=True)
class StatusView:
    """Everything `status` shows, read from the queue at one moment."""

    running: list[Job]
    queued: list[Job]
    suppressions: list[Suppression]
    fires: list[tuple[ScheduleRow, float | None]]
    workers: list[Worker]
    outbox: OutboxSummary | None = None
    waiting: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    # When it was read, by the queue's clock: ages ("5 s ago") are measured from it, so a
    # host whose clock is off does not show fresh heartbeats as minutes old.
    now: float | None = None

    @classmethod
    def read(
        cls,
        queue: Queue,
        tz: ZoneInfo,
        now: float | None = None,
        waiting: dict[str, list[str]] | None = None,
    ) -> StatusView:
        """`waiting`: schedules that do not fire for want of variables (JobConfigs.waiting_schedules)."""
        now = queue.now() if now is None else now
        return cls(
            running=queue.jobs(statuses=[JobStatus.RUNNING], limit=1000),
            queued=list(reversed(queue.jobs(statuses=[JobStatus.QUEUED], limit=1000))),
            suppressions=queue.suppressions(active_at=now),
            fires=[(s, row_next_due(s, tz, now) if s.enabled else None) for s in queue.schedules()],
            workers=queue.workers(),
            outbox=queue.outbox_summary(),
            waiting=waiting or {},
            now=now,
        )

    def without(self, hidden: set[str]) -> StatusView:
        """The same view minus the jobs of `hidden` namespaces (a reader not allowed there)."""
        if not hidden:
            return self
        return dataclasses.replace(
            self,
            running=[j for j in self.running if j.namespace not in hidden],
            queued=[j for j in self.queued if j.namespace not in hidden],
        )

    def next_fire(self, row: ScheduleRow, nxt: float | None, tz: ZoneInfo) -> str:
        if row.key in self.waiting:
            return f"waits for {', '.join(self.waiting[row.key])}"
        return f"{when(nxt, tz)} ({ago(nxt, self.now)})" if nxt else "disabled"

    def data(self) -> dict[str, Any]:
        return {
            "running": [job_dict(j) for j in self.running],
            "queued": [job_dict(j) for j in self.queued],
            "suppressions": [dataclasses.asdict(s) for s in self.suppressions],
            "schedules": [
                {
                    **dataclasses.asdict(s),
                    "next_fire_at": None if s.key in self.waiting else nxt,
                    "waits_for": self.waiting.get(s.key, []),
                }
                for s, nxt in self.fires
            ],
            "dispatchers": [dataclasses.asdict(w) for w in self.workers],
            "undelivered": self.undelivered_data(),
        }

    def undelivered_data(self) -> dict[str, Any]:
        """Messages not yet accepted by Slack, and those given up."""
        o = self.outbox or OutboxSummary(0, None)
        return {
            "pending": o.undelivered,
            "oldest_pending_at": o.oldest_created_at,
            "failed": o.by_state.get("failed", 0),
            "expired": o.by_state.get("expired", 0),
            "last_error": o.last_error,
        }

    def undelivered_text(self) -> str | None:
        """One line for `status` while messages wait or were given up; None when all went out."""
        d = self.undelivered_data()
        if not (d["pending"] or d["failed"] or d["expired"]):
            return None
        parts = []
        if d["pending"]:
            parts.append(
                f"{d['pending']} waiting for Slack (oldest since {ago(d['oldest_pending_at'], self.now)})"
            )
        if d["failed"] or d["expired"]:
            parts.append(f"{d['failed']} refused by Slack, {d['expired']} expired undelivered")
        line = "; ".join(parts)
        if d["last_error"]:
            line += f"\nlast error: {d['last_error']}"
        return line

    def sections(self, tz: ZoneInfo) -> list[tuple[str, str | None]]:
        """(heading, table or None when empty) pairs, for a terminal or a chat message."""
        suppressions = tabulate(
            [
                [
                    f"{s.namespace} {s.job_type}",
                    when(s.start_at, tz),
                    when(s.end_at, tz),
                    s.user or "",
                ]
                for s in self.suppressions
            ],
            ["job", "from", "until", "by"],
        )
        schedules = tabulate(
            [
                [
                    s.key,
                    schedule_timing(s),
                    f"{s.namespace} {s.job_type}",
                    when(s.last_fired_at, tz) if s.has_fired else "never",
                    self.next_fire(s, nxt, tz),
                ]
                for s, nxt in self.fires
            ],
            ["schedule", "when", "job", "last fired", "next fire"],
        )
        workers = tabulate(
            [
                [w.id, ago(w.started_at, self.now), ago(w.heartbeat_at, self.now)]
                for w in self.workers
            ],
            ["id", "started", "heartbeat"],
        )
        return [
            (f"Running ({len(self.running)})", job_table(self.running) if self.running else None),
            (f"Queued ({len(self.queued)})", job_table(self.queued) if self.queued else None),
            ("Suppressions", suppressions if self.suppressions else None),
            ("Schedules", schedules if self.fires else None),
            ("Dispatchers", workers if self.workers else None),
            ("Undelivered messages", self.undelivered_text()),
        ]

    def text(self, tz: ZoneInfo) -> str:
        empty = {
            "Suppressions": "none",
            "Schedules": "none"
            + ("" if self.workers else " (schedules appear once a dispatcher has started)"),
            "Dispatchers": "none running",
            "Undelivered messages": "none: every message has been delivered",
        }
        out = []
        for heading, table in self.sections(tz):
            key = heading.split(" (")[0]
            out.append(f"{heading}:")
            out.append(table if table else "  " + empty.get(key, f"nothing {key.lower()}"))
            out.append("")
        return "\n".join(out).rstrip("\n")


MAX_JOB_ID = 2**63 - 1  # the largest id a queue (SQLite's INTEGER, PostgreSQL's bigint) holds


def parse_job_id(raw: str) -> int | None:
    """A job id as people write it (`12`, `#12`), or None if no job could have it.

    Only ASCII digits (int() would take other scripts' digits too) and at most MAX_JOB_ID,
    so an overlong number is "not a job id" rather than an error deeper down.
    """
    digits = raw.strip().removeprefix("#")
    if not digits.isascii() or not digits.isdigit() or len(digits) > len(str(MAX_JOB_ID)):
        return None
    value = int(digits)
    return value if value <= MAX_JOB_ID else None


class ViewError(Exception):
    """A request about a job that cannot be answered (no such job, no logs); says why."""


@dataclass(frozen=True)
class LogView:
    job: Job
    stream: str
    path: Path
    lines: list[str]
    total_lines: int

    def data(self) -> dict[str, Any]:
        return {
            "job_id": self.job.id,
            "stream": self.stream,
            "path": str(self.path),
            "lines": self.lines,
            "total_lines": self.total_lines,
        }


def read_log(queue: Queue, job_id: int, stream: str, end: LogEnd, count: int) -> LogView:
    """Some lines of a job's stdout or stderr; ViewError naming what is missing."""
    job = queue.get(job_id)
    if job is None:
        raise ViewError(f"no job #{job_id}; `jobs` lists recent jobs")
    if not job.log_dir:
        raise ViewError(f"job #{job_id} is {job.status} and has no logs yet")
    path = Path(job.log_dir) / stream
    if not path.is_file():
        raise ViewError(
            f"the {stream} of job #{job_id} is gone (logs are pruned after HISTORY_DAYS days)"
        )
    all_lines = path.read_text(errors="replace").splitlines()
    chosen = (
        all_lines if end == "all" else all_lines[:count] if end == "head" else all_lines[-count:]
    )
    return LogView(job, stream, path, chosen, len(all_lines))


def cancel_text(job_id: int, result: CancelResult) -> str:
    finished = result.job.status if result.job else ""
    return {
        CancelOutcome.NOT_FOUND: f"No job #{job_id}.",
        CancelOutcome.CANCELLED: f"Job #{job_id} was queued and is now cancelled.",
        CancelOutcome.REQUESTED: f"Job #{job_id} is running; its dispatcher is stopping it.",
        CancelOutcome.ALREADY_FINISHED: f"Job #{job_id} already ended ({finished}).",
    }[result.outcome]


def namespaces_help(configs: JobConfigs, bot: str = "stat-bot") -> str:
    """The top-level `help`: every namespace with its description, locks on restricted ones."""
    lines = ["Namespaces:"]
    for name, ns in sorted(configs.namespaces.items()):
        lock = " :lock:" if ns.spec.restricted else ""
        lines.append(f"• `{name}`{lock}: {ns.spec.description or '(no description)'}")
    lines += [
        "",
        f"`@{bot} <namespace> help` lists a namespace's commands.",
        "Built in: `status`, `jobs [namespace]`, `logs <id> [stdout|stderr] [head|tail]`, "
        "`cancel <id>`, `remove job id <id>`, `confirm <code>` and `cancel-confirm <code>` "
        "(answer an offer to run a guarded job, as its buttons do).",
    ]
    return "\n".join(lines)


def namespace_help(configs: JobConfigs, namespace: str) -> str:
    """One namespace's commands with their help text and parameter types."""
    ns = configs.namespaces[namespace]
    lock = " :lock: (restricted)" if ns.spec.restricted else ""
    lines = [f"`{namespace}`{lock}: {ns.spec.description or '(no description)'}"]
    if not ns.commands:
        lines.append("It has no chat commands.")
    for command in ns.commands:
        guarded = ""
        if command.spec.action == "schedule_job" and ns.spec.jobs[command.spec.job_type].confirm:
            guarded = " :warning: (asks for a confirmation)"
        lines.append(
            f"• `{command.usage}`"
            + (f": {command.spec.help}" if command.spec.help else "")
            + guarded
        )
        for param in command.params:
            lines.append(f"      `[{param.name}]`: {param.describe()}")
    return "\n".join(lines)
