"""The Slack alert listener (bot/slack_alerts.py) on each kind of message event it may
get, against the real queue (both backends): which events become alerts, what is ignored
without a word, what is said and where. The Bolt app and the emulator around it are in
tests/e2e/test_slack_alerts.py; here each event is handed over as Slack shapes it."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from slack_sdk import WebClient

from stat_bot.bot.slack_alerts import SlackAlertListener
from stat_bot.queue import Queue
from stat_bot.queue.alert_model import AlertStatus
from stat_bot.report.slack import ChannelDirectory
from stat_bot.settings import Settings
from tests.unit.test_slack_alerts import AM_TEXT, alertmanager_message, pagerduty_message

ONCALL, ALERTS, OTHER = "C0ONCALL", "C0ALERTS", "C0RANDOM"
OUR_BOT, OUR_BOT_USER = "B0STATBOT", "U0STATBOT"
CONFIG = {
    "hw": {
        "jobs": {"check": {"run_args_template": "echo checked {target}"}},
        "slack": [{"command": "check [target:target=all]", "job_type": "check"}],
        "alert_rules": [
            {"alertname": "NodeDown", "labels": {"xname": True}, "job_type": "check",
             "args": {"target": "{xname}"}, "arg_types": {"target": "xname"}},
        ],
    }
}  # fmt: skip


@pytest.fixture
def listener(
    make_settings: Callable[..., Settings], configure: Any, queue: Queue
) -> SlackAlertListener:
    configs = configure(CONFIG)
    settings = make_settings(oncall_channel=ONCALL, oncall_alert_channels=f"{ONCALL}, {ALERTS}")
    # Channel ids only: the directory never needs to ask Slack (nothing listens there).
    channels = ChannelDirectory(WebClient(base_url="http://127.0.0.1:9/api/"))
    return SlackAlertListener(
        settings, queue, lambda: configs, channels, bot_user_id=OUR_BOT_USER, bot_id=OUR_BOT
    )


def in_channel(message: dict[str, Any], channel: str) -> dict[str, Any]:
    return {**message, "channel": channel, "channel_type": "channel"}


def outbox(queue: Queue) -> list[dict[str, Any]]:
    return [json.loads(i.payload) for i in queue.outbox_items()]


def test_a_paging_message_in_the_oncall_channel_is_answered_in_its_thread(
    listener: SlackAlertListener, queue: Queue
) -> None:
    message = in_channel(
        alertmanager_message("[FIRING:1] NodeDown (x1000c0s0b0n0)", AM_TEXT), ONCALL
    )
    assert listener.handle(message)
    (alert,) = queue.alerts()
    assert (alert.source, alert.status, alert.labels["xname"]) == (
        "slack",
        AlertStatus.FIRING,
        "x1000c0s0b0n0",
    )
    (job,) = queue.jobs()
    assert (job.channel, job.thread_ts, dict(job.args)) == (
        ONCALL,
        message["ts"],
        {"target": "x1000c0s0b0n0"},
    )
    (said,) = outbox(queue)
    assert (said["channel"], said["thread_ts"]) == (ONCALL, message["ts"])
    assert said["messages"][0]["text"].startswith(f":eyes: Alert #{alert.id} recorded: first time")
    assert f":gear: queued job #{job.id}" in said["messages"][0]["text"]
    # Slack delivering the same event again counts nothing and says nothing.
    assert listener.handle(message)
    assert queue.alerts()[0].fire_count == 1
    assert len(outbox(queue)) == 1


def test_from_another_watched_channel_it_is_posted_to_the_oncall_channel(
    listener: SlackAlertListener, queue: Queue
) -> None:
    listener.handle(in_channel(pagerduty_message(), ALERTS))
    (said,) = outbox(queue)
    assert (said["channel"], said["thread_ts"]) == (ONCALL, None)
    assert said["messages"][0]["text"].startswith(":rotating_light: *Disk full on db01*")


def test_pagerduty_edits_its_message_to_resolve(listener: SlackAlertListener, queue: Queue) -> None:
    fired = in_channel(pagerduty_message(), ALERTS)
    listener.handle(fired)
    for status in ("Acknowledged", "Resolved", "Resolved"):  # the last: an edit redelivered
        edited = pagerduty_message(status, ts=fired["ts"])
        listener.handle(
            {"type": "message", "subtype": "message_changed", "channel": ALERTS,
             "ts": "1764662999.000100", "message": edited, "previous_message": fired}
        )  # fmt: skip
    (alert,) = queue.alerts()
    assert (alert.status, alert.fire_count) == (AlertStatus.RESOLVED, 1)
    assert sorted(m["messages"][0]["text"][:18] for m in outbox(queue)) == [
        ":rotating_light: *",
        ":white_check_mark:",
    ]


@pytest.mark.parametrize(
    ("event", "handled"),
    [
        # a person pasting an alert
        ({"user": "U0ADMIN", "text": "[FIRING:1] NodeDown (x1)", "ts": "1.1"}, True),
        # STAT bot's own message, by bot id and by user
        ({"bot_id": OUR_BOT, "text": "[FIRING:1] NodeDown (x1)", "ts": "1.2"}, True),
        (
            {"user": OUR_BOT_USER, "bot_id": "B0OTHER", "text": "[FIRING:1] NodeDown", "ts": "1.3"},
            True,
        ),
        # a bot's message that is no alert, and garbage
        ({"bot_id": "B0CI", "text": "build 1234 passed", "ts": "1.4"}, True),
        ({"bot_id": "B0CI", "attachments": {"x": [1]}, "blocks": 7, "ts": "1.5"}, True),
        ({"bot_id": "B0CI", "subtype": "message_changed", "message": "??", "ts": "1.6"}, True),
        ({"subtype": "channel_join", "user": "U0ADMIN", "text": "joined", "ts": "1.7"}, True),
    ],
)
def test_what_is_not_a_paging_message_is_ignored(
    listener: SlackAlertListener, queue: Queue, event: dict[str, Any], handled: bool
) -> None:
    assert listener.handle(in_channel(event, ONCALL)) is handled
    assert queue.alerts() == []
    assert queue.outbox_items() == []


def test_other_channels_and_dms_are_not_its_business(
    listener: SlackAlertListener, queue: Queue
) -> None:
    message = alertmanager_message("[FIRING:1] NodeDown (x1000c0s0b0n0)", AM_TEXT)
    assert not listener.handle(in_channel(message, OTHER))
    assert not listener.handle({**message, "channel": "D0DM", "channel_type": "im"})
    assert queue.alerts() == []


def test_an_old_style_bot_message_counts(listener: SlackAlertListener, queue: Queue) -> None:
    """An incoming webhook's post: subtype bot_message, a username, no user."""
    message = alertmanager_message("[FIRING:1] DiskFull (lustre)")
    assert message["subtype"] == "bot_message"
    listener.handle(in_channel(message, ALERTS))
    assert [a.title for a in queue.alerts()] == ["DiskFull (lustre)"]


def test_with_oncall_alert_bots_only_the_named_paging_tools_are_read(
    make_settings: Callable[..., Settings], configure: Any, queue: Queue
) -> None:
    configs = configure(CONFIG)
    settings = make_settings(
        oncall_channel=ONCALL, oncall_alert_channels=ALERTS, oncall_alert_bots="B0PAGERDUTY"
    )
    channels = ChannelDirectory(WebClient(base_url="http://127.0.0.1:9/api/"))
    listener = SlackAlertListener(
        settings, queue, lambda: configs, channels, bot_user_id=OUR_BOT_USER, bot_id=OUR_BOT
    )
    # Alertmanager's app is not named: its page is heard (a message in a watched channel)
    # but not read as an alert.
    assert listener.handle(in_channel(alertmanager_message("[FIRING:1] NodeDown", AM_TEXT), ALERTS))
    assert queue.alerts() == []
    assert listener.handle(in_channel(pagerduty_message(), ALERTS))
    (alert,) = queue.alerts()
    assert alert.fingerprint.startswith("pagerduty:")
