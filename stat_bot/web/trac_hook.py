"""Trac change notifications: `POST /trac` from the plugin in contrib/trac/stat_bot_notify.py.

The plugin sends one JSON event per ticket created, changed or deleted (see
jobs/trac_rules.py for its shape). The checks run in this order, each refusal
saying what to fix:

1. TRAC_WEBHOOK_SECRET unset: 403, notifications are off (nothing unsigned is trusted).
2. The raw body (413 above WEB_MAX_BODY) must carry a valid `X-Trac-Signature-256`
   (`sha256=` + HMAC-SHA256 with the secret, compared in constant time) before
   anything in it is read.
3. The body must be JSON (415 for another content type) and an event (400 naming the part).
4. The event id *inside the signed body* is the replay key (an `X-Trac-Event-Id`
   header, not signed, must agree with it): the event is recorded and the jobs of the
   `trac_rules` it meets are enqueued in one transaction (`Queue.accept_delivery`);
   an id seen before is acknowledged (200, `duplicate`) and nothing is done again.
5. The ticket's message for STAT_CHANNEL, as HPC-STAT's STATtoSlackBot posted its
   tickets (summary, type, priority, xname, action, who, comment, link), is stored in
   the outbox in that same transaction, then tried once or twice at once. Slack being
   down or STAT_CHANNEL unset does not fail the request: the answer is 200 with
   `"posted": false`, the reason (logged) and `"queued": true` when the dispatcher's
   outbox sender will keep trying; the event is never lost and never posted twice.

Every request is counted in the queue counter `trac_requests` by result (for /metrics)
and logged, without the secret or the signature.
"""

from __future__ import annotations

import time
from typing import Any

import structlog
from flask import Blueprint, Flask, Response, jsonify, request
from flask_wtf.csrf import CSRFProtect

from stat_bot.jobs.config import Namespace, TracRuleSpec
from stat_bot.jobs.model import ArgsError, JobRequest, Source
from stat_bot.jobs.requests import build_request
from stat_bot.jobs.trac_rules import EventError, TicketEvent, matches, read_ticket_event, rule_args
from stat_bot.queue.base import EnqueueResult, OutboxMessage, OutboxState
from stat_bot.report.messages import Report
from stat_bot.report.notices import ticket_event_message, ticket_link
from stat_bot.report.outbox import outgoing
from stat_bot.settings import Settings
from stat_bot.web.errors import RefusedError
from stat_bot.web.services import SlackUnavailableError, services
from stat_bot.web.signed import (
    count,
    counting_refusals,
    job_body,
    json_body,
    refused_args,
    secret_or_refuse,
    verify_sha256,
)
from stat_bot.web.stat_relay import relay_reason

log = structlog.get_logger(__name__)

bp = Blueprint("trac_hook", __name__)

COUNTER = "trac_requests"  # read by /metrics; labels: the RESULTS below
RESULTS = (
    "posted", "not_posted", "duplicate", "bad_signature", "bad_request", "disabled", "too_large",
)  # fmt: skip
SOURCE = "trac"  # event ids are unique per source
POST_WAIT = 2.0  # the plugin waits a few seconds for the answer
SIGNATURE = "X-Trac-Signature-256"
EVENT_ID = "X-Trac-Event-Id"


def init_app(app: Flask, csrf: CSRFProtect) -> None:
    """Register `/trac`; exempt from CSRF, since it authenticates by signature."""
    csrf.exempt(bp)
    app.register_blueprint(bp)


@bp.post("/trac")
def receive() -> tuple[Response, int]:
    started = time.perf_counter()
    context = {"event_id": request.headers.get(EVENT_ID, "")[:128]}
    with counting_refusals(COUNTER, "trac event refused", **context):
        result, body = _receive()
    count(COUNTER, result)
    say = log.warning if result == "not_posted" else log.info  # Slack trouble: look at it
    say(
        "trac event",
        event_id=body.get("id"),
        result=result,
        trac_event=body.get("event"),
        ticket=body.get("ticket"),
        jobs=[job["id"] for job in body.get("jobs", ())],
        reason=body.get("reason"),
        ms=round((time.perf_counter() - started) * 1000, 2),
    )
    return jsonify(body), 200


def _receive() -> tuple[str, dict[str, Any]]:
    """The result to count and the answer's body; RefusedError for anything refused."""
    svc = services()
    secret = secret_or_refuse(
        svc.settings.trac_webhook_secret,
        "Trac notifications are disabled until TRAC_WEBHOOK_SECRET is set; set it, and the "
        "same value as `secret` in the [stat_bot] section of the Trac site's trac.ini",
    )
    body = request.get_data(cache=False)  # RequestEntityTooLarge above WEB_MAX_BODY
    verify_sha256(
        secret,
        body,
        SIGNATURE,
        missing=f"no {SIGNATURE} header: the plugin signs every event once trac.ini's "
        "[stat_bot] section has a secret, the same as TRAC_WEBHOOK_SECRET",
        mismatch=f"{SIGNATURE} does not match the body: `secret` in trac.ini's [stat_bot] "
        "section must be the same as TRAC_WEBHOOK_SECRET",
    )
    event = _event(body)
    header_id = request.headers.get(EVENT_ID)
    if header_id is not None and header_id.strip() != event.id:
        raise RefusedError(
            400,
            "bad_request",
            f"{EVENT_ID} does not match the event's signed 'id': the plugin sends the same "
            "value in both",
            EVENT_ID,
        )
    try:
        requests = [
            _request(namespace, rule, event, svc.settings)
            for namespace, rule in svc.configs.trac_rules()
            if matches(rule, event)
        ]
    except ArgsError as error:
        raise refused_args(error) from None
    channel = svc.settings.stat_channel
    ref = f"{SOURCE}:{event.id}"

    def notices(results: list[EnqueueResult]) -> list[OutboxMessage]:
        if not channel:
            return []
        link = ticket_link(event, svc.settings)
        message = ticket_event_message(event, link, results)
        report = Report([message], "info", channel=channel, title=f"Trac #{event.ticket}")
        return [outgoing(report, "notice", ref=ref)]

    results = svc.queue.accept_delivery(SOURCE, event.id, requests, notices=notices)
    answer: dict[str, Any] = {
        "ok": True,
        "event": event.event,
        "ticket": event.ticket,
        "id": event.id,
    }
    if results is None:
        return "duplicate", {**answer, "duplicate": True, "posted": False, "jobs": []}
    answer["jobs"] = [job_body(enqueued, namespace=True) for enqueued in results]
    posted = _post(ref, channel)
    answer.update(posted)
    return ("posted" if posted["posted"] else "not_posted"), answer


def _event(body: bytes) -> TicketEvent:
    payload = json_body(body)
    try:
        return read_ticket_event(payload)
    except EventError as error:
        raise RefusedError(400, "bad_request", f"not a ticket event: {error}", "body") from None


def _request(
    namespace: Namespace, rule: TracRuleSpec, event: TicketEvent, settings: Settings
) -> JobRequest:
    """The job a matched rule asks for (jobs/requests.py); STAT_CHANNEL is the site's channel."""
    return build_request(
        namespace,
        rule.job_type,
        source=Source.WEBHOOK,
        args=rule_args(rule, event),
        channel=rule.channel,
        site_channel=settings.stat_channel,
        user=f"trac {event.author or 'unknown'}",
        delay_seconds=rule.delay_seconds,
    )


def _post(ref: str, channel: str | None) -> dict[str, Any]:
    """One quick try at the STAT channel's post: `posted`, and `channel` and `ts` or the `reason`.

    The post is in the outbox already (stored with the event): what this try does not
    deliver, the dispatcher's sender keeps trying, so the answer says `queued`.
    """
    if not channel:
        return {"posted": False, "reason": "STAT_CHANNEL is not set: set it to the STAT channel"}
    svc = services()
    items = svc.queue.outbox_find(ref)
    if not items:
        return {"posted": False, "channel": channel, "reason": "nothing to post"}
    try:
        item = svc.sender.deliver_within(items[0].id, POST_WAIT)
    except SlackUnavailableError as error:
        return {"posted": False, "channel": channel, "reason": str(error), "queued": True}
    if item is not None and item.state is OutboxState.DELIVERED:
        return {"posted": True, "channel": channel, "ts": item.ts}
    reason = relay_reason(item.last_error if item else None, channel)
    queued = item is not None and item.state is OutboxState.PENDING
    return {"posted": False, "channel": channel, "reason": reason, "queued": queued}
