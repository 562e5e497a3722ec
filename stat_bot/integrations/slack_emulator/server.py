"""The emulator's HTTP side: the Web API as slack_sdk calls it, uploads, files, Socket Mode.

slack_sdk sends arguments every way there is (query string for `params=`, JSON
for chat.postMessage, form bodies, multipart when files are attached), so all of
them are read and merged here before a method sees them.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web
from multidict import MultiDictProxy

from stat_bot.bot.manifest import bot_events as manifest_events
from stat_bot.integrations.slack_emulator import control
from stat_bot.integrations.slack_emulator.control import base_url
from stat_bot.integrations.slack_emulator.state import STATE, EmulatorState
from stat_bot.integrations.slack_emulator.web_api import (
    APP_TOKEN_METHODS,
    METHODS,
    Args,
    CallContext,
)
from stat_bot.integrations.slack_emulator.workspace import (
    APP_TOKEN,
    BOT_TOKEN,
    TEAM_ID,
    SlackError,
    Workspace,
)

log = logging.getLogger(__name__)


async def read_args(request: web.Request) -> dict[str, Any]:
    """The call's arguments from the query string and whatever body it has."""
    args: dict[str, Any] = dict(request.query)
    if not request.can_read_body:
        return args
    ctype = request.content_type
    if ctype == "application/json":
        try:
            body = await request.json()
        except ValueError:
            raise SlackError("invalid_json", "the body is not valid JSON") from None
        if not isinstance(body, dict):
            raise SlackError("invalid_json", "the body must be a JSON object")
        args.update(body)
    elif ctype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form: MultiDictProxy[Any] = await request.post()
        for key, value in form.items():
            args[key] = value.file.read() if isinstance(value, web.FileField) else value
    return args


def _token(request: web.Request, args: dict[str, Any]) -> str | None:
    token = args.pop("token", None)
    if token:
        return str(token)
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip() or None
    return None


def _check_token(state: EmulatorState, method: str, token: str | None) -> None:
    if token is None:
        raise SlackError("not_authed", "send Authorization: Bearer <token> or a token argument")
    if token not in (state.bot_token, state.app_token):
        raise SlackError("invalid_auth", "unknown token")
    wants_app = method in APP_TOKEN_METHODS
    if (token == state.app_token) != wants_app:
        kind = "an app-level (xapp-)" if wants_app else "a bot (xoxb-)"
        raise SlackError("not_allowed_token_type", f"{method} needs {kind} token")


async def web_api(request: web.Request) -> web.StreamResponse:
    """`/api/{method}`: HTTP 200 with Slack's ok/error body, or an injected 429/5xx."""
    state = request.app[STATE]
    name = request.match_info["method"]
    args: dict[str, Any] = {}
    ctx = CallContext(state, base_url(request))
    try:
        args = await read_args(request)
        func = METHODS.get(name)
        if func is None:
            log.warning("slack emulator: unknown Web API method %s called", name)
            raise SlackError("unknown_method", name)
        _check_token(state, name, _token(request, args))
        fault = state.faults.take(name)
        if fault is not None and fault.kind == "rate_limit":
            state.record_call(name, args, {"ok": False, "error": "ratelimited"})
            return web.json_response(
                {"ok": False, "error": "ratelimited"},
                status=429,
                headers={"Retry-After": str(fault.retry_after)},
            )
        if fault is not None:
            state.record_call(name, args, {"ok": False, "error": f"http_{fault.status}"})
            return web.Response(status=fault.status, text="emulated server error")
        answer: dict[str, Any] = {"ok": True, **func(ctx, Args(args))}
    except SlackError as error:
        answer = {"ok": False, "error": error.code}
        if error.detail:
            answer["response_metadata"] = {"messages": [f"[ERROR] {error.detail}"]}
    await state.publish(ctx.events)
    state.record_call(name, args, answer)
    return web.json_response(answer)


async def upload(request: web.Request) -> web.StreamResponse:
    """The upload URL: raw bytes as files_upload_v2 POSTs them, or a multipart file part."""
    state = request.app[STATE]
    file = state.workspace.files.get(request.match_info["file_id"])
    if file is None:
        return web.Response(status=404, text="unknown upload URL")
    if request.content_type == "multipart/form-data":
        form = await request.post()
        parts = [v for v in form.values() if isinstance(v, web.FileField)]
        data = parts[0].file.read() if parts else b""
    else:
        data = await request.read()
    file.content = data
    return web.Response(text=f"OK - {len(data)}")


async def private_file(request: web.Request) -> web.StreamResponse:
    """`url_private`: like Slack, only with the bot token in the Authorization header."""
    state = request.app[STATE]
    header = request.headers.get("Authorization", "")
    if header != f"Bearer {state.bot_token}":
        return web.Response(status=403, text="url_private needs Authorization: Bearer <bot token>")
    team_file = request.match_info["team_file"]
    file = state.workspace.files.get(team_file.removeprefix(f"{TEAM_ID}-"))
    if file is None or file.content is None:
        return web.Response(status=404, text="no such file")
    return web.Response(body=file.content, content_type=file.mimetype)


async def socket_mode(request: web.Request) -> web.StreamResponse:
    return await request.app[STATE].hub.handle(request)


async def _close_sockets(app: web.Application) -> None:
    await app[STATE].hub.close_all()


ALL_EVENTS_OF_STAT_BOT = manifest_events()


def create_app(
    workspace: Workspace | None = None,
    *,
    bot_token: str = BOT_TOKEN,
    app_token: str = APP_TOKEN,
    bot_events: frozenset[str] | None = ALL_EVENTS_OF_STAT_BOT,
) -> web.Application:
    """A Slack emulator as an aiohttp application (serve it with any aiohttp runner).

    `workspace` defaults to the seeded one (see workspace.py); `/_emulator/reset`
    returns to a copy of whichever it started with. `bot_events` are the app's event
    subscriptions (default: STAT bot's manifest; None sends every event).
    """
    app = web.Application(client_max_size=1024**3)
    app[STATE] = EmulatorState(
        workspace, bot_token=bot_token, app_token=app_token, bot_events=bot_events
    )
    app.router.add_route("*", "/api/{method}", web_api)
    app.router.add_post("/upload/v1/{file_id}", upload)
    app.router.add_get("/files-pri/{team_file}/{name}", private_file)
    app.router.add_get("/socket-mode", socket_mode)
    control.add_routes(app)
    app.on_shutdown.append(_close_sockets)
    return app
