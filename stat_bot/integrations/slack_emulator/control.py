"""The control API (`/_emulator/...`): play the humans, look at what the bot did, break things.

Tests and the terminal console use it instead of a Slack client: a message posted
here is stored and its events are sent to the bot before the answer returns.
Refusals answer HTTP 400 with `{"ok": false, "error": ...}`.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from stat_bot.integrations.slack_emulator.events import (
    block_actions_payload,
    buttons,
    channel_created_event,
    message_changed_event,
    new_message_events,
)
from stat_bot.integrations.slack_emulator.state import STATE
from stat_bot.integrations.slack_emulator.workspace import (
    BOT_NAME,
    BOT_USER_ID,
    Channel,
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


@_handler
async def post_message(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    body = await _body(request)
    ws = state.workspace
    user = ws.user(str(body.get("user") or ""))
    if user.is_bot:
        raise SlackError("invalid_arguments", "post as the bot through the Web API instead")
    channel = _conversation(ws, str(body.get("channel") or ""), user)
    if user.id not in channel.members:
        if channel.is_private:
            raise SlackError("not_in_channel", f"{user.name} is not a member of {channel.name}")
        channel.members.append(user.id)
    text = ws.mention_markup(str(body.get("text") or ""))
    if not text:
        raise SlackError("no_text")
    message = ws.post(channel, user, text=text, thread_ts=body.get("thread_ts") or None)
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
async def click(request: web.Request) -> web.StreamResponse:
    """A user clicks a button of a posted message: a Socket Mode `interactive` envelope.

    Body: `user`, `channel`, `ts` of the message, and the button by `action_id` (with
    `value` when several share one) or by `index` (0-based, in reading order).
    """
    state = request.app[STATE]
    body = await _body(request)
    ws = state.workspace
    user = ws.user(str(body.get("user") or ""))
    channel = _conversation(ws, str(body.get("channel") or ""), user)
    message = ws.message(channel.id, str(body.get("ts") or ""))
    found = buttons(message)
    if "index" in body and body["index"] is not None:
        index = int(body["index"])
        if not 0 <= index < len(found):
            raise SlackError("action_not_found", f"the message has {len(found)} buttons")
        block, button = found[index]
    else:
        wanted = [
            (b, e)
            for b, e in found
            if e.get("action_id") == body.get("action_id")
            and (body.get("value") is None or e.get("value") == body.get("value"))
        ]
        if not wanted:
            raise SlackError(
                "action_not_found",
                f"no button {body.get('action_id')!r}; it has "
                + (", ".join(repr(e.get("action_id")) for _, e in found) or "none"),
            )
        block, button = wanted[0]
    if user.is_bot:
        raise SlackError("invalid_arguments", "the bot cannot click buttons")
    url = base_url(request)
    payload = block_actions_payload(ws, channel, message, user.id, block, button, url)
    record = await state.hub.publish(payload, kind="interactive")
    acked = None
    if body.get("wait_ack"):
        acked = await state.hub.wait_acked(record, float(body.get("wait_ack_timeout") or 10))
    return web.json_response(
        {"ok": True, "envelope_id": record.envelope_id, "action_id": button.get("action_id"),
         "acked": acked}
    )  # fmt: skip


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
    message, previous = ws.edit(channel.id, ts, author, text=text)
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
    return web.json_response(
        {"ok": True, "ack_timeout": hub.ack_timeout, "retry_delays": list(hub.retry_delays)}
    )


def add_routes(app: web.Application) -> None:
    app.router.add_post("/_emulator/messages", post_message)
    app.router.add_get("/_emulator/messages", list_messages)
    app.router.add_post("/_emulator/edit", edit_message)
    app.router.add_post("/_emulator/click", click)
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
