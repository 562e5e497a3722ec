"""Trigger ids and response URLs: what a slash command or a click hands the app to answer with.

Slack gives each interactive payload a `trigger_id` (exchanged once, within 3 s,
for a modal with views.open) and a `response_url` (up to 5 answers within 30
minutes, shown only to the user unless `response_type` is `in_channel`). The
emulator issues both, remembers them, and honours them the same way, so an app
that is slow to open its modal or answers a command six times fails here as it
would in Slack.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from stat_bot.integrations.slack_emulator.blocks import parse_blocks
from stat_bot.integrations.slack_emulator.events import message_changed_event, new_message_events
from stat_bot.integrations.slack_emulator.socket_mode import EnvelopeRecord
from stat_bot.integrations.slack_emulator.workspace import (
    BOT_USER_ID,
    Ephemeral,
    SlackError,
)

if TYPE_CHECKING:
    from stat_bot.integrations.slack_emulator.state import EmulatorState

# Slack's: a trigger_id must be exchanged within 3 s; a response_url takes 5 answers in 30 min.
TRIGGER_TTL = 3.0
RESPONSE_URL_USES = 5
RESPONSE_URL_TTL = 30 * 60.0
RESPONSE_TYPES = ("ephemeral", "in_channel")


@dataclass
class Trigger:
    """An issued trigger_id: whose action (in which channel), and the envelope that carried it."""

    user: str
    channel: str
    issued: float = field(default_factory=time.time)
    record: EnvelopeRecord | None = None
    used: bool = False

    def started(self) -> float:
        """When the clock runs from: the envelope's delivery, as the app cannot act earlier."""
        if self.record is not None and self.record.sent is not None:
            return self.record.sent
        return self.issued


@dataclass
class ResponseTarget:
    """Where a response_url's answers go: the user and channel it came from, and the message
    clicked (block actions) or the command typed (slash commands)."""

    channel: str
    user: str
    base_url: str
    command: str | None = None
    message_ts: str | None = None
    created: float = field(default_factory=time.time)
    uses: int = 0


def new_trigger_id() -> str:
    """Slack's shape: "seconds.number.hex"."""
    return f"{int(time.time())}.{uuid.uuid4().int % 10**12}.{uuid.uuid4().hex}"


def exchange_trigger(state: EmulatorState, trigger_id: str) -> Trigger:
    """Use up a trigger_id for views.open, with Slack's three refusals."""
    trigger = state.triggers.get(trigger_id)
    if trigger is None:
        raise SlackError(
            "invalid_trigger_id",
            f"{trigger_id!r} was not issued by a slash command or interaction payload",
        )
    if trigger.used:
        raise SlackError("exchanged_trigger_id", "each trigger_id opens one view")
    age = time.time() - trigger.started()
    if age > state.trigger_ttl:
        raise SlackError(
            "expired_trigger_id",
            f"{age:.1f} s after the payload was sent; Slack allows {state.trigger_ttl:g} s",
        )
    trigger.used = True
    return trigger


def respond(
    state: EmulatorState, target: ResponseTarget, body: dict[str, Any], source: str
) -> list[dict[str, Any]]:
    """Record an answer to a command or click (ephemeral, or posted in the channel).

    Returns the events it causes, for the caller to publish. `body`: text, blocks,
    response_type (ephemeral, the default, or in_channel), replace_original.
    """
    ws = state.workspace
    text = str(body.get("text") or "")
    blocks = parse_blocks(body.get("blocks"))
    response_type = body.get("response_type") or "ephemeral"
    if response_type not in RESPONSE_TYPES:
        raise SlackError("invalid_arguments", f"response_type must be one of {RESPONSE_TYPES}")
    if not text and not blocks:
        raise SlackError("no_text", "give text or blocks")
    channel = ws.channel(target.channel)
    replace = body.get("replace_original") in (True, "true")
    if replace and target.message_ts and response_type == "ephemeral":
        # The clicked message itself is rewritten, as Slack does for a message's own buttons.
        original = ws.message(channel.id, target.message_ts)
        message, previous = ws.edit(
            channel.id, original.ts, original.user, text=text or original.text, blocks=blocks
        )
        state.note("edit", channel, message, target.base_url)
        return message_changed_event(ws, channel, message, previous, target.base_url)
    if response_type == "in_channel":
        message = ws.post(channel, ws.users[BOT_USER_ID], text=text, blocks=blocks)
        state.note("message", channel, message, target.base_url)
        return new_message_events(ws, channel, message, target.base_url)
    if replace:  # the user's latest ephemeral here gives way to this one
        for old in reversed(ws.ephemerals):
            if old.user == target.user and old.channel == channel.id and not old.replaced:
                old.replaced = True
                break
    ephemeral = Ephemeral(
        channel.id,
        target.user,
        ws.clock.next(),
        text=text,
        blocks=blocks,
        source=source,
        command=target.command,
    )
    ws.ephemerals.append(ephemeral)
    state.note_ephemeral(channel, ephemeral)
    return []
