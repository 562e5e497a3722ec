"""The dashboard's incident pages: the list (open first) and one incident with its whole timeline.

Behind the dashboard's login like its other pages, and read-only: incidents are opened and
changed in Slack (incidents/service.py), where the channel and its people are. The timeline
is the stored entries plus the linked jobs' results (incidents/timeline.py); job entries link
to the job's page. Everything shown was typed by someone, so it goes through Jinja's escaping
and no script touches it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from flask import Blueprint, Flask, jsonify, render_template, url_for
from flask_login import login_required
from flask_wtf.csrf import CSRFProtect

from stat_bot.incidents.model import EntryKind, Incident, TimelineEntry
from stat_bot.incidents.timeline import full_timeline
from stat_bot.views import ago, when
from stat_bot.web.auth import api_login_required
from stat_bot.web.errors import ApiError
from stat_bot.web.services import services

bp = Blueprint("incidents", __name__)

LIMIT = 200  # the list's length: every open incident and the latest resolved ones


def span(seconds: float) -> str:
    """How long something lasted, roughly: `45 s`, `12 min`, `3.5 h`, `2.0 d`."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def postmortem_url(page: str | None) -> str | None:
    """Where the postmortem is: a web address as written, a wiki page name in TRAC_URL's wiki."""
    if not page:
        return None
    if page.startswith(("https://", "http://")):
        return page
    trac = services().settings.trac_url
    return f"{trac.rstrip('/')}/wiki/{quote(page)}" if trac else None


def ticket_url(number: int) -> str | None:
    trac = services().settings.trac_url
    return f"{trac.rstrip('/')}/ticket/{number}" if trac else None


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


def incident_row(incident: Incident, now: float) -> dict[str, Any]:
    """An incident as the pages and the API show it: its fields plus texts formatted once, here."""
    tz = services().settings.tz
    data = {f.name: _plain(getattr(incident, f.name)) for f in dataclasses.fields(incident)}
    if incident.is_open:
        age = f"open for {span(now - incident.opened_at)}"
    else:
        age = f"lasted {span((incident.resolved_at or now) - incident.opened_at)}"
    return {
        **data,
        "open": incident.is_open,
        "url": url_for("incidents.incident_page", incident_id=incident.id),
        "roles_text": ", ".join(f"{role}: {user}" for role, user in incident.roles.items()),
        "opened_text": when(incident.opened_at, tz),
        "opened_ago": ago(incident.opened_at, now),
        "resolved_text": when(incident.resolved_at, tz) if incident.resolved_at else "",
        "age_text": age,
        "postmortem_url": postmortem_url(incident.postmortem),
    }


def entry_row(entry: TimelineEntry) -> dict[str, Any]:
    tz = services().settings.tz
    job_id = entry.data.get("job_id") if entry.data else None
    job_id = job_id if isinstance(job_id, int) and not isinstance(job_id, bool) else None
    return {
        "id": entry.id,
        "kind": str(entry.kind),
        "text": entry.text,
        "user": entry.user,
        "user_name": entry.user_name,
        "who": f"@{entry.user_name}" if entry.user_name else entry.user or "",
        "at": entry.at,
        "at_text": when(entry.at, tz),
        "data": _plain(entry.data),
        "job_id": job_id,
        "job_url": url_for("dashboard.job_page", job_id=job_id) if job_id is not None else None,
    }


def _incidents() -> tuple[list[Incident], float]:
    """Open incidents (newest first), then resolved ones (latest resolved first)."""
    queue = services().queue
    now = queue.now()
    found = queue.incidents(limit=LIMIT)
    opened = [i for i in found if i.is_open]
    resolved = sorted(
        (i for i in found if not i.is_open), key=lambda i: (-(i.resolved_at or 0.0), -i.id)
    )
    return [*opened, *resolved], now


def _incident_or_404(incident_id: int) -> Incident:
    incident = services().queue.incident(incident_id)
    if incident is None:
        raise ApiError(404, f"No incident #{incident_id}; the incidents page lists them.")
    return incident


@bp.route("/incidents")
@login_required
def list_page() -> str:
    incidents, now = _incidents()
    rows = [incident_row(i, now) for i in incidents]
    return render_template(
        "incidents.html",
        open_rows=[r for r in rows if r["open"]],
        resolved_rows=[r for r in rows if not r["open"]],
        page="incidents",
    )


@bp.route("/incidents/<int:incident_id>")
@login_required
def incident_page(incident_id: int) -> str:
    incident = _incident_or_404(incident_id)
    queue = services().queue
    return render_template(
        "incident.html",
        row=incident_row(incident, queue.now()),
        timeline=[entry_row(e) for e in full_timeline(queue, incident)],
        tickets=[(n, ticket_url(n)) for n in incident.tickets],
        job_kind=str(EntryKind.JOB),
        page="incidents",
    )


@bp.route("/api/incidents")
@api_login_required
def api_incidents() -> Any:
    incidents, now = _incidents()
    return jsonify({"at": now, "incidents": [incident_row(i, now) for i in incidents]})


@bp.route("/api/incidents/<int:incident_id>")
@api_login_required
def api_incident(incident_id: int) -> Any:
    incident = _incident_or_404(incident_id)
    queue = services().queue
    return jsonify(
        {
            **incident_row(incident, queue.now()),
            "timeline": [entry_row(e) for e in full_timeline(queue, incident)],
        }
    )


def init_app(app: Flask, csrf: CSRFProtect) -> None:
    app.register_blueprint(bp)
