"""On-call in the Slack emulator with the real bot and dispatcher: an alert's Acknowledge
button (the first click wins), and `@stat-bot oncall handoff` answered with the summary."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stat_bot.integrations.slack_emulator import GENERAL_CHANNEL_ID
from stat_bot.oncall.messages import ACK_ACTION, alert_messages
from stat_bot.queue.alert_model import AlertEvent, AlertStatus
from tests.e2e.slack_service import SlackService, message_text, running_service

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlackService]:
    home = tmp_path_factory.mktemp("oncall-e2e")
    config = (ROOT / "job_configs.py").read_text()
    with running_service(home, config) as running:
        yield running


def has_ack_button(message: dict[str, Any]) -> bool:
    return any(
        e.get("action_id") == ACK_ACTION
        for b in message.get("blocks") or []
        if b.get("type") == "actions"
        for e in b.get("elements", [])
    )


def test_the_first_acknowledge_click_wins(service: SlackService) -> None:
    people = {n: service.slack.add_user(n)["id"] for n in ("carol", "dave")}
    queue = service.queue
    try:
        event = AlertEvent(
            "alertmanager", "e2e-ack", "NodeDown: x1000c0s0b0n0", AlertStatus.FIRING,
            queue.now(), "slurm", "critical",
        )  # fmt: skip
        (change,) = queue.record_alerts(
            [event], outbox=lambda changes: alert_messages(changes, GENERAL_CHANNEL_ID)
        )
        alert_id = change.alert.id
    finally:
        queue.close()
    posted = service.slack.wait_for_message(
        GENERAL_CHANNEL_ID,
        lambda m: "NodeDown: x1000c0s0b0n0" in message_text(m) and has_ack_button(m),
        timeout=20,
    )
    service.slack.click("carol", GENERAL_CHANNEL_ID, posted["ts"], ACK_ACTION, wait_ack=True)
    reply = service.slack.wait_for_reply(
        GENERAL_CHANNEL_ID, posted["ts"], lambda m: "Acknowledged by" in m["text"], timeout=20
    )
    assert f"<@{people['carol']}>" in reply["text"]
    service.slack.click("dave", GENERAL_CHANNEL_ID, posted["ts"], ACK_ACTION, wait_ack=True)
    told = service.slack.wait_for_ephemeral(
        lambda m: "Already acknowledged" in m["text"], timeout=20
    )
    assert told["ephemeral_to"] == people["dave"]
    assert f"<@{people['carol']}>" in told["text"]
    queue = service.queue
    try:
        stored = queue.alert(alert_id)
        assert stored is not None
        assert stored.acknowledged_by == people["carol"]
    finally:
        queue.close()


def test_oncall_handoff_in_chat_answers_with_the_summary(service: SlackService) -> None:
    where = service.say("@stat-bot oncall handoff")
    report = service.reply(where, "On-call handoff", timeout=60)
    text = message_text(report)
    assert "Most frequent alerts" in text
    assert "Trac is not configured" in text
