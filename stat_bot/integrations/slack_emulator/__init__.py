"""A local Slack (Web API + Socket Mode) that the real slack_bolt App and WebClient run against.

Tests, benchmarks and a developer's terminal use it instead of a real workspace:
`EmulatorThread` serves it in the background, `EmulatorClient` plays the humans
and injects faults, `create_app` gives the bare aiohttp application.
"""

from stat_bot.integrations.slack_emulator.client import EmulatorClient, EmulatorError, wait_for
from stat_bot.integrations.slack_emulator.runner import EmulatorThread
from stat_bot.integrations.slack_emulator.server import create_app
from stat_bot.integrations.slack_emulator.workspace import (
    ADMIN_USER_ID,
    ADMINS_GROUP_HANDLE,
    ADMINS_GROUP_ID,
    APP_ID,
    APP_TOKEN,
    BOT_ID,
    BOT_NAME,
    BOT_TOKEN,
    BOT_USER_ID,
    GENERAL_CHANNEL_ID,
    GUEST_USER_ID,
    INCIDENTS_CHANNEL_ID,
    LOGS_CHANNEL_ID,
    SUPPORT_CHANNEL_ID,
    TEAM_ID,
    TEAM_NAME,
    VISITOR_USER_ID,
    SlackError,
    Workspace,
)

__all__ = [
    "ADMINS_GROUP_HANDLE",
    "ADMINS_GROUP_ID",
    "ADMIN_USER_ID",
    "APP_ID",
    "APP_TOKEN",
    "BOT_ID",
    "BOT_NAME",
    "BOT_TOKEN",
    "BOT_USER_ID",
    "GENERAL_CHANNEL_ID",
    "GUEST_USER_ID",
    "INCIDENTS_CHANNEL_ID",
    "LOGS_CHANNEL_ID",
    "SUPPORT_CHANNEL_ID",
    "TEAM_ID",
    "TEAM_NAME",
    "VISITOR_USER_ID",
    "EmulatorClient",
    "EmulatorError",
    "EmulatorThread",
    "SlackError",
    "Workspace",
    "create_app",
    "wait_for",
]
