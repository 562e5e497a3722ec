"""The Web API methods the bot uses, answering as Slack does (same fields, same error codes).

Each method is a plain function of the call's arguments that returns the
`{"ok": true, ...}` body or raises `SlackError`; events it causes are collected
on the context and published by the server before it answers, so a test that
sees the answer can rely on the event having been sent.
"""

from __future__ import annotations

import base64
import json
import mimetypes
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from stat_bot.integrations.slack_emulator.blocks import parse_blocks
from stat_bot.integrations.slack_emulator.events import (
    channel_archive_event,
    channel_created_event,
    member_joined_channel_event,
    message_changed_event,
    new_message_events,
)
from stat_bot.integrations.slack_emulator.interactions import exchange_trigger
from stat_bot.integrations.slack_emulator.state import EmulatorState
from stat_bot.integrations.slack_emulator.workspace import (
    BOT_ID,
    BOT_NAME,
    BOT_USER_ID,
    TEAM_ID,
    TEAM_NAME,
    Channel,
    Ephemeral,
    File,
    SlackError,
    View,
    Workspace,
    check_channel_name,
    ts_key,
)

MAX_PINS = 100
MAX_VIEW_BLOCKS = 100
MAX_VIEW_TITLE = 24

T = TypeVar("T")


class Args:
    """A call's arguments, whichever way they came (query, form, JSON, multipart).

    Form bodies carry everything as strings, JSON bodies keep types; the getters
    accept both, as Slack does.
    """

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values

    def text(self, name: str, required: bool = False) -> str | None:
        value = self.values.get(name)
        if value is None or value == "":
            if required:
                raise SlackError("invalid_arguments", f"missing required field: {name}")
            return None
        return value.decode() if isinstance(value, bytes) else str(value)

    def required(self, name: str) -> str:
        return self.text(name, required=True) or ""

    def number(self, name: str, default: int) -> int:
        value = self.text(name)
        if value is None:
            return default
        try:
            return int(value)
        except ValueError:
            raise SlackError("invalid_arguments", f"{name} must be a number") from None

    def flag(self, name: str, default: bool = False) -> bool:
        value = self.values.get(name)
        if value is None or value == "":
            return default
        return value is True or str(value).lower() in ("1", "true", "yes")

    def parsed(self, name: str) -> Any:
        value = self.values.get(name)
        if isinstance(value, str | bytes) and value != "":
            try:
                return json.loads(value)
            except ValueError:
                raise SlackError("invalid_arguments", f"{name} is not valid JSON") from None
        return value if value != "" else None


@dataclass
class CallContext:
    """One Web API call: the emulator, the URL the caller reached it at, events to send."""

    state: EmulatorState
    base_url: str
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ws(self) -> Workspace:
        return self.state.workspace


Method = Callable[[CallContext, Args], dict[str, Any]]
METHODS: dict[str, Method] = {}
APP_TOKEN_METHODS = frozenset({"apps.connections.open"})


def method(name: str) -> Callable[[Method], Method]:
    def register(func: Method) -> Method:
        METHODS[name] = func
        return func

    return register


def paginate(items: Sequence[T], args: Args, default_limit: int = 100) -> tuple[list[T], str]:
    """A page of `items` and the cursor of the next one ("" at the end), like Slack's."""
    limit = max(1, min(args.number("limit", default_limit) or default_limit, 1000))
    cursor = args.text("cursor")
    start = 0
    if cursor:
        try:
            kind, _, offset = base64.b64decode(cursor).decode().partition(":")
            start = int(offset) if kind == "offset" else -1
        except ValueError:
            start = -1
        if start < 0:
            raise SlackError("invalid_cursor", cursor)
    page = list(items[start : start + limit])
    end = start + limit
    next_cursor = base64.b64encode(f"offset:{end}".encode()).decode() if end < len(items) else ""
    return page, next_cursor


def _bot_channel(ctx: CallContext, ref: str) -> Channel:
    """A conversation the bot may post to or read: hidden private ones are not found."""
    channel = ctx.ws.visible_channel(ref)
    if channel.is_archived:
        raise SlackError("is_archived", ref)
    if BOT_USER_ID not in channel.members:
        raise SlackError("not_in_channel", ref)
    return channel


# -- auth and connections --------------------------------------------------------------


@method("auth.test")
def auth_test(ctx: CallContext, args: Args) -> dict[str, Any]:
    return {
        "url": f"{ctx.base_url}/",
        "team": TEAM_NAME,
        "user": BOT_NAME,
        "team_id": TEAM_ID,
        "user_id": BOT_USER_ID,
        "bot_id": BOT_ID,
        "is_enterprise_install": False,
    }


@method("apps.connections.open")
def apps_connections_open(ctx: CallContext, args: Args) -> dict[str, Any]:
    ws_base = "ws" + ctx.base_url.removeprefix("http")
    return {"url": ctx.state.hub.issue_url(ws_base)}


# -- chat ------------------------------------------------------------------------------


@method("chat.postMessage")
def chat_post_message(ctx: CallContext, args: Args) -> dict[str, Any]:
    channel = _bot_channel(ctx, args.required("channel"))
    text = args.text("text") or ""
    blocks = parse_blocks(args.values.get("blocks"))
    attachments = args.parsed("attachments")
    if not text and not blocks and not attachments:
        raise SlackError("no_text", "give text, blocks or attachments")
    message = ctx.ws.post(
        channel,
        ctx.ws.users[BOT_USER_ID],
        text=text,
        blocks=blocks,
        attachments=attachments,
        thread_ts=args.text("thread_ts"),
    )
    ctx.state.note("message", channel, message, ctx.base_url)
    ctx.events += new_message_events(ctx.ws, channel, message, ctx.base_url)
    return {
        "channel": channel.id,
        "ts": message.ts,
        "message": message.to_api(ctx.ws, ctx.base_url),
    }


@method("chat.update")
def chat_update(ctx: CallContext, args: Args) -> dict[str, Any]:
    channel = _bot_channel(ctx, args.required("channel"))
    ts = args.required("ts")
    text = args.text("text")
    blocks = parse_blocks(args.values.get("blocks"))
    if text is None and blocks is None:
        raise SlackError("no_text", "give text or blocks")
    message, previous = ctx.ws.edit(channel.id, ts, BOT_USER_ID, text=text, blocks=blocks)
    ctx.state.note("edit", channel, message, ctx.base_url)
    ctx.events += message_changed_event(ctx.ws, channel, message, previous, ctx.base_url)
    return {
        "channel": channel.id,
        "ts": message.ts,
        "text": message.text,
        "message": message.to_api(ctx.ws, ctx.base_url),
    }


@method("chat.delete")
def chat_delete(ctx: CallContext, args: Args) -> dict[str, Any]:
    """The bot deletes one of its own messages (others': cant_delete_message)."""
    channel = _bot_channel(ctx, args.required("channel"))
    ts = args.required("ts")
    message = ctx.ws.message(channel.id, ts)
    if message.user != BOT_USER_ID:
        raise SlackError("cant_delete_message", ts)
    ctx.ws.delete(channel.id, ts)
    ctx.state.note("delete", channel, message, ctx.base_url, user=BOT_USER_ID)
    return {"channel": channel.id, "ts": ts}


@method("chat.postEphemeral")
def chat_post_ephemeral(ctx: CallContext, args: Args) -> dict[str, Any]:
    """A message only `user` sees; kept apart from the history (`/_emulator/ephemerals`)."""
    channel = _bot_channel(ctx, args.required("channel"))
    user = ctx.ws.users.get(args.required("user"))
    if user is None:
        raise SlackError("user_not_found", args.required("user"))
    if user.id not in channel.members:
        raise SlackError("user_not_in_channel", f"{user.id} is not a member of {channel.id}")
    text = args.text("text") or ""
    blocks = parse_blocks(args.values.get("blocks"))
    if not text and not blocks:
        raise SlackError("no_text", "give text or blocks")
    ephemeral = Ephemeral(
        channel.id,
        user.id,
        ctx.ws.clock.next(),
        text=text,
        blocks=blocks,
        source="chat.postEphemeral",
    )
    ctx.ws.ephemerals.append(ephemeral)
    ctx.state.note_ephemeral(channel, ephemeral)
    return {"message_ts": ephemeral.ts}


@method("chat.getPermalink")
def chat_get_permalink(ctx: CallContext, args: Args) -> dict[str, Any]:
    channel = ctx.ws.visible_channel(args.required("channel"))
    message = ctx.ws.message(channel.id, args.required("message_ts"))
    link = f"{ctx.base_url}/archives/{channel.id}/p{message.ts.replace('.', '')}"
    if message.is_reply:
        link += f"?thread_ts={message.thread_ts}&cid={channel.id}"
    return {"channel": channel.id, "permalink": link}


@method("reactions.add")
def reactions_add(ctx: CallContext, args: Args) -> dict[str, Any]:
    channel = ctx.ws.visible_channel(args.required("channel"))
    name = args.required("name").strip(":")
    message = ctx.ws.react(channel.id, args.required("timestamp"), BOT_USER_ID, name)
    ctx.state.note("reaction", channel, message, ctx.base_url, reaction=name, user=BOT_USER_ID)
    return {}


# -- conversations ---------------------------------------------------------------------


def _type_of(channel: Channel) -> str:
    if channel.is_im:
        return "im"
    return "private_channel" if channel.is_private else "public_channel"


@method("conversations.list")
def conversations_list(ctx: CallContext, args: Args) -> dict[str, Any]:
    types = {t.strip() for t in (args.text("types") or "public_channel").split(",") if t.strip()}
    unknown = types - {"public_channel", "private_channel", "im", "mpim"}
    if unknown:
        raise SlackError("invalid_types", ",".join(sorted(unknown)))
    found = [
        c
        for c in ctx.ws.channels.values()
        if _type_of(c) in types and (not c.is_private or BOT_USER_ID in c.members)
    ]
    page, cursor = paginate(found, args)
    return {
        "channels": [c.to_api() for c in page],
        "response_metadata": {"next_cursor": cursor},
    }


@method("conversations.info")
def conversations_info(ctx: CallContext, args: Args) -> dict[str, Any]:
    return {"channel": ctx.ws.visible_channel(args.required("channel")).to_api()}


@method("conversations.join")
def conversations_join(ctx: CallContext, args: Args) -> dict[str, Any]:
    channel = ctx.ws.visible_channel(args.required("channel"))
    if channel.is_private:
        raise SlackError("method_not_supported_for_channel_type", channel.id)
    answer: dict[str, Any] = {}
    if BOT_USER_ID in channel.members:
        answer = {"warning": "already_in_channel"}
        answer["response_metadata"] = {"warnings": ["already_in_channel"]}
    else:
        channel.members.append(BOT_USER_ID)
    return {"channel": channel.to_api(), **answer}


@method("conversations.members")
def conversations_members(ctx: CallContext, args: Args) -> dict[str, Any]:
    channel = ctx.ws.visible_channel(args.required("channel"))
    page, cursor = paginate(channel.members, args)
    return {"members": page, "response_metadata": {"next_cursor": cursor}}


@method("conversations.open")
def conversations_open(ctx: CallContext, args: Args) -> dict[str, Any]:
    if args.text("channel"):
        return {"channel": ctx.ws.visible_channel(args.required("channel")).to_api()}
    users = [u.strip() for u in args.required("users").split(",") if u.strip()]
    humans = [u for u in users if u != BOT_USER_ID]
    if len(humans) != 1:
        raise SlackError("not_supported", "only a DM between the bot and one user is emulated")
    existed = "D" + humans[0][1:] in ctx.ws.channels
    channel = ctx.ws.dm_with_bot(ctx.ws.user(humans[0]).id)
    return {"channel": {"id": channel.id}, "already_open": existed, "no_op": existed}


@method("conversations.history")
def conversations_history(ctx: CallContext, args: Args) -> dict[str, Any]:
    channel = _bot_channel(ctx, args.required("channel"))
    oldest, latest = args.text("oldest"), args.text("latest")
    found = [
        m
        for m in reversed(ctx.ws.top_level(channel.id))
        if (oldest is None or ts_key(m.ts) > ts_key(oldest))
        and (latest is None or ts_key(m.ts) < ts_key(latest))
    ]
    page, cursor = paginate(found, args)
    return {
        "messages": [m.to_api(ctx.ws, ctx.base_url) for m in page],
        "has_more": bool(cursor),
        "response_metadata": {"next_cursor": cursor},
    }


@method("conversations.replies")
def conversations_replies(ctx: CallContext, args: Args) -> dict[str, Any]:
    channel = _bot_channel(ctx, args.required("channel"))
    try:
        thread = ctx.ws.thread(channel.id, args.required("ts"))
    except SlackError:
        raise SlackError("thread_not_found", args.required("ts")) from None
    page, cursor = paginate(thread, args, default_limit=1000)
    return {
        "messages": [m.to_api(ctx.ws, ctx.base_url) for m in page],
        "has_more": bool(cursor),
        "response_metadata": {"next_cursor": cursor},
    }


@method("conversations.create")
def conversations_create(ctx: CallContext, args: Args) -> dict[str, Any]:
    """A new channel with the bot as creator and only member, as when a bot creates one."""
    name = check_channel_name(args.text("name") or "")
    channel = ctx.ws.add_channel(name, is_private=args.flag("is_private"), members=[BOT_USER_ID])
    ctx.state.note_event("channel_created", channel, user=BOT_USER_ID)
    if not channel.is_private:  # Slack tells apps only of public channels
        ctx.events.append(channel_created_event(channel))
    return {"channel": channel.to_api()}


@method("conversations.invite")
def conversations_invite(ctx: CallContext, args: Args) -> dict[str, Any]:
    channel = ctx.ws.visible_channel(args.required("channel"))
    ids = [u.strip() for u in (args.text("users") or "").split(",") if u.strip()]
    added = ctx.ws.invite(channel, BOT_USER_ID, ids)
    ctx.state.note_event("member_joined", channel, users=added, user=BOT_USER_ID)
    ctx.events += [member_joined_channel_event(channel, u, BOT_USER_ID) for u in added]
    return {"channel": channel.to_api()}


def _set_topic(ctx: CallContext, args: Args, which: str) -> dict[str, Any]:
    channel = ctx.ws.visible_channel(args.required("channel"))
    if channel.is_im:
        raise SlackError("method_not_supported_for_channel_type", channel.id)
    value = args.text(which) or ""
    ctx.ws.set_topic(channel, BOT_USER_ID, which, value)
    ctx.state.note_event("topic", channel, which=which, value=value, user=BOT_USER_ID)
    return {"channel": channel.to_api()}


@method("conversations.setTopic")
def conversations_set_topic(ctx: CallContext, args: Args) -> dict[str, Any]:
    return _set_topic(ctx, args, "topic")


@method("conversations.setPurpose")
def conversations_set_purpose(ctx: CallContext, args: Args) -> dict[str, Any]:
    return _set_topic(ctx, args, "purpose")


@method("conversations.archive")
def conversations_archive(ctx: CallContext, args: Args) -> dict[str, Any]:
    channel = ctx.ws.visible_channel(args.required("channel"))
    ctx.ws.archive(channel, BOT_USER_ID)
    ctx.state.note_event("channel_archived", channel, user=BOT_USER_ID)
    ctx.events.append(channel_archive_event(channel, BOT_USER_ID))
    return {}


# -- pins ------------------------------------------------------------------------------


@method("pins.add")
def pins_add(ctx: CallContext, args: Args) -> dict[str, Any]:
    channel = _bot_channel(ctx, args.required("channel"))
    ts = args.text("timestamp")
    if not ts:
        raise SlackError("no_item_specified", "give timestamp: the ts of the message to pin")
    if len(channel.pins) >= MAX_PINS:
        raise SlackError("too_many_pins", f"a channel holds at most {MAX_PINS} pins")
    message = ctx.ws.pin(channel, ts, BOT_USER_ID)
    ctx.state.note("pin", channel, message, ctx.base_url, user=BOT_USER_ID)
    item = _pin_item(ctx, channel, ts)
    ctx.events.append(
        {
            "type": "pin_added",
            "user": BOT_USER_ID,
            "channel_id": channel.id,
            "item": item,
            "event_ts": f"{item['created']}.000000",
        }
    )
    return {}


@method("pins.remove")
def pins_remove(ctx: CallContext, args: Args) -> dict[str, Any]:
    channel = _bot_channel(ctx, args.required("channel"))
    ts = args.text("timestamp")
    if not ts:
        raise SlackError("no_item_specified", "give timestamp: the ts of the pinned message")
    message = ctx.ws.message(channel.id, ts)
    if channel.pins.pop(ts, None) is None:
        raise SlackError("no_pin", ts)
    message.pinned_to.remove(channel.id)
    return {}


def _pin_item(ctx: CallContext, channel: Channel, ts: str) -> dict[str, Any]:
    who, created = channel.pins[ts]
    message = ctx.ws.message(channel.id, ts).to_api(ctx.ws, ctx.base_url)
    message["permalink"] = f"{ctx.base_url}/archives/{channel.id}/p{ts.replace('.', '')}"
    return {
        "type": "message",
        "created": created,
        "created_by": who,
        "channel": channel.id,
        "message": message,
    }


@method("pins.list")
def pins_list(ctx: CallContext, args: Args) -> dict[str, Any]:
    """The channel's pinned messages, the latest pin first."""
    channel = ctx.ws.visible_channel(args.required("channel"))
    return {"items": [_pin_item(ctx, channel, ts) for ts in reversed(channel.pins)]}


# -- views -----------------------------------------------------------------------------


def _check_view(view: Any) -> dict[str, Any]:
    """A modal as Slack checks it: type, title, blocks, and submit when it has inputs."""
    if not isinstance(view, dict):
        raise SlackError("invalid_arguments", "view must be a JSON object")
    if view.get("type") != "modal":
        raise SlackError("invalid_arguments", "views.open opens a view of type modal")
    title = view.get("title")
    if not isinstance(title, dict) or title.get("type") != "plain_text" or not title.get("text"):
        raise SlackError("invalid_arguments", "a modal needs a plain_text title")
    if len(title["text"]) > MAX_VIEW_TITLE:
        raise SlackError(
            "invalid_arguments", f"the title must be at most {MAX_VIEW_TITLE} characters"
        )
    blocks = parse_blocks(view.get("blocks"), limit=MAX_VIEW_BLOCKS)
    if not blocks:
        raise SlackError("invalid_arguments", "a modal needs blocks")
    if any(b.get("type") == "input" for b in blocks) and not view.get("submit"):
        raise SlackError("invalid_arguments", "a modal with input blocks needs a submit button")
    if len(str(view.get("callback_id") or "")) > 255:
        raise SlackError("invalid_arguments", "callback_id must be at most 255 characters")
    if len(str(view.get("private_metadata") or "")) > 3000:
        raise SlackError("invalid_arguments", "private_metadata must be at most 3000 characters")
    return view


@method("views.open")
def views_open(ctx: CallContext, args: Args) -> dict[str, Any]:
    trigger_id = args.text("trigger_id")
    if not trigger_id:
        raise SlackError("invalid_arguments", "give trigger_id, from the payload being answered")
    view = _check_view(args.parsed("view"))
    trigger = exchange_trigger(ctx.state, trigger_id)
    opened = View(ctx.ws.new_id("V"), trigger.user, trigger_id, view)
    ctx.ws.views.append(opened)
    channel = ctx.ws.channels.get(trigger.channel)
    if channel is not None:
        summary = {
            "id": opened.id,
            "callback_id": view.get("callback_id", ""),
            "title": view["title"]["text"],
            "blocks": view.get("blocks") or [],
        }
        ctx.state.note_event("view_opened", channel, view=summary, user=trigger.user)
    return {"view": opened.to_api()}


# -- users and groups ------------------------------------------------------------------


@method("users.conversations")
def users_conversations(ctx: CallContext, args: Args) -> dict[str, Any]:
    """The conversations `user` (default: the bot) is in that the bot may know of."""
    ref = args.text("user") or BOT_USER_ID
    if ref not in ctx.ws.users:
        raise SlackError("user_not_found", ref)
    types = {t.strip() for t in (args.text("types") or "public_channel").split(",") if t.strip()}
    unknown = types - {"public_channel", "private_channel", "im", "mpim"}
    if unknown:
        raise SlackError("invalid_types", ",".join(sorted(unknown)))
    skip_archived = args.flag("exclude_archived")
    found = [
        c
        for c in ctx.ws.channels.values()
        if _type_of(c) in types
        and ref in c.members
        and (not c.is_private or BOT_USER_ID in c.members)
        and not (skip_archived and c.is_archived)
    ]
    page, cursor = paginate(found, args)
    return {
        "channels": [c.to_api() for c in page],
        "response_metadata": {"next_cursor": cursor},
    }


@method("users.list")
def users_list(ctx: CallContext, args: Args) -> dict[str, Any]:
    page, cursor = paginate(list(ctx.ws.users.values()), args, default_limit=1000)
    return {
        "members": [u.to_api() for u in page],
        "cache_ts": 0,
        "response_metadata": {"next_cursor": cursor},
    }


@method("users.info")
def users_info(ctx: CallContext, args: Args) -> dict[str, Any]:
    ref = args.required("user")
    user = ctx.ws.users.get(ref)
    if user is None:
        raise SlackError("user_not_found", ref)
    return {"user": user.to_api()}


@method("usergroups.list")
def usergroups_list(ctx: CallContext, args: Args) -> dict[str, Any]:
    include_users = args.flag("include_users")
    return {"usergroups": [g.to_api(include_users) for g in ctx.ws.usergroups.values()]}


@method("usergroups.users.list")
def usergroups_users_list(ctx: CallContext, args: Args) -> dict[str, Any]:
    group = ctx.ws.usergroups.get(args.required("usergroup"))
    if group is None:
        raise SlackError("no_such_subteam", args.required("usergroup"))
    return {"users": list(group.users)}


# -- files -----------------------------------------------------------------------------


@method("files.getUploadURLExternal")
def files_get_upload_url_external(ctx: CallContext, args: Args) -> dict[str, Any]:
    filename = args.required("filename")
    length = args.number("length", -1)
    if length < 0:
        raise SlackError("invalid_arguments", "missing required field: length")
    file = File(
        id=ctx.ws.new_id("F"),
        name=filename,
        length=length,
        user=BOT_USER_ID,
        mimetype=mimetypes.guess_type(filename)[0] or "text/plain",
    )
    ctx.ws.files[file.id] = file
    return {"upload_url": f"{ctx.base_url}/upload/v1/{file.id}", "file_id": file.id}


@method("files.completeUploadExternal")
def files_complete_upload_external(ctx: CallContext, args: Args) -> dict[str, Any]:
    items = args.parsed("files")
    if not isinstance(items, list) or not items:
        raise SlackError("invalid_arguments", "files must be a JSON list of {id, title}")
    files = []
    for item in items:
        file = ctx.ws.files.get(item.get("id", "")) if isinstance(item, dict) else None
        if file is None:
            raise SlackError("file_not_found", str(item))
        if file.content is None:
            raise SlackError("file_upload_not_complete", f"nothing was uploaded for {file.id}")
        file.title = item.get("title") or file.title or file.name
        files.append(file)
    channel_refs = [args.text("channel_id")] if args.text("channel_id") else []
    channel_refs += [c for c in (args.text("channels") or "").split(",") if c]
    for ref in channel_refs:
        channel = _bot_channel(ctx, ref)
        for file in files:
            file.shared = True
        message = ctx.ws.post(
            channel,
            ctx.ws.users[BOT_USER_ID],
            text=args.text("initial_comment") or "",
            thread_ts=args.text("thread_ts"),
            files=[f.id for f in files],
        )
        ctx.state.note("message", channel, message, ctx.base_url)
        ctx.events += new_message_events(ctx.ws, channel, message, ctx.base_url)
    return {"files": [f.to_api(ctx.base_url) for f in files]}
