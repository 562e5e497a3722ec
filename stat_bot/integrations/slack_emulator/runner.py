"""Run the emulator in a background thread, for tests and benchmarks in the same process.

The server gets its own event loop in its own thread, so the synchronous Bolt
app, slack_sdk's WebClient and the test body can all block without stalling it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from types import TracebackType

from aiohttp import web

from stat_bot.integrations.slack_emulator.client import EmulatorClient
from stat_bot.integrations.slack_emulator.server import ALL_EVENTS_OF_STAT_BOT, create_app
from stat_bot.integrations.slack_emulator.workspace import APP_TOKEN, BOT_TOKEN, Workspace


class EmulatorThread:
    """A started emulator on `host:port` (port 0: a free one); `.url`, `.api_url`, `.stop()`."""

    def __init__(
        self,
        workspace: Workspace | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        bot_token: str = BOT_TOKEN,
        app_token: str = APP_TOKEN,
        bot_events: frozenset[str] | None = ALL_EVENTS_OF_STAT_BOT,
        start_timeout: float = 10.0,
    ) -> None:
        self.host = host
        self.port = port
        self.bot_token = bot_token
        self.app_token = app_token
        self.app = create_app(
            workspace, bot_token=bot_token, app_token=app_token, bot_events=bot_events
        )
        self._start_timeout = start_timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def api_url(self) -> str:
        """What `WebClient(base_url=...)` wants: the trailing slash matters to slack_sdk."""
        return f"{self.url}/api/"

    def client(self) -> EmulatorClient:
        """A control API client for this emulator."""
        return EmulatorClient(self.url)

    def start(self) -> EmulatorThread:
        if self._thread is not None:
            raise RuntimeError("the emulator is already started")
        self._thread = threading.Thread(target=self._serve, name="slack-emulator", daemon=True)
        self._thread.start()
        if not self._ready.wait(self._start_timeout):
            raise RuntimeError(f"the Slack emulator did not start in {self._start_timeout} s")
        if self._error is not None:
            raise RuntimeError(f"the Slack emulator failed to start: {self._error}") from (
                self._error
            )
        return self

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=2.0)
            loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, self.host, self.port)
            loop.run_until_complete(site.start())
            self.port = self._runner.addresses[0][1]
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

    def stop(self) -> None:
        """Close every socket, stop serving and join the thread; safe to call twice."""
        if self._thread is None or self._loop is None or self._loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def __enter__(self) -> EmulatorThread:
        return self.start() if self._thread is None else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
