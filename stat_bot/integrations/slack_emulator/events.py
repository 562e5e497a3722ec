"""Events API payloads, shaped like the ones Slack sends, so Bolt's matchers see what they expect.

Which events a change produces is decided here, in one place: a message in a
conversation the bot is not in produces nothing, a mention of the bot outside a
DM produces both `message` and `app_mention` (Slack sends both, and a bot that
listens to both must not answer twice).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from stat_bot.integrations.slack_emulator.workspace import (
    APP_ID,
    BOT_USER_ID,
    TEAM_ID,
    Channel,
    Message,
    Workspace,
)

VERIFICATION_TOKEN = "local-emulator-verification-token"


def _message_fields(
    workspace: Workspace, channel: Channel, message: Message, base_url: str
) -> dict[str, Any]:
    event = message.to_api(workspace, base_url)
    event.update(channel=channel.id, event_ts=message.ts, channel_type=channel.channel_type)
    return event


def new_message_events(
    workspace: Workspace, channel: Channel, message: Message, base_url: str
) -> list[dict[str, Any]]:
    """What the bot hears about a new message: nothing unless it is a member of the channel."""
    if BOT_USER_ID not in channel.members:
        return []
    events = [_message_fields(workspace, channel, message, base_url)]
    if not channel.is_im and not message.bot_id and f"<@{BOT_USER_ID}>" in message.text:
        mention: dict[str, Any] = {
            "type": "app_mention",
            "user": message.user,
            "text": message.text,
            "ts": message.ts,
            "channel": channel.id,
            "event_ts": message.ts,
            "team": TEAM_ID,
        }
        for key in ("thread_ts", "parent_user_id", "blocks", "files"):
            if key in events[0]:
                mention[key] = events[0][key]
        events.append(mention)
    return events


def message_changed_event(
    workspace: Workspace,
    channel: Channel,
    message: Message,
    previous: dict[str, Any],
    base_url: str,
) -> list[dict[str, Any]]:
    """The `message_changed` event of an edit; its own ts is the edit's, not the message's."""
    if BOT_USER_ID not in channel.members:
        return []
    current = message.to_api(workspace, base_url)
    before = dict(current, text=previous["text"])
    before.pop("edited", None)
    if previous["blocks"] is None:
        before.pop("blocks", None)
    else:
        before["blocks"] = previous["blocks"]
    edit_ts = message.history[-1].edited_ts
    return [
        {
            "type": "message",
            "subtype": "message_changed",
            "hidden": True,
            "channel": channel.id,
            "channel_type": channel.channel_type,
            "message": current,
            "previous_message": before,
            "ts": edit_ts,
            "event_ts": edit_ts,
        }
    ]


def channel_created_event(channel: Channel) -> dict[str, Any]:
    return {
        "type": "channel_created",
        "channel": {
            "id": channel.id,
            "name": channel.name,
            "name_normalized": channel.name,
            "created": channel.created,
            "creator": channel.creator,
            "is_private": channel.is_private,
        },
        "event_ts": f"{time.time():.6f}",
    }


def event_callback(event: dict[str, Any]) -> dict[str, Any]:
    """The Events API body around one event (what Bolt calls `body`)."""
    return {
        "token": VERIFICATION_TOKEN,
        "team_id": TEAM_ID,
        "context_team_id": TEAM_ID,
        "context_enterprise_id": None,
        "api_app_id": APP_ID,
        "event": event,
        "type": "event_callback",
        "event_id": "Ev" + uuid.uuid4().hex[:10].upper(),
        "event_time": int(time.time()),
        "authorizations": [
            {
                "enterprise_id": None,
                "team_id": TEAM_ID,
                "user_id": BOT_USER_ID,
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ],
        "is_ext_shared_channel": False,
        "event_context": "4-" + uuid.uuid4().hex,
    }


def buttons(message: Message) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """The message's buttons in reading order, each with the actions block it is in."""
    found = []
    for block in message.blocks or []:
        if block.get("type") == "actions":
            for element in block.get("elements") or []:
                if isinstance(element, dict) and element.get("type") == "button":
                    found.append((block, element))
        accessory = block.get("accessory")
        if isinstance(accessory, dict) and accessory.get("type") == "button":
            found.append((block, accessory))
    return found


def block_actions_payload(
    workspace: Workspace,
    channel: Channel,
    message: Message,
    user_id: str,
    block: dict[str, Any],
    button: dict[str, Any],
    base_url: str,
) -> dict[str, Any]:
    """What Slack sends when `user_id` clicks `button`: a `block_actions` interaction payload.

    Shaped as Slack's reference shows it (type, user, api_app_id, token, container,
    trigger_id, team, channel, message, state, actions), so Bolt's `app.action(...)`
    matchers and listener arguments see what they would in Slack. There is no
    `response_url` (it is optional; the emulator has no endpoint behind one): answer
    through the Web API (chat.postMessage / chat.update) instead.
    """
    user = workspace.users[user_id]
    now = time.time()
    api_message = message.to_api(workspace, base_url)
    return {
        "type": "block_actions",
        "user": {
            "id": user.id,
            "username": user.name,
            "name": user.name,
            "team_id": TEAM_ID,
        },
        "api_app_id": APP_ID,
        "token": VERIFICATION_TOKEN,
        "container": {
            "type": "message",
            "message_ts": message.ts,
            "channel_id": channel.id,
            "is_ephemeral": False,
            **({"thread_ts": message.thread_ts} if message.thread_ts else {}),
        },
        "trigger_id": f"{int(now)}.{uuid.uuid4().int % 10**12}.{uuid.uuid4().hex[:32]}",
        "team": {"id": TEAM_ID, "domain": "stat-local"},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {
            "id": channel.id,
            "name": channel.name if not channel.is_im else "directmessage",
        },
        "message": api_message,
        "state": {"values": {}},
        "actions": [
            {
                "action_id": button.get("action_id", ""),
                "block_id": block.get("block_id", ""),
                "text": button.get("text", {"type": "plain_text", "text": ""}),
                "value": button.get("value", ""),
                **({"style": button["style"]} if button.get("style") else {}),
                "type": "button",
                "action_ts": f"{now:.6f}",
            }
        ],
    }
