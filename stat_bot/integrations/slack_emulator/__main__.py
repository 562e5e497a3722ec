"""`python -m stat_bot.integrations.slack_emulator`: serve a local Slack until Ctrl-C.

Point the bot at the printed URLs (SLACK_API_URL / the two tokens) and talk to it
through the control API, e.g. with `EmulatorClient(url).post("admin", "general", "@stat-bot help")`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging

from aiohttp import web

from stat_bot.bot.manifest import bot_events as manifest_events
from stat_bot.integrations.slack_emulator.server import create_app
from stat_bot.integrations.slack_emulator.workspace import APP_TOKEN, BOT_TOKEN
from stat_bot.lifeline import watch_parent

DEFAULT_PORT = 8765


async def serve(
    host: str,
    port: int,
    bot_token: str,
    app_token: str,
    access_log: bool = False,
    alert_events: bool = False,
) -> None:
    events = manifest_events(alerts=alert_events)
    runner = web.AppRunner(
        create_app(bot_token=bot_token, app_token=app_token, bot_events=events),
        shutdown_timeout=2.0,
        # Off by default: a console polling the feed would log a line a second.
        access_log=web.access_logger if access_log else None,
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0][1]
        url = f"http://{host}:{bound}"
        print(f"Slack emulator serving on {url}", flush=True)
        print(f"  Web API:     {url}/api/   (bot token {bot_token})", flush=True)
        print(f"  Socket Mode: via apps.connections.open (app token {app_token})", flush=True)
        print(f"  Control API: {url}/_emulator/   Ctrl-C to stop", flush=True)
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m stat_bot.integrations.slack_emulator", description=__doc__
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"0 for any free port (default {DEFAULT_PORT})",
    )
    parser.add_argument("--bot-token", default=BOT_TOKEN)
    parser.add_argument("--app-token", default=APP_TOKEN)
    parser.add_argument("--access-log", action="store_true", help="log every HTTP request")
    parser.add_argument(
        "--alert-events",
        action="store_true",
        help="also send every channel message (message.channels, message.groups), as a "
        "workspace does whose app reads alerts from Slack (ONCALL_ALERT_CHANNELS)",
    )
    args = parser.parse_args(argv)
    watch_parent()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            serve(
                args.host,
                args.port,
                args.bot_token,
                args.app_token,
                args.access_log,
                args.alert_events,
            )
        )


if __name__ == "__main__":
    main()
