"""Reading paging tools' Slack messages into alerts (oncall/slack_alerts.py), on the shapes
their apps post: PagerDuty's Slack app (an attachment with the incident link, a status
and fields, edited as the incident moves on) and Alertmanager's slack_configs (the
default `[FIRING:n] ...` title, labels in the site's text template); and whatever else a
channel may hold, which must come back as None, never as an exception."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stat_bot.oncall.slack_alerts import read_alert
from stat_bot.queue.alert_model import AlertStatus

PD_URL = "https://acme.pagerduty.com/incidents/Q2J3K4L5M6N7O8"


def pagerduty_message(status: str = "Triggered", ts: str = "1764662400.000100") -> dict[str, Any]:
    """PagerDuty's Slack app: the incident as one attachment (colour by status, the linked
    title, Status / Urgency / Service / Assigned fields, buttons), bot_id of its own."""
    colour = {"Triggered": "#F35A00", "Acknowledged": "#F3B200", "Resolved": "#2EB886"}[status]
    return {
        "type": "message",
        "user": "U0PAGERDUTY",
        "bot_id": "B0PAGERDUTY",
        "app_id": "A1FKYAUUX",
        "ts": ts,
        "text": "",
        "attachments": [
            {
                "fallback": f"{status}: #1234 Disk full on db01",
                "color": colour,
                "text": f"*<{PD_URL}|[#1234] Disk full on db01>*",
                "fields": [
                    {"title": "Status", "value": status, "short": True},
                    {"title": "Urgency", "value": "High", "short": True},
                    {
                        "title": "Service",
                        "value": "<https://acme.pagerduty.com/services/PSVC1|Lustre storage>",
                        "short": True,
                    },
                    {"title": "Assigned", "value": "<@U0ALICE>", "short": True},
                ],
                "actions": [
                    {"type": "button", "text": "Acknowledge", "name": "acknowledge"},
                    {"type": "button", "text": "Resolve", "name": "resolve"},
                ],
                "mrkdwn_in": ["text"],
            }
        ],
    }


def alertmanager_message(title: str, text: str = "", ts: str = "1764662400.000200") -> dict:
    """Alertmanager's slack_configs: one attachment, the default title and title_link,
    colour danger/good, the site's text template (here the common `*Details:*` one)."""
    return {
        "type": "message",
        "subtype": "bot_message",
        "bot_id": "B0ALERTMGR",
        "username": "Alertmanager",
        "ts": ts,
        "text": "",
        "attachments": [
            {
                "title": title,
                "title_link": "http://alertmanager.example.org:9093/#/alerts?receiver=slack",
                "text": text,
                "fallback": f"{title} | http://alertmanager.example.org:9093/#/alerts?receiver=slack",
                "color": "danger" if title.startswith("[FIRING") else "good",
                "footer": "",
                "mrkdwn_in": ["fallback", "pretext", "text"],
            }
        ],
    }


AM_TEXT = (
    "*Alert:* NodeDown - `critical`\n"
    "*Description:* x1000c0s0b0n0 stopped answering\n"
    "*Details:*\n"
    " • *alertname:* `NodeDown`\n"
    " • *severity:* `critical`\n"
    " • *xname:* `x1000c0s0b0n0`\n"
    " • *job:* `node`\n"
)


def test_a_pagerduty_incident_triggered():
    read = read_alert(pagerduty_message())
    assert read is not None
    assert read.tool == "pagerduty"
    assert read.event is not None
    event = read.event
    assert (event.source, event.status) == ("slack", AlertStatus.FIRING)
    assert event.fingerprint == "pagerduty:Q2J3K4L5M6N7O8"
    assert event.title == "Disk full on db01"
    assert event.service == "Lustre storage"
    assert event.severity == "high"
    assert event.labels == {"number": "1234", "urgency": "high"}
    assert event.url == PD_URL
    assert event.at == 1764662400.0001


def test_pagerduty_resolution_matches_its_firing_and_acknowledging_changes_nothing():
    fired = read_alert(pagerduty_message())
    resolved = read_alert(pagerduty_message("Resolved", ts="1764666000.000100"))
    acked = read_alert(pagerduty_message("Acknowledged"))
    assert fired
    assert resolved
    assert acked
    assert fired.event
    assert resolved.event
    assert resolved.event.status is AlertStatus.RESOLVED
    assert resolved.event.fingerprint == fired.event.fingerprint
    assert (acked.status_word, acked.event) == ("acknowledged", None)


def test_pagerduty_in_blocks_and_plain_text():
    """Newer app messages carry blocks; older integrations a line of text."""
    blocks = {
        "bot_id": "B0PD",
        "ts": "1764662401.000000",
        "blocks": [
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": f":red_circle: Triggered <{PD_URL}|#77: GPU ECC errors>",
                },
                "fields": [
                    {"type": "mrkdwn", "text": "*Service*\nGPU nodes"},
                    {"type": "mrkdwn", "text": "*Urgency*\nLow"},
                ],
            },
            {"type": "context", "elements": [{"type": "mrkdwn", "text": "Assigned to Alice"}]},
        ],
    }
    read = read_alert(blocks)
    assert read is not None
    assert read.event is not None
    assert (read.event.title, read.event.service, read.event.labels["urgency"]) == (
        "GPU ECC errors",
        "GPU nodes",
        "low",
    )
    text = {
        "bot_id": "B0PD",
        "ts": "1764662402.000000",
        "text": "Resolved: #77 GPU ECC errors (pagerduty)\nService: GPU nodes",
    }
    read = read_alert(text)
    assert read is not None
    assert read.event is not None
    assert read.event.fingerprint == "pagerduty:#77"
    assert read.event.status is AlertStatus.RESOLVED
    assert read.event.title == "GPU ECC errors (pagerduty)"


def test_alertmanager_default_title_with_labels_from_the_text():
    read = read_alert(alertmanager_message("[FIRING:1] NodeDown (x1000c0s0b0n0 critical)", AM_TEXT))
    assert read is not None
    assert read.tool == "alertmanager"
    assert read.event is not None
    event = read.event
    assert event.status is AlertStatus.FIRING
    assert event.title == "NodeDown (x1000c0s0b0n0 critical)"
    assert event.labels["alertname"] == "NodeDown"
    assert event.labels["xname"] == "x1000c0s0b0n0"
    assert (event.severity, event.service) == ("critical", "node")
    assert event.url == "http://alertmanager.example.org:9093/#/alerts?receiver=slack"
    assert "description" not in event.labels  # template words are not labels


def test_alertmanager_resolved_matches_the_firing_group_and_repeats_share_it():
    fired = read_alert(alertmanager_message("[FIRING:2] NodeDown (x1000c0s0b0n0 critical)"))
    more = read_alert(alertmanager_message("[FIRING:3] NodeDown (x1000c0s0b0n0 critical)"))
    done = read_alert(alertmanager_message("[RESOLVED] NodeDown (x1000c0s0b0n0 critical)"))
    other = read_alert(alertmanager_message("[FIRING:1] NodeDown (x1000c0s0b1n0 critical)"))
    assert fired
    assert more
    assert done
    assert other
    assert fired.event
    assert more.event
    assert done.event
    assert other.event
    assert fired.event.fingerprint == more.event.fingerprint == done.event.fingerprint
    assert other.event.fingerprint != fired.event.fingerprint
    assert done.event.status is AlertStatus.RESOLVED
    assert fired.event.labels == {"alertname": "NodeDown"}  # the default template: no text


def test_an_alert_line_holding_the_summary_is_not_the_alertname():
    text = "*Alert:* Node x1000c0s0b0n0 is down\n*Severity:* critical"
    read = read_alert(alertmanager_message("[FIRING:1] NodeDown (x1000c0s0b0n0)", text))
    assert read is not None
    assert read.event is not None
    assert read.event.labels == {"alertname": "NodeDown", "severity": "critical"}


def test_alertmanager_fields_are_labels():
    message = alertmanager_message("[FIRING:1] BMCUnreachable")
    message["attachments"][0]["fields"] = [
        {"title": "xname", "value": "x1000c0s0b0", "short": True},
        {"title": "severity", "value": "warning", "short": True},
    ]
    read = read_alert(message)
    assert read is not None
    assert read.event is not None
    assert read.event.labels == {
        "alertname": "BMCUnreachable",
        "xname": "x1000c0s0b0",
        "severity": "warning",
    }


@pytest.mark.parametrize(
    "message",
    [
        {"bot_id": "B1", "ts": "1764662400.1", "text": "Deploy finished on login01"},
        {"bot_id": "B1", "ts": "1764662400.1", "text": "Triggered a build"},  # no PagerDuty
        {"bot_id": "B1", "ts": "1764662400.1", "text": "pagerduty: triggered"},  # no incident
        {"bot_id": "B1", "ts": "not-a-ts", "text": "[FIRING:1] NodeDown"},
        {"bot_id": "B1", "ts": "-5", "text": "[FIRING:1] NodeDown"},
        {"bot_id": "B1", "text": "[FIRING:1] NodeDown"},
        {"bot_id": "B1", "ts": "1.0", "attachments": "nope", "blocks": {"x": 1}},
        {"bot_id": "B1", "ts": "1.0", "attachments": [None, 3, {"fields": "x"}]},
        {"bot_id": "B1", "ts": "1.0", "blocks": [{"type": "header", "text": "plain"}]},
    ],
)
def test_what_is_not_an_alert_is_none(message: dict):
    assert read_alert(message) is None


def test_hostile_values_are_clipped_and_kept_as_text():
    text = AM_TEXT.replace("x1000c0s0b0n0`", "x1000c0s0b0n0; rm -rf / #" + "A" * 5000 + "`")
    read = read_alert(alertmanager_message("[FIRING:1] NodeDown " + "B" * 5000, text))
    assert read is not None
    assert read.event is not None
    assert len(read.event.title) <= 1000
    assert read.event.labels["xname"].startswith("x1000c0s0b0n0; rm -rf / #")
    assert len(read.event.labels["xname"]) <= 1000


@settings(max_examples=300, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=40),
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
        ),
        max_leaves=20,
    ),
    st.sampled_from(["text", "attachments", "blocks", "ts"]),
)
def test_garbled_messages_never_raise(value: Any, key: str):
    base = copy.deepcopy(pagerduty_message())
    base[key] = value
    read_alert(base)  # an alert or None; an exception fails the test
    am = alertmanager_message("[FIRING:1] NodeDown", AM_TEXT)
    am["attachments"][0][key if key != "attachments" else "fields"] = value
    read_alert(am)
