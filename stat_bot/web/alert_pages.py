"""The dashboard's alert page: one on-call week (`?week=2026-W48`, default this week) of
alerts per day by severity, the most frequent alerts, counts by service and severity,
and time to acknowledge and resolve (median and p90); `/api/alerts` is the same as JSON.

Behind the dashboard's login; the numbers come from stat_bot/oncall/stats.py, as the
weekly handoff's do, so the page and the mail agree.
"""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, Flask, jsonify, render_template, request
from flask_login import login_required
from flask_wtf.csrf import CSRFProtect

from stat_bot.oncall.stats import AlertStats, alert_stats, duration
from stat_bot.oncall.weeks import WeekError, iso_week, shifted, week_label
from stat_bot.web import charts
from stat_bot.web.auth import api_login_required
from stat_bot.web.errors import ApiError
from stat_bot.web.services import services

bp = Blueprint("alert_pages", __name__)


def _stats() -> tuple[AlertStats, str]:
    svc = services()
    tz = svc.settings.tz
    label = request.args.get("week") or week_label(time.time(), tz)
    try:
        week = iso_week(label, tz)
    except WeekError as error:
        raise ApiError(400, str(error), "week") from None
    alerts = svc.queue.alerts_between(week.start, week.end)
    return alert_stats(week, alerts, svc.queue.alert_firings(week.start, week.end)), week.label


def _spread(values: tuple[float, float] | None) -> dict[str, Any] | None:
    if values is None:
        return None
    return {
        "median": values[0],
        "p90": values[1],
        "text": f"median {duration(values[0])}, p90 {duration(values[1])}",
    }


def stats_dict(stats: AlertStats, label: str) -> dict[str, Any]:
    """The week's numbers as the page and the API show them."""
    return {
        "week": label,
        "start": stats.week.start,
        "end": stats.week.end,
        "firings": stats.firings,
        "per_day": [{"day": d.isoformat(), "by_severity": c} for d, c in stats.per_day],
        "by_service": dict(stats.by_service),
        "by_severity": dict(stats.by_severity),
        "frequent": [
            {
                "id": f.alert.id,
                "title": f.alert.title,
                "source": f.alert.source,
                "service": f.alert.service,
                "severity": f.alert.severity,
                "fired": f.fired,
                "status": str(f.alert.status),
                "acknowledged_by": f.alert.acknowledged_by,
                "url": f.alert.url,
            }
            for f in stats.frequent
        ],
        "acknowledge": _spread(stats.acknowledge),
        "resolve": _spread(stats.resolve),
        "previous": shifted(label, -1, stats.week.tz),
        "next": shifted(label, 1, stats.week.tz),
    }


@bp.route("/alerts")
@login_required
def page() -> str:
    stats, label = _stats()
    return render_template(
        "alerts.html",
        data=stats_dict(stats, label),
        chart=charts.alerts_per_day_svg(stats.per_day, stats.severities),
        page="alerts",
    )


@bp.route("/api/alerts")
@api_login_required
def api() -> Any:
    stats, label = _stats()
    return jsonify(stats_dict(stats, label))


def init_app(app: Flask, csrf: CSRFProtect) -> None:
    app.register_blueprint(bp)
