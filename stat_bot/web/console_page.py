"""The local-mode chat console as a page: post to the local Slack as a user, read the feed.

The terminal console (`stat_bot.console`) and this page are two windows on the
same local Slack emulator: both post through its control API (EmulatorClient)
and read its feed. Here the server turns each feed event into plain parts
(text, code, section fields, files) and the page's script draws them as text,
so nothing a job printed can become markup. Only in local mode: with a real
Slack workspace there is no emulator to talk to, and the page says so.
"""

from __future__ import annotations

from typing import Any

import structlog
from flask import Blueprint, Flask, jsonify, render_template, request
from flask_login import login_required
from flask_wtf.csrf import CSRFProtect

from stat_bot.console import FILE_PREVIEW_LINES, happening, readable
from stat_bot.integrations.slack_emulator.client import EmulatorClient, EmulatorError
from stat_bot.report.notifiers import render_block
from stat_bot.web.auth import api_login_required, who
from stat_bot.web.errors import ApiError
from stat_bot.web.services import services

log = structlog.get_logger(__name__)

bp = Blueprint("console", __name__)

# The local workspace's people and channels (stat_bot/integrations/slack_emulator/workspace.py).
USERS = ("admin", "guest", "visitor")
CHANNELS = ("general", "stat-bot-logs", "tech-support")
MAX_TEXT = 4000
NOT_LOCAL = (
    "the chat console works only in local mode (`stat-bot run` without SLACK_BOT_TOKEN and "
    "SLACK_APP_TOKEN); with a real workspace, chat in Slack"
)


def _client() -> EmulatorClient:
    url = services().local_slack_url()
    if not url:
        raise ApiError(503, NOT_LOCAL)
    return EmulatorClient(url, timeout=5.0)


def split_code(text: str) -> list[dict[str, str]]:
    """Slack text as parts: ```fenced``` stretches become code, the rest stays text."""
    parts = []
    for i, chunk in enumerate(text.split("```")):
        chunk = chunk.strip("\n") if i % 2 else chunk
        if chunk.strip():
            parts.append({"type": "code" if i % 2 else "text", "text": chunk})
    return parts


def _block_parts(block: dict[str, Any], names: dict[str, str]) -> list[dict[str, Any]]:
    if block.get("type") == "section" and block.get("fields"):
        text = block.get("text") or {}
        return [
            {
                "type": "fields",
                "text": readable(str(text.get("text", "")), names) if text else "",
                "fields": [
                    readable(str((f or {}).get("text", "")), names) for f in block["fields"]
                ],
            }
        ]
    return split_code(readable("\n".join(render_block(block)), names))


def _label(obj: Any) -> str:
    return str((obj or {}).get("text", "")) if isinstance(obj, dict) else ""


def controls(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A message's buttons and static selects, as the page draws them (labels and values only).

    The page builds real <button>/<select> elements from these with DOM APIs; choosing
    one posts back action_id and value/option, and the emulator finds the element again.
    """
    found: list[dict[str, Any]] = []
    for block in blocks:
        candidates = list(block.get("elements") or []) if block.get("type") == "actions" else []
        if isinstance(block.get("accessory"), dict):
            candidates.append(block["accessory"])
        for element in candidates:
            if not isinstance(element, dict) or not element.get("action_id"):
                continue
            if element.get("type") == "button":
                found.append(
                    {
                        "type": "button",
                        "action_id": str(element["action_id"]),
                        "value": str(element.get("value", "")),
                        "text": _label(element.get("text")),
                        "style": str(element.get("style") or ""),
                    }
                )
            elif element.get("type") == "static_select":
                options = list(element.get("options") or [])
                for group in element.get("option_groups") or []:
                    options += list((group or {}).get("options") or [])
                found.append(
                    {
                        "type": "static_select",
                        "action_id": str(element["action_id"]),
                        "placeholder": _label(element.get("placeholder")) or "Choose…",
                        "options": [
                            {"text": _label(o.get("text")), "value": str(o.get("value", ""))}
                            for o in options
                            if isinstance(o, dict)
                        ],
                    }
                )
    return found


def event_view(event: dict[str, Any]) -> dict[str, Any]:
    """One feed event as the page draws it (the same facts the terminal console prints)."""
    names: dict[str, str] = event.get("names") or {}
    message = event.get("message") or {}
    channel = str(event.get("channel") or "")
    user = message.get("user") or ""
    thread_ts = message.get("thread_ts")
    view: dict[str, Any] = {
        "cursor": event.get("cursor"),
        "kind": event.get("kind", "message"),
        "channel": channel,
        "where": "direct message" if channel.startswith("D") else f"#{event.get('channel_name')}",
        "ts": message.get("ts"),
        "who": names.get(user, user or "?"),
        "bot": bool(message.get("bot_id")),
        "in_thread": bool(thread_ts and thread_ts != message.get("ts")),
    }
    if view["kind"] == "reaction":
        reactor = event.get("user") or ""
        view.update(reaction=event.get("reaction"), reactor=names.get(reactor, reactor))
        return view
    note = happening(event, names)
    if note is not None or not message:
        view["note"] = note or str(view["kind"])
        return view
    if view["kind"] == "pin":
        pinner = event.get("user") or ""
        view["note"] = f"{names.get(pinner, pinner)} pinned a message by {view['who']}"
        return view
    if view["kind"] == "ephemeral":
        seer = str(event.get("ephemeral_to") or "")
        view["ephemeral_to"] = names.get(seer, seer)
    parts: list[dict[str, Any]] = []
    blocks = message.get("blocks") or []
    if blocks and any(b.get("type") != "rich_text" for b in blocks):
        for block in blocks:
            parts.extend(_block_parts(block, names))
    elif message.get("text"):
        parts.extend(split_code(readable(str(message["text"]), names)))
    for file in message.get("files") or []:
        preview = str(file.get("preview") or "").splitlines()
        parts.append(
            {
                "type": "file",
                "name": file.get("name") or "file",
                "size": file.get("size", 0),
                "preview": "\n".join(preview[:FILE_PREVIEW_LINES]),
                "more_lines": max(0, len(preview) - FILE_PREVIEW_LINES),
            }
        )
    view["parts"] = parts
    view["controls"] = controls(blocks)
    return view


@bp.route("/console")
@login_required
def page() -> str:
    return render_template(
        "console.html",
        local=services().local_slack_url() is not None,
        not_local=NOT_LOCAL,
        users=USERS,
        channels=CHANNELS,
        page="console",
    )


@bp.route("/api/console/feed")
@api_login_required
def feed() -> Any:
    """What happened in the local Slack after `cursor` (0: everything it still holds)."""
    try:
        cursor = max(0, int(request.args.get("cursor", "0")))
    except ValueError:
        raise ApiError(
            400, "cursor must be a whole number (the last answer's cursor)", "cursor"
        ) from None
    try:
        events, cursor = _client().feed(cursor)
    except (OSError, EmulatorError) as error:
        raise ApiError(502, f"the local Slack did not answer: {error}") from None
    return jsonify({"events": [event_view(e) for e in events], "cursor": cursor})


@bp.route("/api/console/post", methods=["POST"])
@api_login_required
def post() -> Any:
    """Post as a local Slack user: JSON {text, user, channel} (channel `dm`: to the bot)."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError(400, "send a JSON object {text, user, channel}")
    text = str(body.get("text") or "").strip()
    user = str(body.get("user") or "admin").strip()
    channel = str(body.get("channel") or "general").strip().lstrip("#")
    if not text:
        raise ApiError(400, "type a message, for example `@stat-bot system hello Ada`", "text")
    if len(text) > MAX_TEXT:
        raise ApiError(400, f"a message may have at most {MAX_TEXT} characters", "text")
    try:
        channel_id, ts = _client().post(user, channel, text)
    except EmulatorError as error:
        field = "user" if "user" in error.code else "channel" if "channel" in error.code else None
        raise ApiError(400, f"the local Slack refused it: {error}", field) from None
    except OSError as error:
        raise ApiError(502, f"the local Slack did not answer: {error}") from None
    log.info("console message from the web", web_user=who(), as_user=user, channel=channel)
    return jsonify({"ok": True, "channel": channel_id, "ts": ts})


@bp.route("/api/console/click", methods=["POST"])
@api_login_required
def click() -> Any:
    """Use a message's button or static select as a local Slack user.

    JSON {channel, ts, action_id, value (a button's), option (a select's value), user}.
    """
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError(400, "send a JSON object {channel, ts, action_id, value or option, user}")
    missing = [k for k in ("channel", "ts", "action_id") if not str(body.get(k) or "").strip()]
    if missing:
        raise ApiError(400, f"say which element was used: {', '.join(missing)} missing", missing[0])
    user = str(body.get("user") or "admin").strip()
    option = body.get("option")
    value = body.get("value")
    try:
        _client().click(
            user,
            str(body["channel"]),
            str(body["ts"]),
            str(body["action_id"]),
            value=str(value) if value is not None and option is None else None,
            option=str(option) if option is not None else None,
        )
    except EmulatorError as error:
        field = "user" if "user" in error.code else None
        raise ApiError(400, f"the local Slack refused it: {error}", field) from None
    except OSError as error:
        raise ApiError(502, f"the local Slack did not answer: {error}") from None
    log.info("console click from the web", web_user=who(), as_user=user, action=body["action_id"])
    return jsonify({"ok": True})


def init_app(app: Flask, csrf: CSRFProtect) -> None:
    app.register_blueprint(bp)
