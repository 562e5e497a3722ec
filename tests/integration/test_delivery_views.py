"""What people see of the outbox: `status`, /metrics, /readyz and the Deliveries page."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from prometheus_client.parser import text_string_to_metric_families

from stat_bot.queue import Queue
from stat_bot.queue.base import OutboxState
from stat_bot.report.messages import Message, Report
from stat_bot.report.outbox import outgoing
from tests.web_fixtures import WebSession

HOSTILE = "<script>alert(1)</script> Slack could not be reached"


def store_waiting(queue: Queue, age: float) -> list[int]:
    """Two messages: one waiting for Slack since `age` s ago with an error, one refused."""
    now = time.time()
    waiting, refused = queue.post(
        [
            outgoing(Report([Message("report")], channel="general"), "report"),
            outgoing(Report([Message("nowhere")], channel="no-such"), "notice"),
        ],
        now=now - age,
    )
    queue.claim_outbox("s1", now=now)
    queue.outbox_retry(waiting, HOSTILE, now + 30)
    queue.outbox_failed(refused, "Slack has no channel no-such (channel_not_found)")
    return [waiting, refused]


@pytest.fixture
def session(make_web_app: Callable[..., Flask], web_user: tuple[str, str]) -> WebSession:
    web = WebSession(make_web_app().test_client())
    web.login(*web_user)
    return web


def test_status_names_what_waits_and_what_was_given_up(queue, cli, configure):
    configure({"t": {"jobs": {"a": {"run_args_template": "true"}}}})
    store_waiting(queue, 120)
    result = cli("status")
    assert result.returncode == 0, result.stderr
    text = result.stdout.split("Undelivered messages:\n", 1)[1]
    assert text.startswith("1 waiting for Slack (oldest since 2 min ago)"), text
    assert "1 refused by Slack, 0 expired undelivered" in text
    assert f"last error: {HOSTILE}" in text
    data = json.loads(cli("--json", "status").stdout)["undelivered"]
    assert (data["pending"], data["failed"], data["expired"]) == (1, 1, 0)
    assert data["last_error"] == HOSTILE


def test_metrics_count_messages_by_state_and_the_oldest_age(queue, session):
    store_waiting(queue, 120)
    text = session.get("/metrics").get_data(as_text=True)
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    assert samples[("stat_bot_outbox_messages", (("state", "pending"),))] == 1
    assert samples[("stat_bot_outbox_messages", (("state", "failed"),))] == 1
    assert samples[("stat_bot_outbox_messages", (("state", "expired"),))] == 0
    age = samples[("stat_bot_outbox_oldest_pending_age_seconds", ())]
    assert 119 <= age < 180


@pytest.mark.parametrize(("age", "ready"), [(10.0, True), (400.0, False)])
def test_readyz_is_degraded_while_a_message_waits_too_long(queue, session, age, ready):
    store_waiting(queue, age)
    body: dict[str, Any] = session.get("/readyz").get_json()
    check = body["checks"]["delivery"]
    assert check["ready"] is ready
    assert "1 message(s) waiting for Slack" in check["detail"]
    assert HOSTILE in check["detail"]
    if not ready:
        assert "SLACK_DELIVERY_DEGRADED_AFTER" in check["detail"]
        assert body["ready"] is False


def test_the_deliveries_page_lists_the_outbox_escaped(queue, session):
    waiting, refused = store_waiting(queue, 60)
    page = session.get("/deliveries")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert f'data-item-id="{waiting}"' in html
    assert f'data-item-id="{refused}"' in html
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "1 waiting for Slack" in html
    assert queue.outbox_get(refused).state is OutboxState.FAILED


def test_the_deliveries_page_needs_a_login(make_web_app):
    response = make_web_app().test_client().get("/deliveries")
    assert response.status_code in (302, 401)
