"""The control API (`/_emulator/...`): play the humans, look at what the bot did, break things.

Tests and the terminal console use it instead of a Slack client: a message posted
here is stored and its events are sent to the bot before the answer returns.
Refusals answer HTTP 400 with `{"ok": false, "error": ...}`.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from stat_bot.integrations.slack_emulator.events import (
    block_actions_payload,
    channel_created_event,
    elements,
    message_changed_event,
    new_message_events,
    options_of,
    reaction_added_event,
    slash_command_payload,
)
from stat_bot.integrations.slack_emulator.interactions import (
    RESPONSE_URL_TTL,
    RESPONSE_URL_USES,
    ResponseTarget,
    Trigger,
    new_trigger_id,
    respond,
)
from stat_bot.integrations.slack_emulator.state import STATE
from stat_bot.integrations.slack_emulator.workspace import (
    BOT_NAME,
    BOT_USER_ID,
    Channel,
    Message,
    SlackError,
    User,
    Workspace,
    message_view,
    ts_key,
)


def base_url(request: web.Request) -> str:
    """The address the caller reached us at, so links and URLs we hand out work for it."""
    return f"{request.scheme}://{request.host}"


def refusal(error: SlackError, status: int = 400) -> web.Response:
    body: dict[str, Any] = {"ok": False, "error": error.code}
    if error.detail:
        body["detail"] = error.detail
    return web.json_response(body, status=status)


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json() if request.can_read_body else {}
    except json.JSONDecodeError:
        raise SlackError("invalid_json", "the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise SlackError("invalid_json", "the body must be a JSON object")
    return body


def _conversation(ws: Workspace, ref: str, user: User | None) -> Channel:
    """A channel by id/name/#name; `dm` or `@stat-bot` is the user's DM with the bot."""
    if ref in ("dm", f"@{BOT_NAME}", f"@{BOT_USER_ID}"):
        if user is None:
            raise SlackError("invalid_arguments", "a DM needs `user`")
        return ws.dm_with_bot(user.id)
    return ws.channel(ref)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _handler(func: Handler) -> Handler:
    """Turn a `SlackError` raised by a control endpoint into a 400 answer."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await func(request)
        except SlackError as error:
            return refusal(error)

    return wrapped


def _rich(
    body: dict[str, Any], user: User
) -> tuple[list[dict[str, Any]] | None, list[dict[str, Any]] | None]:
    """A bot's `attachments` and `blocks` (lists of objects); people post text only."""
    found = []
    for key in ("attachments", "blocks"):
        value = body.get(key)
        if value is not None and not (
            isinstance(value, list) and all(isinstance(v, dict) for v in value)
        ):
            raise SlackError("invalid_arguments", f"{key} must be a list of objects")
        if value is not None and not user.is_bot:
            raise SlackError("invalid_arguments", f"only a bot user posts {key}")
        found.append(value)
    return found[0], found[1]


@_handler
async def post_message(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    body = await _body(request)
    ws = state.workspace
    user = ws.user(str(body.get("user") or ""))
    if user.id == BOT_USER_ID:
        raise SlackError("invalid_arguments", "post as the bot through the Web API instead")
    channel = _conversation(ws, str(body.get("channel") or ""), user)
    if user.id not in channel.members:
        if channel.is_private:
            raise SlackError("not_in_channel", f"{user.name} is not a member of {channel.name}")
        channel.members.append(user.id)
    text = ws.mention_markup(str(body.get("text") or ""))
    # Another app's bot (a paging tool's) may post attachments and blocks, as apps do.
    attachments, blocks = _rich(body, user)
    if not text and not attachments and not blocks:
        raise SlackError("no_text")
    message = ws.post(
        channel,
        user,
        text=text,
        blocks=blocks,
        attachments=attachments,
        thread_ts=body.get("thread_ts") or None,
    )
    url = base_url(request)
    state.note("message", channel, message, url)
    records = await state.publish(new_message_events(ws, channel, message, url))
    acked = None
    if body.get("wait_ack"):  # as a Slack client would see it: delivered to the app
        timeout = float(body.get("wait_ack_timeout") or 10)
        acked = all([await state.hub.wait_acked(r, timeout) for r in records])
    return web.json_response(
        {"ok": True, "channel": channel.id, "ts": message.ts, "text": message.text, "acked": acked}
    )


@_handler
async def redeliver(request: web.Request) -> web.StreamResponse:
    """Send a stored message's events to the app again, as Slack does when it missed an
    ack or retries after a reconnect (`channel`, `ts`); how many envelopes went out."""
    state = request.app[STATE]
    body = await _body(request)
    ws = state.workspace
    channel = ws.channel(str(body.get("channel") or ""))
    message = ws.message(channel.id, str(body.get("ts") or ""))
    records = await state.publish(new_message_events(ws, channel, message, base_url(request)))
    return web.json_response({"ok": True, "envelopes": len(records)})


def _find_element(message: Message, body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The element a click names: by `action_id` (and `value` for twin buttons) or `index`."""
    found = elements(message)
    if "index" in body and body["index"] is not None:
        index = int(body["index"])
        if not 0 <= index < len(found):
            raise SlackError("action_not_found", f"the message has {len(found)} elements")
        return found[index]
    wanted = [
        (b, e)
        for b, e in found
        if e.get("action_id") == body.get("action_id")
        and (
            body.get("value") is None
            or e.get("type") != "button"
            or e.get("value") == body.get("value")
        )
    ]
    if not wanted:
        raise SlackError(
            "action_not_found",
            f"no element {body.get('action_id')!r}; it has "
            + (", ".join(repr(e.get("action_id")) for _, e in found) or "none"),
        )
    return wanted[0]


def _choice(ws: Workspace, element: dict[str, Any], body: dict[str, Any]) -> dict[str, Any] | None:
    """What a select or overflow menu is set to: the `option` value, or `select_user`."""
    kind = element.get("type")
    if kind == "button":
        return None
    if kind == "users_select":
        ref = body.get("select_user")
        if not ref:
            raise SlackError("invalid_arguments", "a users_select needs `select_user`")
        return {"selected_user": ws.user(str(ref)).id}
    options = options_of(element)
    wanted = body.get("option")
    option = next((o for o in options if o.get("value") == wanted), None)
    if option is None:
        values = ", ".join(repr(o.get("value")) for o in options) or "none"
        raise SlackError(
            "option_not_found",
            f"{kind} {element.get('action_id')!r} has no option {wanted!r}; its values: {values}",
        )
    return {"selected_option": {"text": option.get("text"), "value": option.get("value")}}


@_handler
async def click(request: web.Request) -> web.StreamResponse:
    """A user uses an element of a posted message: a Socket Mode `interactive` envelope.

    Body: `user`, `channel`, `ts` of the message, and the element by `action_id` (with
    `value` when several buttons share one) or by `index` (0-based, in reading order,
    among buttons, selects and overflow menus). A static_select or overflow needs
    `option` (the option's value), a users_select `select_user`. The payload carries a
    trigger_id views.open accepts and a response_url (`/_emulator/respond/...`).
    """
    state = request.app[STATE]
    body = await _body(request)
    ws = state.workspace
    user = ws.user(str(body.get("user") or ""))
    channel = _conversation(ws, str(body.get("channel") or ""), user)
    message = ws.message(channel.id, str(body.get("ts") or ""))
    block, element = _find_element(message, body)
    if user.is_bot:
        raise SlackError("invalid_arguments", "the bot cannot click buttons")
    choice = _choice(ws, element, body)
    url = base_url(request)
    trigger_id = new_trigger_id()
    trigger = state.triggers[trigger_id] = Trigger(user.id, channel.id)
    response_url = state.issue_response_url(
        ResponseTarget(channel.id, user.id, url, message_ts=message.ts)
    )
    payload = block_actions_payload(
        ws,
        channel,
        message,
        user.id,
        block,
        element,
        url,
        trigger_id=trigger_id,
        response_url=response_url,
        choice=choice,
    )
    record = await state.hub.publish(payload, kind="interactive")
    trigger.record = record
    acked = None
    if body.get("wait_ack"):
        acked = await state.hub.wait_acked(record, float(body.get("wait_ack_timeout") or 10))
    return web.json_response(
        {
            "ok": True,
            "envelope_id": record.envelope_id,
            "action_id": element.get("action_id"),
            "trigger_id": trigger_id,
            "acked": acked,
        }
    )


@_handler
async def react(request: web.Request) -> web.StreamResponse:
    """A user adds a reaction to a message: stored, and `reaction_added` sent to the app."""
    state = request.app[STATE]
    body = await _body(request)
    ws = state.workspace
    user = ws.user(str(body.get("user") or ""))
    if user.is_bot:
        raise SlackError("invalid_arguments", "react as the bot through reactions.add instead")
    channel = ws.visible_channel(
        _conversation(ws, str(body.get("channel") or ""), user).id, user.id
    )
    name = str(body.get("name") or "").strip(":")
    message = ws.react(channel.id, str(body.get("ts") or ""), user.id, name)
    state.note("reaction", channel, message, base_url(request), reaction=name, user=user.id)
    events = []
    if BOT_USER_ID in channel.members:  # like messages, only from conversations the app is in
        events.append(reaction_added_event(channel, message, user.id, name))
    records = await state.publish(events)
    acked = None
    if body.get("wait_ack"):
        timeout = float(body.get("wait_ack_timeout") or 10)
        acked = all([await state.hub.wait_acked(r, timeout) for r in records])
    return web.json_response({"ok": True, "channel": channel.id, "ts": message.ts, "acked": acked})


@_handler
async def command(request: web.Request) -> web.StreamResponse:
    """A user types a slash command: a Socket Mode `slash_commands` envelope.

    Body: `user`, `channel`, `command` ("/incident"), `text`. An ack carrying text or
    blocks is shown to the user alone (see `/_emulator/ephemerals`), or posted in the
    channel with `response_type: in_channel`, as Slack does. `wait_ack`: answer once
    the app has acked, with the ack's payload as `response`.
    """
    state = request.app[STATE]
    body = await _body(request)
    ws = state.workspace
    user = ws.user(str(body.get("user") or ""))
    if user.is_bot:
        raise SlackError("invalid_arguments", "only people type slash commands")
    channel = ws.visible_channel(
        _conversation(ws, str(body.get("channel") or ""), user).id, user.id
    )
    name = str(body.get("command") or "")
    if not re.fullmatch(r"/[a-z0-9_-]{1,31}", name):
        raise SlackError(
            "invalid_command", f"{name!r}: a command is / and up to 31 lowercase letters or digits"
        )
    url = base_url(request)
    target = ResponseTarget(channel.id, user.id, url, command=name)
    trigger_id = new_trigger_id()
    trigger = state.triggers[trigger_id] = Trigger(user.id, channel.id)
    response_url = state.issue_response_url(target)
    payload = slash_command_payload(
        channel,
        user,
        name,
        str(body.get("text") or ""),
        trigger_id=trigger_id,
        response_url=response_url,
    )
    envelope_id = str(uuid.uuid4())
    state.commands[envelope_id] = target  # before publishing: the ack may come at once
    record = await state.hub.publish(payload, kind="slash_commands", envelope_id=envelope_id)
    trigger.record = record
    acked = None
    if body.get("wait_ack"):
        acked = await state.hub.wait_acked(record, float(body.get("wait_ack_timeout") or 10))
    answer = {
        "ok": True,
        "envelope_id": envelope_id,
        "trigger_id": trigger_id,
        "response_url": response_url,
        "acked": acked,
        "response": record.ack_payload,
    }
    return web.json_response(answer)


async def respond_url(request: web.Request) -> web.StreamResponse:
    """A response_url: the app's answer to a command or click (JSON, as Bolt's respond sends)."""
    state = request.app[STATE]
    target = state.response_urls.get(request.match_info["token"])
    if target is None or time.time() - target.created > RESPONSE_URL_TTL:
        return refusal(SlackError("expired_url", "unknown or older than 30 minutes"), 404)
    if target.uses >= RESPONSE_URL_USES:
        return refusal(
            SlackError("used_url", f"a response_url takes {RESPONSE_URL_USES} answers"), 404
        )
    try:
        body = await _body(request)
        events = respond(state, target, body, "response_url")
    except SlackError as error:
        return refusal(error)
    target.uses += 1
    await state.publish(events)
    return web.json_response({"ok": True})


async def ephemerals(request: web.Request) -> web.StreamResponse:
    """Messages shown to one user alone (`?user=`, `?channel=` to narrow), oldest first."""
    ws = request.app[STATE].workspace
    user, channel = request.query.get("user"), request.query.get("channel")
    try:
        user_id = ws.user(user).id if user else None
        channel_id = ws.channel(channel).id if channel else None
    except SlackError as error:
        return refusal(error)
    found = [
        e.to_api()
        for e in ws.ephemerals
        if (user_id is None or e.user == user_id)
        and (channel_id is None or e.channel == channel_id)
    ]
    return web.json_response({"ok": True, "ephemerals": found})


async def views(request: web.Request) -> web.StreamResponse:
    """Modals opened with views.open (`?user=`, `?callback_id=` to narrow), oldest first."""
    ws = request.app[STATE].workspace
    user, callback_id = request.query.get("user"), request.query.get("callback_id")
    try:
        user_id = ws.user(user).id if user else None
    except SlackError as error:
        return refusal(error)
    found = [
        v.view_record()
        for v in ws.views
        if (user_id is None or v.user == user_id)
        and (callback_id is None or v.view.get("callback_id") == callback_id)
    ]
    return web.json_response({"ok": True, "views": found})


@_handler
async def list_messages(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    ws = state.workspace
    query = request.query
    user = ws.user(query["user"]) if query.get("user") else None
    channel = _conversation(ws, query.get("channel", ""), user)
    thread_ts = query.get("thread_ts")
    found = ws.thread(channel.id, thread_ts) if thread_ts else ws.top_level(channel.id)
    after = query.get("after")
    if after:
        found = [m for m in found if ts_key(m.ts) > ts_key(after)]
    url = base_url(request)
    return web.json_response(
        {"ok": True, "channel": channel.id, "messages": [message_view(ws, m, url) for m in found]}
    )


@_handler
async def edit_message(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    body = await _body(request)
    ws = state.workspace
    channel = ws.channel(str(body.get("channel") or ""))
    ts = str(body.get("ts") or "")
    author = ws.message(channel.id, ts).user
    text = ws.mention_markup(str(body.get("text") or ""))
    attachments, blocks = _rich(body, ws.user(author))
    message, previous = ws.edit(
        channel.id, ts, author, text=text, blocks=blocks, attachments=attachments
    )
    url = base_url(request)
    state.note("edit", channel, message, url)
    await state.publish(message_changed_event(ws, channel, message, previous, url))
    return web.json_response({"ok": True, "channel": channel.id, "ts": ts})


@_handler
async def add_channel(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    body = await _body(request)
    channel = state.workspace.add_channel(
        str(body.get("name") or ""),
        is_private=bool(body.get("is_private")),
        members=body.get("members"),
        is_archived=bool(body.get("is_archived")),
    )
    state.note_event("channel_created", channel, user=channel.creator)
    if not channel.is_private:
        await state.publish([channel_created_event(channel)])
    return web.json_response({"ok": True, "channel": channel.to_api()})


@_handler
async def add_user(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    body = await _body(request)
    user = state.workspace.add_user(
        str(body.get("name") or ""),
        real_name=str(body.get("real_name") or ""),
        is_admin=bool(body.get("is_admin")),
        is_restricted=bool(body.get("is_restricted")),
        is_ultra_restricted=bool(body.get("is_ultra_restricted")),
        is_bot=bool(body.get("is_bot")),
    )
    await state.publish([{"type": "team_join", "user": user.to_api()}])
    return web.json_response({"ok": True, "user": user.to_api()})


async def file_content(request: web.Request) -> web.StreamResponse:
    file = request.app[STATE].workspace.files.get(request.match_info["file_id"])
    if file is None or file.content is None:
        return refusal(SlackError("file_not_found", request.match_info["file_id"]), status=404)
    return web.Response(body=file.content, content_type=file.mimetype)


async def acks(request: web.Request) -> web.StreamResponse:
    """Envelope timings, optionally only those published after `since` or of one `event_type`."""
    since = float(request.query.get("since") or 0)
    kind = request.query.get("event_type")
    found = [
        r.to_api()
        for r in request.app[STATE].hub.records.values()
        if r.published > since and (kind is None or r.event_type == kind)
    ]
    return web.json_response({"ok": True, "envelopes": found})


async def connections(request: web.Request) -> web.StreamResponse:
    return web.json_response({"ok": True, **request.app[STATE].hub.stats()})


async def calls(request: web.Request) -> web.StreamResponse:
    wanted = request.query.get("method")
    found = [c for c in request.app[STATE].calls if wanted is None or c["method"] == wanted]
    return web.json_response({"ok": True, "calls": found})


async def feed(request: web.Request) -> web.StreamResponse:
    """What happened after `cursor` (messages, edits, reactions), waiting up to `wait` s for it.

    `?tail=1` only answers the current cursor, for a console that starts "from now".
    """
    state = request.app[STATE]
    if request.query.get("tail"):
        return web.json_response({"ok": True, "events": [], "cursor": state.feed_end})
    try:
        cursor = int(request.query.get("cursor") or 0)
        wait = min(float(request.query.get("wait") or 0), 30.0)
    except ValueError:
        return refusal(SlackError("invalid_arguments", "cursor is a number, wait seconds"))
    entries, next_cursor = await state.read_feed(cursor, wait)
    return web.json_response({"ok": True, "events": entries, "cursor": next_cursor})


async def reset(request: web.Request) -> web.StreamResponse:
    request.app[STATE].reset()
    return web.json_response({"ok": True})


@_handler
async def faults(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    body = await _body(request)
    armed = state.faults.arm(body)
    hit = 0
    if body.get("disconnect"):
        hit = await state.hub.disconnect(str(body["disconnect"]))
    if not armed and not body.get("disconnect"):
        raise SlackError("invalid_arguments", "give rate_limit, server_error or disconnect")
    return web.json_response(
        {"ok": True, "armed": [f.to_api() for f in armed], "disconnected": hit}
    )


@_handler
async def socket_mode_settings(request: web.Request) -> web.StreamResponse:
    """How long an envelope may go unacked and when it is delivered again (POST to change).

    Body: `ack_timeout` (seconds; Slack's is 3) and/or `retry_delays` (a list: one delay
    per retry after the timeout; Slack's is [0, 60, 300]; [] turns redelivery off).
    """
    hub = request.app[STATE].hub
    if request.method == "POST":
        body = await _body(request)
        if "ack_timeout" in body:
            try:
                timeout = float(body["ack_timeout"])
            except (TypeError, ValueError):
                raise SlackError(
                    "invalid_arguments", "ack_timeout is a number of seconds"
                ) from None
            if not 0 < timeout <= 3600:
                raise SlackError("invalid_arguments", "ack_timeout must be in (0, 3600] seconds")
            hub.ack_timeout = timeout
        if "retry_delays" in body:
            delays = body["retry_delays"]
            if not isinstance(delays, list) or not all(
                isinstance(d, int | float) and 0 <= d <= 3600 for d in delays
            ):
                raise SlackError(
                    "invalid_arguments", "retry_delays is a list of seconds, each in [0, 3600]"
                )
            hub.retry_delays = tuple(float(d) for d in delays)
        if "trigger_ttl" in body:
            try:
                ttl = float(body["trigger_ttl"])
            except (TypeError, ValueError):
                raise SlackError(
                    "invalid_arguments", "trigger_ttl is a number of seconds"
                ) from None
            if not 0 <= ttl <= 3600:
                raise SlackError("invalid_arguments", "trigger_ttl must be in [0, 3600] seconds")
            request.app[STATE].trigger_ttl = ttl
    return web.json_response(
        {
            "ok": True,
            "ack_timeout": hub.ack_timeout,
            "retry_delays": list(hub.retry_delays),
            "trigger_ttl": request.app[STATE].trigger_ttl,
        }
    )


def add_routes(app: web.Application) -> None:
    app.router.add_post("/_emulator/messages", post_message)
    app.router.add_get("/_emulator/messages", list_messages)
    app.router.add_post("/_emulator/edit", edit_message)
    app.router.add_post("/_emulator/redeliver", redeliver)
    app.router.add_post("/_emulator/click", click)
    app.router.add_post("/_emulator/react", react)
    app.router.add_post("/_emulator/command", command)
    app.router.add_post("/_emulator/respond/{token}", respond_url)
    app.router.add_get("/_emulator/ephemerals", ephemerals)
    app.router.add_get("/_emulator/views", views)
    app.router.add_post("/_emulator/channels", add_channel)
    app.router.add_post("/_emulator/users", add_user)
    app.router.add_get("/_emulator/files/{file_id}", file_content)
    app.router.add_get("/_emulator/acks", acks)
    app.router.add_get("/_emulator/connections", connections)
    app.router.add_get("/_emulator/calls", calls)
    app.router.add_get("/_emulator/feed", feed)
    app.router.add_post("/_emulator/reset", reset)
    app.router.add_post("/_emulator/faults", faults)
    app.router.add_route("*", "/_emulator/socket_mode", socket_mode_settings)
