"""Alerts in: Alertmanager's and PagerDuty's webhooks in their real shapes, against the real
app and queue (both backends); credentials and signatures checked before anything is read,
refusals storing nothing, repeats counted on one alert, messages for the on-call channel."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask

from stat_bot.queue import Queue
from stat_bot.settings import Settings

TOKEN = "am-token-123"
BASIC = "alertmanager:s3cret"
PD_SECRET = "pd-signing-secret"


@pytest.fixture
def app(
    make_web_app: Callable[..., Flask], make_settings: Callable[..., Settings], configure: Any
) -> Flask:
    configure({"plain": {"jobs": {"hello": {"run_args_template": "echo hi"}}}})
    settings = make_settings(
        alertmanager_token=TOKEN,
        alertmanager_basic_auth=BASIC,
        pagerduty_webhook_secret=PD_SECRET,
        oncall_channel="oncall",
    )
    return make_web_app(settings)


def alertmanager_payload(
    status: str = "firing", starts: str = "2026-12-01T08:00:00Z", **alert: Any
) -> dict[str, Any]:
    """Alertmanager's webhook body (version 4), one alert."""
    body = {
        "status": status,
        "labels": {
            "alertname": "NodeDown",
            "severity": "critical",
            "service": "slurm",
            "xname": "x1000c0s0b0n0",
        },
        "annotations": {"summary": "x1000c0s0b0n0 stopped answering"},
        "startsAt": starts,
        "endsAt": "2026-12-01T09:00:00Z" if status == "resolved" else "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus.example.org/graph?g0.expr=up",
        "fingerprint": "c2a3b0e0f1d2c3b4",
    }
    body.update(alert)
    return {
        "version": "4",
        "groupKey": '{}:{alertname="NodeDown"}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "stat-bot",
        "groupLabels": {"alertname": "NodeDown"},
        "commonLabels": body["labels"],
        "commonAnnotations": body["annotations"],
        "externalURL": "http://alertmanager.example.org",
        "alerts": [body],
    }


def pagerduty_payload(
    event_type: str = "incident.triggered", event_id: str = "01DEN3Q8XNJQPS8ZHKM8W3M4IR"
) -> dict[str, Any]:
    """A PagerDuty v3 webhook body."""
    return {
        "event": {
            "id": event_id,
            "event_type": event_type,
            "resource_type": "incident",
            "occurred_at": "2026-12-01T08:05:00.000Z",
            "agent": {
                "html_url": "https://acme.pagerduty.com/users/PLH1HKV",
                "id": "PLH1HKV",
                "type": "user_reference",
            },
            "client": None,
            "data": {
                "id": "PGR0VU2",
                "type": "incident",
                "self": "https://api.pagerduty.com/incidents/PGR0VU2",
                "html_url": "https://acme.pagerduty.com/incidents/PGR0VU2",
                "number": 2,
                "status": "triggered" if event_type == "incident.triggered" else "resolved",
                "incident_key": "d3640fbd41094207a1c11e58e46b1662",
                "created_at": "2026-12-01T08:05:00Z",
                "title": "Lustre OSS oss3 unreachable",
                "service": {
                    "html_url": "https://acme.pagerduty.com/services/PF9KMXH",
                    "id": "PF9KMXH",
                    "summary": "lustre",
                    "type": "service_reference",
                },
                "assignees": [],
                "escalation_policy": {
                    "id": "PUS0KTE",
                    "summary": "Default",
                    "type": "escalation_policy_reference",
                },
                "teams": [],
                "priority": {"id": "PSO75BM", "summary": "P1", "type": "priority_reference"},
                "urgency": "high",
                "conference_bridge": None,
                "resolve_reason": None,
            },
        }
    }


def signed(body: bytes, secret: str = PD_SECRET) -> str:
    return "v1=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def post(app: Flask, path: str, payload: Any, headers: dict[str, str]) -> Any:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return app.test_client().post(
        path, data=body, headers={"Content-Type": "application/json", **headers}
    )


BEARER = {"Authorization": f"Bearer {TOKEN}"}


def test_alertmanager_alerts_are_stored_counted_and_announced(app: Flask, queue: Queue) -> None:
    first = post(app, "/alerts/alertmanager", alertmanager_payload(), BEARER)
    assert first.status_code == 202, first.get_json()
    assert first.get_json()["alerts"][0]["change"] == "new"
    reminder = post(app, "/alerts/alertmanager", alertmanager_payload(), BEARER)
    assert reminder.get_json()["alerts"][0]["change"] == "repeated"
    basic = {"Authorization": "Basic " + base64.b64encode(BASIC.encode()).decode()}
    resolved = post(app, "/alerts/alertmanager", alertmanager_payload("resolved"), basic)
    assert resolved.get_json()["alerts"][0]["change"] == "resolved"
    again = post(
        app, "/alerts/alertmanager", alertmanager_payload(starts="2026-12-01T10:00:00Z"), BEARER
    )
    assert again.get_json()["alerts"][0] == {
        "id": 1,
        "change": "refired",
        "fire_count": 2,
        "jobs": [],
        "refused": [],
    }
    (alert,) = queue.alerts()
    assert (alert.title, alert.service, alert.severity, alert.fire_count) == (
        "NodeDown: x1000c0s0b0n0 stopped answering", "slurm", "critical", 2,
    )  # fmt: skip
    assert alert.labels["xname"] == "x1000c0s0b0n0"
    texts = [json.loads(i.payload)["messages"][0]["text"] for i in reversed(queue.outbox_items())]
    assert [t.splitlines()[0] for t in texts] == [
        ":rotating_light: *NodeDown: x1000c0s0b0n0 stopped answering*",
        ":white_check_mark: Resolved: *NodeDown: x1000c0s0b0n0 stopped answering*",
        ":rotating_light: *NodeDown: x1000c0s0b0n0 stopped answering* (fired 2 times)",
    ]  # the reminder said nothing
    assert all(i.channel == "oncall" for i in queue.outbox_items())


@pytest.mark.parametrize(
    ("headers", "status", "words"),
    [
        ({}, 401, "missing or wrong credentials"),
        ({"Authorization": "Bearer wrong"}, 401, "missing or wrong credentials"),
        (
            {"Authorization": "Basic " + base64.b64encode(b"alertmanager:nope").decode()},
            401,
            "wrong credentials",
        ),
        ({"Authorization": "Basic !!!"}, 401, "wrong credentials"),
        ({"Authorization": f"Token {TOKEN}"}, 401, "wrong credentials"),
    ],
)
def test_alertmanager_without_the_credentials_stores_nothing(
    app: Flask, queue: Queue, headers: dict[str, str], status: int, words: str
) -> None:
    answer = post(app, "/alerts/alertmanager", alertmanager_payload(), headers)
    assert answer.status_code == status
    assert words in answer.get_json()["error"]
    assert queue.alerts() == []
    assert TOKEN not in answer.get_data(as_text=True)


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda p: p.update(version="3"), 'version must be "4"'),
        (lambda p: p.update(alerts=[]), "alerts must be a non-empty list"),
        (
            lambda p: p["alerts"][0].update(status="pending"),
            "alerts[0].status must be firing or resolved",
        ),
        (
            lambda p: p["alerts"][0].update(startsAt="yesterday"),
            "alerts[0].startsAt is not an RFC 3339 time",
        ),
        (lambda p: p["alerts"][0].update(labels=["a"]), "alerts[0].labels must be an object"),
        (lambda p: p["alerts"][0]["labels"].update(alertname="a\x00b"), "holds a NUL character"),
    ],
)
def test_a_malformed_alertmanager_body_is_refused_naming_the_field(
    app: Flask, queue: Queue, change: Any, words: str
) -> None:
    payload = alertmanager_payload()
    change(payload)
    answer = post(app, "/alerts/alertmanager", payload, BEARER)
    assert answer.status_code == 400
    assert words in answer.get_json()["error"]
    assert queue.alerts() == []
    assert queue.outbox_items() == []


def test_not_json_and_too_large_are_refused(app: Flask, queue: Queue) -> None:
    form = app.test_client().post(
        "/alerts/alertmanager",
        data="a=b",
        headers={**BEARER, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert form.status_code == 415
    huge = post(app, "/alerts/alertmanager", b"{" + b" " * 2_000_000 + b"}", BEARER)
    assert huge.status_code == 413
    assert queue.alerts() == []


def test_pagerduty_events_are_verified_and_recorded_once(app: Flask, queue: Queue) -> None:
    body = json.dumps(pagerduty_payload()).encode()
    first = post(app, "/alerts/pagerduty", body, {"X-PagerDuty-Signature": signed(body)})
    assert first.status_code == 202, first.get_json()
    retry = post(app, "/alerts/pagerduty", body, {"X-PagerDuty-Signature": signed(body)})
    assert retry.get_json()["duplicate"] is True
    # A rotated secret: PagerDuty sends one signature per secret; one matching is enough.
    resolved = json.dumps(
        pagerduty_payload("incident.resolved", "01DEN3Q8XNJQPS8ZHKM8W3M4IS")
    ).encode()
    both = f"{signed(resolved, 'old-secret')},{signed(resolved)}"
    assert (
        post(app, "/alerts/pagerduty", resolved, {"X-PagerDuty-Signature": both}).status_code == 202
    )
    (alert,) = queue.alerts()
    assert (alert.source, alert.fingerprint, alert.title, alert.service, alert.severity) == (
        "pagerduty", "PGR0VU2", "Lustre OSS oss3 unreachable", "lustre", "P1",
    )  # fmt: skip
    assert alert.resolved_at is not None
    assert alert.fire_count == 1
    ping = json.dumps(
        {"event": {"id": "x", "event_type": "pagey.ping", "occurred_at": "2026-12-01T08:05:00Z"}}
    ).encode()
    answer = post(app, "/alerts/pagerduty", ping, {"X-PagerDuty-Signature": signed(ping)})
    assert (answer.status_code, answer.get_json()["ignored"]) == (200, True)


@pytest.mark.parametrize(
    ("header", "words"),
    [
        (None, "X-PagerDuty-Signature is missing"),
        ("v1=00", "does not match the body"),
        ("sha256=whatever", "must be 'v1=' followed by the body's HMAC-SHA256"),
        ("v1=00, v1=11", "does not match the body"),
        (signed(b"another body"), "does not match the body"),
        (signed(b"", "wrong"), "does not match the body"),
    ],
)
def test_pagerduty_signature_matrix(
    app: Flask, queue: Queue, header: str | None, words: str
) -> None:
    body = json.dumps(pagerduty_payload()).encode()
    headers = {} if header is None else {"X-PagerDuty-Signature": header}
    answer = post(app, "/alerts/pagerduty", body, headers)
    assert answer.status_code == 403
    assert words in answer.get_json()["error"]
    assert queue.alerts() == []


def test_a_signed_but_malformed_pagerduty_event_is_refused(app: Flask, queue: Queue) -> None:
    payload = pagerduty_payload()
    del payload["event"]["data"]["title"]
    body = json.dumps(payload).encode()
    answer = post(app, "/alerts/pagerduty", body, {"X-PagerDuty-Signature": signed(body)})
    assert answer.status_code == 400
    assert "event.data.title must be a non-empty text" in answer.get_json()["error"]
    assert queue.alerts() == []


def test_routes_are_off_until_their_secrets_are_set(
    make_web_app: Callable[..., Flask], queue: Queue, configure: Any
) -> None:
    configure({"plain": {"jobs": {"hello": {"run_args_template": "echo hi"}}}})
    app = make_web_app()
    answer = post(app, "/alerts/alertmanager", alertmanager_payload(), BEARER)
    assert answer.status_code == 403
    assert "ALERTMANAGER_TOKEN" in answer.get_json()["error"]
    body = json.dumps(pagerduty_payload()).encode()
    answer = post(app, "/alerts/pagerduty", body, {"X-PagerDuty-Signature": signed(body)})
    assert answer.status_code == 403
    assert "PAGERDUTY_WEBHOOK_SECRET" in answer.get_json()["error"]
    assert queue.alerts() == []


def test_every_request_is_counted_for_metrics(app: Flask, queue: Queue) -> None:
    post(app, "/alerts/alertmanager", alertmanager_payload(), BEARER)
    post(app, "/alerts/alertmanager", alertmanager_payload(), {})
    metrics = app.test_client().get("/metrics").get_data(as_text=True)
    assert 'stat_bot_alert_requests_total{result="accepted"} 1.0' in metrics
    assert 'stat_bot_alert_requests_total{result="bad_signature"} 1.0' in metrics


def test_a_pagerduty_acknowledgement_is_kept_once_and_announced(app: Flask, queue: Queue) -> None:
    body = json.dumps(pagerduty_payload()).encode()
    assert (
        post(app, "/alerts/pagerduty", body, {"X-PagerDuty-Signature": signed(body)}).status_code
        == 202
    )

    def acknowledged(event_id: str, who: str, at: str) -> Any:
        payload = pagerduty_payload("incident.acknowledged", event_id)
        payload["event"]["agent"]["summary"] = who
        payload["event"]["occurred_at"] = at
        raw = json.dumps(payload).encode()
        return post(app, "/alerts/pagerduty", raw, {"X-PagerDuty-Signature": signed(raw)})

    first = acknowledged("01ACK1", "Earline Greenholt", "2026-12-01T08:09:00Z")
    assert first.status_code == 200, first.get_json()
    assert first.get_json()["alerts"][0]["change"] == "acknowledged"
    later = acknowledged("01ACK2", "Someone Else", "2026-12-01T08:30:00Z")
    assert later.get_json()["alerts"][0]["change"] == "acknowledged-already"
    (alert,) = queue.alerts()
    assert alert.acknowledged_by == "pagerduty:Earline Greenholt"
    assert alert.acknowledged_at == alert.first_fired_at + 240
    said = [i for i in queue.outbox_items() if "Acknowledged by" in i.payload]
    assert len(said) == 1
    assert said[0].channel == "oncall"
    assert "Earline Greenholt (PagerDuty)" in said[0].payload
    # an incident never seen firing here: answered, nothing stored
    other = pagerduty_payload("incident.acknowledged", "01ACK3")
    other["event"]["data"]["id"] = "PUNKNOWN"
    raw = json.dumps(other).encode()
    answer = post(app, "/alerts/pagerduty", raw, {"X-PagerDuty-Signature": signed(raw)})
    assert (answer.status_code, answer.get_json()["ignored"]) == (200, True)
    assert len(queue.alerts()) == 1
