"""Fixtures for tests that need a Slack: a started emulator, its control client, Bolt over Socket Mode.

Registered from tests/conftest.py (`pytest_plugins`), so any test folder can ask
for `slack_emulator`, `emulator_client`, `slack_web_client` or `connect_bolt`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from slack_bolt import App
from slack_bolt.adapter.socket_mode.websocket_client import SocketModeHandler
from slack_sdk import WebClient

from stat_bot.integrations.slack_emulator import (
    APP_TOKEN,
    BOT_TOKEN,
    EmulatorClient,
    EmulatorThread,
)
from stat_bot.settings import PROXY_VARIABLES


def close_socket_mode(handler: SocketModeHandler, client: EmulatorClient) -> None:
    """Stop a Bolt Socket Mode handler quickly and for good.

    `SocketModeHandler.close()` alone sometimes blocks ~10 s: websocket-client
    closes the socket from the calling thread while its reader thread sits in a
    select() on it with a 10 s timeout. Having the server close the socket first
    lets the reader thread see the close frame and return at once.
    """
    handler.client.default_auto_reconnect_enabled = False
    handler.client.auto_reconnect_enabled = False
    client.disconnect("close")
    handler.close()


@pytest.fixture
def slack_emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[EmulatorThread]:
    """A seeded emulator on a free loopback port, stopped after the test."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    with EmulatorThread() as emulator:
        yield emulator


@pytest.fixture
def emulator_client(slack_emulator: EmulatorThread) -> EmulatorClient:
    """The control API of `slack_emulator`: post as users, read messages, inject faults."""
    return slack_emulator.client()


@pytest.fixture
def slack_web_client(slack_emulator: EmulatorThread) -> WebClient:
    """slack_sdk's WebClient with the bot token, pointed at the emulator (no retry handlers)."""
    return WebClient(token=BOT_TOKEN, base_url=slack_emulator.api_url)


@pytest.fixture
def connect_bolt(
    slack_emulator: EmulatorThread, emulator_client: EmulatorClient
) -> Iterator[Callable[[App], SocketModeHandler]]:
    """Connect a Bolt app over Socket Mode (websocket-client adapter); closed after the test."""
    handlers: list[SocketModeHandler] = []

    def connect(app: App) -> SocketModeHandler:
        before = emulator_client.connections()["total"]
        handler = SocketModeHandler(app, APP_TOKEN)
        handlers.append(handler)
        handler.connect()
        emulator_client.wait_for_connections(total=before + 1)
        return handler

    yield connect
    for handler in handlers:
        close_socket_mode(handler, emulator_client)
