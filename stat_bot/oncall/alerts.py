"""Alert payloads as their senders send them, read into AlertEvents.

Prometheus Alertmanager's webhook (version 4: a group of alerts, each with labels,
annotations, status, startsAt/endsAt and a fingerprint) and PagerDuty's v3 webhooks
(one event per request: `incident.triggered`, `incident.resolved`, ...). Anything
not in that shape is refused with the field named, so nothing half-read is stored.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from stat_bot.queue.alert_model import AlertEvent, AlertStatus

MAX_ALERTS = 1000  # per Alertmanager request; its own default group limit is far below
MAX_FIELD = 1000  # a label value, a title
PAGERDUTY_FIRING = frozenset({"incident.triggered", "incident.reopened"})
PAGERDUTY_RESOLVED = frozenset({"incident.resolved"})
PAGERDUTY_ACKNOWLEDGED = "incident.acknowledged"


class AlertPayloadError(ValueError):
    """The body is not an alert payload; the text names the field and what it must be."""


def _text(value: Any, where: str, *, required: bool = True) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise AlertPayloadError(f"{where} must be a non-empty text")
    if "\x00" in value:
        raise AlertPayloadError(f"{where} holds a NUL character")
    return value[:MAX_FIELD]


def _time(value: Any, where: str) -> float | None:
    """RFC 3339 (Alertmanager's `0001-01-01T00:00:00Z` means "not yet": None)."""
    text = _text(value, where)
    if text.startswith("0001-01-01"):
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise AlertPayloadError(f"{where} is not an RFC 3339 time: {text[:40]!r}") from None
    if moment.tzinfo is None:
        raise AlertPayloadError(f"{where} has no time zone: {text[:40]!r}")
    return moment.timestamp()


def _labels(value: Any, where: str) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise AlertPayloadError(f"{where} must be an object of texts")
    return {
        _text(k, f"{where} key"): _text(v, f"{where}.{k}", required=False) for k, v in value.items()
    }


def alertmanager_events(payload: Any) -> list[AlertEvent]:
    """The alerts of one Alertmanager webhook notification."""
    if not isinstance(payload, Mapping):
        raise AlertPayloadError("the body must be a JSON object (Alertmanager's webhook payload)")
    version = payload.get("version")
    if version != "4":
        raise AlertPayloadError(
            f'version must be "4" (Alertmanager\'s webhook format), not {version!r}'
        )
    alerts = payload.get("alerts")
    if not isinstance(alerts, list) or not alerts:
        raise AlertPayloadError("alerts must be a non-empty list")
    if len(alerts) > MAX_ALERTS:
        raise AlertPayloadError(f"alerts holds {len(alerts)}; at most {MAX_ALERTS} per request")
    external = payload.get("externalURL")
    events = []
    for index, alert in enumerate(alerts):
        where = f"alerts[{index}]"
        if not isinstance(alert, Mapping):
            raise AlertPayloadError(f"{where} must be an object")
        labels = _labels(alert.get("labels"), f"{where}.labels")
        annotations = _labels(alert.get("annotations") or {}, f"{where}.annotations")
        status = alert.get("status")
        if status not in ("firing", "resolved"):
            raise AlertPayloadError(f"{where}.status must be firing or resolved, not {status!r}")
        starts = _time(alert.get("startsAt"), f"{where}.startsAt")
        if starts is None:
            raise AlertPayloadError(f"{where}.startsAt must be set")
        at = starts
        if status == "resolved":
            at = _time(alert.get("endsAt"), f"{where}.endsAt") or starts
        fingerprint = alert.get("fingerprint")
        if fingerprint is None:  # older senders: the labels identify the alert
            fingerprint = hashlib.sha256(json.dumps(labels, sort_keys=True).encode()).hexdigest()[
                :16
            ]
        name = labels.get("alertname") or "alert"
        summary = annotations.get("summary") or annotations.get("description") or ""
        title = f"{name}: {summary}" if summary else name
        url = alert.get("generatorURL") or external
        events.append(
            AlertEvent(
                source="alertmanager",
                fingerprint=_text(fingerprint, f"{where}.fingerprint"),
                title=title[:MAX_FIELD],
                status=AlertStatus(status),
                at=at,
                service=labels.get("service") or labels.get("job") or "",
                severity=labels.get("severity") or "",
                labels=labels,
                url=url
                if isinstance(url, str) and url.startswith(("http://", "https://"))
                else None,
            )
        )
    return events


def pagerduty_event(payload: Any) -> tuple[str, AlertEvent | None]:
    """A PagerDuty v3 webhook: its event id, and the alert event (None: a type not kept)."""
    if not isinstance(payload, Mapping) or not isinstance(payload.get("event"), Mapping):
        raise AlertPayloadError('the body must be a JSON object with an "event" (PagerDuty v3)')
    event = payload["event"]
    event_id = _text(event.get("id"), "event.id")
    event_type = _text(event.get("event_type"), "event.event_type")
    if event_type not in PAGERDUTY_FIRING | PAGERDUTY_RESOLVED:
        return event_id, None
    data = event.get("data")
    if not isinstance(data, Mapping):
        raise AlertPayloadError("event.data must be an object (the incident)")
    service = data.get("service") if isinstance(data.get("service"), Mapping) else {}
    priority = data.get("priority") if isinstance(data.get("priority"), Mapping) else {}
    at = _time(event.get("occurred_at"), "event.occurred_at")
    if at is None:
        raise AlertPayloadError("event.occurred_at must be set")
    severity = _text(priority.get("summary"), "event.data.priority.summary", required=False)
    urgency = _text(data.get("urgency"), "event.data.urgency", required=False)
    url = data.get("html_url")
    labels = {"urgency": urgency} if urgency else {}
    if data.get("number") is not None:
        labels["number"] = str(data.get("number"))
    return event_id, AlertEvent(
        source="pagerduty",
        fingerprint=_text(data.get("id"), "event.data.id"),
        title=_text(data.get("title"), "event.data.title"),
        status=AlertStatus.FIRING if event_type in PAGERDUTY_FIRING else AlertStatus.RESOLVED,
        at=at,
        service=_text(service.get("summary"), "event.data.service.summary", required=False),
        severity=severity or urgency,
        labels=labels,
        url=url if isinstance(url, str) and url.startswith("https://") else None,
    )


def pagerduty_acknowledgement(payload: Any) -> tuple[str, float, str] | None:
    """An `incident.acknowledged` event: the incident id (the alert's fingerprint), when,
    and who (the agent's name, else `PagerDuty`); None for any other event type."""
    if not isinstance(payload, Mapping) or not isinstance(payload.get("event"), Mapping):
        raise AlertPayloadError('the body must be a JSON object with an "event" (PagerDuty v3)')
    event = payload["event"]
    if event.get("event_type") != PAGERDUTY_ACKNOWLEDGED:
        return None
    data = event.get("data")
    if not isinstance(data, Mapping):
        raise AlertPayloadError("event.data must be an object (the incident)")
    at = _time(event.get("occurred_at"), "event.occurred_at")
    if at is None:
        raise AlertPayloadError("event.occurred_at must be set")
    agent = event.get("agent") if isinstance(event.get("agent"), Mapping) else {}
    who = _text(agent.get("summary"), "event.agent.summary", required=False) or "PagerDuty"
    return _text(data.get("id"), "event.data.id"), at, who
