"""The emulated workspace: who exists, which conversations there are and what was said.

Everything here is plain in-memory data mutated only from the server's event loop,
so nothing needs a lock. Rules that real Slack enforces and a bot author can trip
over (membership, thread parents, edit rights, duplicate reactions) live here and
raise `SlackError` with Slack's own error code, so the Web API and the control API
answer them identically.
"""

from __future__ import annotations

import itertools
import re
import time
from dataclasses import dataclass, field
from typing import Any

TEAM_ID = "T0STATBOT"
TEAM_NAME = "STAT bot local"
TEAM_DOMAIN = "stat-bot-local"
APP_ID = "A0STATBOT"
BOT_USER_ID = "U0BOT"
BOT_NAME = "stat-bot"
BOT_ID = "B0BOT"
BOT_TOKEN = "xoxb-local-emulator"
APP_TOKEN = "xapp-local-emulator"

ADMIN_USER_ID = "U0ADMIN"
GUEST_USER_ID = "U0GUEST"
VISITOR_USER_ID = "U0VISITOR"

GENERAL_CHANNEL_ID = "C0GENERAL"
LOGS_CHANNEL_ID = "C0LOGS"
SUPPORT_CHANNEL_ID = "C0SUPPORT"
INCIDENTS_CHANNEL_ID = "C0INCIDENTS"  # the incidents digest in local mode

ADMINS_GROUP_ID = "S0ADMINS"
ADMINS_GROUP_HANDLE = "hpc-admins"

MAX_TEXT_LENGTH = 40_000
MAX_BLOCKS = 50
MAX_CHANNEL_NAME = 80
MAX_TOPIC_LENGTH = 250
MAX_PURPOSE_LENGTH = 250


class SlackError(Exception):
    """A refusal Slack would answer with `{"ok": false, "error": code}`."""

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code
        self.detail = detail


@dataclass
class User:
    """A member of the workspace; guests are told apart by the two restriction flags."""

    id: str
    name: str
    real_name: str = ""
    is_bot: bool = False
    is_admin: bool = False
    is_restricted: bool = False
    is_ultra_restricted: bool = False
    deleted: bool = False
    bot_id: str | None = None
    tz: str = "Europe/London"

    def to_api(self) -> dict[str, Any]:
        real_name = self.real_name or self.name
        data: dict[str, Any] = {
            "id": self.id,
            "team_id": TEAM_ID,
            "name": self.name,
            "real_name": real_name,
            "deleted": self.deleted,
            "is_bot": self.is_bot,
            "is_app_user": False,
            "is_admin": self.is_admin,
            "is_owner": False,
            "is_primary_owner": False,
            "is_restricted": self.is_restricted,
            "is_ultra_restricted": self.is_ultra_restricted,
            "tz": self.tz,
            "tz_label": "Greenwich Mean Time",
            "tz_offset": 0,
            "profile": {
                "display_name": self.name,
                "display_name_normalized": self.name,
                "real_name": real_name,
                "real_name_normalized": real_name,
                "team": TEAM_ID,
            },
        }
        if self.bot_id:
            data["profile"]["bot_id"] = self.bot_id
        return data


@dataclass
class Channel:
    """A public or private channel, or a bot's direct-message conversation (`user` set)."""

    id: str
    name: str
    is_private: bool = False
    user: str | None = None
    members: list[str] = field(default_factory=list)
    created: int = field(default_factory=lambda: int(time.time()))
    creator: str = ADMIN_USER_ID
    is_archived: bool = False
    topic: dict[str, Any] = field(default_factory=lambda: _blank_topic())
    purpose: dict[str, Any] = field(default_factory=lambda: _blank_topic())
    # Pinned messages' ts, oldest pin first, with who pinned each and when (pins.list).
    pins: dict[str, tuple[str, int]] = field(default_factory=dict)

    @property
    def is_im(self) -> bool:
        return self.user is not None

    @property
    def channel_type(self) -> str:
        """The `channel_type` of message events: what Bolt's `message` matchers key on."""
        if self.is_im:
            return "im"
        return "group" if self.is_private else "channel"

    def to_api(self, viewer: str = BOT_USER_ID) -> dict[str, Any]:
        if self.is_im:
            return {
                "id": self.id,
                "created": self.created,
                "is_im": True,
                "is_org_shared": False,
                "user": self.user,
                "is_user_deleted": False,
                "priority": 0,
            }
        return {
            "id": self.id,
            "name": self.name,
            "name_normalized": self.name,
            "is_channel": not self.is_private,
            "is_group": self.is_private,
            "is_im": False,
            "is_mpim": False,
            "is_private": self.is_private,
            "is_archived": self.is_archived,
            "is_general": self.id == GENERAL_CHANNEL_ID,
            "is_shared": False,
            "is_ext_shared": False,
            "is_org_shared": False,
            "is_member": viewer in self.members,
            "created": self.created,
            "creator": self.creator,
            "context_team_id": TEAM_ID,
            "num_members": len(self.members),
            "topic": dict(self.topic),
            "purpose": dict(self.purpose),
        }


def _blank_topic() -> dict[str, Any]:
    return {"value": "", "creator": "", "last_set": 0}


def check_channel_name(name: str) -> str:
    """`name` if Slack would accept it for a new channel, else Slack's own refusal.

    Slack's rules: lowercase letters, digits, hyphens and underscores, at most 80
    characters, and not punctuation alone.
    """
    if not name:
        raise SlackError("invalid_name_required", "a channel needs a name")
    if len(name) > MAX_CHANNEL_NAME:
        raise SlackError(
            "invalid_name_maxlength", f"{len(name)} characters, at most {MAX_CHANNEL_NAME}"
        )
    if not re.fullmatch(r"[a-z0-9_-]+", name):
        raise SlackError(
            "invalid_name_specials",
            f"{name!r}: only lowercase letters, digits, hyphens and underscores are allowed",
        )
    if not re.search(r"[a-z0-9]", name):
        raise SlackError("invalid_name_punctuation", f"{name!r} is punctuation only")
    return name


@dataclass
class File:
    """An uploaded file; `content` stays None until the upload URL has received the bytes."""

    id: str
    name: str
    length: int
    user: str
    title: str = ""
    content: bytes | None = None
    mimetype: str = "application/octet-stream"
    created: int = field(default_factory=lambda: int(time.time()))
    shared: bool = False

    def to_api(self, base_url: str) -> dict[str, Any]:
        filetype = self.name.rsplit(".", 1)[-1].lower() if "." in self.name else "binary"
        url = f"{base_url}/files-pri/{TEAM_ID}-{self.id}/{self.name}"
        return {
            "id": self.id,
            "created": self.created,
            "timestamp": self.created,
            "name": self.name,
            "title": self.title or self.name,
            "mimetype": self.mimetype,
            "filetype": filetype,
            "pretty_type": filetype,
            "user": self.user,
            "user_team": TEAM_ID,
            "mode": "hosted",
            "editable": False,
            "is_external": False,
            "is_public": self.shared,
            "size": len(self.content) if self.content is not None else self.length,
            "url_private": url,
            "url_private_download": f"{url}?download=1",
            "permalink": f"{base_url}/files/{self.user}/{self.id}/{self.name}",
        }


@dataclass
class Edit:
    """One earlier version of an edited message, kept so tests can see what changed."""

    text: str
    blocks: list[dict[str, Any]] | None
    edited_ts: str


@dataclass
class Message:
    """A posted message; a reply carries its parent's ts in `thread_ts`."""

    channel: str
    ts: str
    user: str
    text: str = ""
    blocks: list[dict[str, Any]] | None = None
    attachments: list[dict[str, Any]] | None = None
    thread_ts: str | None = None
    bot_id: str | None = None
    files: list[str] = field(default_factory=list)
    reactions: dict[str, list[str]] = field(default_factory=dict)
    history: list[Edit] = field(default_factory=list)
    replies: list[str] = field(default_factory=list)
    parent_user_id: str | None = None
    pinned_to: list[str] = field(default_factory=list)

    @property
    def is_reply(self) -> bool:
        return self.thread_ts is not None and self.thread_ts != self.ts

    def to_api(self, workspace: Workspace, base_url: str) -> dict[str, Any]:
        """The message as Web API answers and events show it."""
        data: dict[str, Any] = {
            "type": "message",
            "user": self.user,
            "text": self.text,
            "ts": self.ts,
            "team": TEAM_ID,
        }
        if self.bot_id:
            data["bot_id"] = self.bot_id
            # Another app's bot (a paging tool's) has an app of its own.
            data["app_id"] = APP_ID if self.bot_id == BOT_ID else f"A{self.bot_id[1:]}"
        if self.files:
            data["subtype"] = "file_share"
            data["upload"] = False
            data["files"] = [workspace.files[f].to_api(base_url) for f in self.files]
        if self.blocks is not None:
            data["blocks"] = self.blocks
        if self.attachments is not None:
            data["attachments"] = self.attachments
        if self.thread_ts:
            data["thread_ts"] = self.thread_ts
        if self.is_reply:
            data["parent_user_id"] = self.parent_user_id
        if self.replies:
            data["reply_count"] = len(self.replies)
            data["reply_users"] = list(
                dict.fromkeys(workspace.message(self.channel, r).user for r in self.replies)
            )
            data["latest_reply"] = self.replies[-1]
        if self.history:
            data["edited"] = {"user": self.user, "ts": self.history[-1].edited_ts}
        if self.pinned_to:
            data["pinned_to"] = list(self.pinned_to)
        if self.reactions:
            data["reactions"] = [
                {"name": name, "users": list(users), "count": len(users)}
                for name, users in self.reactions.items()
            ]
        return data


def file_view(file: File, base_url: str, preview_chars: int = 4000) -> dict[str, Any]:
    """A file as tests and the console read it: the API fields plus a text preview if it is text."""
    data = file.to_api(base_url)
    preview = None
    if file.content is not None:
        try:
            preview = file.content[: preview_chars * 4].decode("utf-8")[:preview_chars]
        except UnicodeDecodeError:
            preview = None
    data["preview"] = preview
    return data


def message_view(workspace: Workspace, message: Message, base_url: str) -> dict[str, Any]:
    """A message as a test wants to read it: every field present, even when empty."""
    return {
        "ts": message.ts,
        "thread_ts": message.thread_ts,
        "user": message.user,
        "bot_id": message.bot_id,
        "text": message.text,
        "blocks": message.blocks,
        "attachments": message.attachments,
        "files": [file_view(workspace.files[f], base_url) for f in message.files],
        "reactions": [{"name": n, "users": list(u)} for n, u in message.reactions.items()],
        "edited": bool(message.history),
        "history": [
            {"text": e.text, "blocks": e.blocks, "edited_ts": e.edited_ts} for e in message.history
        ],
        "reply_count": len(message.replies),
        "pinned_to": list(message.pinned_to),
    }


@dataclass
class Ephemeral:
    """A message only `user` sees (a slash command's answer, a response_url reply).

    Slack keeps these out of the channel's history, so the emulator keeps them
    apart from `Workspace.messages`: `/_emulator/ephemerals` lists them.
    """

    channel: str
    user: str
    ts: str
    text: str = ""
    blocks: list[dict[str, Any]] | None = None
    source: str = ""  # command_ack, response_url, chat.postEphemeral
    command: str | None = None
    replaced: bool = False  # a later response with replace_original took its place

    def to_api(self) -> dict[str, Any]:
        return {
            "channel": self.channel,
            "ephemeral_to": self.user,
            "ts": self.ts,
            "text": self.text,
            "blocks": self.blocks,
            "source": self.source,
            "command": self.command,
            "replaced": self.replaced,
        }


@dataclass
class View:
    """A modal the app opened with views.open, kept for tests to read (no submission)."""

    id: str
    user: str
    trigger_id: str
    view: dict[str, Any]
    opened: float = field(default_factory=time.time)

    def to_api(self) -> dict[str, Any]:
        """The view as views.open answers it, Slack's fields filled in."""
        return {
            "id": self.id,
            "team_id": TEAM_ID,
            "type": self.view.get("type", "modal"),
            "title": self.view.get("title"),
            "submit": self.view.get("submit"),
            "close": self.view.get("close"),
            "blocks": self.view.get("blocks") or [],
            "private_metadata": self.view.get("private_metadata", ""),
            "callback_id": self.view.get("callback_id", ""),
            "external_id": self.view.get("external_id", ""),
            "state": {"values": {}},
            "hash": f"{int(self.opened)}.{self.id.lower()}",
            "clear_on_close": bool(self.view.get("clear_on_close")),
            "notify_on_close": bool(self.view.get("notify_on_close")),
            "root_view_id": self.id,
            "previous_view_id": None,
            "app_id": APP_ID,
            "app_installed_team_id": TEAM_ID,
            "bot_id": BOT_ID,
        }

    def view_record(self) -> dict[str, Any]:
        """What `/_emulator/views` shows: the API view plus who it opened for and when."""
        return {
            **self.to_api(),
            "user": self.user,
            "trigger_id": self.trigger_id,
            "opened": self.opened,
        }


@dataclass
class UserGroup:
    """A user group (`@handle`), as a bot sees one when checking who may run admin jobs."""

    id: str
    handle: str
    name: str
    users: list[str] = field(default_factory=list)
    created: int = field(default_factory=lambda: int(time.time()))

    def to_api(self, include_users: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "team_id": TEAM_ID,
            "is_usergroup": True,
            "is_subteam": True,
            "name": self.name,
            "description": "",
            "handle": self.handle,
            "is_external": False,
            "date_create": self.created,
            "date_update": self.created,
            "date_delete": 0,
            "auto_type": None,
            "created_by": ADMIN_USER_ID,
            "updated_by": ADMIN_USER_ID,
            "deleted_by": None,
            "prefs": {"channels": [], "groups": []},
            "user_count": len(self.users),
        }
        if include_users:
            data["users"] = list(self.users)
        return data


class TsClock:
    """Message timestamps: Slack's "seconds.micro" strings, strictly increasing.

    Bots key threads and edits on ts, so two messages in the same microsecond
    must still get distinct, ordered values.
    """

    def __init__(self) -> None:
        self._last = 0

    def next(self) -> str:
        micros = max(int(time.time() * 1_000_000), self._last + 1)
        self._last = micros
        return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"


def ts_key(ts: str) -> tuple[int, int]:
    """Order ts strings numerically, whatever their number of decimals."""
    whole, _, frac = ts.partition(".")
    return int(whole), int((frac + "000000")[:6])


class Workspace:
    """Team, users, conversations, messages, files and user groups of one emulated workspace."""

    def __init__(self) -> None:
        self.users: dict[str, User] = {}
        self.channels: dict[str, Channel] = {}
        self.messages: dict[str, dict[str, Message]] = {}
        self.files: dict[str, File] = {}
        self.usergroups: dict[str, UserGroup] = {}
        self.ephemerals: list[Ephemeral] = []
        self.views: list[View] = []
        self.clock = TsClock()
        self._ids = itertools.count(1)

    # -- seeding -----------------------------------------------------------------------

    @classmethod
    def seeded(cls) -> Workspace:
        """The default workspace every test starts from (see the module constants)."""
        ws = cls()
        ws.users[BOT_USER_ID] = User(
            BOT_USER_ID, BOT_NAME, "STAT bot", is_bot=True, bot_id=BOT_ID, tz="UTC"
        )
        ws.users[ADMIN_USER_ID] = User(ADMIN_USER_ID, "admin", "Ada Admin", is_admin=True)
        ws.users[GUEST_USER_ID] = User(GUEST_USER_ID, "guest", "Gus Guest", is_restricted=True)
        ws.users[VISITOR_USER_ID] = User(
            VISITOR_USER_ID, "visitor", "Vi Visitor", is_restricted=True, is_ultra_restricted=True
        )
        everyone = [BOT_USER_ID, ADMIN_USER_ID, GUEST_USER_ID, VISITOR_USER_ID]
        for cid, name, members in (
            (GENERAL_CHANNEL_ID, "general", everyone),
            (LOGS_CHANNEL_ID, "stat-bot-logs", [BOT_USER_ID, ADMIN_USER_ID]),
            (SUPPORT_CHANNEL_ID, "tech-support", [BOT_USER_ID, ADMIN_USER_ID]),
            (INCIDENTS_CHANNEL_ID, "incidents", [BOT_USER_ID, ADMIN_USER_ID]),
        ):
            ws.channels[cid] = Channel(cid, name, members=list(members))
        ws.usergroups[ADMINS_GROUP_ID] = UserGroup(
            ADMINS_GROUP_ID, ADMINS_GROUP_HANDLE, "HPC admins", [ADMIN_USER_ID]
        )
        return ws

    def new_id(self, prefix: str) -> str:
        """A fresh id such as `C0000007` that cannot clash with the seeded ones."""
        return f"{prefix}{next(self._ids):07d}"

    # -- look-ups ----------------------------------------------------------------------

    def user(self, ref: str) -> User:
        """A user by id or name (`@` optional), else `user_not_found`."""
        ref = ref.removeprefix("@")
        if ref in self.users:
            return self.users[ref]
        for user in self.users.values():
            if user.name == ref:
                return user
        raise SlackError("user_not_found", ref)

    def channel(self, ref: str) -> Channel:
        """A conversation by id, name or `#name`; a user id means that user's DM with the bot."""
        if ref in self.channels:
            return self.channels[ref]
        if ref in self.users and ref != BOT_USER_ID:
            return self.dm_with_bot(ref)
        name = ref.removeprefix("#")
        for channel in self.channels.values():
            if not channel.is_im and channel.name == name:
                return channel
        if ref.startswith("D") and "U" + ref[1:] in self.users:
            return self.dm_with_bot("U" + ref[1:])
        raise SlackError("channel_not_found", ref)

    def dm_with_bot(self, user_id: str) -> Channel:
        """The human's DM with the bot, created the first time anyone asks for it."""
        if user_id not in self.users or user_id == BOT_USER_ID:
            raise SlackError("user_not_found", user_id)
        cid = "D" + user_id[1:]
        if cid not in self.channels:
            self.channels[cid] = Channel(
                cid, cid, is_private=True, user=user_id, members=[user_id, BOT_USER_ID]
            )
            self.messages.setdefault(cid, {})
        return self.channels[cid]

    def visible_channel(self, ref: str, viewer: str = BOT_USER_ID) -> Channel:
        """A conversation the viewer may know about: private ones are hidden to non-members."""
        channel = self.channel(ref)
        if channel.is_private and viewer not in channel.members:
            raise SlackError("channel_not_found", ref)
        return channel

    def message(self, channel_id: str, ts: str) -> Message:
        try:
            return self.messages[channel_id][ts]
        except KeyError:
            raise SlackError("message_not_found", f"{channel_id} {ts}") from None

    def top_level(self, channel_id: str) -> list[Message]:
        return [m for m in self.messages.get(channel_id, {}).values() if not m.is_reply]

    def thread(self, channel_id: str, thread_ts: str) -> list[Message]:
        """The parent then its replies, oldest first."""
        parent = self.message(channel_id, thread_ts)
        return [parent, *(self.messages[channel_id][ts] for ts in parent.replies)]

    # -- changes -----------------------------------------------------------------------

    def add_user(
        self,
        name: str,
        *,
        real_name: str = "",
        is_admin: bool = False,
        is_restricted: bool = False,
        is_ultra_restricted: bool = False,
        user_id: str | None = None,
        is_bot: bool = False,
    ) -> User:
        """A new member, joined to #general like a new hire would be; `is_bot`: another
        app's bot user (a paging tool's), with a bot id of its own."""
        if any(u.name == name for u in self.users.values()):
            raise SlackError("name_taken", name)
        user = User(
            user_id or self.new_id("U"),
            name,
            real_name,
            is_bot=is_bot,
            is_admin=is_admin,
            is_restricted=is_restricted or is_ultra_restricted,
            is_ultra_restricted=is_ultra_restricted,
            bot_id=self.new_id("B") if is_bot else None,
        )
        self.users[user.id] = user
        if GENERAL_CHANNEL_ID in self.channels:
            self.channels[GENERAL_CHANNEL_ID].members.append(user.id)
        return user

    def add_channel(
        self,
        name: str,
        *,
        is_private: bool = False,
        members: list[str] | None = None,
        is_archived: bool = False,
    ) -> Channel:
        """A new channel; its members default to the admin alone, so the bot starts outside."""
        name = check_channel_name(name.removeprefix("#"))
        if any(c.name == name and not c.is_im for c in self.channels.values()):
            raise SlackError("name_taken", name)
        ids = [self.user(m).id for m in members] if members is not None else [ADMIN_USER_ID]
        channel = Channel(
            self.new_id("C"),
            name,
            is_private=is_private,
            members=list(dict.fromkeys(ids)),
            creator=ids[0] if ids else ADMIN_USER_ID,
            is_archived=is_archived,
        )
        self.channels[channel.id] = channel
        self.messages[channel.id] = {}
        return channel

    def post(
        self,
        channel: Channel,
        user: User,
        *,
        text: str = "",
        blocks: list[dict[str, Any]] | None = None,
        attachments: list[dict[str, Any]] | None = None,
        thread_ts: str | None = None,
        files: list[str] | None = None,
    ) -> Message:
        """Store a message; a reply to a reply joins the parent's thread, as in Slack."""
        if len(text) > MAX_TEXT_LENGTH:
            raise SlackError("msg_too_long", f"{len(text)} characters, at most {MAX_TEXT_LENGTH}")
        parent: Message | None = None
        if thread_ts:
            parent = self.messages.get(channel.id, {}).get(thread_ts)
            if parent is None:
                raise SlackError("thread_not_found", f"no message {thread_ts} in {channel.id}")
            if parent.is_reply:
                parent = self.message(channel.id, parent.thread_ts or "")
        message = Message(
            channel=channel.id,
            ts=self.clock.next(),
            user=user.id,
            text=text,
            blocks=blocks,
            attachments=attachments,
            bot_id=user.bot_id,
            files=list(files or []),
        )
        if parent is not None:
            parent.thread_ts = parent.ts
            parent.replies.append(message.ts)
            message.thread_ts = parent.ts
            message.parent_user_id = parent.user
        self.messages.setdefault(channel.id, {})[message.ts] = message
        return message

    def delete(self, channel_id: str, ts: str) -> None:
        """A message gone, with its pin and (a parent's) thread, as Slack deletes it."""
        message = self.message(channel_id, ts)
        channel = self.channels[channel_id]
        channel.pins.pop(ts, None)
        for reply in message.replies:
            self.messages[channel_id].pop(reply, None)
        if message.thread_ts and message.thread_ts != ts:
            parent = self.messages[channel_id].get(message.thread_ts)
            if parent is not None and ts in parent.replies:
                parent.replies.remove(ts)
        del self.messages[channel_id][ts]

    def edit(
        self,
        channel_id: str,
        ts: str,
        editor: str,
        *,
        text: str | None,
        blocks: list[dict[str, Any]] | None = None,
        attachments: list[dict[str, Any]] | None = None,
    ) -> tuple[Message, dict[str, Any]]:
        """Change a message's text/blocks, keeping the old version; only the author may."""
        message = self.message(channel_id, ts)
        if message.user != editor:
            raise SlackError("cant_update_message", f"{ts} was posted by {message.user}")
        if text is not None and len(text) > MAX_TEXT_LENGTH:
            raise SlackError("msg_too_long", f"{len(text)} characters, at most {MAX_TEXT_LENGTH}")
        previous = {"text": message.text, "blocks": message.blocks}
        message.history.append(Edit(message.text, message.blocks, self.clock.next()))
        if text is not None:
            message.text = text
        if blocks is not None:
            message.blocks = blocks
        if attachments is not None:
            message.attachments = attachments
        return message, previous

    def react(self, channel_id: str, ts: str, user_id: str, name: str) -> Message:
        """Add one user's reaction; the same user reacting twice is `already_reacted`."""
        name = name.strip(":")
        if not re.fullmatch(r"[a-z0-9_+'-]+(::skin-tone-\d)?", name):
            raise SlackError("invalid_name", name)
        message = self.message(channel_id, ts)
        users = message.reactions.setdefault(name, [])
        if user_id in users:
            raise SlackError("already_reacted", name)
        users.append(user_id)
        return message

    def invite(self, channel: Channel, inviter: str, user_ids: list[str]) -> list[str]:
        """Add users to a channel; the ones added (already_in_channel only if all were in)."""
        if channel.is_im:
            raise SlackError("method_not_supported_for_channel_type", channel.id)
        if channel.is_archived:
            raise SlackError("is_archived", channel.id)
        if inviter not in channel.members:
            raise SlackError("not_in_channel", f"{inviter} is not a member of {channel.id}")
        if not user_ids:
            raise SlackError("no_user", "give users: a comma separated list of user ids")
        for user_id in user_ids:
            if user_id == inviter:
                raise SlackError("cant_invite_self", user_id)
            if user_id not in self.users or self.users[user_id].deleted:
                raise SlackError("user_not_found", user_id)
        added = [u for u in dict.fromkeys(user_ids) if u not in channel.members]
        if not added:
            raise SlackError("already_in_channel", ",".join(user_ids))
        channel.members.extend(added)
        return added

    def archive(self, channel: Channel, user_id: str) -> None:
        if channel.is_im:
            raise SlackError("method_not_supported_for_channel_type", channel.id)
        if channel.id == GENERAL_CHANNEL_ID:
            raise SlackError("cant_archive_general", channel.id)
        if channel.is_archived:
            raise SlackError("already_archived", channel.id)
        if user_id not in channel.members:
            raise SlackError("not_in_channel", f"{user_id} is not a member of {channel.id}")
        channel.is_archived = True

    def set_topic(self, channel: Channel, user_id: str, which: str, value: str) -> None:
        """Set a channel's `topic` or `purpose`, with Slack's length limits."""
        limit = MAX_TOPIC_LENGTH if which == "topic" else MAX_PURPOSE_LENGTH
        if len(value) > limit:
            raise SlackError(
                "too_long", f"the {which} has {len(value)} characters, at most {limit}"
            )
        if channel.is_archived:
            raise SlackError("is_archived", channel.id)
        if user_id not in channel.members:
            raise SlackError("not_in_channel", f"{user_id} is not a member of {channel.id}")
        setattr(channel, which, {"value": value, "creator": user_id, "last_set": int(time.time())})

    def pin(self, channel: Channel, ts: str, user_id: str) -> Message:
        message = self.message(channel.id, ts)
        if ts in channel.pins:
            raise SlackError("already_pinned", ts)
        channel.pins[ts] = (user_id, int(time.time()))
        message.pinned_to.append(channel.id)
        return message

    def mention_markup(self, text: str) -> str:
        """Turn typed `@name`, `@handle`, `@here` into Slack's `<@U…>` markup, as a client does."""
        targets: dict[str, str] = {u.name: f"<@{u.id}>" for u in self.users.values()}
        targets.update({g.handle: f"<!subteam^{g.id}>" for g in self.usergroups.values()})
        targets.update({"here": "<!here>", "channel": "<!channel>", "everyone": "<!everyone>"})
        names = "|".join(re.escape(n) for n in sorted(targets, key=len, reverse=True))
        pattern = re.compile(rf"(?<![<\w])@({names})(?![\w-])")
        return pattern.sub(lambda m: targets[m.group(1)], text)
