"""HPC-STAT's relay: `/slack-proxy` (the ticket form -> the STAT channel) and `/set-interval`.

Contract (the dashboard's pages call these too):
- POST /slack-proxy, JSON {summary, type, priority, xname, action} -> 200 {"ok": true,
  "channel", "ts"}; 400 {"error", "field"}; 401; 502 {"error"} (Slack down); 503 (no STAT_CHANNEL).
- GET /set-interval -> {"schedule", "interval", "interval_seconds", "cron", "next_fire_at"};
  POST JSON {"interval": "1h"|"2h"|"5h"|"1d"|"default"} or {"minutes": N} -> the same body,
  400 {"error", "field": "interval"|"minutes"}, 404 when the schedule does not exist.

HPC-STAT's own page posted the interval as a number of minutes (`{"interval": 60}`), so a
whole number in `interval` is read as minutes too. Form bodies work as well as JSON.

Both routes authenticate with `api_login_required` (a dashboard session plus the
X-CSRFToken header, the trusted proxy header, or `Authorization: Bearer STAT_RELAY_TOKEN`),
so Flask-WTF's form-token check is off for them. CORS headers (flask-cors) are sent only
on these two routes and only for WEB_CORS_ORIGINS: HPC-STAT's Trac page lives elsewhere.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import structlog
from flask import Blueprint, Flask, Response, jsonify, request
from flask_cors import CORS
from flask_wtf.csrf import CSRFProtect
from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, field_validator

from stat_bot.jobs.params import TYPES, ParamError
from stat_bot.jobs.schedules import row_next_due
from stat_bot.queue.base import OutboxState, ScheduleRow
from stat_bot.report.messages import Report
from stat_bot.report.notices import ticket_message
from stat_bot.report.outbox import outgoing
from stat_bot.web.auth import api_login_required, who
from stat_bot.web.errors import ApiError
from stat_bot.web.services import KEY, SlackUnavailableError, services
from stat_bot.web.ticket_choices import (
    FALLBACK,
    FALLBACK_PRIORITIES,
    FALLBACK_TYPES,
    TicketChoices,
    ticket_choices,
)

log = structlog.get_logger(__name__)
T = TypeVar("T")

# HPC-STAT's form's choices, always accepted; the site's own come from its Trac
# (web/ticket_choices.py). Matched without regard to case.
TICKET_TYPES = FALLBACK_TYPES
PRIORITIES = FALLBACK_PRIORITIES
ACTIONS = ("new", "accepted", "assigned", "reassigned", "resolved", "reopened", "closed")
# The active-tickets report's intervals, as HPC-STAT's dropdown offers them.
INTERVALS = {"1h": 3600, "2h": 7200, "5h": 18000, "1d": 86400}

FORM_FIELDS = ("summary", "type", "priority", "xname", "action")
MAX_SUMMARY = 200
MIN_MINUTES, MAX_MINUTES = 5, 7 * 24 * 60  # every 5 minutes .. once a week
CORS_HEADERS = ("Content-Type", "Authorization", "X-CSRFToken")
RELAY_ROUTES = ("/slack-proxy", "/set-interval")

bp = Blueprint("stat_relay", __name__)


# -- the ticket form ------------------------------------------------------------------------


def _choice(value: str, allowed: tuple[str, ...], field: str) -> str:
    """`value` as the form spells it, matched without regard to case or surrounding space."""
    wanted = value.strip().casefold()
    for option in allowed:
        if option.casefold() == wanted:
            return option
    raise ValueError(f"{field} must be one of {', '.join(allowed)} (got {_shown(value)})")


def _shown(value: str, limit: int = 40) -> str:
    """A bad value quoted for an error message, cut short so a huge one stays readable."""
    return repr(value if len(value) <= limit else value[:limit] + "...")


class TicketForm(BaseModel):
    """HPC-STAT's ticket form, checked and normalised (choices in their canonical spelling)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    summary: str
    type: str
    priority: str
    xname: str
    action: str

    @field_validator("summary")
    @classmethod
    def _summary(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("summary must not be blank: say in a line what is wrong")
        if len(value) > MAX_SUMMARY:
            raise ValueError(
                f"summary must be at most {MAX_SUMMARY} characters (got {len(value)}); "
                "put the details in the ticket itself"
            )
        return value

    @field_validator("type")
    @classmethod
    def _type(cls, value: str, info: ValidationInfo) -> str:
        return _choice(value, _choices(info).accepted_types, "type")

    @field_validator("priority")
    @classmethod
    def _priority(cls, value: str, info: ValidationInfo) -> str:
        return _choice(value, _choices(info).accepted_priorities, "priority")

    @field_validator("action")
    @classmethod
    def _action(cls, value: str) -> str:
        return _choice(value, ACTIONS, "action")

    @field_validator("xname")
    @classmethod
    def _xname(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("xname must not be blank: name the component, such as x1000c0s0b0n0")
        try:
            return TYPES["xname"].convert(value)
        except ParamError as error:
            raise ValueError(f"xname must be {error} (got {_shown(value)})") from None


def _choices(info: ValidationInfo) -> TicketChoices:
    context = info.context or {}
    return context.get("choices", FALLBACK)


def parse_ticket(body: object, choices: TicketChoices = FALLBACK) -> TicketForm:
    """The form from a request body, or ApiError(400) naming every field at fault.

    `error` and `field` name the first (in the form's order); `errors` has them all,
    so the form can mark each at once. Unknown fields are reported before anything
    else: a client that misspells a field name would otherwise be told the correctly
    spelled one is missing.
    """
    if not isinstance(body, dict):
        raise ApiError(
            400,
            "the body must be a JSON object with " + ", ".join(FORM_FIELDS),
        )
    try:
        return TicketForm.model_validate(body, context={"choices": choices})
    except ValidationError as error:
        raise _form_error(error, choices) from None


def _form_error(error: ValidationError, choices: TicketChoices) -> ApiError:
    problems = error.errors()
    unknown = [str(p["loc"][0]) for p in problems if p["type"] == "extra_forbidden"]
    if unknown:
        names = ", ".join(unknown)
        return ApiError(
            400,
            f"unknown field{'s' if len(unknown) > 1 else ''} {names}: "
            f"the form has only {', '.join(FORM_FIELDS)}",
            unknown[0],
        )
    by_field = {str(p["loc"][0]): p for p in problems if p["loc"]}
    errors: dict[str, str] = {}
    for name in FORM_FIELDS:
        problem = by_field.get(name)
        if problem is None:
            continue
        if problem["type"] == "missing":
            errors[name] = f"{name} is required ({_expected(name, choices)})"
        elif problem["type"] == "value_error":
            errors[name] = problem["msg"].removeprefix("Value error, ")
        else:
            errors[name] = f"{name} must be text ({_expected(name, choices)})"
    if not errors:
        return ApiError(400, "the form is not valid: " + str(problems[0]["msg"]))
    first = next(iter(errors))
    return ApiError(400, errors[first], first, errors)


def _expected(name: str, choices: TicketChoices) -> str:
    return {
        "summary": f"a line of at most {MAX_SUMMARY} characters",
        "type": "one of " + ", ".join(choices.accepted_types),
        "priority": "one of " + ", ".join(choices.accepted_priorities),
        "xname": "an xname such as x1000c0s0b0n0",
        "action": "one of " + ", ".join(ACTIONS),
    }[name]


def _count(result: str) -> None:
    """Count a relay result for /metrics; a database problem must not cost the ticket."""
    try:
        services().queue.count("relay_requests", result)
    except Exception as error:  # QueueError, or sqlite3's own from inside a write
        log.warning("relay request not counted", result=result, reason=str(error))


def _json_body() -> object:
    body = request.get_json(silent=True, force=True)
    if body is None:
        raise ApiError(400, "the body must be JSON (Content-Type: application/json)")
    return body


@bp.route("/slack-proxy", methods=["POST"])
@api_login_required
def slack_proxy() -> tuple[Response, int]:
    """Post HPC-STAT's ticket form to the STAT channel."""
    try:
        ticket = parse_ticket(_json_body(), ticket_choices(services().settings))
    except ApiError:
        _count("invalid")
        raise
    settings = services().settings
    channel = settings.stat_channel
    if not channel:
        _count("not_configured")
        raise ApiError(503, "STAT_CHANNEL is not set: set it to the channel tickets go to")
    svc = services()
    try:
        sender = svc.sender
    except SlackUnavailableError as error:
        _count("slack_failed")
        log.warning("STAT ticket not posted", channel=channel, user=who(), reason=str(error))
        return jsonify({"error": str(error)}), 502
    # The form's user waits for the answer: what Slack has not taken within
    # STAT_RELAY_WAIT is given up (never posted later, after the form said it failed).
    wait = svc.settings.stat_relay_wait
    report = Report([ticket_message(ticket, who())], "info", channel=channel, title="STAT ticket")
    try:
        (item_id,) = svc.queue.post(
            [outgoing(report, "relay", expires_at=svc.queue.now() + wait + 1)]
        )
    except Exception as error:  # the database: the person waiting still gets the ticket sent
        log.warning("STAT ticket not stored; sending it unrecorded", reason=str(error))
        sent = sender.send_unrecorded(report, wait)
        error_text, ts = (str(sent), None) if isinstance(sent, Exception) else (None, sent.ts)
    else:
        item = sender.deliver_within(item_id, wait, give_up_late=True)
        delivered = item is not None and item.state is OutboxState.DELIVERED
        error_text = None if delivered else (item.last_error if item else None) or ""
        ts = item.ts if item is not None else None
    if error_text is not None:
        _count("slack_failed")
        reason = relay_reason(error_text, channel)
        log.warning("STAT ticket not posted", channel=channel, user=who(), reason=reason)
        return jsonify({"error": reason}), 502
    _count("posted")
    log.info("STAT ticket posted", channel=channel, user=who(), xname=ticket.xname, ts=ts)
    return jsonify({"ok": True, "channel": channel, "ts": ts}), 200


def relay_reason(error: str | None, channel: str) -> str:
    """Why a message to the STAT channel did not go out, with what to change."""
    reason = error or "Slack did not answer"
    if "not_in_channel" in reason or "channel_not_found" in reason:
        reason += f"; invite the bot to {channel} or change STAT_CHANNEL"
    return reason


# -- the active-tickets interval --------------------------------------------------------------


def interval_name(seconds: float | None) -> str | None:
    """The dropdown's name for an interval ("1h"), or None when it has none."""
    for name, value in INTERVALS.items():
        if seconds == value:
            return name
    return None


def parse_interval(body: dict[str, Any]) -> int | None:
    """Seconds for the new interval, None for "back to the config's cron"; ApiError(400) if bad.

    `{"interval": "1h"|"2h"|"5h"|"1d"|"default"}`, `{"interval": 60}` (HPC-STAT's page:
    minutes) or `{"minutes": 60}`.
    """
    choices = ", ".join([*INTERVALS, "default"])
    unknown = sorted(k for k in body if k not in ("interval", "minutes", "csrf_token"))
    if unknown:
        return _refuse(
            f"unknown field{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}: "
            "send interval or minutes",
            unknown[0],
        )
    if "interval" in body and "minutes" in body:
        return _refuse("send either interval or minutes, not both", "minutes")
    if "minutes" in body:
        return _minutes(body["minutes"], "minutes")
    if "interval" not in body:
        return _refuse(
            f"interval is required: one of {choices}, or minutes as a whole number", "interval"
        )
    value = body["interval"]
    if isinstance(value, str) and not value.strip().isdigit():
        name = value.strip().lower()
        if name == "default":
            return None
        if name in INTERVALS:
            return INTERVALS[name]
        return _refuse(
            f"interval must be one of {choices}, or minutes as a whole number "
            f"(got {_shown(value)})",
            "interval",
        )
    return _minutes(value, "interval")


def _minutes(value: object, field: str) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        return _refuse(
            f"{field} must be a whole number of minutes from {MIN_MINUTES} to {MAX_MINUTES} "
            f"(got {_shown(str(value))})",
            field,
        )
    if not MIN_MINUTES <= value <= MAX_MINUTES:
        return _refuse(
            f"{field} must be from {MIN_MINUTES} to {MAX_MINUTES} minutes (a week); got {value}",
            field,
        )
    return value * 60


def _refuse(message: str, field: str) -> Any:
    raise ApiError(400, message, field)


def _schedule_body(row: ScheduleRow) -> dict[str, Any]:
    settings = services().settings
    next_fire = row_next_due(row, settings.tz, time.time()) if row.enabled else None
    seconds = int(row.interval_seconds) if row.interval_seconds else None
    return {
        "schedule": row.key,
        "interval": interval_name(seconds),
        "interval_seconds": seconds,
        "cron": row.cron,
        "next_fire_at": next_fire,
        "enabled": row.enabled,
    }


def _queue_call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """A queue call whose failure is a 503 saying so (nothing was changed), not a 500."""
    try:
        return fn(*args, **kwargs)
    except Exception as error:  # QueueError, or sqlite3's own from inside a write
        log.exception("set-interval: the queue database failed", reason=str(error))
        raise ApiError(
            503, f"the queue database is not available ({error}); nothing was changed"
        ) from None


def _missing_schedule(key: str) -> ApiError:
    return ApiError(
        404,
        f"there is no schedule {key!r} (ACTIVE_TICKETS_SCHEDULE): it must be defined in "
        "job_configs.py, and schedules are stored when a dispatcher starts, so start or "
        "restart `stat-bot dispatcher` after adding it",
    )


def _interval_request_body() -> dict[str, Any]:
    if request.is_json or not request.form:
        body = request.get_json(silent=True, force=True)
        if not isinstance(body, dict):
            raise ApiError(
                400,
                'the body must be a JSON object such as {"interval": "1h"} or {"minutes": 90}',
                "interval",
            )
        return body
    return dict(request.form.items())


@bp.route("/set-interval", methods=["GET", "POST"])
@api_login_required
def set_interval() -> tuple[Response, int]:
    """Read or change how often the active-tickets report runs (kept in the schedules table)."""
    key = services().settings.active_tickets_schedule
    if request.method == "GET":
        row = next((r for r in _queue_call(services().queue.schedules) if r.key == key), None)
        if row is None:
            raise _missing_schedule(key)
        return jsonify(_schedule_body(row)), 200
    seconds = parse_interval(_interval_request_body())
    row = _queue_call(services().queue.set_schedule, key, interval_seconds=seconds)
    if row is None:
        raise _missing_schedule(key)
    log.info(
        "active-tickets interval changed",
        schedule=key,
        interval_seconds=seconds,
        user=who(),
    )
    return jsonify(_schedule_body(row)), 200


def init_app(app: Flask, csrf: CSRFProtect) -> None:
    """Register this module's routes (csrf: to exempt routes that authenticate otherwise)."""
    csrf.exempt(bp)  # api_login_required checks the CSRF header for cookie sessions
    app.register_blueprint(bp)
    origins = app.extensions[KEY].settings.cors_origins
    if origins:
        CORS(
            app,
            resources={route: {} for route in RELAY_ROUTES},
            origins=origins,
            allow_headers=list(CORS_HEADERS),
            methods=["GET", "POST", "OPTIONS"],
            supports_credentials=False,
            max_age=600,
        )
