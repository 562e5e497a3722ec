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
5. The ticket is posted to STAT_CHANNEL as HPC-STAT's STATtoSlackBot posted its
   tickets (summary, type, priority, xname, action, who, comment, link). The plugin
   does not retry, so Slack being down or STAT_CHANNEL unset does not fail the
   request: the answer is 200 with `"posted": false` and the reason, which is logged.

Every request is counted in the queue counter `trac_requests` by result (for /metrics)
and logged, without the secret or the signature.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from typing import Any

import structlog
from flask import Blueprint, Flask, Response, jsonify, request
from flask_wtf.csrf import CSRFProtect

from stat_bot.jobs.config import Namespace, TracRuleSpec
from stat_bot.jobs.model import JobRequest, Source
from stat_bot.jobs.requests import build_request
from stat_bot.jobs.trac_rules import EventError, TicketEvent, matches, read_ticket_event, rule_args
from stat_bot.queue.base import EnqueueResult
from stat_bot.report.messages import Message, escape_mrkdwn
from stat_bot.settings import Settings
from stat_bot.web.errors import RefusedError
from stat_bot.web.services import SlackUnavailableError, services
from stat_bot.web.signed import (
    count,
    counting_refusals,
    job_body,
    json_body,
    secret_or_refuse,
    verify_sha256,
)

log = structlog.get_logger(__name__)

bp = Blueprint("trac_hook", __name__)

COUNTER = "trac_requests"  # read by /metrics; labels: the RESULTS below
RESULTS = (
    "posted", "not_posted", "duplicate", "bad_signature", "bad_request", "disabled", "too_large",
)  # fmt: skip
SOURCE = "trac"  # event ids are unique per source
SIGNATURE = "X-Trac-Signature-256"
EVENT_ID = "X-Trac-Event-Id"
SAFE_LINK = re.compile(r"^https?://[^\s<>|]+$")
MAX_SUMMARY = 300  # Slack shows a section's text up to 3,000 characters
MAX_COMMENT = 2500
MAX_VALUE = 80
QUIET_FIELDS = frozenset({"status", "resolution", "owner", "changetime", "time"})  # in Action


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
    requests = [
        _request(namespace, rule, event, svc.settings)
        for namespace, rule in svc.configs.trac_rules()
        if matches(rule, event)
    ]
    results = svc.queue.accept_delivery(SOURCE, event.id, requests)
    answer: dict[str, Any] = {
        "ok": True,
        "event": event.event,
        "ticket": event.ticket,
        "id": event.id,
    }
    if results is None:
        return "duplicate", {**answer, "duplicate": True, "posted": False, "jobs": []}
    answer["jobs"] = [job_body(enqueued, namespace=True) for enqueued in results]
    posted = _post(event, results, svc.settings)
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


def _post(event: TicketEvent, results: list[EnqueueResult], settings: Settings) -> dict[str, Any]:
    """Post the ticket to STAT_CHANNEL: `posted`, and `channel` and `ts` or the `reason`."""
    channel = settings.stat_channel
    if not channel:
        return {"posted": False, "reason": "STAT_CHANNEL is not set: set it to the STAT channel"}
    message = ticket_event_message(event, ticket_link(event, settings), results)
    try:
        ts = services().slack.post(channel, message, quick=True)
    except SlackUnavailableError as error:
        reason = str(error)
        if "not_in_channel" in reason or "channel_not_found" in reason:
            reason += f"; invite the bot to {channel} or change STAT_CHANNEL"
        return {"posted": False, "channel": channel, "reason": reason}
    return {"posted": True, "channel": channel, "ts": ts}


# -- the message ---------------------------------------------------------------------------


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
