"""The Slack emulator speaks the Web API and Socket Mode well enough for the real libraries.

Everything here goes through slack_sdk's WebClient, slack_bolt's App with the
websocket-client Socket Mode adapter, and the emulator's control API: no mocks.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from slack_bolt import App
from slack_bolt.adapter.socket_mode.websocket_client import SocketModeHandler
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import (
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)

from stat_bot.integrations.slack_emulator import (
    ADMIN_USER_ID,
    ADMINS_GROUP_ID,
    APP_TOKEN,
    BOT_ID,
    BOT_TOKEN,
    BOT_USER_ID,
    GENERAL_CHANNEL_ID,
    GUEST_USER_ID,
    INCIDENTS_CHANNEL_ID,
    LOGS_CHANNEL_ID,
    SUPPORT_CHANNEL_ID,
    VISITOR_USER_ID,
    EmulatorClient,
    EmulatorError,
    EmulatorThread,
    wait_for,
)
from stat_bot.settings import PROXY_VARIABLES

Connect = Callable[[App], SocketModeHandler]


@pytest.fixture
def slack_emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[EmulatorThread]:
    """An emulator subscribed to every event, so the event shapes of each can be checked."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    with EmulatorThread(bot_events=None) as emulator:
        yield emulator


def test_by_default_only_the_manifests_events_are_sent(emulator_client: EmulatorClient):
    with EmulatorThread() as emulator:
        client = emulator.client()
        client.post("admin", "general", "@stat-bot hello")
        client.post("admin", "dm", "hello")
        client.post("admin", "general", "no mention")
        sent = sorted(e["event_type"] for e in client.acks())
    # A channel mention comes once, as app_mention; a DM as message; plain chatter not at all.
    assert sent == ["app_mention", "message"]


def refusal(call: Callable[..., Any], **kwargs: Any) -> Any:
    """The response of a Web API call that must fail (a SlackApiError's response)."""
    with pytest.raises(SlackApiError) as caught:
        call(**kwargs)
    return caught.value.response


def error_of(call: Callable[..., Any], **kwargs: Any) -> str:
    return refusal(call, **kwargs)["error"]


def pong_app(emulator: EmulatorThread) -> App:
    """A Bolt app that answers every mention in its thread."""
    app = App(client=WebClient(token=BOT_TOKEN, base_url=emulator.api_url))

    @app.event("app_mention")
    def answer(event: dict[str, Any], say: Any) -> None:
        say(text=f"pong: {event['text']}", thread_ts=event.get("thread_ts") or event["ts"])

    return app


def record_envelopes(handler: SocketModeHandler) -> list[dict[str, Any]]:
    """Every Socket Mode message the handler's client receives, as Slack sent it."""
    seen: list[dict[str, Any]] = []
    lock = threading.Lock()

    def listener(client: Any, message: dict[str, Any], raw: str | None) -> None:
        with lock:
            seen.append(message)

    handler.client.message_listeners.append(listener)
    return seen


def events_of(seen: list[dict[str, Any]], **fields: Any) -> list[dict[str, Any]]:
    """The events of first deliveries: an event Bolt leaves unacked comes again after 3 s."""
    events = [
        m["payload"]["event"]
        for m in list(seen)
        if m.get("type") == "events_api" and not m.get("retry_attempt")
    ]
    return [e for e in events if all(e.get(k) == v for k, v in fields.items())]


# -- Web API through WebClient ---------------------------------------------------------


def test_auth_test_and_token_checks(slack_emulator: EmulatorThread, slack_web_client: WebClient):
    me = slack_web_client.auth_test()
    assert (me["user_id"], me["bot_id"], me["user"]) == (BOT_USER_ID, BOT_ID, "stat-bot")
    assert me["url"] == slack_emulator.url + "/"

    anonymous = WebClient(base_url=slack_emulator.api_url)
    assert error_of(anonymous.auth_test) == "not_authed"
    stranger = WebClient(token="xoxb-nope", base_url=slack_emulator.api_url)
    assert error_of(stranger.auth_test) == "invalid_auth"
    as_app = WebClient(token=APP_TOKEN, base_url=slack_emulator.api_url)
    as_app_error = error_of(as_app.chat_postMessage, channel="general", text="x")
    assert as_app_error == "not_allowed_token_type"
    wrong_kind = error_of(slack_web_client.apps_connections_open, app_token=BOT_TOKEN)
    assert wrong_kind == "not_allowed_token_type"
    url = slack_web_client.apps_connections_open(app_token=APP_TOKEN)["url"]
    assert url.startswith(f"ws://127.0.0.1:{slack_emulator.port}/socket-mode?")
    assert error_of(slack_web_client.api_call, api_method="chat.postTelegram") == "unknown_method"


def test_post_message_by_id_and_by_name_with_blocks(
    slack_web_client: WebClient, emulator_client: EmulatorClient
):
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*job 1* done"}}]
    by_id = slack_web_client.chat_postMessage(channel=GENERAL_CHANNEL_ID, text="one", blocks=blocks)
    by_name = slack_web_client.chat_postMessage(channel="stat-bot-logs", text="two")
    by_hash = slack_web_client.chat_postMessage(channel="#tech-support", text="three")
    # A form-encoded call carries blocks as a JSON string, as slack_sdk's data= does.
    form = slack_web_client.api_call(
        "chat.postMessage",
        data={"channel": "general", "text": "four", "blocks": json.dumps(blocks)},
    )

    assert [by_id["channel"], by_name["channel"], by_hash["channel"], form["channel"]] == [
        GENERAL_CHANNEL_ID,
        LOGS_CHANNEL_ID,
        SUPPORT_CHANNEL_ID,
        GENERAL_CHANNEL_ID,
    ]
    assert by_id["message"]["bot_id"] == BOT_ID
    general = emulator_client.messages("general")
    assert [(m["text"], m["blocks"], m["user"]) for m in general] == [
        ("one", blocks, BOT_USER_ID),
        ("four", blocks, BOT_USER_ID),
    ]
    assert float(general[0]["ts"]) < float(general[1]["ts"])
    assert emulator_client.messages(LOGS_CHANNEL_ID)[0]["text"] == "two"


@pytest.mark.filterwarnings("ignore:The top-level `text` argument is missing")
def test_post_message_refusals(slack_web_client: WebClient, emulator_client: EmulatorClient):
    emulator_client.add_channel("quiet")
    post = slack_web_client.chat_postMessage
    section = {"type": "section", "text": {"type": "mrkdwn", "text": "x"}}
    refusals = {
        "channel_not_found": lambda: post(channel="nowhere", text="x"),
        "not_in_channel": lambda: post(channel="quiet", text="x"),
        "no_text": lambda: post(channel="general"),
        "msg_too_long": lambda: post(channel="general", text="x" * 40_001),
        "invalid_blocks": lambda: post(channel="general", blocks=[section] * 51),
    }
    for error, call in refusals.items():
        assert error_of(call) == error, error
    too_long = {"type": "section", "text": {"type": "mrkdwn", "text": "y" * 3001}}
    refused = refusal(post, channel="general", blocks=[too_long])
    assert refused["error"] == "invalid_blocks"
    assert "/blocks/0/text/text" in refused["response_metadata"]["messages"][0]
    assert post(channel="general", text="x" * 40_000)["ok"]
    assert len(emulator_client.messages("general")) == 1


def test_threads_permalinks_and_edits(
    slack_emulator: EmulatorThread, slack_web_client: WebClient, emulator_client: EmulatorClient
):
    channel, parent = emulator_client.post("admin", "general", "run check-nodes")
    reply = slack_web_client.chat_postMessage(channel=channel, text="queued", thread_ts=parent)
    # A reply to a reply lands in the parent's thread, as in Slack.
    again = slack_web_client.chat_postMessage(
        channel=channel, text="running", thread_ts=reply["ts"]
    )

    thread = emulator_client.messages(channel, thread_ts=parent)
    assert [m["text"] for m in thread] == ["run check-nodes", "queued", "running"]
    assert thread[0]["reply_count"] == 2
    assert again["message"]["thread_ts"] == parent
    assert [m["ts"] for m in emulator_client.messages(channel)] == [parent]

    top = slack_web_client.chat_getPermalink(channel=channel, message_ts=parent)["permalink"]
    assert top == f"{slack_emulator.url}/archives/{channel}/p{parent.replace('.', '')}"
    deep = slack_web_client.chat_getPermalink(channel=channel, message_ts=reply["ts"])
    assert deep["permalink"].endswith(
        f"/p{reply['ts'].replace('.', '')}?thread_ts={parent}&cid={channel}"
    )

    slack_web_client.chat_update(channel=channel, ts=reply["ts"], text="done")
    edited = emulator_client.messages(channel, thread_ts=parent)[1]
    assert (edited["text"], edited["edited"]) == ("done", True)
    assert [h["text"] for h in edited["history"]] == ["queued"]
    not_mine = error_of(slack_web_client.chat_update, channel=channel, ts=parent, text="x")
    assert not_mine == "cant_update_message"
    missing = error_of(slack_web_client.chat_update, channel=channel, ts="1.000001", text="x")
    assert missing == "message_not_found"


def test_reactions(slack_web_client: WebClient, emulator_client: EmulatorClient):
    channel, ts = emulator_client.post("guest", "general", "please reboot node 7")
    slack_web_client.reactions_add(channel=channel, timestamp=ts, name="eyes")
    react = slack_web_client.reactions_add
    assert error_of(react, channel=channel, timestamp=ts, name="eyes") == "already_reacted"
    assert error_of(react, channel=channel, timestamp="1.1", name="x") == "message_not_found"
    assert emulator_client.messages(channel)[0]["reactions"] == [
        {"name": "eyes", "users": [BOT_USER_ID]}
    ]


def test_conversations_pagination_join_and_dm(
    slack_web_client: WebClient, emulator_client: EmulatorClient
):
    ops = emulator_client.add_channel("hpc-ops")
    private = emulator_client.add_channel("secret-ops", is_private=True, members=["admin"])

    ids, cursor, pages = [], None, 0
    while True:
        page = slack_web_client.conversations_list(limit=2, cursor=cursor)
        ids += [c["id"] for c in page["channels"]]
        pages += 1
        cursor = page["response_metadata"]["next_cursor"]
        if not cursor:
            break
    assert pages == 3
    assert sorted(ids) == sorted(
        [GENERAL_CHANNEL_ID, LOGS_CHANNEL_ID, SUPPORT_CHANNEL_ID, INCIDENTS_CHANNEL_ID, ops["id"]]
    )
    # A private channel the bot is not in is invisible to it.
    assert slack_web_client.conversations_list(types="private_channel")["channels"] == []
    hidden = error_of(slack_web_client.conversations_info, channel=private["id"])
    assert hidden == "channel_not_found"

    joined = slack_web_client.conversations_join(channel="hpc-ops")["channel"]
    assert joined["is_member"] is True
    assert BOT_USER_ID in slack_web_client.conversations_members(channel=joined["id"])["members"]
    assert slack_web_client.chat_postMessage(channel="hpc-ops", text="hello")["ok"]

    dm = slack_web_client.conversations_open(users=ADMIN_USER_ID)["channel"]["id"]
    assert dm == "D0ADMIN"
    info = slack_web_client.conversations_info(channel=dm)["channel"]
    assert (info["is_im"], info["user"]) == (True, ADMIN_USER_ID)
    ims = slack_web_client.conversations_list(types="im")["channels"]
    assert [c["id"] for c in ims] == [dm]


def test_users_and_usergroups(slack_web_client: WebClient, emulator_client: EmulatorClient):
    guest = slack_web_client.users_info(user=GUEST_USER_ID)["user"]
    visitor = slack_web_client.users_info(user=VISITOR_USER_ID)["user"]
    admin = slack_web_client.users_info(user=ADMIN_USER_ID)["user"]
    assert (guest["is_restricted"], guest["is_ultra_restricted"]) == (True, False)
    assert visitor["is_ultra_restricted"] is True
    assert (admin["is_restricted"], admin["profile"]["display_name"]) == (False, "admin")
    assert error_of(slack_web_client.users_info, user="U0NOBODY") == "user_not_found"

    added = emulator_client.add_user("contractor", is_restricted=True)
    members = {u["id"]: u for u in slack_web_client.users_list()["members"]}
    assert {BOT_USER_ID, ADMIN_USER_ID, GUEST_USER_ID, VISITOR_USER_ID, added["id"]} == set(members)
    assert members[BOT_USER_ID]["is_bot"] is True
    assert members[added["id"]]["is_restricted"] is True

    groups = slack_web_client.usergroups_list(include_users=True)["usergroups"]
    assert [(g["id"], g["handle"], g["users"]) for g in groups] == [
        (ADMINS_GROUP_ID, "hpc-admins", [ADMIN_USER_ID])
    ]
    users = slack_web_client.usergroups_users_list(usergroup=ADMINS_GROUP_ID)["users"]
    assert users == [ADMIN_USER_ID]


def test_files_upload_v2_round_trip(
    slack_emulator: EmulatorThread, slack_web_client: WebClient, emulator_client: EmulatorClient
):
    content = bytes(range(256)) * 64
    channel, parent = emulator_client.post("admin", "general", "send me the log")
    upload = slack_web_client.files_upload_v2(
        channel=channel,
        thread_ts=parent,
        content=content,
        filename="job-7.log",
        title="Job 7 log",
        initial_comment="here it is",
    )
    file = upload["file"]
    assert (file["name"], file["title"], file["size"]) == ("job-7.log", "Job 7 log", len(content))
    assert emulator_client.file_content(file["id"]) == content

    reply = emulator_client.wait_for_reply(channel, parent)
    assert reply["text"] == "here it is"
    assert [f["id"] for f in reply["files"]] == [file["id"]]

    download = urllib.request.Request(
        file["url_private"], headers={"Authorization": f"Bearer {BOT_TOKEN}"}
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(download, timeout=5) as response:
        assert response.read() == content


# -- control API -----------------------------------------------------------------------


def test_control_api_mentions_dms_and_reset(emulator_client: EmulatorClient):
    channel, ts = emulator_client.post("guest", "dm", "@stat-bot ask @hpc-admins, or @nobody")
    assert channel == "D0GUEST"
    message = emulator_client.messages(channel)[0]
    assert message["text"] == f"<@{BOT_USER_ID}> ask <!subteam^{ADMINS_GROUP_ID}>, or @nobody"
    assert message["ts"] == ts

    emulator_client.add_channel("secret", is_private=True)
    with pytest.raises(EmulatorError) as refused:
        emulator_client.post("visitor", "secret", "let me in")
    assert refused.value.code == "not_in_channel"

    emulator_client.reset()
    assert emulator_client.messages("general") == []
    with pytest.raises(EmulatorError):
        emulator_client.messages("secret")


def test_feed_shows_what_happens_as_it_happens(
    slack_web_client: WebClient, emulator_client: EmulatorClient
):
    emulator_client.post("admin", "general", "before the console started")
    cursor = emulator_client.feed_cursor()
    answers: list[tuple[list[dict[str, Any]], int]] = []
    waiter = threading.Thread(target=lambda: answers.append(emulator_client.feed(cursor, wait=5)))
    waiter.start()
    time.sleep(0.2)
    channel, ts = emulator_client.post("guest", "general", "hello @stat-bot")
    waiter.join(timeout=3)
    assert not waiter.is_alive(), "the waiting feed call was not woken by the new message"
    [(events, cursor)] = answers
    assert [(e["kind"], e["message"]["text"]) for e in events] == [
        ("message", f"hello <@{BOT_USER_ID}>")
    ]
    assert events[0]["names"][GUEST_USER_ID] == "guest"

    slack_web_client.reactions_add(channel=channel, timestamp=ts, name="wave")
    slack_web_client.chat_postMessage(channel=channel, thread_ts=ts, text="hi guest")
    events, _ = emulator_client.feed(cursor)
    assert [(e["kind"], e.get("reaction"), e["message"]["text"]) for e in events] == [
        ("reaction", "wave", f"hello <@{BOT_USER_ID}>"),
        ("message", None, "hi guest"),
    ]
    assert events[0]["user"] == BOT_USER_ID


# -- Socket Mode with a real Bolt app --------------------------------------------------


def test_bolt_answers_a_mention_in_its_thread(
    slack_emulator: EmulatorThread, emulator_client: EmulatorClient, connect_bolt: Connect
):
    connect_bolt(pong_app(slack_emulator))
    channel, ts = emulator_client.post("admin", "#general", "@stat-bot status")

    reply = emulator_client.wait_for_reply(channel, ts)
    assert reply["text"] == f"pong: <@{BOT_USER_ID}> status"
    mention = emulator_client.wait_for_ack(lambda e: e["event_type"] == "app_mention")
    assert mention["sent"] <= mention["acked"]


def test_events_are_shaped_like_slacks(
    slack_emulator: EmulatorThread,
    emulator_client: EmulatorClient,
    slack_web_client: WebClient,
    connect_bolt: Connect,
):
    handler = connect_bolt(pong_app(slack_emulator))
    seen = record_envelopes(handler)
    _, ts = emulator_client.post("admin", "general", "@stat-bot hello")
    dm, dm_ts = emulator_client.post("admin", "dm", "hello in private")
    emulator_client.edit(dm, dm_ts, "hello in private, edited")
    mine = slack_web_client.chat_postMessage(channel="general", text="from the bot")
    emulator_client.add_channel("new-cluster")
    emulator_client.post("admin", "new-cluster", "@stat-bot are you here?")

    # Bolt handles events on a pool of threads: wait for every one, not just the last sent.
    wait_for(
        lambda: (
            events_of(seen, type="channel_created")
            and len(events_of(seen, ts=ts)) == 2
            and events_of(seen, ts=dm_ts)
            and events_of(seen, subtype="message_changed")
            and events_of(seen, ts=mine["ts"])
        ),
        bool,
        what="every event sent",
    )
    envelope = next(m for m in seen if m.get("type") == "events_api")
    assert envelope["payload"]["type"] == "event_callback"
    assert envelope["payload"]["event_id"].startswith("Ev")
    assert envelope["retry_attempt"] == 0

    in_channel = events_of(seen, ts=ts)
    assert sorted(e["type"] for e in in_channel) == ["app_mention", "message"]
    assert events_of(seen, type="message", ts=ts)[0]["channel_type"] == "channel"
    in_dm = events_of(seen, ts=dm_ts)
    assert [(e["type"], e["channel_type"]) for e in in_dm] == [("message", "im")]
    changed = events_of(seen, subtype="message_changed")[0]
    assert changed["message"]["text"] == "hello in private, edited"
    assert changed["previous_message"]["text"] == "hello in private"
    echo = events_of(seen, ts=mine["ts"])[0]
    assert (echo["bot_id"], echo["user"]) == (BOT_ID, BOT_USER_ID)
    # Nothing from a channel the bot is not a member of.
    assert events_of(seen, text=f"<@{BOT_USER_ID}> are you here?") == []
    # Bolt acks its own message (IgnoringSelfEvents) though no listener wants it.
    emulator_client.wait_for_ack(lambda e: e["event_id"] == event_id_of(seen, mine["ts"]))


def event_id_of(seen: list[dict[str, Any]], ts: str) -> str:
    envelopes = [m for m in list(seen) if m.get("type") == "events_api"]  # not hello/disconnect
    return next(
        m["payload"]["event_id"] for m in envelopes if m["payload"]["event"].get("ts") == ts
    )


def test_events_wait_for_a_socket(
    slack_emulator: EmulatorThread, emulator_client: EmulatorClient, connect_bolt: Connect
):
    channel, ts = emulator_client.post("admin", "general", "@stat-bot early bird")
    assert emulator_client.connections()["pending"] == 2
    connect_bolt(pong_app(slack_emulator))
    assert emulator_client.wait_for_reply(channel, ts)["text"].endswith("early bird")


@pytest.mark.parametrize("kind", ["message", "close", "drop"])
def test_bolt_reconnects_after_a_disconnect(
    kind: str,
    slack_emulator: EmulatorThread,
    emulator_client: EmulatorClient,
    connect_bolt: Connect,
):
    connect_bolt(pong_app(slack_emulator))
    before = emulator_client.connections()["total"]

    assert emulator_client.disconnect(kind) == 1
    # ~0.5 s normally; after `message` websocket-client sometimes needs its 10 s select timeout.
    emulator_client.wait_for_connections(total=before + 1, timeout=15)
    channel, ts = emulator_client.post("admin", "general", f"@stat-bot after {kind}")
    assert emulator_client.wait_for_reply(channel, ts, timeout=10)["text"].endswith(kind)


# -- faults and the retry handlers -----------------------------------------------------


def test_rate_limit_is_waited_out_by_the_retry_handler(
    slack_emulator: EmulatorThread, emulator_client: EmulatorClient
):
    plain = WebClient(token=BOT_TOKEN, base_url=slack_emulator.api_url)
    emulator_client.rate_limit(count=1, retry_after=3, methods=["chat.postMessage"])
    refused = refusal(plain.chat_postMessage, channel="general", text="x")
    assert (refused.status_code, refused["error"]) == (429, "ratelimited")
    assert refused.headers["Retry-After"] == "3"

    patient = WebClient(
        token=BOT_TOKEN,
        base_url=slack_emulator.api_url,
        retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=2)],
    )
    emulator_client.rate_limit(count=1, retry_after=1, methods=["chat.postMessage"])
    assert patient.auth_test()["ok"]  # not a listed method: not limited
    started = time.monotonic()
    assert patient.chat_postMessage(channel="general", text="eventually")["ok"]
    waited = time.monotonic() - started
    assert 1.0 <= waited < 2.5
    calls = [c["error"] for c in emulator_client.calls("chat.postMessage")]
    assert calls == ["ratelimited", "ratelimited", None]
    assert [m["text"] for m in emulator_client.messages("general")] == ["eventually"]


def test_server_errors_are_retried_by_the_retry_handler(
    slack_emulator: EmulatorThread, emulator_client: EmulatorClient
):
    plain = WebClient(token=BOT_TOKEN, base_url=slack_emulator.api_url)
    emulator_client.server_error(count=1, status=500)
    assert refusal(plain.auth_test).status_code == 500

    sturdy = WebClient(
        token=BOT_TOKEN,
        base_url=slack_emulator.api_url,
        retry_handlers=[ServerErrorRetryHandler(max_retry_count=2)],
    )
    emulator_client.server_error(count=2, status=503, methods=["chat.postMessage"])
    assert sturdy.chat_postMessage(channel="general", text="made it")["ok"]
    errors = [c["error"] for c in emulator_client.calls("chat.postMessage")]
    assert errors == ["http_503", "http_503", None]
