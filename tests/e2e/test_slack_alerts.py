"""Alerts from Slack end to end: `stat-bot bot` and `stat-bot dispatcher` as processes
against the emulator, and paging tools' Slack apps (other bot users) posting into the
channels ONCALL_ALERT_CHANNELS watches.

#oncall is watched and is the on-call channel (follow-ups go in the paging message's
thread); #alerts is watched (alerts are posted to #oncall); #random is not watched. Each
test uses alerts of its own, so the tests share one service and stay independent.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest

from stat_bot.bot.manifest import bot_events
from stat_bot.integrations.slack_emulator import ADMIN_USER_ID, BOT_USER_ID, EmulatorThread
from stat_bot.queue.alert_model import Alert, AlertStatus
from tests.e2e.slack_service import SlackService, message_text, start_service
from tests.unit.test_slack_alerts import AM_TEXT, alertmanager_message, pagerduty_message

T = TypeVar("T")

CONFIG = {
    "hw": {
        "description": "Hardware checks",
        "jobs": {"check": {"run_args_template": "echo checked {target}", "report_stdout": True}},
        "slack": [{"command": "check [target:target=all]", "job_type": "check"}],
        "alert_rules": [
            {
                "alertname": ["NodeDown", "BMCUnreachable"],
                "labels": {"xname": True},
                "job_type": "check",
                "args": {"target": "{xname}"},
                "arg_types": {"target": "xname"},
            }
        ],
    }
}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlackService]:
    home = tmp_path_factory.mktemp("slack-alerts-e2e")
    # The workspace's app subscribes to channel messages, as DEPLOY.md has sites that read
    # alerts from Slack add.
    with EmulatorThread(bot_events=bot_events(alerts=True)) as emulator:
        slack = emulator.client()
        members = [BOT_USER_ID, ADMIN_USER_ID]
        for name in ("oncall", "alerts", "random"):
            slack.add_channel(name, members=members)
        slack.add_user("pagerduty", is_bot=True, real_name="PagerDuty")
        slack.add_user("alertmanager", is_bot=True, real_name="Alertmanager")
        running = start_service(
            home,
            emulator,
            CONFIG,
            ONCALL_CHANNEL="oncall",
            ONCALL_ALERT_CHANNELS="oncall, #alerts",
        )
        try:
            yield running
        finally:
            running.stop()
    tracebacks = [
        line
        for line in (running.log_of("bot") + running.log_of("dispatcher")).splitlines()
        if "Traceback" in line
    ]
    assert not tracebacks, tracebacks


def poll(fetch: Callable[[], T | None], what: str, timeout: float = 20.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        found = fetch()
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def alerts(service: SlackService, title: str) -> list[Alert]:
    queue = service.queue
    try:
        return [a for a in queue.alerts() if a.title == title]
    finally:
        queue.close()


def the_alert(service: SlackService, title: str, check: Callable[[Alert], bool]) -> Alert:
    def fetch() -> Alert | None:
        found = alerts(service, title)
        assert len(found) <= 1, found  # never a second alert for the same one
        return found[0] if found and check(found[0]) else None

    return poll(fetch, f"alert {title!r}")


def pd(incident: str, title: str, status: str = "Triggered") -> dict[str, Any]:
    message = pagerduty_message(status)
    url = f"https://acme.pagerduty.com/incidents/{incident}"
    number = int.from_bytes(incident.encode()) % 10000
    message["attachments"][0]["text"] = f"*<{url}|[#{number}] {title}>*"
    message["attachments"][0]["fallback"] = f"{status}: {title}"
    return message


def post_as(service: SlackService, bot: str, channel: str, message: dict[str, Any]) -> str:
    _, ts = service.slack.post(
        bot,
        channel,
        message.get("text") or "",
        attachments=message.get("attachments"),
        blocks=message.get("blocks"),
        wait_ack=True,
    )
    return ts


def bot_replies(service: SlackService, channel: str, ts: str) -> list[str]:
    return [
        message_text(m)
        for m in service.slack.messages(channel, thread_ts=ts)
        if m["ts"] != ts and m["user"] == BOT_USER_ID
    ]


def test_a_pagerduty_incident_counted_and_resolved_in_its_thread(service: SlackService):
    title = "Disk full on lustre-mds1"
    ts = post_as(service, "pagerduty", "oncall", pd("Q0DISKFULL1", title))
    alert = the_alert(service, title, lambda a: True)
    assert (alert.source, alert.status, alert.fire_count) == ("slack", AlertStatus.FIRING, 1)
    assert alert.service == "Lustre storage"
    reply = poll(lambda: bot_replies(service, "oncall", ts), "the follow-up in the thread")
    assert reply[0].startswith(f":eyes: Alert #{alert.id} recorded: first time")
    # Not a second top-level copy of the alert in the on-call channel.
    top = [m for m in service.slack.messages("oncall") if m["user"] == BOT_USER_ID]
    assert not [m for m in top if title in message_text(m) and not m["thread_ts"]]
    # The same incident posted again while it fires: a reminder, not a second firing.
    post_as(service, "pagerduty", "oncall", pd("Q0DISKFULL1", title))
    seen = the_alert(service, title, lambda a: a.updated_at > alert.updated_at)
    assert (seen.fire_count, seen.status) == (1, AlertStatus.FIRING)
    # PagerDuty edits its message as the incident moves on: Acknowledged changes nothing,
    # Resolved resolves the alert, at the edit's time (not the message's).
    for status in ("Acknowledged", "Resolved"):
        edited = pd("Q0DISKFULL1", title, status)
        service.slack.edit("oncall", ts, "", attachments=edited["attachments"])
    resolved = the_alert(service, title, lambda a: a.status is AlertStatus.RESOLVED)
    assert resolved.fire_count == 1
    assert resolved.resolved_at is not None
    assert resolved.resolved_at > float(ts)
    # Triggered again later, a new message: the same alert fires a second time.
    again = post_as(service, "pagerduty", "oncall", pd("Q0DISKFULL1", title))
    assert the_alert(service, title, lambda a: a.fire_count == 2).status is AlertStatus.FIRING
    poll(lambda: bot_replies(service, "oncall", again), "the second follow-up")
    assert "fired 2 times since" in bot_replies(service, "oncall", again)[0]


def test_a_redelivered_message_counts_once(service: SlackService):
    title = "IB switch ib-leaf-7 down"
    ts = post_as(service, "pagerduty", "alerts", pd("Q0IBLEAF007", title))
    the_alert(service, title, lambda a: True)
    assert service.slack.redeliver("alerts", ts) == 1
    assert service.slack.redeliver("alerts", ts) == 1
    poll(
        lambda: service.log_of("bot").count("alert message delivered again; counted once") >= 2,
        "both redeliveries to be dropped",
    )
    assert the_alert(service, title, lambda a: True).fire_count == 1


def test_an_alert_from_another_channel_goes_to_the_oncall_channel(service: SlackService):
    title = "GPU ECC errors on x1000c3s1b0n1"
    post_as(service, "pagerduty", "alerts", pd("Q0GPUECC111", title))
    the_alert(service, title, lambda a: True)
    posted = service.slack.wait_for_message(
        "oncall", lambda m: m["user"] == BOT_USER_ID and title in message_text(m), timeout=20
    )
    assert posted["text"].startswith(":rotating_light:")
    assert not posted["thread_ts"]


def test_an_alertmanager_alert_checks_its_xname_with_the_report_in_its_thread(
    service: SlackService,
):
    text = AM_TEXT.replace("x1000c0s0b0n0", "x1000c2s4b0n1")
    message = alertmanager_message("[FIRING:1] NodeDown (x1000c2s4b0n1 critical)", text)
    ts = post_as(service, "alertmanager", "oncall", message)
    alert = the_alert(service, "NodeDown (x1000c2s4b0n1 critical)", lambda a: True)
    assert alert.labels["xname"] == "x1000c2s4b0n1"
    report = service.slack.wait_for_reply(
        "oncall", ts, lambda m: "checked x1000c2s4b0n1" in message_text(m), timeout=30
    )
    assert report["user"] == BOT_USER_ID
    follow_up = poll(lambda: bot_replies(service, "oncall", ts), "the follow-up")
    assert any(":gear: queued job #" in r for r in follow_up)
    resolved = alertmanager_message("[RESOLVED] NodeDown (x1000c2s4b0n1 critical)", text)
    post_as(service, "alertmanager", "oncall", resolved)
    the_alert(
        service, "NodeDown (x1000c2s4b0n1 critical)", lambda a: a.status is AlertStatus.RESOLVED
    )


def test_a_hostile_label_is_refused_in_the_thread(service: SlackService):
    text = AM_TEXT.replace("`x1000c0s0b0n0`", "`x1000c0s0b0n0;reboot`")
    message = alertmanager_message("[FIRING:1] BMCUnreachable (hostile)", text)
    ts = post_as(service, "alertmanager", "oncall", message)
    replies = poll(
        lambda: [r for r in bot_replies(service, "oncall", ts) if ":no_entry:" in r],
        "the refusal",
    )
    assert "must be an xname" in replies[0]
    queue = service.queue
    try:
        assert not [j for j in queue.jobs(limit=200) if "reboot" in str(j.args)]
    finally:
        queue.close()


def test_people_our_own_bot_and_unwatched_channels_are_not_alerts(service: SlackService):
    title = "[FIRING:1] FanFailure (x1000c5s0b0 critical)"
    service.slack.post("admin", "oncall", title, wait_ack=True)  # a person pasting one
    post_as(service, "alertmanager", "random", alertmanager_message(title))
    # A bot message that is not an alert, and a garbled one: ignored, the listener goes on.
    post_as(service, "pagerduty", "oncall", {"text": "Weekly on-call schedule updated"})
    post_as(service, "pagerduty", "oncall", {"attachments": [{"fields": "???", "text": 5}]})
    marker = "[FIRING:1] FanFailure (x1000c5s9b0 marker)"
    post_as(service, "alertmanager", "oncall", alertmanager_message(marker))
    the_alert(service, "FanFailure (x1000c5s9b0 marker)", lambda a: True)
    assert alerts(service, "FanFailure (x1000c5s0b0 critical)") == []
