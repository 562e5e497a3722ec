"""What resolving an incident writes: its durations and a postmortem draft in Trac wiki markup.

The draft is a starting point for people, written from facts STAT bot holds (the
timeline, linked tickets, xnames and jobs); the sections it cannot know (root
cause, follow-ups) are left as headings with a prompt.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from stat_bot.incidents.model import EntryKind, Incident, TimelineEntry
from stat_bot.views import when


@dataclass(frozen=True)
class Durations:
    """Seconds from opening to each milestone (None: not reached)."""

    to_first_role: float | None
    to_identified: float | None
    to_resolved: float | None


def durations(
    incident: Incident, entries: Sequence[TimelineEntry], identified_status: str | None
) -> Durations:
    """Milestones from the timeline, measured from the first opening: the first role
    claimed, the first time identified, and the last resolve (a re-open clears it)."""
    start = incident.opened_at
    first_role = identified = resolved = None
    for entry in entries:
        at = entry.at or start
        if entry.kind is EntryKind.REOPENED:
            resolved = None  # a re-opened incident is resolved when it is resolved again
        if entry.kind is EntryKind.ROLE and first_role is None and entry.data.get("user"):
            first_role = at - start
        if (
            entry.kind is EntryKind.STATUS
            and identified is None
            and identified_status is not None
            and entry.data.get("status") == identified_status
        ):
            identified = at - start
        if entry.kind is EntryKind.RESOLVED:
            resolved = at - start
    return Durations(first_role, identified, resolved)


def human(seconds: float | None) -> str:
    if seconds is None:
        return "not reached"
    whole = round(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{days}d"] if days else []
    if hours or days:
        parts.append(f"{hours}h")
    parts.append(f"{minutes}m" if (minutes or hours or days) else f"{secs}s")
    return " ".join(parts)


def durations_text(found: Durations) -> str:
    return (
        f"Time to first role claimed: {human(found.to_first_role)}; "
        f"to identified: {human(found.to_identified)}; "
        f"to resolved: {human(found.to_resolved)}."
    )


def page_name(prefix: str, incident: Incident, tz: ZoneInfo) -> str:
    """`Incidents/2026-12-02-7-inc-...`: dated, numbered, unique per incident."""
    day = datetime.fromtimestamp(incident.opened_at, tz).strftime("%Y-%m-%d")
    prefix = prefix.strip("/")
    name = f"{day}-{incident.id}"
    return f"{prefix}/{name}" if prefix else name


def _wiki_text(text: str) -> str:
    """Text from Slack kept literal in wiki markup: no macros, links or formatting run."""
    one_line = " ".join(text.split())
    return "{{{" + one_line.replace("}}}", "} } }") + "}}}" if one_line else ""


def _when(at: float | None, tz: ZoneInfo) -> str:
    return when(at or 0, tz, zone=True)


def draft(
    incident: Incident,
    entries: Sequence[TimelineEntry],
    found: Durations,
    *,
    tz: ZoneInfo,
    role_names: dict[str, str],
    ticket_url: str | None = None,
    job_url: str | None = None,
) -> str:
    """The postmortem page (Trac wiki markup)."""
    lines = [
        f"= Incident {incident.id}: {_wiki_text(incident.description)} =",
        "",
        "''A draft written by STAT bot when the incident was resolved: edit freely.''",
        "",
        "== Summary ==",
        f" * Opened: {_when(incident.opened_at, tz)} by {incident.opened_by_name or incident.opened_by or 'unknown'}",
        f" * Resolved: {_when(incident.resolved_at, tz) if incident.resolved_at else 'not yet'}",
        f" * Slack channel: #{incident.channel_name}",
        f" * Time to first role claimed: {human(found.to_first_role)}",
        f" * Time to identified: {human(found.to_identified)}",
        f" * Time to resolved: {human(found.to_resolved)}",
        "",
        "== Roles ==",
    ]
    for key, user in incident.roles.items():
        lines.append(f" * {role_names.get(key, key)}: {user}")
    if not incident.roles:
        lines.append(" * (none claimed)")
    lines += ["", "== Linked tickets =="]
    lines += [f" * #{t}" for t in incident.tickets] or [" * (none)"]
    lines += ["", "== Affected hardware =="]
    lines += [f" * {_wiki_text(x)}" for x in incident.xnames] or [" * (none linked)"]
    lines += ["", "== Jobs run =="]
    job_entries = [e for e in entries if e.kind is EntryKind.JOB]
    lines += [f" * {_when(e.at, tz)}: {_wiki_text(e.text)}" for e in job_entries] or [" * (none)"]
    lines += ["", "== What was changed =="]
    changes = [e for e in entries if e.kind in (EntryKind.NOTE, EntryKind.MESSAGE)]
    lines += [
        f" * {_when(e.at, tz)} {e.user_name or e.user or ''}: {_wiki_text(e.text)}" for e in changes
    ] or [" * (no notes were recorded)"]
    lines += ["", "== Timeline ==", "", "||= When =||= Who =||= What =||"]
    for entry in entries:
        who = entry.user_name or entry.user or "STAT bot"
        lines.append(
            f"|| {_when(entry.at, tz)} || {_wiki_text(who)} || {_wiki_text(entry.text)} ||"
        )
    lines += [
        "",
        "== Root cause ==",
        "''What failed, and why.''",
        "",
        "== Follow-up actions ==",
        "''Tickets to open, changes to make, checks to add.''",
        "",
    ]
    return "\n".join(lines)
