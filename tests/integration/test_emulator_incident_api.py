"""What an incident needs from the local Slack: channels made, people invited, topics, pins,
archives; reactions, slash commands, selects and modals, through the real slack_sdk WebClient
and a real slack_bolt App over Socket Mode."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from slack_bolt import App
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from stat_bot.integrations.slack_emulator import (
    ADMIN_USER_ID,
    ADMINS_GROUP_ID,
    BOT_TOKEN,
    BOT_USER_ID,
    GENERAL_CHANNEL_ID,
    GUEST_USER_ID,
    VISITOR_USER_ID,
    EmulatorClient,
    EmulatorError,
    EmulatorThread,
    wait_for,
)
from stat_bot.settings import PROXY_VARIABLES


@pytest.fixture
def slack_emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[EmulatorThread]:
    """Subscribed to every event (reaction_added, member_joined_channel...), whatever the manifest."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    with EmulatorThread(bot_events=None) as emulator:
        yield emulator


def error_of(call: Callable[..., Any], **kwargs: Any) -> str:
    with pytest.raises(SlackApiError) as caught:
        call(**kwargs)
    return caught.value.response["error"]


SEVERITY = {
    "type": "section",
    "block_id": "sev",
    "text": {"type": "mrkdwn", "text": "Severity?"},
    "accessory": {
        "type": "static_select",
        "action_id": "incident_severity",
        "placeholder": {"type": "plain_text", "text": "Pick one"},
        "options": [
            {"text": {"type": "plain_text", "text": "SEV1"}, "value": "sev1"},
            {"text": {"type": "plain_text", "text": "SEV2"}, "value": "sev2"},
        ],
    },
}
ROLES = {
    "type": "actions",
    "block_id": "roles",
    "elements": [
        {"type": "users_select", "action_id": "incident_lead"},
        {
            "type": "button",
            "action_id": "incident_resolve",
            "text": {"type": "plain_text", "text": "Resolve"},
            "value": "1",
        },
    ],
}
MODAL = {
    "type": "modal",
    "callback_id": "incident_declare",
    "title": {"type": "plain_text", "text": "Declare an incident"},
    "submit": {"type": "plain_text", "text": "Declare"},
    "blocks": [
        {
            "type": "input",
            "block_id": "title",
            "label": {"type": "plain_text", "text": "Title"},
            "element": {"type": "plain_text_input", "action_id": "title"},
        }
    ],
}


# -- Web API ---------------------------------------------------------------------------


def test_conversations_create_names_and_events(
    slack_web_client: WebClient, emulator_client: EmulatorClient
):
    cursor = emulator_client.feed_cursor()
    made = slack_web_client.conversations_create(name="inc-42-nid0001-down")["channel"]
    assert (made["name"], made["creator"], made["is_member"]) == (
        "inc-42-nid0001-down",
        BOT_USER_ID,
        True,
    )
    assert slack_web_client.conversations_members(channel=made["id"])["members"] == [BOT_USER_ID]
    secret = slack_web_client.conversations_create(name="inc-43", is_private=True)["channel"]
    assert (secret["is_private"], secret["is_group"]) == (True, True)

    create = slack_web_client.conversations_create
    assert error_of(create, name="inc-42-nid0001-down") == "name_taken"
    assert error_of(create, name="general") == "name_taken"
    assert error_of(create, name="Inc 44!") == "invalid_name_specials"
    assert error_of(create, name="x" * 81) == "invalid_name_maxlength"
    assert error_of(create, name="") == "invalid_name_required"
    assert error_of(create, name="--") == "invalid_name_punctuation"
    assert create(name="y" * 80)["ok"]

    events, _ = emulator_client.feed(cursor)
    created = [e["channel_name"] for e in events if e["kind"] == "channel_created"]
    assert created == ["inc-42-nid0001-down", "inc-43", "y" * 80]
    sent = [e["event_type"] for e in emulator_client.acks()]
    assert sent.count("channel_created") == 2  # Slack tells apps of public channels only


def test_invite_topic_purpose_archive(slack_web_client: WebClient, emulator_client: EmulatorClient):
    channel = slack_web_client.conversations_create(name="inc-7")["channel"]["id"]
    invite = slack_web_client.conversations_invite
    answer = invite(channel=channel, users=f"{ADMIN_USER_ID},{GUEST_USER_ID}")
    assert answer["channel"]["num_members"] == 3
    # Some already in: the rest are added; all already in: refused.
    invite(channel=channel, users=f"{ADMIN_USER_ID},{VISITOR_USER_ID}")
    members = slack_web_client.conversations_members(channel=channel)["members"]
    assert members == [BOT_USER_ID, ADMIN_USER_ID, GUEST_USER_ID, VISITOR_USER_ID]
    assert error_of(invite, channel=channel, users=ADMIN_USER_ID) == "already_in_channel"
    assert error_of(invite, channel=channel, users="U0NOBODY") == "user_not_found"
    assert error_of(invite, channel=channel, users=BOT_USER_ID) == "cant_invite_self"
    outside = emulator_client.add_channel("elsewhere")["id"]
    assert error_of(invite, channel=outside, users=GUEST_USER_ID) == "not_in_channel"
    joined = [e for e in emulator_client.acks() if e["event_type"] == "member_joined_channel"]
    assert len(joined) == 3

    slack_web_client.conversations_setTopic(channel=channel, topic="SEV1: nid0001 down")
    slack_web_client.conversations_setPurpose(channel=channel, purpose="Incident 7")
    info = slack_web_client.conversations_info(channel=channel)["channel"]
    assert (info["topic"]["value"], info["topic"]["creator"]) == ("SEV1: nid0001 down", BOT_USER_ID)
    assert info["purpose"]["value"] == "Incident 7"
    too_long = error_of(slack_web_client.conversations_setTopic, channel=channel, topic="t" * 251)
    assert too_long == "too_long"
    assert slack_web_client.conversations_setTopic(channel=channel, topic="t" * 250)["ok"]

    slack_web_client.conversations_archive(channel=channel)
    assert slack_web_client.conversations_info(channel=channel)["channel"]["is_archived"] is True
    archive = slack_web_client.conversations_archive
    assert error_of(archive, channel=channel) == "already_archived"
    assert error_of(archive, channel=GENERAL_CHANNEL_ID) == "cant_archive_general"
    post = slack_web_client.chat_postMessage
    assert error_of(post, channel=channel, text="too late") == "is_archived"
    assert error_of(invite, channel=channel, users=ADMIN_USER_ID) == "is_archived"
    kinds = [e["kind"] for e in emulator_client.feed(0)[0]]
    for kind in ("channel_created", "member_joined", "topic", "channel_archived"):
        assert kind in kinds


def test_pins(slack_web_client: WebClient, emulator_client: EmulatorClient):
    first = slack_web_client.chat_postMessage(channel="general", text="status: investigating")
    second = slack_web_client.chat_postMessage(channel="general", text="status: mitigated")
    slack_web_client.pins_add(channel=GENERAL_CHANNEL_ID, timestamp=first["ts"])
    slack_web_client.pins_add(channel=GENERAL_CHANNEL_ID, timestamp=second["ts"])
    items = slack_web_client.pins_list(channel=GENERAL_CHANNEL_ID)["items"]
    assert [i["message"]["text"] for i in items] == ["status: mitigated", "status: investigating"]
    assert items[0]["created_by"] == BOT_USER_ID
    assert items[0]["message"]["pinned_to"] == [GENERAL_CHANNEL_ID]
    pin = slack_web_client.pins_add
    assert error_of(pin, channel="general", timestamp=first["ts"]) == "already_pinned"
    assert error_of(pin, channel="general", timestamp="1.000001") == "message_not_found"
    assert emulator_client.messages("general")[0]["pinned_to"] == [GENERAL_CHANNEL_ID]
    slack_web_client.pins_remove(channel="general", timestamp=first["ts"])
    assert len(slack_web_client.pins_list(channel="general")["items"]) == 1


def test_users_conversations_and_usergroup_members(
    slack_web_client: WebClient, emulator_client: EmulatorClient
):
    made = [
        slack_web_client.conversations_create(name=f"inc-{i}")["channel"]["id"] for i in range(3)
    ]
    slack_web_client.conversations_invite(channel=made[1], users=GUEST_USER_ID)
    ids, cursor = [], None
    while True:
        page = slack_web_client.users_conversations(limit=2, cursor=cursor)
        ids += [c["id"] for c in page["channels"]]
        cursor = page["response_metadata"]["next_cursor"]
        if not cursor:
            break
    assert ids[-3:] == made
    assert len(ids) == 7  # the 4 seeded channels the bot is in, and the 3 it made
    guest = slack_web_client.users_conversations(user=GUEST_USER_ID)["channels"]
    assert [c["id"] for c in guest] == [GENERAL_CHANNEL_ID, made[1]]
    assert error_of(slack_web_client.users_conversations, user="U0NOBODY") == "user_not_found"
    members = slack_web_client.usergroups_users_list(
        usergroup=ADMINS_GROUP_ID, include_disabled=True
    )
    assert members["users"] == [ADMIN_USER_ID]


def test_views_open_wants_a_trigger_the_emulator_issued(
    slack_web_client: WebClient, emulator_client: EmulatorClient
):
    opened = error_of(slack_web_client.views_open, trigger_id="1.2.made-up", view=MODAL)
    assert opened == "invalid_trigger_id"
    # No app is connected: the trigger's clock runs from when the command was typed.
    trigger = emulator_client.command("admin", "general", "/incident", "declare")["trigger_id"]
    bad = dict(MODAL, submit=None)
    assert (
        error_of(slack_web_client.views_open, trigger_id=trigger, view=bad) == "invalid_arguments"
    )
    view = slack_web_client.views_open(trigger_id=trigger, view=MODAL)["view"]
    assert view["id"].startswith("V")
    assert view["callback_id"] == "incident_declare"
    again = error_of(slack_web_client.views_open, trigger_id=trigger, view=MODAL)
    assert again == "exchanged_trigger_id"
    (recorded,) = emulator_client.views(user="admin")
    assert (recorded["id"], recorded["blocks"]) == (view["id"], MODAL["blocks"])

    assert emulator_client.socket_mode(trigger_ttl=0)["trigger_ttl"] == 0
    late = emulator_client.command("admin", "general", "/incident", "declare")["trigger_id"]
    assert (
        error_of(slack_web_client.views_open, trigger_id=late, view=MODAL) == "expired_trigger_id"
    )


def test_control_refusals(emulator_client: EmulatorClient, slack_web_client: WebClient):
    posted = slack_web_client.chat_postMessage(channel="general", text="x", blocks=[SEVERITY])
    with pytest.raises(EmulatorError) as caught:
        emulator_client.command("admin", "general", "incident")
    assert caught.value.code == "invalid_command"
    with pytest.raises(EmulatorError) as caught:
        emulator_client.click("admin", "general", posted["ts"], "incident_severity", option="sev9")
    assert caught.value.code == "option_not_found"
    assert "'sev1'" in caught.value.detail
    emulator_client.react("guest", "general", posted["ts"], "eyes")
    with pytest.raises(EmulatorError) as caught:
        emulator_client.react("guest", "general", posted["ts"], "eyes")
    assert caught.value.code == "already_reacted"


# -- Socket Mode with a real Bolt app --------------------------------------------------


def incident_app(emulator: EmulatorThread, seen: dict[str, list[Any]]) -> App:
    app = App(client=WebClient(token=BOT_TOKEN, base_url=emulator.api_url))
    lock = threading.Lock()

    def keep(kind: str, item: Any) -> None:
        with lock:
            seen.setdefault(kind, []).append(item)

    @app.event("reaction_added")
    def on_reaction(event: dict[str, Any]) -> None:
        keep("reaction", event)

    @app.command("/incident")
    def on_command(ack: Any, command: dict[str, Any], respond: Any) -> None:
        ack(text=f"Declaring: {command['text']}")
        keep("command", command)
        respond(text="Channel #inc-1 is ready", response_type="in_channel")

    @app.action("incident_severity")
    def on_severity(ack: Any, body: dict[str, Any], action: dict[str, Any], client: WebClient):
        ack()
        keep("select", body)
        keep("view", client.views_open(trigger_id=body["trigger_id"], view=MODAL)["view"])

    @app.action("incident_lead")
    def on_lead(ack: Any, body: dict[str, Any], respond: Any) -> None:
        ack()
        keep("lead", body)
        respond(text=f"Lead: <@{body['actions'][0]['selected_user']}>")

    return app


def test_bolt_gets_a_reaction_added_event(
    slack_emulator: EmulatorThread, emulator_client: EmulatorClient, connect_bolt, slack_web_client
):
    seen: dict[str, list[Any]] = {}
    connect_bolt(incident_app(slack_emulator, seen))
    posted = slack_web_client.chat_postMessage(channel="general", text="nid0001 is down")
    answer = emulator_client.react(
        "admin", "general", posted["ts"], ":rotating_light:", wait_ack=True
    )
    assert answer["acked"] is True
    (event,) = wait_for(lambda: seen.get("reaction"), lambda s: s, what="the reaction event")
    assert {k: event[k] for k in ("type", "user", "reaction", "item_user", "item")} == {
        "type": "reaction_added",
        "user": ADMIN_USER_ID,
        "reaction": "rotating_light",
        "item_user": BOT_USER_ID,
        "item": {"type": "message", "channel": GENERAL_CHANNEL_ID, "ts": posted["ts"]},
    }
    assert event["event_ts"]
    message = emulator_client.messages("general")[0]
    assert message["reactions"] == [{"name": "rotating_light", "users": [ADMIN_USER_ID]}]
    reaction = [e for e in emulator_client.feed(0)[0] if e["kind"] == "reaction"]
    assert reaction[0]["user"] == ADMIN_USER_ID


def test_a_slash_command_is_acked_with_an_answer_only_its_user_sees(
    slack_emulator: EmulatorThread, emulator_client: EmulatorClient, connect_bolt
):
    seen: dict[str, list[Any]] = {}
    connect_bolt(incident_app(slack_emulator, seen))
    answer = emulator_client.command("guest", "general", "/incident", "nid0001 down", wait_ack=True)
    assert answer["acked"] is True
    assert answer["response"]["text"] == "Declaring: nid0001 down"
    (ephemeral,) = emulator_client.ephemerals(user="guest")
    assert (ephemeral["text"], ephemeral["source"], ephemeral["command"]) == (
        "Declaring: nid0001 down",
        "command_ack",
        "/incident",
    )
    assert ephemeral["channel"] == GENERAL_CHANNEL_ID
    assert emulator_client.ephemerals(user="admin") == []
    (command,) = seen["command"]
    assert {
        k: command[k]
        for k in (
            "command",
            "text",
            "user_id",
            "user_name",
            "channel_id",
            "channel_name",
            "team_id",
        )
    } == {
        "command": "/incident",
        "text": "nid0001 down",
        "user_id": GUEST_USER_ID,
        "user_name": "guest",
        "channel_id": GENERAL_CHANNEL_ID,
        "channel_name": "general",
        "team_id": "T0STATBOT",
    }
    assert command["response_url"].startswith(slack_emulator.url + "/_emulator/respond/")
    assert command["trigger_id"]
    # respond(response_type=in_channel) through the response_url: posted for everyone.
    posted = emulator_client.wait_for_message("general", lambda m: "inc-1" in m["text"])
    assert posted["user"] == BOT_USER_ID
    # Bolt sends the ack and runs respond() on two threads: either may arrive first.
    kinds = sorted(e["kind"] for e in emulator_client.feed(0)[0])
    assert kinds == ["ephemeral", "message"]


def test_a_static_select_reaches_bolt_and_its_trigger_opens_a_modal(
    slack_emulator: EmulatorThread, emulator_client: EmulatorClient, connect_bolt, slack_web_client
):
    seen: dict[str, list[Any]] = {}
    connect_bolt(incident_app(slack_emulator, seen))
    posted = slack_web_client.chat_postMessage(
        channel="general", text="Incident 1", blocks=[SEVERITY, ROLES]
    )
    emulator_client.click("admin", "general", posted["ts"], "incident_severity", option="sev2")
    view = emulator_client.wait_for_view(callback_id="incident_declare", user="admin")
    (body,) = seen["select"]
    (action,) = body["actions"]
    assert {k: action[k] for k in ("type", "action_id", "block_id", "selected_option")} == {
        "type": "static_select",
        "action_id": "incident_severity",
        "block_id": "sev",
        "selected_option": {"text": {"type": "plain_text", "text": "SEV2"}, "value": "sev2"},
    }
    assert body["state"]["values"] == {
        "sev": {
            "incident_severity": {
                "type": "static_select",
                "selected_option": action["selected_option"],
            }
        },
        "roles": {"incident_lead": {"type": "users_select", "selected_user": None}},
    }
    assert body["container"]["message_ts"] == posted["ts"]
    assert view["trigger_id"] == body["trigger_id"]
    assert wait_for(lambda: seen.get("view"), lambda s: s)[0]["id"] == view["id"]
    opened = [e for e in emulator_client.feed(0)[0] if e["kind"] == "view_opened"]
    assert opened[0]["view"]["callback_id"] == "incident_declare"

    # A users_select, answered through the response_url: ephemeral to the one who chose.
    emulator_client.click("guest", "general", posted["ts"], "incident_lead", select_user="admin")
    lead = emulator_client.wait_for_ephemeral(user="guest")
    assert lead["text"] == f"Lead: <@{ADMIN_USER_ID}>"
    assert seen["lead"][0]["actions"][0]["selected_user"] == ADMIN_USER_ID


def test_response_url_limits(emulator_client: EmulatorClient):
    url = emulator_client.command("admin", "general", "/incident")["response_url"]
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def answer(body: bytes) -> int:
        request = urllib.request.Request(
            url, data=body, method="POST", headers={"Content-Type": "application/json"}
        )
        try:
            with opener.open(request, timeout=10) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code

    assert answer(b'{"text": "one", "response_type": "sideways"}') == 400
    # Slack takes five answers per response_url.
    assert [answer(b'{"text": "again"}') for _ in range(6)] == [200] * 5 + [404]
    assert len(emulator_client.ephemerals(user="admin")) == 5
