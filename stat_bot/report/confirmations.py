"""The messages of a guarded job: the offer with Confirm/Cancel buttons, and what became of it.

The offer says what will happen (the job's `confirm` text), to which nodes (count,
folded xnames, hostnames, when the inventory is known), who asked, until when it
may be confirmed, and the typed fallback (`@stat-bot confirm ABC123`) for clients
without buttons. Each decision (confirmed, cancelled, expired) edits the offer in
place (the outbox's `replaces_outbox`), so the buttons disappear once they mean
nothing, and a late reader sees what happened. Pure: the outbox carries them.
"""

from __future__ import annotations

import time
from typing import Any

from stat_bot.hardware.targets import fold
from stat_bot.jobs.model import Job, TargetSet
from stat_bot.queue.base import Confirmation, ConfirmationState
from stat_bot.report.messages import Message, Report, escape_mrkdwn

CONFIRM_ACTION = "stat_confirm"
CANCEL_ACTION = "stat_cancel"
MAX_LISTED = 2900  # characters of node list in one section (Slack's limit is 3,000)


def nodes_text(targets: TargetSet | None) -> str | None:
    """`16 nodes: x1000c0s[0-7]b[0-1]n0 (nid[001-016])`, or the target as typed."""
    if targets is None:
        return None
    if not targets.from_inventory:
        typed = targets.typed or "all"
        return f"Target: `{escape_mrkdwn(typed)}` (as typed: no inventory to expand it)"
    count = len(targets.xnames)
    text = f"{count} node{'s' if count != 1 else ''}: `{fold(list(targets.xnames))}`"
    hosts = [h for h in targets.hostnames if h]
    if hosts:
        text += f" ({escape_mrkdwn(fold(hosts))})"
    if len(text) > MAX_LISTED:
        text = text[: MAX_LISTED - 1] + "…"
    return text


def _who(user: str | None, name: str | None = None) -> str:
    if user and user.startswith(("U", "W")):
        return f"<@{user}>"
    return escape_mrkdwn(name or user or "someone")


def _minutes(seconds: float) -> str:
    if seconds < 90:
        return f"{max(0, round(seconds))} s"
    return f"{seconds / 60:.0f} min"


def typed_fallback(code: str, bot_name: str = "stat-bot") -> str:
    return f"or type `@{bot_name} confirm {code}` (`@{bot_name} cancel-confirm {code}` to cancel)"


def offer_report(offer: Confirmation, *, bot_name: str = "stat-bot") -> Report:
    """The offer: what will happen, to which nodes, the two buttons and the typed fallback."""
    summary = offer.summary
    nodes = nodes_text(offer.request.targets)
    expires = _minutes(offer.expires_at - offer.created_at)
    context = (
        f"Asked by {_who(offer.requested_by, offer.requested_by_name)}; "
        f"valid for {expires}; {typed_fallback(offer.code, bot_name)}"
    )
    blocks: list[dict[str, Any]] = [
        {
            "type": "section",
            "block_id": f"stat_offer_{offer.code}",
            "text": {"type": "mrkdwn", "text": f":warning: *Confirm:* {summary}"},
        }
    ]
    if nodes:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": nodes}})
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": context}]})
    blocks.append(
        {
            "type": "actions",
            "block_id": f"stat_confirm_{offer.code}",
            "elements": [
                {
                    "type": "button",
                    "action_id": CONFIRM_ACTION,
                    "text": {"type": "plain_text", "text": "Confirm"},
                    "style": "danger",
                    "value": offer.code,
                },
                {
                    "type": "button",
                    "action_id": CANCEL_ACTION,
                    "text": {"type": "plain_text", "text": "Cancel"},
                    "value": offer.code,
                },
            ],
        }
    )
    text = f"Confirm: {summary}" + (f"\n{nodes}" if nodes else "") + f"\n{context}"
    return Report(
        [Message(text, blocks)],
        "info",
        channel=offer.channel,
        thread_ts=offer.thread_ts,
        title=f"confirmation {offer.code}",
        meta={"confirmation": offer.code},
    )


def outcome_text(offer: Confirmation, job: Job | None = None) -> str:
    """One line for what became of an offer (also what a second click is told)."""
    who = _who(offer.decided_by)
    match offer.state:
        case ConfirmationState.CONFIRMED:
            queued = f"; job #{offer.job_id if job is None else job.id} queued"
            return f":white_check_mark: Confirmed by {who}{queued}."
        case ConfirmationState.CANCELLED:
            return f":no_entry_sign: Cancelled by {who}; nothing was done."
        case ConfirmationState.EXPIRED:
            return (
                f":hourglass: Expired: nobody confirmed within "
                f"{_minutes(offer.expires_at - offer.created_at)}; nothing was done. Ask again."
            )
        case _:
            left = _minutes(offer.expires_at - time.time())
            return f"Waiting for a confirmation ({left} left)."


def decided_report(offer: Confirmation, job: Job | None = None) -> Report:
    """The offer edited to say what became of it (its buttons gone)."""
    outcome = outcome_text(offer, job)
    nodes = nodes_text(offer.request.targets)
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": offer.summary}},
    ]
    if nodes:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": nodes}})
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": outcome}]})
    return Report(
        [Message(f"{offer.summary}\n{outcome}", blocks)],
        "info",
        channel=offer.channel,
        thread_ts=offer.thread_ts,
        title=f"confirmation {offer.code} {offer.state}",
        meta={"confirmation": offer.code, "replaces_outbox": offer.offer_id},
    )
