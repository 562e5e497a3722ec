"""What a matched command does to the queue: ebmbot's four actions.

Shared by the bot and the command line so both answer a command the same way.
Each returns an ActionResult: a sentence for a person and the data behind it.
It sits above `jobs` and `queue` (a source's side of the data flow): jobs/ builds
the request (jobs/requests.py), this hands it to the queue.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from stat_bot.hardware.inventory import Inventory, InventoryError, load_inventory
from stat_bot.jobs.config import JobConfigs
from stat_bot.jobs.matching import Match
from stat_bot.jobs.model import ArgsError, Job, JobRequest, Source
from stat_bot.jobs.requests import build_request
from stat_bot.queue.base import (
    Confirmation,
    ConfirmationState,
    Decision,
    EnqueueResult,
    Queue,
)
from stat_bot.report.confirmations import decided_report, offer_report, outcome_text
from stat_bot.report.messages import escape_mrkdwn, joined_text
from stat_bot.report.outbox import outgoing
from stat_bot.views import when

DEFAULT_CONFIRM_EXPIRY = 600.0  # seconds; the service passes HW_CONFIRM_EXPIRY
CODE = re.compile(r"^[A-Za-z0-9]{4,12}$")

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
    return when(ts, tz, seconds=False, zone=True)


def perform(
    match: Match,
    configs: JobConfigs,
    queue: Queue,
    requester: Requester,
    tz: ZoneInfo,
    *,
    now: float,
    inventory: Inventory | None = None,
    confirm_expiry: float = DEFAULT_CONFIRM_EXPIRY,
) -> ActionResult:
    """Carry out a matched command; ActionError for values that cannot be used.

    A job type with `confirm` is not queued: it is offered (`offer_confirmation`) and
    the result's data holds the offer's `code`. `inventory` expands an exclusive job's
    target (None: HW_INVENTORY is not set, and the target stays as typed).
    """
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
                inventory=inventory,
            )
        except ArgsError as error:
            raise ActionError(f"not queued: {error}") from None
        if job_spec.confirm:
            code = offer_confirmation(
                queue,
                configs,
                request,
                channel=requester.channel,
                thread_ts=requester.thread_ts,
                requested_by=requester.user,
                requested_by_name=requester.user_name,
                summary=confirm_summary(job_spec.confirm, request.args),
                expires_in=confirm_expiry,
                now=now,
            )
            return ActionResult(
                f"{label} needs a confirmation: code `{code}`.", data={"code": code}
            )
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


# -- guarded jobs: offered, then confirmed or cancelled -----------------------------------


def site_inventory(path: Path | None) -> Inventory | None:
    """The site's nodes (HW_INVENTORY), read now; None when it is not set."""
    if path is None:
        return None
    try:
        return load_inventory(path)
    except InventoryError as error:
        shown = "; ".join(error.problems[:3])
        more = f" (and {len(error.problems) - 3} more)" if len(error.problems) > 3 else ""
        raise ActionError(
            f"not queued: the inventory HW_INVENTORY={path} cannot be used: {shown}{more}"
        ) from None


def confirm_summary(template: str, args: Mapping[str, Any]) -> str:
    """The job's `confirm` text with its args (escaped: they may come from anyone)."""
    return template.format(**{k: f"`{escape_mrkdwn(str(v))}`" for k, v in args.items()})


def offer_confirmation(
    queue: Queue,
    configs: JobConfigs,
    request: JobRequest,
    *,
    channel: str | None,
    thread_ts: str | None,
    requested_by: str | None,
    summary: str,
    requested_by_name: str | None = None,
    expires_in: float = DEFAULT_CONFIRM_EXPIRY,
    bot_name: str = "stat-bot",
    now: float | None = None,
) -> str:
    """Offer `request` with Confirm/Cancel buttons in `channel` (and thread); its code.

    For any caller: a chat command of a job type with `confirm`, or a built-in task
    offering "drain this node?" after a check. Nothing is queued until someone allowed
    confirms: the requester, or who the job's `confirm_by` names (default: its
    namespace's allowed_users). The offer is stored with its message (the outbox) in
    one transaction; `request` should come from jobs/requests.py's build_request, so
    its nodes and locks are already known.
    """
    job_spec = configs.job(request.namespace, request.job_type)
    namespace = configs.namespaces[request.namespace].spec
    confirmers = tuple(job_spec.confirm_by or namespace.allowed_users)
    offer = queue.offer_confirmation(
        request,
        requested_by=requested_by,
        requested_by_name=requested_by_name,
        channel=channel,
        thread_ts=thread_ts,
        summary=summary,
        expires_in=expires_in,
        confirmers=confirmers,
        outbox=lambda c: [outgoing(offer_report(c, bot_name=bot_name), "confirm")],
        now=now,
    )
    return offer.code


def decision_messages(offer: Confirmation, job: Any) -> list[Any]:
    """What a decision stores with itself: the offer edited to say what happened."""
    return [outgoing(decided_report(offer, job), "confirm")]


def decide(
    queue: Queue,
    code: str,
    *,
    confirm: bool,
    by: str,
    by_name: str | None = None,
    refusal: Callable[[Confirmation], str | None] = lambda _: None,
    now: float | None = None,
) -> ActionResult:
    """Confirm or cancel the offer `code` as `by`; a sentence for them either way.

    `refusal` says why `by` may not decide this offer (None: they may): a refused
    person changes nothing. An offer decided before is answered with who decided it
    (a second click queues nothing); an expired one says to ask again.
    """
    wanted = code.strip().upper()
    if not CODE.match(wanted):
        return ActionResult(
            f"`{escape_mrkdwn(code[:20])}` is not a confirmation code (such as ABC123)."
        )
    offer = queue.get_confirmation(wanted)
    if offer is None:
        return ActionResult(f"There is no confirmation `{wanted}`; check the code in the offer.")
    verb = "confirm" if confirm else "cancel"
    reason = refusal(offer)  # first: someone not allowed learns nothing about the offer
    if reason:
        return ActionResult(reason, data={"refused": True})
    if offer.state is not ConfirmationState.PENDING:
        return ActionResult(f"`{wanted}` was already decided: {outcome_text(offer)}")
    result = queue.decide_confirmation(
        wanted, confirm=confirm, by=by, by_name=by_name, outbox=decision_messages, now=now
    )
    decided = result.confirmation
    match result.decision:
        case Decision.CONFIRMED:
            assert result.enqueued is not None
            job = result.enqueued.job
            return ActionResult(
                f"Confirmed: job #{job.id} `{job.namespace} {job.job_type}` queued.",
                job,
                result.enqueued,
                data={"code": wanted},
            )
        case Decision.CANCELLED:
            return ActionResult(f"Cancelled `{wanted}`; nothing was done.", data={"code": wanted})
        case Decision.EXPIRED:
            return ActionResult(
                f"`{wanted}` expired before you could {verb} it; nothing was done. Ask again.",
                data={"code": wanted, "expired": True},
            )
        case Decision.ALREADY if decided is not None:
            return ActionResult(f"`{wanted}` was already decided: {outcome_text(decided)}")
        case _:
            return ActionResult(f"There is no confirmation `{wanted}`.")
