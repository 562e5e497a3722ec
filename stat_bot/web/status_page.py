"""The public status page: `GET /status` (HTML) and `GET /status.json` (the same, for programs).

Open to everyone, no login: these routes are not behind `login_required` (login in this app is
per route, not global), set no cookie (the template calls neither `csrf_token()` nor
`current_user`, which would start a session) and get the app's security headers like every
response (app.py's after_request). What they show is decided in incidents/status_page.py.
Other sites may read the feed: it carries `Access-Control-Allow-Origin: *` (it holds nothing
private and no credentials are involved). Both are cacheable for a few seconds, so a status
page linked from everywhere during an outage costs one queue read per CACHE_SECONDS per cache.
With STATUS_PAGE_ENABLED off both are a 404 like any unknown address.
"""

from __future__ import annotations

from datetime import datetime

from flask import Blueprint, Flask, Response, abort, jsonify, render_template
from flask_wtf.csrf import CSRFProtect

from stat_bot.incidents.status_page import DAY, StatusPage, status_page_for
from stat_bot.web.services import services

bp = Blueprint("status_page", __name__)

CACHE_SECONDS = 10
LIMIT = 500  # incidents read: every open one and the recent resolved ones fit


def current_page() -> StatusPage:
    """The page now, on the queue's clock (the one incidents' times were written with)."""
    svc = services()
    settings = svc.settings
    if not settings.status_page_enabled:
        abort(404)
    queue = svc.queue
    now = queue.now()
    since = now - settings.status_page_resolved_days * DAY
    return status_page_for(settings, queue.incidents(resolved_since=since, limit=LIMIT), now)


def readable(iso_time: str | None) -> str:
    """`2027-01-15T08:00:00Z` -> `2027-01-15 08:00 UTC`, for people."""
    if not iso_time:
        return "-"
    return datetime.strptime(iso_time, "%Y-%m-%dT%H:%M:%SZ").strftime("%Y-%m-%d %H:%M UTC")


def _cacheable(response: Response) -> Response:
    response.headers["Cache-Control"] = f"public, max-age={CACHE_SECONDS}"
    return response


@bp.route("/status")
def page() -> Response:
    html = render_template("status.html", status=current_page(), readable=readable)
    return _cacheable(Response(html, mimetype="text/html"))


@bp.route("/status.json")
def feed() -> Response:
    response = _cacheable(jsonify(current_page().data()))
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response


def init_app(app: Flask, csrf: CSRFProtect) -> None:
    app.register_blueprint(bp)
