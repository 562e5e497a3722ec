"""Incident jobs: the site snapshot at opening, the postmortem into Trac, archiving.

Run by the dispatcher as jobs of the `incidents` namespace (job_configs.py), so
they retry, time out, log and report like any job, and never hold up a click in
the bot. Their messages go through the outbox with the incident's change.
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Sequence
from typing import Any

from stat_bot.incidents import messages
from stat_bot.incidents.model import EntryKind, Incident, TimelineEntry
from stat_bot.incidents.postmortem import draft, durations, page_name
from stat_bot.incidents.templates import TemplateError
from stat_bot.incidents.templates import load as load_templates
from stat_bot.incidents.timeline import full_timeline
from stat_bot.integrations.trac import TracError
from stat_bot.tasks import TaskContext, TaskUsageError, task
from stat_bot.tasks.hw_loop import trac_client

MAX_ENDPOINT_BODY = 64 * 1024
FAILING = frozenset({"warning", "critical", "unreachable", "auth_refused", "timeout", "malformed"})


def _incident(ctx: TaskContext, args: Sequence[str], usage: str) -> Incident | None:
    if len(args) != 1 or not args[0].isdigit():
        raise TaskUsageError(f"usage: stat-bot task {usage}")
    incident = ctx.queue.incident(int(args[0]))
    if incident is None:
        print(f"There is no incident {args[0]}.", file=sys.stderr)
    return incident


def endpoints(spec: str) -> list[tuple[str, str]]:
    """INCIDENT_STATUS_ENDPOINTS: `name=url, name=url`."""
    found = []
    for part in spec.split(","):
        if not part.strip():
            continue
        name, _, url = part.partition("=")
        if not url.strip().startswith(("http://", "https://")):
            raise ValueError(
                f"INCIDENT_STATUS_ENDPOINTS entry {part.strip()!r} is not name=http(s)://..."
            )
        found.append((name.strip(), url.strip()))
    return found


def probe(url: str, timeout: float) -> str:
    """One status endpoint in a few words: its HTTP status and, for JSON, what it says."""
    request = urllib.request.Request(url, headers={"Accept": "application/json, text/plain"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read(MAX_ENDPOINT_BODY)
            status = response.status
    except urllib.error.HTTPError as error:
        return f"HTTP {error.code}"
    except (urllib.error.URLError, OSError, TimeoutError) as error:
        reason = getattr(error, "reason", error)
        return f"unreachable ({type(reason).__name__ if not isinstance(reason, str) else reason})"
    said = ""
    try:
        data: Any = json.loads(body)
        if isinstance(data, dict):
            inner = data.get("status")
            said = (
                str(inner.get("description") or inner.get("indicator") or "")
                if isinstance(inner, dict)
                else str(inner or "")
            )
    except (ValueError, UnicodeDecodeError):
        pass
    return f"HTTP {status}" + (f": {said[:80]}" if said else "")


def snapshot_lines(ctx: TaskContext) -> list[str]:
    """STAT bot's view of the site now, and each configured status endpoint's."""
    settings, queue = ctx.settings, ctx.queue
    now = queue.now()
    workers = queue.workers()
    alive = [w for w in workers if now - w.heartbeat_at <= settings.lost_after]
    lines = [f"*Dispatchers:* {len(alive)} alive of {len(workers)} registered"]
    health = queue.node_health()
    failing = sorted(
        x for x, row in health.items() if str(row.data.get("state", "")).lower() in FAILING
    )
    if health:
        shown = ", ".join(failing[:20]) + (
            f" and {len(failing) - 20} more" if len(failing) > 20 else ""
        )
        lines.append(
            f"*Nodes failing their latest check:* {len(failing)} of {len(health)}"
            + (f": {shown}" if failing else "")
        )
    else:
        lines.append("*Nodes:* no hardware check recorded yet")
    client = trac_client(settings)
    if client is None:
        lines.append("*Trac:* not configured (TRAC_URL)")
    else:
        try:
            tickets = client.query(columns=["id", "priority"], status="!closed")
            counts = Counter(t.get("priority") or "none" for t in tickets)
            by = ", ".join(f"{p}: {n}" for p, n in sorted(counts.items())) or "none"
            lines.append(f"*Trac active tickets:* {len(tickets)} ({by})")
        except TracError as error:
            lines.append(f"*Trac:* not answering ({error})")
    summary = queue.outbox_summary()
    lines.append(f"*Undelivered Slack messages:* {summary.undelivered}")
    try:
        for name, url in endpoints(settings.incident_status_endpoints):
            lines.append(f"*{name}:* {probe(url, settings.incident_status_timeout)}")
    except ValueError as error:
        lines.append(f"*Status endpoints:* {error}")
    return lines


@task(
    "incident-snapshot",
    "incident-snapshot INCIDENT",
    "The site's status, posted when an incident opens",
)
def incident_snapshot(ctx: TaskContext, args: Sequence[str]) -> int:
    incident = _incident(ctx, args, "incident-snapshot INCIDENT")
    if incident is None:
        return 1
    print("\n".join(snapshot_lines(ctx)))
    return 0


@task(
    "incident-postmortem",
    "incident-postmortem INCIDENT",
    "Write a resolved incident's postmortem draft into the Trac wiki",
)
def incident_postmortem(ctx: TaskContext, args: Sequence[str]) -> int:
    incident = _incident(ctx, args, "incident-postmortem INCIDENT")
    if incident is None:
        return 1
    try:
        templates = load_templates(ctx.settings.templates_directory)
    except TemplateError as error:
        print(f"incident templates: {error}", file=sys.stderr)
        return 1
    client = trac_client(ctx.settings)
    if client is None:
        print("TRAC_URL is not set: the postmortem has nowhere to go.", file=sys.stderr)
        return 1
    entries = full_timeline(ctx.queue, incident)
    found = durations(incident, entries, templates.identified_status)
    # One page per resolve: a draft written after re-opening never replaces a page people
    # may have filled in since the first one.
    resolves = sum(1 for e in entries if e.kind is EntryKind.RESOLVED)
    name = page_name(ctx.settings.incident_wiki_prefix, incident, ctx.settings.tz)
    if resolves > 1:
        name = f"{name}-{resolves}"
    text = draft(
        incident,
        entries,
        found,
        tz=ctx.settings.tz,
        role_names={r.key: r.name for r in templates.roles},
    )
    try:
        page = client.write_wiki(
            name, text, comment=f"Postmortem draft of incident {incident.id} (STAT bot)"
        )
    except TracError as error:
        print(f"The postmortem was not written: {error}", file=sys.stderr)
        return 1
    url = page.url
    settings = ctx.settings
    said = f"Postmortem draft: {url}"

    def outbox(new: Incident) -> list[Any]:
        found_messages = [
            messages.post(messages.update_message(new, templates, said), new.channel_id)
        ]
        if settings.incidents_digest_channel:
            found_messages += messages.edit(
                messages.digest_ref(new),
                messages.digest_message(new, templates, settings.tz, ctx.queue.now()),
                settings.incidents_digest_channel,
            )
        return found_messages

    ctx.queue.update_incident(
        incident.id,
        version=None,
        changes={"postmortem": url},
        entries=[
            TimelineEntry(
                EntryKind.POSTMORTEM, f"postmortem draft written: {url}", data={"page": name}
            )
        ],
        outbox=outbox,
    )
    print(f"Postmortem draft of incident {incident.id} written to {url} (version {page.version}).")
    return 0


@task("incident-archive", "incident-archive INCIDENT", "Archive a resolved incident's channel")
def incident_archive(ctx: TaskContext, args: Sequence[str]) -> int:
    incident = _incident(ctx, args, "incident-archive INCIDENT")
    if incident is None:
        return 1
    if incident.is_open:
        print(f"Incident {incident.id} was re-opened: its channel stays.")
        return 0
    if incident.archived_at is not None or not incident.channel_id:
        print(f"Incident {incident.id}'s channel is archived already.")
        return 0
    due = incident.resolved_at + ctx.settings.incident_archive_after  # type: ignore[operator]
    if ctx.queue.now() + 1 < due:
        # Re-opened and resolved again since this job was queued: that resolve queued its own.
        print(f"Incident {incident.id} was resolved again since; a later job archives it.")
        return 0
    channel = incident.channel_id
    ctx.queue.update_incident(
        incident.id,
        version=None,
        changes={"archived_at": ctx.queue.now()},
        entries=[TimelineEntry(EntryKind.ARCHIVED, "channel archived")],
        outbox=lambda _: [messages.archive(channel)],
    )
    print(f"Incident {incident.id}'s channel #{incident.channel_name} is being archived.")
    return 0
