"""What one running emulator holds: the workspace, its sockets, armed faults, recent calls.

Both the Web API and the control API act on this one object, and it is only
touched from the server's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import time
import uuid
from collections import deque
from collections.abc import Iterable
from typing import Any

from aiohttp import web

from stat_bot.integrations.slack_emulator.events import event_callback
from stat_bot.integrations.slack_emulator.faults import FaultPlan
from stat_bot.integrations.slack_emulator.interactions import (
    TRIGGER_TTL,
    ResponseTarget,
    Trigger,
    respond,
)
from stat_bot.integrations.slack_emulator.socket_mode import EnvelopeRecord, SocketModeHub
from stat_bot.integrations.slack_emulator.workspace import (
    APP_TOKEN,
    BOT_ID,
    BOT_TOKEN,
    BOT_USER_ID,
    Channel,
    Ephemeral,
    Message,
    SlackError,
    Workspace,
    message_view,
)

log = logging.getLogger(__name__)

MAX_CALLS = 2000
MESSAGE_SUBSCRIPTIONS = {
    "channel": "message.channels",
    "group": "message.groups",
    "im": "message.im",
    "mpim": "message.mpim",
}


def subscription(event: dict[str, Any]) -> str:
    """The event subscription that delivers `event` (`message` events by conversation type)."""
    if event.get("type") == "message":
        return MESSAGE_SUBSCRIPTIONS.get(event.get("channel_type", ""), "message.channels")
    return str(event.get("type"))


MAX_FEED = 10_000


class EmulatorState:
    """One emulator's mutable state, and the way back to how it started (`reset`)."""

    def __init__(
        self,
        workspace: Workspace | None = None,
        *,
        bot_token: str = BOT_TOKEN,
        app_token: str = APP_TOKEN,
        bot_events: frozenset[str] | None = None,
    ) -> None:
        # The app's event subscriptions (None: every event), as Slack honours them.
        self.bot_events = bot_events
        self._seed = copy.deepcopy(workspace) if workspace is not None else None
        self.workspace = workspace if workspace is not None else Workspace.seeded()
        self.bot_token = bot_token
        self.app_token = app_token
        self.hub = SocketModeHub()
        self.faults = FaultPlan()
        self.calls: deque[dict[str, Any]] = deque(maxlen=MAX_CALLS)
        # The feed: what a Slack client window would show, for the terminal console.
        # Cursors are absolute positions, so they stay valid when old entries drop off.
        self.feed: deque[dict[str, Any]] = deque(maxlen=MAX_FEED)
        self.feed_end = 0
        self._feed_grew: asyncio.Event | None = None
        # What interactive payloads handed the app: trigger_ids and response URLs (by token),
        # and the slash command each unacked envelope carried (its ack may answer it).
        self.trigger_ttl = TRIGGER_TTL
        self.triggers: dict[str, Trigger] = {}
        self.response_urls: dict[str, ResponseTarget] = {}
        self.commands: dict[str, ResponseTarget] = {}
        self.hub.on_ack = self._on_ack
        self._tasks: set[asyncio.Future[Any]] = set()

    def reset(self) -> None:
        """Back to the seed: messages, files, users and faults gone; sockets stay connected."""
        self.workspace = copy.deepcopy(self._seed) if self._seed is not None else Workspace.seeded()
        self.faults.clear()
        self.hub.reset()
        self.calls.clear()
        self.feed.clear()
        self.triggers.clear()
        self.response_urls.clear()
        self.commands.clear()

    def issue_response_url(self, target: ResponseTarget) -> str:
        token = uuid.uuid4().hex
        self.response_urls[token] = target
        return f"{target.base_url}/_emulator/respond/{token}"

    def _on_ack(self, record: EnvelopeRecord) -> None:
        """A slash command's ack may carry its answer: show it to the user (or the channel)."""
        target = self.commands.pop(record.envelope_id, None)
        answer = record.ack_payload
        if target is None or not isinstance(answer, dict):
            return
        if not answer.get("text") and not answer.get("blocks"):
            return
        try:
            events = respond(self, target, answer, "command_ack")
        except SlackError as error:
            log.warning(
                "the ack of %s carried an answer Slack would refuse: %s", target.command, error
            )
            return
        if events:
            task = asyncio.ensure_future(self.publish(events))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def publish(self, events: Iterable[dict[str, Any]]) -> list[EnvelopeRecord]:
        """Send each event the app subscribes to over Socket Mode, in order, right now."""
        records = []
        for event in events:
            if self.bot_events is None or subscription(event) in self.bot_events:
                records.append(await self.hub.publish(event_callback(event)))
        return records

    def record_call(self, method: str, args: dict[str, Any], answer: dict[str, Any]) -> None:
        """Keep a Web API call for `/_emulator/calls`, tokens and raw bytes left out."""
        self.calls.append(
            {
                "time": time.time(),
                "method": method,
                "args": {
                    k: "(bytes)" if isinstance(v, bytes) else v
                    for k, v in args.items()
                    if k != "token"
                },
                "ok": answer.get("ok", False),
                "error": answer.get("error"),
            }
        )

    def note(
        self, kind: str, channel: Channel, message: Message, base_url: str, **extra: Any
    ) -> None:
        """Add a feed entry about a message (`message`, `edit`, `reaction`, `pin`)."""
        self.note_event(
            kind, channel, message=message_view(self.workspace, message, base_url), **extra
        )

    def note_ephemeral(self, channel: Channel, ephemeral: Ephemeral) -> None:
        """A feed entry `ephemeral`: a message shown to `ephemeral_to` alone, from the app."""
        message = {
            "ts": ephemeral.ts,
            "thread_ts": None,
            "user": BOT_USER_ID,
            "bot_id": BOT_ID,
            "text": ephemeral.text,
            "blocks": ephemeral.blocks,
            "attachments": None,
            "files": [],
            "reactions": [],
            "edited": False,
            "history": [],
            "reply_count": 0,
            "pinned_to": [],
        }
        self.note_event("ephemeral", channel, message=message, ephemeral_to=ephemeral.user)

    def note_event(self, kind: str, channel: Channel, **extra: Any) -> None:
        """Add a feed entry and wake whoever waits for one.

        Kinds: message, edit, reaction, pin, ephemeral (these carry `message`);
        channel_created, channel_archived, topic (`which`: topic or purpose, `value`),
        member_joined (`users`), view_opened (`view`); `user` is who did it.
        """
        self.feed_end += 1
        self.feed.append(
            {
                "cursor": self.feed_end,
                "kind": kind,
                "channel": channel.id,
                "channel_name": None if channel.is_im else channel.name,
                "names": {u.id: u.name for u in self.workspace.users.values()},
                **extra,
            }
        )
        if self._feed_grew is not None:
            self._feed_grew.set()
            self._feed_grew = None

    async def read_feed(self, cursor: int, wait: float) -> tuple[list[dict[str, Any]], int]:
        """Entries after `cursor`, waiting up to `wait` s for the first; and the next cursor."""
        if cursor >= self.feed_end and wait > 0:
            if self._feed_grew is None:
                self._feed_grew = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._feed_grew.wait(), wait)
        found = [e for e in self.feed if e["cursor"] > cursor]
        return found, self.feed_end


# Where create_app keeps the state on the aiohttp application.
STATE: web.AppKey[EmulatorState] = web.AppKey("slack_emulator_state", EmulatorState)
