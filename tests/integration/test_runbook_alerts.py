"""Alerts matched to runbooks through the real web app and queue (both backends): the best
section above the threshold is stored as the firing's answer and its reply is stored in the
same transaction, under the alert's message; below the threshold, nothing."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask

from stat_bot.queue import Queue
from stat_bot.queue.runbook_model import RunbookPageDraft, RunbookSectionDraft
from stat_bot.report.outbox import decode
from stat_bot.settings import Settings
from tests.integration.test_alert_webhooks import (
    BEARER,
    PD_SECRET,
    TOKEN,
    alertmanager_payload,
    pagerduty_payload,
    post,
    signed,
)


@pytest.fixture
def app(
    make_web_app: Callable[..., Flask], make_settings: Callable[..., Settings], configure: Any
) -> Flask:
    configure({"plain": {"jobs": {"hello": {"run_args_template": "echo hi"}}}})
    settings = make_settings(
        alertmanager_token=TOKEN, pagerduty_webhook_secret=PD_SECRET, oncall_channel="oncall"
    )
    return make_web_app(settings)


def indexed(queue: Queue) -> None:
    for key, title, body in (
        ("node.md", "Node down", "1. Check the BMC\n2. Drain the node\n3. <!channel> power cycle"),
        ("lustre.md", "Lustre OSS unreachable", "1. lfs check servers"),
    ):
        queue.store_runbook_page(RunbookPageDraft(
            "markdown", key, f"https://git.example/{key}", title, key,
            (RunbookSectionDraft("a", title, body, f"https://git.example/{key}#a"),),
        ))  # fmt: skip


def test_a_firing_alert_gets_the_best_section_in_its_thread(app: Flask, queue: Queue) -> None:
    indexed(queue)
    answer = post(app, "/alerts/alertmanager", alertmanager_payload(), BEARER).get_json()
    alert_id = answer["alerts"][0]["id"]
    summary = queue.runbook_answers([alert_id])[alert_id]
    assert (summary.title, summary.url) == ("Node down", "https://git.example/node.md#a")
    (reply,) = queue.outbox_find(f"runbook:{alert_id}:1")
    report = decode(reply.payload)
    assert report.meta == {"thread_of": f"alert:{alert_id}:1"}
    assert report.channel == "oncall"
    (message,) = report.messages
    assert "<https://git.example/node.md#a|Node down>" in message.text
    assert "&lt;!channel&gt; power cycle" in message.text
    buttons = message.blocks[-1]["elements"]
    assert [(b["action_id"], b["value"]) for b in buttons] == [
        ("runbook-helpful", f"runbook:{alert_id}:1"),
        ("runbook-not-helpful", f"runbook:{alert_id}:1"),
    ]
    # A reminder of the same firing posts nothing more; a resolution neither; firing
    # again is answered again, under the new firing's message.
    post(app, "/alerts/alertmanager", alertmanager_payload(), BEARER)
    post(app, "/alerts/alertmanager", alertmanager_payload("resolved"), BEARER)
    assert len([i for i in queue.outbox_items(limit=100) if i.kind == "runbook"]) == 1
    post(app, "/alerts/alertmanager", alertmanager_payload(starts="2026-12-01T10:00:00Z"), BEARER)
    (again,) = queue.outbox_find(f"runbook:{alert_id}:2")
    assert decode(again.payload).meta == {"thread_of": f"alert:{alert_id}:2"}


def test_pagerduty_incidents_are_matched_too(app: Flask, queue: Queue) -> None:
    indexed(queue)
    body = json.dumps(pagerduty_payload()).encode()
    answer = post(app, "/alerts/pagerduty", body, {"X-PagerDuty-Signature": signed(body)})
    alert_id = answer.get_json()["alerts"][0]["id"]
    assert queue.runbook_answers([alert_id])[alert_id].title == "Lustre OSS unreachable"


def test_nothing_is_posted_below_the_threshold_or_without_an_index(
    app: Flask, queue: Queue
) -> None:
    payload = alertmanager_payload(labels={"alertname": "TapeLibraryOffline", "xname": "x1"})
    first = post(app, "/alerts/alertmanager", payload, BEARER).get_json()  # empty index
    indexed(queue)
    other = alertmanager_payload(labels={"alertname": "TapeLibraryOffline"}, fingerprint="f2")
    second = post(app, "/alerts/alertmanager", other, BEARER).get_json()
    ids = [first["alerts"][0]["id"], second["alerts"][0]["id"]]
    assert queue.runbook_answers(ids) == {}
    assert [i.kind for i in queue.outbox_items(limit=100)] == ["alert", "alert"]


def test_the_threshold_is_a_setting(
    make_web_app: Callable[..., Flask], make_settings: Callable[..., Settings], configure: Any,
    queue: Queue,
) -> None:  # fmt: skip
    configure({"plain": {"jobs": {"hello": {"run_args_template": "echo hi"}}}})
    indexed(queue)
    # node + down in the heading, "lustre" (a word the index knows) not in it: 2/3.
    labels = {"alertname": "NodeDown", "service": "lustre"}
    for threshold, fingerprint, answered in ((0.7, "strict", False), (0.6, "lenient", True)):
        app = make_web_app(make_settings(
            alertmanager_token=TOKEN, oncall_channel="oncall", runbook_match_threshold=threshold
        ))  # fmt: skip
        payload = alertmanager_payload(labels=labels, fingerprint=fingerprint)
        alert_id = post(app, "/alerts/alertmanager", payload, BEARER).get_json()["alerts"][0]["id"]
        found = queue.runbook_answers([alert_id])
        assert bool(found) is answered, threshold
        if answered:
            assert found[alert_id].score == 0.6667
