"""What a matched command does to the queue: ebmbot's four actions.

Shared by the bot and the command line so both answer a command the same way.
Each returns an ActionResult: a sentence for a person and the data behind it.
It sits above `jobs` and `queue` (a source's side of the data flow): jobs/ builds
the request (jobs/requests.py), this hands it to the queue.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from stat_bot.jobs.config import JobConfigs
from stat_bot.jobs.matching import Match
from stat_bot.jobs.model import ArgsError, Job, Source
from stat_bot.jobs.requests import build_request
from stat_bot.queue.base import EnqueueResult, Queue
from stat_bot.report.messages import joined_text

HHMM = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


class ActionError(ValueError):
    """The command matched but its values cannot be used (e.g. a malformed time)."""


@dataclass(frozen=True)
class Requester:
    """Who asked and where to answer."""

    user: str | None = None
    channel: str | None = None
    thread_ts: str | None = None
    source: Source = Source.CLI
    is_im: bool = False
    user_name: str | None = None


@dataclass
class ActionResult:
    text: str
    job: Job | None = None
    enqueued: EnqueueResult | None = None
    data: dict[str, Any] = field(default_factory=dict)


def parse_window(start: str, end: str, tz: ZoneInfo, now: float) -> tuple[float, float]:
    """Today's HH:MM..HH:MM window in the site's zone; past midnight if end <= start.

    A window that has already ended today is taken to mean tomorrow's.
    """
    times = []
    for label, value in (("start_at", start), ("end_at", end)):
        m = HHMM.match(value.strip())
        if not m:
            raise ActionError(
                f"[{label}] must be a time as HH:MM (24-hour clock), e.g. 09:30; got {value!r}"
            )
        times.append((int(m[1]), int(m[2])))
    today = datetime.fromtimestamp(now, tz).replace(second=0, microsecond=0)
    start_dt = today.replace(hour=times[0][0], minute=times[0][1])
    end_dt = today.replace(hour=times[1][0], minute=times[1][1])
    if end_dt <= start_dt:
        end_dt += timedelta(days=1)
    if end_dt.timestamp() <= now:
        start_dt += timedelta(days=1)
        end_dt += timedelta(days=1)
    return start_dt.timestamp(), end_dt.timestamp()


def describe_time(ts: float, tz: ZoneInfo) -> str:
    return datetime.fromtimestamp(ts, tz).strftime("%Y-%m-%d %H:%M %Z")


def perform(
    match: Match,
    configs: JobConfigs,
    queue: Queue,
    requester: Requester,
    tz: ZoneInfo,
    *,
    now: float,
) -> ActionResult:
    """Carry out a matched command; ActionError for values that cannot be used."""
    spec = match.command.spec
    label = f"`{match.namespace} {spec.job_type}`"
    if spec.action == "schedule_job":
        job_spec = configs.job(match.namespace, spec.job_type)
        try:
            request = build_request(
                configs.namespaces[match.namespace],
                spec.job_type,
                source=requester.source,
                args=match.args,
                channel=requester.channel,
                thread_ts=requester.thread_ts,
                user=requester.user,
                user_name=requester.user_name,
                delay_seconds=spec.delay_seconds,
                is_im=requester.is_im,
            )
        except ArgsError as error:
            raise ActionError(f"not queued: {error}") from None
        result = queue.enqueue(request, now=now)
        job = result.job
        if result.coalesced:
            by_type = job_spec.coalesce == "type"
            parts = [joined_text(job, by_type=by_type, in_thread=bool(requester.thread_ts))]
        else:
            parts = [f"Job #{job.id} {label} queued"]
        if spec.delay_seconds:
            parts.append(f"it starts in {spec.delay_seconds:g} s")
        if result.running and len(result.running) >= job_spec.concurrency:
            ids = ", ".join(f"#{r.id}" for r in result.running)
            parts.append(f"{ids} of that type is running, so this one waits behind it")
        if result.suppressed_until:
            parts.append(
                f"{label} is suppressed until {describe_time(result.suppressed_until, tz)}; it runs after that"
            )
        return ActionResult("; ".join(parts) + ".", job, result)
    if spec.action == "cancel_job":
        cancelled = queue.cancel_queued(match.namespace, spec.job_type, now=now)
        if not cancelled:
            return ActionResult(f"No queued {label} job to cancel.", data={"cancelled": []})
        ids = ", ".join(f"#{j.id}" for j in cancelled)
        return ActionResult(
            f"Cancelled queued {label}: {ids}.", data={"cancelled": [j.id for j in cancelled]}
        )
    if spec.action == "schedule_suppression":
        start, end = parse_window(match.args["start_at"], match.args["end_at"], tz, now)
        suppression = queue.suppress(match.namespace, spec.job_type, start, end, requester.user)
        return ActionResult(
            f"{label} is suppressed from {describe_time(start, tz)} to {describe_time(end, tz)}; "
            "jobs queued meanwhile wait until it ends.",
            data={"suppression": suppression.id, "start_at": start, "end_at": end},
        )
    count = queue.unsuppress(match.namespace, spec.job_type)
    if not count:
        return ActionResult(f"{label} had no suppression to cancel.", data={"removed": 0})
    return ActionResult(f"Suppression of {label} cancelled.", data={"removed": count})
