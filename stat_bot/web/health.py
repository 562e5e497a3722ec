"""`/healthz` (the process answers) and `/readyz` (what the service needs is there).

Liveness never touches the database, so a slow disk cannot get a healthy web
server restarted. Readiness checks, each with a line saying why:
- `database`: one cheap read and one small committed write through the queue (a full
  disk or a read-only file fails the write while reads still work), and the file is
  still the one the service opened (not deleted or replaced under it);
- `dispatcher`: some dispatcher's heartbeat is younger than LOST_AFTER seconds;
- `bot` (only when SLACK_BOT_TOKEN/SLACK_APP_TOKEN are set): the bot's last beat says
  "connected" and is younger than LOST_AFTER seconds;
- `delivery`: no message in the outbox has waited for Slack longer than
  SLACK_DELIVERY_DEGRADED_AFTER seconds (Slack down, or no dispatcher to send).
200 when every check is ready, 503 otherwise. Neither route needs a login: probes
and load balancers call them, and they say nothing secret.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import structlog
from flask import Blueprint, Flask, Response, jsonify
from flask_wtf.csrf import CSRFProtect

from stat_bot.queue.base import Beat, OutboxSummary, Queue, Worker
from stat_bot.settings import Settings
from stat_bot.web.services import services

log = structlog.get_logger(__name__)

bp = Blueprint("health", __name__)


@dataclass(frozen=True, slots=True)
class Check:
    ready: bool
    detail: str

    def body(self) -> dict[str, Any]:
        return {"ready": self.ready, "detail": self.detail}


def _ago(at: float, now: float) -> str:
    return f"{max(0.0, now - at):.1f} s ago"


def live_workers(workers: list[Worker], settings: Settings, now: float) -> list[Worker]:
    """Dispatchers whose heartbeat is younger than LOST_AFTER (shared with /metrics)."""
    return [w for w in workers if now - w.heartbeat_at <= settings.lost_after]


def bot_beats(beats: list[Beat]) -> list[Beat]:
    """The bots' beats, latest first: one per host (`bot:<host>`; `bot` from older versions)."""
    found = [b for b in beats if b.component == "bot" or b.component.startswith("bot:")]
    return sorted(found, key=lambda b: b.at, reverse=True)


def bots_connected(beats: list[Beat], settings: Settings, now: float) -> list[Beat]:
    """The bots whose beat says connected and is younger than LOST_AFTER, latest first."""
    return [
        b for b in bot_beats(beats) if b.state == "connected" and now - b.at <= settings.lost_after
    ]


def bot_connected(beats: list[Beat], settings: Settings, now: float) -> Beat | None:
    """The latest beat of a bot that says connected and is younger than LOST_AFTER, else None.

    Several bots (one per host) may share the Slack app: one connected is enough.
    """
    connected = bots_connected(beats, settings, now)
    return connected[0] if connected else None


def dispatcher_check(workers: list[Worker], settings: Settings, now: float) -> Check:
    live = live_workers(workers, settings, now)
    if live:
        latest = max(w.heartbeat_at for w in live)
        hosts = ", ".join(sorted({f"{w.hostname}:{w.pid}" for w in live}))
        return Check(
            True, f"{len(live)} dispatcher(s) alive ({hosts}); last heartbeat {_ago(latest, now)}"
        )
    if workers:
        latest = max(w.heartbeat_at for w in workers)
        return Check(
            False,
            f"no dispatcher heartbeat in the last {settings.lost_after:g} s (LOST_AFTER); "
            f"the latest was {_ago(latest, now)}: is `stat-bot dispatcher` running?",
        )
    return Check(False, "no dispatcher has registered: start `stat-bot dispatcher`")


def _where(beat: Beat) -> str:
    return f"{beat.hostname}:{beat.pid}" if beat.hostname else f"pid {beat.pid}"


def bot_check(beats: list[Beat], settings: Settings, now: float) -> Check:
    ours = bot_beats(beats)
    if not ours:
        return Check(False, "the bot has never reported: start `stat-bot bot`")
    connected = bots_connected(beats, settings, now)
    if len(connected) > 1:
        where = ", ".join(_where(b) for b in connected)
        return Check(
            True,
            f"{len(connected)} bots connected ({where}); last beat {_ago(connected[0].at, now)}",
        )
    beat = connected[0] if connected else ours[0]
    where = _where(beat)
    said = f"{beat.state}" + (f" ({beat.detail})" if beat.detail else "")
    if connected:
        return Check(True, f"bot {where} {said}; last beat {_ago(beat.at, now)}")
    if beat.state == "connected":
        return Check(
            False,
            f"bot {where} last said connected {_ago(beat.at, now)}, longer ago than "
            f"{settings.lost_after:g} s (LOST_AFTER): is `stat-bot bot` running?",
        )
    return Check(False, f"bot {where} is {said}, {_ago(beat.at, now)}")


def delivery_check(summary: OutboxSummary, settings: Settings, now: float) -> Check:
    """Degraded while a message has waited for Slack longer than the threshold."""
    if summary.oldest_created_at is None:
        return Check(True, "every message has been delivered")
    age = max(0.0, now - summary.oldest_created_at)
    waiting = f"{summary.undelivered} message(s) waiting for Slack, the oldest for {age:.0f} s"
    why = f"; last error: {summary.last_error}" if summary.last_error else ""
    if age > settings.slack_delivery_degraded_after:
        return Check(
            False,
            f"{waiting}, longer than {settings.slack_delivery_degraded_after:g} s "
            f"(SLACK_DELIVERY_DEGRADED_AFTER){why}",
        )
    return Check(True, f"{waiting}{why}")


def database_down(settings: Settings, reason: str) -> dict[str, Check]:
    """The checks when the database fails: the others cannot be known without it."""
    log.warning("readiness: database not ready", reason=reason)
    checks = {
        "database": Check(False, reason),
        "dispatcher": Check(False, "unknown: the database cannot be read"),
        "delivery": Check(False, "unknown: the database cannot be read"),
    }
    if settings.slack_configured:
        checks["bot"] = Check(False, "unknown: the database cannot be read")
    return checks


def readiness(queue: Queue, settings: Settings) -> dict[str, Check]:
    """Every readiness check by name; a failing database fails the others with it."""
    checks: dict[str, Check] = {}
    try:
        # The queue's clock, as the dispatchers' heartbeats are written by it.
        now = queue.now()
        workers = queue.workers()
        beats = queue.beats() if settings.slack_configured else []
        outbox = queue.outbox_summary()
    except Exception as error:  # any database failure is an answer here, not a 500
        return database_down(settings, f"the queue database cannot be read: {error}")
    problem = queue.file_problem()
    if problem is None:
        try:
            queue.probe_write()
        except Exception as error:
            problem = f"the queue database cannot be written: {error}"
    if problem is not None:
        log.warning("readiness: database not ready", reason=problem)
        checks["database"] = Check(False, problem)
    else:
        checks["database"] = Check(True, "the queue database answers reads and writes")
    checks["dispatcher"] = dispatcher_check(workers, settings, now)
    if settings.slack_configured:
        checks["bot"] = bot_check(beats, settings, now)
    checks["delivery"] = delivery_check(outbox, settings, now)
    return checks


@bp.route("/healthz")
def healthz() -> tuple[Response, int]:
    """The process answers; nothing else is looked at."""
    return jsonify({"status": "ok"}), 200


@bp.route("/readyz")
def readyz() -> tuple[Response, int]:
    """Whether this STAT bot can do its work, and what is missing if not."""
    svc = services()
    try:
        queue = svc.queue
    except Exception as error:  # the database cannot even be opened
        checks = database_down(svc.settings, f"the queue database cannot be opened: {error}")
    else:
        checks = readiness(queue, svc.settings)
    ready = all(c.ready for c in checks.values())
    body = {"ready": ready, "checks": {name: c.body() for name, c in checks.items()}}
    response = jsonify(body)
    response.headers["Cache-Control"] = "no-store"
    return response, 200 if ready else 503


def init_app(app: Flask, csrf: CSRFProtect) -> None:
    """Register this module's routes (csrf: to exempt routes that authenticate otherwise)."""
    app.register_blueprint(bp)
