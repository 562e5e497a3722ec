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
    TEAM_DOMAIN,
    TEAM_ID,
    Channel,
    Message,
    User,
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


INTERACTIVE = frozenset({"button", "static_select", "users_select", "overflow"})
SELECTS = frozenset({"static_select", "users_select"})


def elements(message: Message) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """The message's clickable elements (buttons, selects, overflow menus) in reading order,
    each with the block it is in."""
    found = []
    for block in message.blocks or []:
        if block.get("type") == "actions":
            for element in block.get("elements") or []:
                if isinstance(element, dict) and element.get("type") in INTERACTIVE:
                    found.append((block, element))
        accessory = block.get("accessory")
        if isinstance(accessory, dict) and accessory.get("type") in INTERACTIVE:
            found.append((block, accessory))
    return found


def buttons(message: Message) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """The message's buttons in reading order, each with the block it is in."""
    return [(b, e) for b, e in elements(message) if e.get("type") == "button"]


def options_of(element: dict[str, Any]) -> list[dict[str, Any]]:
    """A static_select's or overflow's options, those inside option_groups included."""
    found = [o for o in element.get("options") or [] if isinstance(o, dict)]
    for group in element.get("option_groups") or []:
        found += [o for o in (group or {}).get("options") or [] if isinstance(o, dict)]
    return found


def _select_state(element: dict[str, Any], chosen: dict[str, Any] | None) -> dict[str, Any]:
    """One select's entry in `state.values`, as Slack reports what it shows now."""
    kind = element.get("type")
    if kind == "users_select":
        user = chosen.get("selected_user") if chosen else element.get("initial_user")
        return {"type": kind, "selected_user": user}
    option = chosen.get("selected_option") if chosen else element.get("initial_option")
    return {"type": kind, "selected_option": option}


def block_actions_payload(
    workspace: Workspace,
    channel: Channel,
    message: Message,
    user_id: str,
    block: dict[str, Any],
    element: dict[str, Any],
    base_url: str,
    *,
    trigger_id: str,
    response_url: str,
    choice: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What Slack sends when `user_id` uses `element`: a `block_actions` interaction payload.

    Shaped as Slack's reference shows it (type, user, api_app_id, token, container,
    trigger_id, team, channel, message, state, response_url, actions), so Bolt's
    `app.action(...)` matchers and listener arguments see what they would in Slack.
    `choice` is what a select or overflow was set to: `{"selected_option": {...}}` or
    `{"selected_user": "U..."}`; `state.values` shows every select of the message.
    """
    user = workspace.users[user_id]
    now = time.time()
    api_message = message.to_api(workspace, base_url)
    kind = str(element.get("type", "button"))
    action: dict[str, Any] = {
        "action_id": element.get("action_id", ""),
        "block_id": block.get("block_id", ""),
        "type": kind,
        "action_ts": f"{now:.6f}",
    }
    if kind == "button":
        action["text"] = element.get("text", {"type": "plain_text", "text": ""})
        action["value"] = element.get("value", "")
        if element.get("style"):
            action["style"] = element["style"]
    else:
        action.update(choice or {})
        if kind in SELECTS and element.get("placeholder"):
            action["placeholder"] = element["placeholder"]
    values: dict[str, dict[str, Any]] = {}
    for b, e in elements(message):
        if e.get("type") in SELECTS and e.get("action_id"):
            mine = e is element
            values.setdefault(str(b.get("block_id", "")), {})[str(e["action_id"])] = _select_state(
                e, choice if mine else None
            )
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
        "trigger_id": trigger_id,
        "team": {"id": TEAM_ID, "domain": TEAM_DOMAIN},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {
            "id": channel.id,
            "name": channel.name if not channel.is_im else "directmessage",
        },
        "message": api_message,
        "state": {"values": values},
        "response_url": response_url,
        "actions": [action],
    }


def slash_command_payload(
    channel: Channel,
    user: User,
    command: str,
    text: str,
    *,
    trigger_id: str,
    response_url: str,
) -> dict[str, Any]:
    """A slash command as Slack sends it (form fields, here as the envelope's JSON payload)."""
    return {
        "token": VERIFICATION_TOKEN,
        "team_id": TEAM_ID,
        "team_domain": TEAM_DOMAIN,
        "channel_id": channel.id,
        "channel_name": "directmessage" if channel.is_im else channel.name,
        "user_id": user.id,
        "user_name": user.name,
        "command": command,
        "text": text,
        "api_app_id": APP_ID,
        "is_enterprise_install": "false",
        "response_url": response_url,
        "trigger_id": trigger_id,
    }


def reaction_added_event(
    channel: Channel, message: Message, user_id: str, name: str
) -> dict[str, Any]:
    now = f"{time.time():.6f}"
    return {
        "type": "reaction_added",
        "user": user_id,
        "reaction": name,
        "item_user": message.user,
        "item": {"type": "message", "channel": channel.id, "ts": message.ts},
        "event_ts": now,
    }


def member_joined_channel_event(
    channel: Channel, user_id: str, inviter: str | None = None
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "member_joined_channel",
        "user": user_id,
        "channel": channel.id,
        "channel_type": "G" if channel.is_private else "C",
        "team": TEAM_ID,
        "event_ts": f"{time.time():.6f}",
    }
    if inviter:
        event["inviter"] = inviter
    return event


def channel_archive_event(channel: Channel, user_id: str) -> dict[str, Any]:
    """`channel_archive` (`group_archive` for a private channel), as Slack names them."""
    return {
        "type": "group_archive" if channel.is_private else "channel_archive",
        "channel": channel.id,
        "user": user_id,
        "event_ts": f"{time.time():.6f}",
    }
