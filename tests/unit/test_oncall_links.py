"""Links and names from outside in on-call messages: a URL or a name cannot add a mention,
a broadcast or a link of its own to what STAT bot posts."""

from __future__ import annotations

import pytest

from stat_bot.hardware.report import link
from stat_bot.oncall.messages import acknowledged_message, alert_messages
from stat_bot.queue.alert_model import Alert, AlertChange, AlertChangeKind, AlertStatus
from stat_bot.report.outbox import decode


def alert(url: str | None) -> Alert:
    return Alert(
        1, "slack", "f", "NodeDown", "slurm", "critical", {}, AlertStatus.FIRING,
        0.0, 0.0, None, 1, url, 0.0,
    )  # fmt: skip


@pytest.mark.parametrize(
    "url",
    [
        "https://am.example/>x<!channel>",
        "https://am.example/a|<!here>",
        "https://am.example/a b",
        "javascript:alert(1)",
        "https://am.example/\n<!channel>",
    ],
)
def test_a_hostile_url_is_shown_as_text_never_as_markup(url: str) -> None:
    text = link(url, "source <!channel>")
    assert "<!channel>" not in text
    assert "<!here>" not in text
    assert text.startswith("source &lt;!channel&gt; (`")
    (message,) = alert_messages([AlertChange(alert(url), AlertChangeKind.NEW)], "oncall")
    posted = decode(message.payload).messages[0].text
    assert "<!channel>" not in posted
    assert "<!here>" not in posted


def test_a_plain_web_address_is_a_link() -> None:
    assert link("https://am.example/graph?g0=up", "source") == (
        "<https://am.example/graph?g0=up|source>"
    )
    assert link(None, "a|b") == "a¦b"


def test_a_pagerduty_agent_named_like_a_broadcast_is_escaped() -> None:
    (message,) = acknowledged_message(alert(None), "<!here> (PagerDuty)", "oncall")
    text = decode(message.payload).messages[0].text
    assert text == ":eyes: Acknowledged by &lt;!here&gt; (PagerDuty): *NodeDown*"
