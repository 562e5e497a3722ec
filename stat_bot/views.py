"""What the queue looks like to a person: the texts `status`, `jobs`, `logs`, `cancel` and
`help` answer with, in the terminal and in chat alike.

The command line prints these as they are; the bot wraps tables in code blocks.
Keeping them here means a person sees the same words whichever way they asked.
"""

from __future__ import annotations

import dataclasses
import socket
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


def when(
    ts: float | None, tz: ZoneInfo | None = None, *, seconds: bool = True, zone: bool = False
) -> str:
    """The one way a time is written for people: tables keep the seconds; chat and wiki
    text name the zone, since their readers may not share the service's TIMEZONE."""
    if ts is None:
        return "-"
    form = "%Y-%m-%d %H:%M" + (":%S" if seconds else "") + (" %Z" if zone else "")
    return datetime.fromtimestamp(ts, tz).strftime(form)


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
class DispatcherView:
    """One registered dispatcher as people see it: where it runs, how late its heartbeat is.

    `stale`: its last heartbeat is older than LOST_AFTER by the queue's clock
    (`Queue.now()`), so the other dispatchers take it for dead and re-queue or mark
    lost the jobs it was running. It is still listed until one of them does.
    """

    worker: Worker
    heartbeat_age: float
    stale: bool
    running: int = 0  # jobs the queue says it is running

    @property
    def state(self) -> str:
        return "stale" if self.stale else "alive"

    def data(self) -> dict[str, Any]:
        return {
            **dataclasses.asdict(self.worker),
            "heartbeat_age": round(self.heartbeat_age, 3),
            "stale": self.stale,
            "state": self.state,
            "running": self.running,
        }


def dispatcher_views(
    workers: list[Worker], running: list[Job], now: float, lost_after: float
) -> list[DispatcherView]:
    """Every registered dispatcher, by host then id, judged against `now` (the queue's clock)."""
    per_worker: dict[str, int] = {}
    for job in running:
        if job.worker_id:
            per_worker[job.worker_id] = per_worker.get(job.worker_id, 0) + 1
    return [
        DispatcherView(
            worker=w,
            heartbeat_age=max(0.0, now - w.heartbeat_at),
            stale=now - w.heartbeat_at > lost_after,
            running=per_worker.get(w.id, 0),
        )
        for w in sorted(workers, key=lambda w: (w.hostname, w.id))
    ]


def dispatchers_summary(views: list[DispatcherView], lost_after: float) -> str:
    """One line: how many dispatchers on how many hosts, and which look dead."""
    if not views:
        return "no dispatcher has registered: start `stat-bot dispatcher`"
    alive = [v for v in views if not v.stale]
    hosts = sorted({v.worker.hostname for v in alive})
    line = f"{len(alive)} alive" + (f" on {', '.join(hosts)}" if hosts else "")
    stale = [v for v in views if v.stale]
    if stale:
        names = ", ".join(f"{v.worker.hostname}:{v.worker.pid}" for v in stale)
        line += (
            f"; {len(stale)} stale ({names}): no heartbeat for longer than LOST_AFTER "
            f"({lost_after:g} s), so the others re-queue or mark lost what it ran"
        )
    return line


@dataclass(frozen=True)
class StatusView:
    """Everything `status` shows, read from the queue at one moment.

    `now` is the queue's clock at that moment (`Queue.now()`: the database server's
    on a shared backend), against which heartbeats and schedules are judged.
    """

    running: list[Job]
    queued: list[Job]
    suppressions: list[Suppression]
    fires: list[tuple[ScheduleRow, float | None]]
    workers: list[Worker]
    outbox: OutboxSummary | None = None
    waiting: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    now: float = dataclasses.field(default_factory=time.time)
    lost_after: float = 30.0

    @classmethod
    def read(
        cls,
        queue: Queue,
        tz: ZoneInfo,
        now: float | None = None,
        waiting: dict[str, list[str]] | None = None,
        *,
        lost_after: float = 30.0,
    ) -> StatusView:
        """`waiting`: schedules that do not fire for want of variables (JobConfigs.waiting_schedules).

        `lost_after`: LOST_AFTER, beyond which a dispatcher's heartbeat is stale.
        """
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
            lost_after=lost_after,
        )

    @property
    def dispatchers(self) -> list[DispatcherView]:
        return dispatcher_views(self.workers, self.running, self.now, self.lost_after)

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
            "dispatchers": [d.data() for d in self.dispatchers],
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
                f"{d['pending']} waiting for Slack "
                f"(oldest since {ago(d['oldest_pending_at'], self.now)})"
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
        dispatchers = self.dispatchers
        workers = tabulate(
            [
                [
                    d.worker.hostname,
                    d.worker.pid,
                    d.worker.id,
                    ago(d.worker.started_at, self.now),
                    ago(d.worker.heartbeat_at, self.now),
                    d.running,
                    "STALE" if d.stale else "alive",
                ]
                for d in dispatchers
            ],
            ["host", "pid", "id", "started", "heartbeat", "running", "state"],
        )
        if dispatchers:
            workers = f"{workers}\n{dispatchers_summary(dispatchers, self.lost_after)}"
        return [
            (f"Running ({len(self.running)})", job_table(self.running) if self.running else None),
            (f"Queued ({len(self.queued)})", job_table(self.queued) if self.queued else None),
            ("Suppressions", suppressions if self.suppressions else None),
            ("Schedules", schedules if self.fires else None),
            ("Dispatchers", workers if dispatchers else None),
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


def ran_on(job: Job) -> str | None:
    """The host whose dispatcher ran the job (worker ids are `host:pid:suffix`), if known."""
    if not job.worker_id or job.worker_id.count(":") < 2:
        return None
    return job.worker_id.rsplit(":", 2)[0] or None


def missing_log(job: Job, stream: str) -> str:
    """Why a started job's log file is not here: pruned, or on the host that ran the job."""
    host = ran_on(job)
    if host is not None and host != socket.gethostname():
        return (
            f"the {stream} of job #{job.id} is on {host}, whose dispatcher ran it, not on "
            f"{socket.gethostname()} (put LOGS_DIR on storage every host mounts: DEPLOY.md)"
        )
    return f"the {stream} of job #{job.id} is gone (logs are pruned after HISTORY_DAYS days)"


def read_log(queue: Queue, job_id: int, stream: str, end: LogEnd, count: int) -> LogView:
    """Some lines of a job's stdout or stderr; ViewError naming what is missing."""
    job = queue.get(job_id)
    if job is None:
        raise ViewError(f"no job #{job_id}; `jobs` lists recent jobs")
    if not job.log_dir:
        raise ViewError(f"job #{job_id} is {job.status} and has no logs yet")
    path = Path(job.log_dir) / stream
    if not path.is_file():
        raise ViewError(missing_log(job, stream))
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
        "Incidents: `/incident <description>` or `incident open <description>` opens one; "
        "`incident help` lists the rest.",
        "Runbooks: `runbook <words...>` searches the runbook index (alerts get theirs by "
        "themselves).",
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
