"""Messages caused by what reaches the web server: relayed tickets, Trac events, webhooks.

Built here, with the other Slack messages, and stored by the web routes in the queue's
outbox with the change that causes them; report/outbox.py delivers them.
Everything that comes from outside is escaped, so a summary cannot mention @channel
or fake a link.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Protocol

from stat_bot.jobs.config import Namespace
from stat_bot.jobs.trac_rules import TicketEvent
from stat_bot.jobs.webhooks import GitHubEvent
from stat_bot.queue.base import EnqueueResult
from stat_bot.report.messages import Message, escape_mrkdwn
from stat_bot.settings import Settings

SAFE_LINK = re.compile(r"^https?://[^\s<>|]+$")
MAX_SUMMARY = 300  # Slack shows a section's text up to 3,000 characters
MAX_COMMENT = 2500
MAX_VALUE = 80
QUIET_FIELDS = frozenset({"status", "resolution", "owner", "changetime", "time"})  # in Action


class TicketFields(Protocol):
    """What HPC-STAT's ticket form holds (web/stat_relay.py's TicketForm)."""

    summary: str
    type: str
    priority: str
    xname: str
    action: str


def ticket_message(ticket: TicketFields, submitted_by: str) -> Message:
    """The STAT channel's message: a section with the summary and a field per form value."""
    summary = escape_mrkdwn(ticket.summary)
    by = escape_mrkdwn(submitted_by)
    fields = [
        ("Type", ticket.type),
        ("Priority", ticket.priority),
        ("XName", ticket.xname),
        ("Action", ticket.action),
        ("Submitted by", submitted_by),
    ]
    blocks: list[dict[str, Any]] = [
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": f"*STAT ticket:* {summary}"},
            "fields": [
                {"type": "mrkdwn", "text": f"*{label}*\n{escape_mrkdwn(value)}"}
                for label, value in fields
            ],
        }
    ]
    text = (
        f"STAT ticket: {summary} | type {ticket.type}, priority {ticket.priority}, "
        f"xname {ticket.xname}, action {ticket.action}, submitted by {by}"
    )
    return Message(text=text, blocks=blocks)


def ticket_link(event: TicketEvent, settings: Settings) -> str | None:
    """The ticket's URL: the plugin's (Trac's base_url), else TRAC_URL's; None if neither."""
    if event.link and SAFE_LINK.match(event.link):
        return event.link
    if settings.trac_url:  # the Trac client's setting
        link = f"{settings.trac_url.rstrip('/')}/ticket/{event.ticket}"
        if SAFE_LINK.match(link):
            return link
    return None


def _cut(text: str, limit: int, *, one_line: bool = True) -> str:
    """`text` at most `limit` characters long (… marks a cut); `one_line` joins its lines."""
    text = " ".join(text.split()) if one_line else text.strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _changes(event: TicketEvent) -> list[str]:
    """`priority: Medium → High` for each altered field the Action does not already say."""
    lines = []
    for name in event.changed:
        if name in QUIET_FIELDS:
            continue
        if name == "description":
            lines.append("description edited")
            continue
        old = _cut(event.old_values.get(name, ""), MAX_VALUE) or "(empty)"
        new = _cut(event.fields.get(name, ""), MAX_VALUE) or "(empty)"
        lines.append(f"{name}: {old} → {new}")
    return lines


def ticket_event_message(
    event: TicketEvent, link: str | None, results: Sequence[EnqueueResult] = ()
) -> Message:
    """The STAT channel's message, as STATtoSlackBot's: the summary, then a field per value.

    Everything from Trac is escaped, so a summary cannot mention @channel or fake a link.
    """
    f = event.fields
    title = f"#{event.ticket}"
    named = f"<{link}|{title}>" if link else title
    summary = escape_mrkdwn(_cut(f.get("summary", ""), MAX_SUMMARY)) or "(no summary)"
    values = [
        ("Type", f.get("type", "")),
        ("Priority", f.get("priority", "")),
        ("XName", f.get("xname", "")),
        ("Action", event.action),
        ("By", event.author),
        ("Owner", f.get("owner", "")),
    ]
    blocks: list[dict[str, Any]] = [
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": f"*STAT ticket {named} {event.event}:* {summary}"},
            "fields": [
                {
                    "type": "mrkdwn",
                    "text": f"*{label}*\n{escape_mrkdwn(_cut(value, MAX_VALUE)) or '-'}",
                }
                for label, value in values
            ],
        }
    ]
    changes = _changes(event)
    if changes:
        text = "*Changed:* " + "; ".join(escape_mrkdwn(line) for line in changes)
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text[:2900]}})
    comment = _cut(event.comment, MAX_COMMENT, one_line=False)
    if comment:
        quoted = "\n".join(f">{escape_mrkdwn(line)}" for line in comment.splitlines())
        blocks.append(
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*Comment:*\n{quoted}"}}
        )
    if results:
        jobs = ", ".join(f"`{r.job.namespace} {r.job.job_type}` #{r.job.id}" for r in results)
        blocks.append(
            {"type": "context", "elements": [{"type": "mrkdwn", "text": f"Queued: {jobs}"}]}
        )
    by = f", by {escape_mrkdwn(event.author)}" if event.author else ""
    text = (
        f"STAT ticket #{event.ticket} {event.event}: {summary} | type {escape_mrkdwn(f.get('type', ''))}, "
        f"priority {escape_mrkdwn(f.get('priority', ''))}, xname {escape_mrkdwn(f.get('xname', '')) or '-'}, "
        f"action {escape_mrkdwn(event.action)}{by}"
    )
    if link:
        text += f" | {link}"
    return Message(text=text, blocks=blocks)


def suppressed_text(
    namespace: Namespace, enqueued: EnqueueResult, github: GitHubEvent, when: str, bot: str
) -> str:
    """What the channel is told: until when the job waits, and how to make it run now."""
    job = enqueued.job
    label = f"`{namespace.name} {job.job_type}`"
    lines = [
        f"{label} (job #{job.id}, queued by GitHub: {escape_mrkdwn(github.summary)}) is suppressed "
        f"until {when}; it will run then."
    ]
    lifts = [
        c
        for c in namespace.commands
        if c.spec.action == "cancel_suppression" and c.spec.job_type == job.job_type
    ]
    if lifts:
        lines.append(
            f"To run it now, lift the suppression: `@{bot} {lifts[0].usage}`; "
            f"not at all: `@{bot} cancel {job.id}`."
        )
    else:
        lines.append(
            f"No command lifts this suppression (a cancel_suppression command for "
            f"`{job.job_type}` in job_configs.py would); not at all: `@{bot} cancel {job.id}`."
        )
    return "\n".join(lines)
