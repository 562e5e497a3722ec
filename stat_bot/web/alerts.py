"""Alerts in: `POST /alerts/alertmanager` and `POST /alerts/pagerduty`.

Each checks who sent the request before reading it (a bearer token or basic auth
for Alertmanager, PagerDuty's `X-PagerDuty-Signature`), then the payload's shape,
then records every alert and the messages it causes in one transaction: a refusal
(4xx with the reason) stores nothing, and a PagerDuty event delivered twice (its
retries carry the same event id) is recorded once.
"""

from __future__ import annotations

import base64
import hmac
import time
from collections.abc import Mapping
from typing import Any

import structlog
from flask import Blueprint, Flask, Response, jsonify, request
from flask_wtf.csrf import CSRFProtect

from stat_bot.oncall.alerts import (
    AlertPayloadError,
    alertmanager_events,
    pagerduty_acknowledgement,
    pagerduty_event,
)
from stat_bot.oncall.intake import record
from stat_bot.oncall.messages import acknowledged_message, alert_messages
from stat_bot.queue.alert_model import AlertChange, AlertEvent
from stat_bot.web.errors import RefusedError
from stat_bot.web.services import services
from stat_bot.web.signed import (
    count,
    counting_refusals,
    json_body,
    secret_or_refuse,
    verify_sha256,
)

log = structlog.get_logger(__name__)

bp = Blueprint("alerts", __name__)

COUNTER = "alert_requests"  # read by /metrics; labels: result
PAGERDUTY_SIGNATURE = "X-PagerDuty-Signature"


def init_app(app: Flask, csrf: CSRFProtect) -> None:
    """Register the routes; exempt from CSRF, since they authenticate by token or signature."""
    csrf.exempt(bp)
    app.register_blueprint(bp)


def _record(
    events: list[AlertEvent], delivery: tuple[str, str] | None
) -> tuple[str, int, dict[str, Any]]:
    svc = services()
    channel = svc.settings.oncall_channel

    def said(changes: list[AlertChange], refusals: Mapping[int, list[str]]) -> list[Any]:
        return alert_messages(changes, channel, refusals)

    recorded = record(
        svc.queue,
        svc.configs,
        events,
        delivery=delivery,
        messages=said,
        site_channel=channel,
        runbook_threshold=svc.settings.runbook_match_threshold,
    )
    changes = recorded.changes
    if changes is None:
        return "duplicate", 200, {"ok": True, "duplicate": True, "alerts": []}
    body = {
        "ok": True,
        "alerts": [
            {
                "id": c.alert.id,
                "change": str(c.kind),
                "fire_count": c.alert.fire_count,
                "jobs": list(c.jobs),
                "refused": recorded.refusals.get(c.alert.id, []),
            }
            for c in changes
        ],
    }
    return "accepted", 202, body


def _acknowledge(incident_id: str, at: float, who: str) -> tuple[str, int, dict[str, Any]]:
    """PagerDuty's `incident.acknowledged`: the alert's first acknowledgement, if it is the
    first; an incident never seen firing here is answered 200 and stores nothing."""
    svc = services()
    alert = svc.queue.alert_by_key("pagerduty", incident_id)
    if alert is None:
        return "ignored", 200, {"ok": True, "ignored": True, "alerts": []}
    channel = svc.settings.oncall_channel
    done = svc.queue.acknowledge_alert(
        alert.id,
        f"pagerduty:{who}"[:200],
        at=at,
        outbox=lambda a: acknowledged_message(a, f"{who} (PagerDuty)", channel),
    )
    if done is None:
        return "ignored", 200, {"ok": True, "ignored": True, "alerts": []}
    acked, new = done
    change = "acknowledged" if new else "acknowledged-already"
    return "accepted", 200, {"ok": True, "alerts": [{"id": acked.id, "change": change}]}


def _answer(
    source: str, started: float, result: str, status: int, body: dict[str, Any]
) -> tuple[Response, int]:
    count(COUNTER, result)
    log.info(
        "alerts received",
        source=source,
        result=result,
        status=status,
        alerts=len(body.get("alerts", ())),
        ms=round((time.perf_counter() - started) * 1000, 2),
    )
    return jsonify(body), status


# Alertmanager -----------------------------------------------------------------------
@bp.post("/alerts/alertmanager")
def alertmanager() -> tuple[Response, int]:
    started = time.perf_counter()
    with counting_refusals(COUNTER, "alerts refused", source="alertmanager"):
        _authorised()
        body = request.get_data(cache=False)  # 413 above WEB_MAX_BODY
        try:
            events = alertmanager_events(json_body(body))
        except AlertPayloadError as error:
            raise RefusedError(
                400, "bad_request", f"Alertmanager payload: {error}", "body"
            ) from None
        result, status, answer = _record(events, None)
    return _answer("alertmanager", started, result, status, answer)


def _authorised() -> None:
    """A bearer token or basic-auth credentials, as set; 403 when neither is set, 401 else."""
    settings = services().settings
    token = settings.alertmanager_token.get_secret_value() if settings.alertmanager_token else ""
    basic = (
        settings.alertmanager_basic_auth.get_secret_value()
        if settings.alertmanager_basic_auth
        else ""
    )
    if not token and not basic:
        raise RefusedError(
            403,
            "disabled",
            "Alertmanager alerts are off until ALERTMANAGER_TOKEN or ALERTMANAGER_BASIC_AUTH is "
            "set; set one, and the same in the receiver's http_config",
        )
    sent = request.headers.get("Authorization", "")
    scheme, _, value = sent.partition(" ")
    if (
        token
        and scheme.lower() == "bearer"
        and hmac.compare_digest(value.strip().encode(), token.encode())
    ):
        return
    if basic and scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True)
        except ValueError:
            decoded = b""
        if hmac.compare_digest(decoded, basic.encode()):
            return
    raise RefusedError(
        401,
        "bad_signature",
        "missing or wrong credentials: send the Authorization header Alertmanager's "
        "http_config sets (a bearer token or basic auth, as configured here)",
        "Authorization",
    )


# PagerDuty --------------------------------------------------------------------------
@bp.post("/alerts/pagerduty")
def pagerduty() -> tuple[Response, int]:
    started = time.perf_counter()
    with counting_refusals(COUNTER, "alerts refused", source="pagerduty"):
        secret = secret_or_refuse(
            services().settings.pagerduty_webhook_secret,
            "PagerDuty webhooks are off until PAGERDUTY_WEBHOOK_SECRET is set to the "
            "subscription's signing secret",
        )
        body = request.get_data(cache=False)
        verify_sha256(
            secret,
            body,
            PAGERDUTY_SIGNATURE,
            missing=f"{PAGERDUTY_SIGNATURE} is missing: is the subscription signed?",
            mismatch=f"{PAGERDUTY_SIGNATURE} does not match the body: is "
            "PAGERDUTY_WEBHOOK_SECRET the subscription's signing secret?",
            scheme="v1",
            several=True,
        )
        try:
            payload = json_body(body)
            event_id, event = pagerduty_event(payload)
            acknowledged = pagerduty_acknowledgement(payload) if event is None else None
        except AlertPayloadError as error:
            raise RefusedError(400, "bad_request", f"PagerDuty payload: {error}", "body") from None
        if acknowledged is not None:
            result, status, answer = _acknowledge(*acknowledged)
        elif event is None:
            result, status, answer = "ignored", 200, {"ok": True, "ignored": True, "alerts": []}
        else:
            result, status, answer = _record([event], ("pagerduty", event_id))
    return _answer("pagerduty", started, result, status, answer)
