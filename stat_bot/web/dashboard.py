"""The dashboard's pages: jobs, one job, schedules and suppressions, the ticket form, charts.

Server-rendered with Jinja (everything escaped); small scripts in static/ poll
`/api/jobs` to keep the jobs tables current and send the ticket form and the
interval dropdown to the STAT relay's JSON routes. What a job, a schedule or a
status looks like comes from `stat_bot.views`, as in the CLI and chat. State
changes are POST only, with the CSRF token (CSRFProtect checks every POST).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from flask import (
    Blueprint,
    Flask,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    send_file,
    url_for,
)
from flask_login import login_required
from flask_wtf.csrf import CSRFProtect

from stat_bot.jobs.config import NAME as NAMESPACE_NAME
from stat_bot.jobs.model import Job, JobStatus
from stat_bot.jobs.params import excerpt
from stat_bot.jobs.schedules import row_next_due
from stat_bot.queue.base import OutboxState, ScheduleRow
from stat_bot.views import (
    LOG_STREAMS,
    DispatcherView,
    ViewError,
    ago,
    asker,
    cancel_text,
    dispatcher_views,
    dispatchers_summary,
    duration,
    job_dict,
    missing_log,
    read_log,
    when,
)
from stat_bot.web import charts
from stat_bot.web.auth import api_login_required, who
from stat_bot.web.errors import ApiError
from stat_bot.web.services import services
from stat_bot.web.stat_relay import ACTIONS, INTERVALS, interval_name
from stat_bot.web.ticket_choices import ticket_choices

log = structlog.get_logger(__name__)

bp = Blueprint("dashboard", __name__)

RECENT_LIMIT = 50
UNFINISHED_LIMIT = 200
LOG_LINES = 2000  # shown on the job page; the download has everything
INTERVAL_LABELS = {"1h": "1 hour", "2h": "2 hours", "5h": "5 hours", "1d": "1 day"}
CHART_HOURS = (6, 24, 72, 168)
MAX_NAMESPACE = 100  # a filter longer than this names no namespace


# -- what a job looks like on a page ---------------------------------------------------------


def source_text(job: Job) -> str:
    """Who asked and from where: `slack: @ada in C0GENERAL`, `schedule`, `webhook: ...`."""
    text = str(job.source)
    if job.user or job.user_name:
        text += f": {asker(job)}"
    if job.channel:
        text += f" in {job.channel}" + (" (DM)" if job.is_im else "")
    return text


def job_row(job: Job) -> dict[str, Any]:
    """A job as the tables show it: the raw fields plus the texts, formatted once, here."""
    tz = services().settings.tz
    return {
        **job_dict(job),
        "url": url_for("dashboard.job_page", job_id=job.id),
        "job": job.full_type,
        "args_text": " ".join(f"{k}={v}" for k, v in job.args.items()),
        "status_text": str(job.status) + (" (cancel requested)" if job.cancel_requested else ""),
        "created_text": when(job.created_at, tz),
        "created_ago": ago(job.created_at),
        "duration_text": duration(job),
        "source_text": source_text(job),
        "report_text": job.report_state if job.status.finished else "",
    }


@dataclass(frozen=True)
class JobFilter:
    """The jobs page's filters, from the query string; a bad one is a 400 saying what is valid."""

    namespace: str | None
    statuses: tuple[JobStatus, ...]

    @classmethod
    def from_request(cls) -> JobFilter:
        namespace = (request.args.get("namespace") or "").strip() or None
        if namespace is not None and not (
            len(namespace) <= MAX_NAMESPACE and NAMESPACE_NAME.match(namespace)
        ):
            raise ApiError(
                400,
                f"namespace {excerpt(namespace)!r} is not a namespace name "
                f"(up to {MAX_NAMESPACE} lower-case letters, digits, _ and -)",
                "namespace",
            )
        names = [
            part.strip()
            for value in request.args.getlist("status")
            for part in value.split(",")
            if part.strip()
        ]
        statuses = []
        for name in names:
            try:
                statuses.append(JobStatus(name.lower()))
            except ValueError:
                valid = ", ".join(s.value for s in JobStatus)
                raise ApiError(
                    400, f"unknown status {excerpt(name)!r}; use one of {valid}", "status"
                ) from None
        return cls(namespace, tuple(statuses))

    def wants(self, status: JobStatus) -> bool:
        return not self.statuses or status in self.statuses

    def sections(self) -> dict[str, list[Job]]:
        """Running, queued (oldest first: the order they start) and recent finished jobs."""
        queue = services().queue
        found: dict[str, list[Job]] = {}
        if self.wants(JobStatus.RUNNING):
            found["running"] = queue.jobs(
                namespace=self.namespace, statuses=[JobStatus.RUNNING], limit=UNFINISHED_LIMIT
            )
        if self.wants(JobStatus.QUEUED):
            found["queued"] = list(
                reversed(
                    queue.jobs(
                        namespace=self.namespace,
                        statuses=[JobStatus.QUEUED],
                        limit=UNFINISHED_LIMIT,
                    )
                )
            )
        finished = [s for s in JobStatus if s.finished and self.wants(s)]
        if finished:
            found["recent"] = queue.jobs(
                namespace=self.namespace, statuses=finished, limit=RECENT_LIMIT
            )
        return found


DELIVERY_LIMIT = 200
SECTION_TITLES = {"running": "Running", "queued": "Queued", "recent": "Recent"}


@bp.route("/")
@login_required
def index() -> str:
    filters = JobFilter.from_request()
    sections = {name: [job_row(j) for j in jobs] for name, jobs in filters.sections().items()}
    return render_template(
        "jobs.html",
        sections=sections,
        titles=SECTION_TITLES,
        namespaces=sorted(services().configs.namespaces),
        statuses=[s.value for s in JobStatus],
        filters=filters,
        page="jobs",
    )


@bp.route("/api/jobs")
@api_login_required
def api_jobs() -> Any:
    """The jobs page's tables as JSON (the page polls this; scripts may too)."""
    filters = JobFilter.from_request()
    sections = filters.sections()
    return jsonify(
        {
            "namespace": filters.namespace,
            "statuses": [str(s) for s in filters.statuses],
            "at": time.time(),
            "sections": {name: [job_row(j) for j in jobs] for name, jobs in sections.items()},
        }
    )


@bp.route("/api/jobs/<int:job_id>")
@api_login_required
def api_job(job_id: int) -> Any:
    job = services().queue.get(job_id)
    if job is None:
        raise ApiError(404, f"no job #{job_id}; GET /api/jobs lists recent jobs")
    return jsonify(job_row(job))


# -- one job ---------------------------------------------------------------------------------


def _job_or_404(job_id: int) -> Job:
    job = services().queue.get(job_id)
    if job is None:
        raise ApiError(
            404, f"No job #{job_id}: it never existed or was pruned after HISTORY_DAYS days."
        )
    return job


@bp.route("/jobs/<int:job_id>")
@login_required
def job_page(job_id: int) -> str:
    job = _job_or_404(job_id)
    tz = services().settings.tz
    logs: dict[str, dict[str, Any]] = {}
    for stream in LOG_STREAMS:
        try:
            view = read_log(services().queue, job_id, stream, "tail", LOG_LINES)
            logs[stream] = {
                "text": "\n".join(view.lines),
                "shown": len(view.lines),
                "total": view.total_lines,
                "size": view.path.stat().st_size,
            }
        except (ViewError, OSError) as error:
            logs[stream] = {"missing": str(error)}
    timings = [
        ("created", job.created_at),
        ("due", job.start_after),
        ("started", job.started_at),
        ("finished", job.finished_at),
    ]
    return render_template(
        "job.html",
        job=job,
        row=job_row(job),
        logs=logs,
        timings=[(name, when(ts, tz), ago(ts) if ts else "") for name, ts in timings],
        page="jobs",
    )


@bp.route("/jobs/<int:job_id>/logs/<stream>")
@login_required
def job_log(job_id: int, stream: str) -> Any:
    """A job's whole stdout or stderr as a file download (plain text, never rendered)."""
    if stream not in LOG_STREAMS:
        raise ApiError(404, f"A job has no {excerpt(stream)!r} log; choose stdout or stderr.")
    job = _job_or_404(job_id)
    path = Path(job.log_dir or "") / stream
    if not job.log_dir:
        raise ApiError(404, f"The {stream} of job #{job_id} is not there (not started yet).")
    if not path.is_file():
        reason = missing_log(job, stream)
        raise ApiError(404, reason[0].upper() + reason[1:] + ".")
    return send_file(
        path,
        mimetype="text/plain; charset=utf-8",
        as_attachment=True,
        download_name=f"job-{job_id}-{stream}.txt",
        max_age=0,
    )


@bp.route("/jobs/<int:job_id>/cancel", methods=["POST"])
@login_required
def cancel_job(job_id: int) -> Any:
    result = services().queue.request_cancel(job_id)
    log.info("job cancel from the web", job_id=job_id, outcome=str(result.outcome), user=who())
    flash(cancel_text(job_id, result), "info")
    return redirect(url_for("dashboard.job_page", job_id=job_id))


# -- schedules and suppressions ----------------------------------------------------------------


def interval_choice(row: ScheduleRow) -> str:
    """The dropdown's current value: a key of INTERVALS, `default` (the cron), or `custom`."""
    if not row.interval_seconds:
        return "default"
    return interval_name(round(row.interval_seconds)) or "custom"


def schedule_view(
    row: ScheduleRow, now: float, waiting: dict[str, list[str]] | None = None
) -> dict[str, Any]:
    """One schedule as the page shows it; `waiting`: schedules short of a variable they need."""
    tz = services().settings.tz
    nxt = row_next_due(row, tz, now) if row.enabled else None
    missing = (waiting or {}).get(row.key)
    choice = interval_choice(row)
    if row.interval_seconds:
        every = INTERVAL_LABELS.get(choice) or f"{row.interval_seconds / 60:g} minutes"
        timing = f"every {every} (set here; job_configs.py says {row.cron})"
    else:
        timing = row.cron
    return {
        "row": row,
        "job": f"{row.namespace} {row.job_type}",
        "args_text": " ".join(f"{k}={v}" for k, v in row.args.items()),
        "timing": timing,
        "last_fired": when(row.last_fired_at, tz) if row.has_fired else "never",
        "next_fire": (
            f"waits for {', '.join(missing)}"
            if missing
            else f"{when(nxt, tz)} ({ago(nxt, now)})"
            if nxt
            else "disabled"
        ),
        "next_fire_at": None if missing else nxt,
        "overridden": row.enabled_override is not None,
        "interval": choice,
        "is_active_tickets": row.key == services().settings.active_tickets_schedule,
    }


@bp.route("/schedules")
@login_required
def schedules() -> str:
    now = time.time()
    queue = services().queue
    tz = services().settings.tz
    suppressions = [
        {
            "s": s,
            "job": f"{s.namespace} {s.job_type}",
            "start": when(s.start_at, tz),
            "end": f"{when(s.end_at, tz)} ({ago(s.end_at, now)})",
            "active": s.start_at <= now,
        }
        for s in queue.suppressions()
        if s.end_at > now
    ]
    svc = services()
    waiting = svc.configs.waiting_schedules(svc.settings.job_environment())
    return render_template(
        "schedules.html",
        schedules=[schedule_view(r, now, waiting) for r in queue.schedules()],
        suppressions=suppressions,
        intervals=[(key, INTERVAL_LABELS.get(key, key)) for key in INTERVALS],
        active_tickets=services().settings.active_tickets_schedule,
        dispatchers=len(queue.workers()),
        page="schedules",
    )


@bp.route("/deliveries")
@login_required
def deliveries() -> str:
    """The outbox: what STAT bot sent on its own, what waits for Slack, what was given up."""
    now = time.time()
    queue = services().queue
    tz = services().settings.tz
    summary = queue.outbox_summary()
    rows = [
        {
            "id": item.id,
            "kind": item.kind,
            "channel": item.channel or "(the logs channel)",
            "job_id": item.job_id,
            "state": str(item.state),
            "created": when(item.created_at, tz),
            "created_ago": ago(item.created_at, now),
            "attempts": item.attempts,
            "next": ago(item.next_attempt_at, now) if item.state is OutboxState.PENDING else "",
            "error": item.last_error or "",
        }
        for item in queue.outbox_items(limit=DELIVERY_LIMIT)
    ]
    oldest = ago(summary.oldest_created_at, now) if summary.oldest_created_at else None
    return render_template(
        "deliveries.html",
        rows=rows,
        summary=summary,
        oldest=oldest,
        page="deliveries",
    )


# -- dispatchers -------------------------------------------------------------------------------


def _dispatchers() -> tuple[list[DispatcherView], float]:
    """Every registered dispatcher and the queue's clock they were judged by."""
    queue = services().queue
    now = queue.now()
    running = queue.jobs(statuses=[JobStatus.RUNNING], limit=100_000)
    return dispatcher_views(queue.workers(), running, now, services().settings.lost_after), now


def dispatcher_row(view: DispatcherView, now: float) -> dict[str, Any]:
    tz = services().settings.tz
    return {
        **view.data(),
        "started_text": when(view.worker.started_at, tz),
        "started_ago": ago(view.worker.started_at, now),
        "heartbeat_text": when(view.worker.heartbeat_at, tz),
        "heartbeat_ago": ago(view.worker.heartbeat_at, now),
    }


@bp.route("/dispatchers")
@login_required
def dispatchers_page() -> str:
    """Every dispatcher on every host, and which look dead (heartbeat older than LOST_AFTER)."""
    views, now = _dispatchers()
    lost_after = services().settings.lost_after
    return render_template(
        "dispatchers.html",
        rows=[dispatcher_row(v, now) for v in views],
        summary=dispatchers_summary(views, lost_after),
        stale=sum(v.stale for v in views),
        lost_after=lost_after,
        page="dispatchers",
    )


@bp.route("/api/dispatchers")
@api_login_required
def api_dispatchers() -> Any:
    """The dispatchers as JSON; `at` is the queue's clock (the database server's)."""
    views, now = _dispatchers()
    lost_after = services().settings.lost_after
    return jsonify(
        {
            "at": now,
            "lost_after": lost_after,
            "summary": dispatchers_summary(views, lost_after),
            "dispatchers": [dispatcher_row(v, now) for v in views],
        }
    )


@bp.route("/schedules/enabled", methods=["POST"])
@login_required
def set_enabled() -> Any:
    """Enable or disable a schedule (`enabled` = on | off | default: back to job_configs.py)."""
    key = request.form.get("key", "")
    choice = request.form.get("enabled", "")
    values: dict[str, bool | None] = {"on": True, "off": False, "default": None}
    if choice not in values:
        raise ApiError(400, "`enabled` must be on, off or default", "enabled")
    row = services().queue.set_schedule(key, enabled=values[choice])
    if row is None:
        raise ApiError(404, f"No schedule {excerpt(key)!r}: the schedules page lists them.")
    log.info("schedule changed from the web", schedule=key, enabled=choice, user=who())
    state = "enabled" if row.enabled else "disabled"
    how = " (as job_configs.py says)" if choice == "default" else ""
    flash(f"Schedule {key} is {state}{how}.", "info")
    return redirect(url_for("dashboard.schedules"))


@bp.route("/suppressions/cancel", methods=["POST"])
@login_required
def cancel_suppression() -> Any:
    namespace = request.form.get("namespace", "")
    job_type = request.form.get("job_type", "")
    removed = services().queue.unsuppress(namespace, job_type)
    log.info(
        "suppression cancelled from the web",
        namespace=namespace[:100],
        job_type=job_type[:100],
        removed=removed,
        user=who(),
    )
    label = excerpt(f"{namespace} {job_type}")
    if removed:
        flash(f"{label} is no longer suppressed.", "info")
    else:
        flash(f"{label} had no suppression (it may have just ended).", "error")
    return redirect(url_for("dashboard.schedules"))


# -- the STAT ticket form and charts ----------------------------------------------------------


@bp.route("/ticket")
@login_required
def ticket() -> str:
    choices = ticket_choices(services().settings)
    return render_template(
        "ticket.html",
        types=choices.types,
        priorities=choices.priorities,
        fallback_reason=choices.fallback_reason,
        actions=ACTIONS,
        channel=services().settings.stat_channel,
        page="ticket",
    )


@bp.route("/charts")
@login_required
def charts_page() -> str:
    try:
        hours = int(request.args.get("hours", "24"))
    except ValueError:
        hours = 0
    if hours not in CHART_HOURS:
        raise ApiError(400, f"hours must be one of {', '.join(map(str, CHART_HOURS))}", "hours")
    now = time.time()
    since = (now // charts.HOUR) * charts.HOUR - (hours - 1) * charts.HOUR
    timings = services().queue.job_timings(since=since)
    hourly = charts.HourlyCounts.build(timings, now, hours)
    types = charts.run_times(timings)
    return render_template(
        "charts.html",
        hours=hours,
        choices=CHART_HOURS,
        per_hour=charts.jobs_per_hour_svg(hourly, services().settings.tz),
        run_time=charts.run_time_svg(types),
        total=len(timings),
        page="charts",
    )


def init_app(app: Flask, csrf: CSRFProtect) -> None:
    app.register_blueprint(bp)
