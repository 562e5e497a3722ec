"""Buttons in the local Slack: a click reaches a real Bolt app as Slack sends it, and the
terminal console numbers buttons and clicks them."""

from __future__ import annotations

import io
import threading
from typing import Any

import pytest
from slack_bolt import App
from slack_sdk import WebClient

from stat_bot.console import Console
from stat_bot.integrations.slack_emulator import (
    ADMIN_USER_ID,
    BOT_ID,
    BOT_TOKEN,
    GENERAL_CHANNEL_ID,
    EmulatorClient,
    EmulatorError,
    EmulatorThread,
    wait_for,
)

BUTTONS = [
    {"type": "section", "text": {"type": "mrkdwn", "text": "Power off x1000c0?"}},
    {
        "type": "actions",
        "block_id": "offer_1",
        "elements": [
            {
                "type": "button",
                "action_id": "stat_confirm",
                "text": {"type": "plain_text", "text": "Confirm"},
                "style": "danger",
                "value": "ABC234",
            },
            {
                "type": "button",
                "action_id": "stat_cancel",
                "text": {"type": "plain_text", "text": "Cancel"},
                "value": "ABC234",
            },
        ],
    },
]


def clicking_app(emulator: EmulatorThread, seen: list[dict[str, Any]]) -> App:
    app = App(client=WebClient(token=BOT_TOKEN, base_url=emulator.api_url))

    @app.action("stat_confirm")
    @app.action("stat_cancel")
    def on_click(ack: Any, body: dict[str, Any], action: dict[str, Any], client: WebClient) -> None:
        ack()
        seen.append(body)
        client.chat_postMessage(
            channel=body["channel"]["id"],
            thread_ts=body["message"]["ts"],
            text=f"{action['action_id']} {action['value']} by {body['user']['id']}",
        )

    return app


@pytest.fixture
def offer(slack_web_client: WebClient) -> str:
    posted = slack_web_client.chat_postMessage(
        channel=GENERAL_CHANNEL_ID, text="Power off x1000c0?", blocks=BUTTONS
    )
    return posted["ts"]


def test_a_click_reaches_bolt_as_a_block_actions_payload(
    slack_emulator: EmulatorThread, emulator_client: EmulatorClient, connect_bolt, offer: str
):
    seen: list[dict[str, Any]] = []
    connect_bolt(clicking_app(slack_emulator, seen))
    answer = emulator_client.click("admin", "general", offer, "stat_confirm", wait_ack=True)
    assert answer["acked"] is True
    reply = emulator_client.wait_for_reply(GENERAL_CHANNEL_ID, offer)
    assert reply["text"] == f"stat_confirm ABC234 by {ADMIN_USER_ID}"
    (body,) = seen
    assert body["type"] == "block_actions"
    assert body["user"]["id"] == ADMIN_USER_ID
    assert body["user"]["username"] == "admin"
    assert body["channel"]["id"] == GENERAL_CHANNEL_ID
    assert body["container"] == {
        "type": "message",
        "message_ts": offer,
        "channel_id": GENERAL_CHANNEL_ID,
        "is_ephemeral": False,
    }
    assert body["message"]["ts"] == offer
    assert body["message"]["blocks"] == BUTTONS
    assert body["trigger_id"]
    assert body["response_url"].startswith(slack_emulator.url + "/_emulator/respond/")
    (action,) = body["actions"]
    assert {k: action[k] for k in ("action_id", "block_id", "value", "type", "style")} == {
        "action_id": "stat_confirm",
        "block_id": "offer_1",
        "value": "ABC234",
        "type": "button",
        "style": "danger",
    }
    envelope = emulator_client.wait_for_ack(lambda e: e["event_type"] == "block_actions")
    assert envelope["sent"] <= envelope["acked"]
    # By position too; a button the message does not have is refused.
    emulator_client.click("guest", "general", offer, index=1, wait_ack=True)
    wait_for(lambda: seen, lambda s: len(s) == 2, what="the second click")
    assert seen[1]["actions"][0]["action_id"] == "stat_cancel"
    with pytest.raises(EmulatorError) as caught:
        emulator_client.click("admin", "general", offer, "stat_reboot")
    assert caught.value.code == "action_not_found"


def test_the_console_numbers_buttons_and_clicks_them(
    slack_emulator: EmulatorThread, emulator_client: EmulatorClient, connect_bolt, slack_web_client
):
    seen: list[dict[str, Any]] = []
    connect_bolt(clicking_app(slack_emulator, seen))
    out = io.StringIO()
    console = Console(emulator_client, stdin=io.StringIO(""), stdout=out)
    follower = threading.Thread(target=console.follow, kwargs={"cursor": 0}, daemon=True)
    follower.start()
    try:
        slack_web_client.chat_postMessage(
            channel=GENERAL_CHANNEL_ID, text="Power off x1000c0?", blocks=BUTTONS
        )
        wait_for(lambda: out.getvalue(), lambda text: "[2] Cancel" in text, what="buttons")
        assert (
            "[1] Confirm  [2] Cancel   (type /click <n> or /choose <n> <option>)" in out.getvalue()
        )
        assert console.handle("/click 2 guest")
        wait_for(lambda: seen, lambda s: len(s) == 1, what="the console's click")
        assert seen[0]["actions"][0]["action_id"] == "stat_cancel"
        assert seen[0]["user"]["username"] == "guest"
        console.handle("/click 9")
        assert "no button [9] yet" in out.getvalue()
    finally:
        console.stop.set()
        follower.join(5)


SELECTS = [
    {
        "type": "section",
        "block_id": "incident-role-commander",
        "text": {"type": "mrkdwn", "text": "*Incident commander*: _unclaimed_"},
        "accessory": {
            "type": "users_select",
            "action_id": "incident_assign",
            "placeholder": {"type": "plain_text", "text": "Assign"},
        },
    },
    {
        "type": "actions",
        "block_id": "incident-status",
        "elements": [
            {
                "type": "static_select",
                "action_id": "incident_status",
                "options": [
                    {"text": {"type": "plain_text", "text": s}, "value": s}
                    for s in ("investigating", "monitoring")
                ],
            }
        ],
    },
]


def test_the_console_chooses_options_reacts_and_sends_slash_commands(
    slack_emulator: EmulatorThread, emulator_client: EmulatorClient, connect_bolt, slack_web_client
):
    """What an incident needs from the terminal: a status select, a user select, a
    reaction on the last message and `/incident`, each reaching a real Bolt app."""
    seen: list[tuple[str, Any]] = []
    app = App(client=WebClient(token=BOT_TOKEN, base_url=slack_emulator.api_url))

    @app.action("incident_status")
    @app.action("incident_assign")
    def on_select(ack: Any, action: dict[str, Any]) -> None:
        ack()
        seen.append(("select", action.get("selected_option") or action.get("selected_user")))

    @app.event("reaction_added")
    def on_reaction(event: dict[str, Any]) -> None:
        seen.append(("reaction", event["reaction"]))

    @app.command("/incident")
    def on_command(ack: Any, command: dict[str, Any]) -> None:
        ack(text=f"opening {command['text']}")
        seen.append(("command", command["text"]))

    connect_bolt(app)
    out = io.StringIO()
    console = Console(emulator_client, stdin=io.StringIO(""), stdout=out)
    follower = threading.Thread(target=console.follow, kwargs={"cursor": 0}, daemon=True)
    follower.start()
    try:
        slack_web_client.chat_postMessage(
            channel=GENERAL_CHANNEL_ID, text="Incident 1", blocks=SELECTS
        )
        wait_for(
            lambda: out.getvalue(),
            lambda text: "[2] choose: investigating|monitoring" in text,
            what="selects",
        )
        assert "[1] Assign: a user" in out.getvalue()
        console.handle("/choose 2 monitoring")
        console.handle("/choose 1 @admin")
        console.handle("/react rotating_light")
        console.handle("/incident gpfs hangs")
        wait_for(lambda: seen, lambda s: len(s) == 4, what="the console's four actions")
        assert (
            "select",
            {"text": {"type": "plain_text", "text": "monitoring"}, "value": "monitoring"},
        ) in seen
        assert ("select", ADMIN_USER_ID) in seen
        assert ("reaction", "rotating_light") in seen
        assert ("command", "gpfs hangs") in seen
        console.handle("/click 2")
        assert "[2] is a select: /choose 2 <option>" in out.getvalue()
        console.handle("/choose 9 x")
        assert "no select [9]" in out.getvalue()
    finally:
        console.stop.set()
        follower.join(5)


def test_the_console_posts_as_a_paging_tool(emulator_client: EmulatorClient):
    """`/alert` posts as another app's bot user in Alertmanager's Slack shape: the parser
    reads it as the alert it says, and the console shows the attachment."""
    from stat_bot.oncall.slack_alerts import read_alert

    out = io.StringIO()
    console = Console(emulator_client, stdin=io.StringIO(""), stdout=out)
    follower = threading.Thread(target=console.follow, kwargs={"cursor": 0}, daemon=True)
    follower.start()
    try:
        console.handle("/alert firing NodeDown xname=x1000c0s0b0n0 severity=critical")
        console.handle("/alert resolved NodeDown xname=x1000c0s0b0n0 severity=critical")
        console.handle("/alert burning NodeDown")
        wait_for(lambda: out.getvalue(), lambda t: "[RESOLVED] NodeDown" in t, what="both")
        assert "[FIRING:1] NodeDown (x1000c0s0b0n0 critical)" in out.getvalue()
        assert "usage: /alert <firing|resolved>" in out.getvalue()
    finally:
        console.stop.set()
        follower.join(5)
    fired, resolved = emulator_client.messages("general")[-2:]
    assert fired["bot_id"]
    assert fired["bot_id"] != BOT_ID
    first, second = read_alert(fired), read_alert(resolved)
    assert first is not None
    assert second is not None
    assert first.event is not None
    assert second.event is not None
    assert first.event.labels["xname"] == "x1000c0s0b0n0"
    assert (first.event.status, second.event.status) == ("firing", "resolved")
    assert first.event.fingerprint == second.event.fingerprint
