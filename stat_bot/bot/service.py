"""`stat-bot bot`: connect to Slack in socket mode and answer until told to stop.

Start-up waits out an unreachable Slack with backoff and one clear line per try
(not a traceback per try), gives up after SLACK_CONNECT_TIMEOUT seconds, and
stops at once on a refused token, since retrying cannot fix that. The socket is
slack-sdk's websocket-client adapter with a short read timeout (bot/socket_mode.py):
it reconnects within about a second after a disconnect message, a close frame or
a dropped connection, and unlike the builtin client does not spin a CPU meanwhile.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import urlsplit

import structlog
from slack_sdk.errors import SlackApiError

from stat_bot.bot.app import create_app
from stat_bot.bot.chat import ChatCommands
from stat_bot.bot.incidents import IncidentCommands
from stat_bot.bot.people import SlackPeople
from stat_bot.bot.replies import Replies
from stat_bot.bot.socket_mode import PromptSocketModeHandler
from stat_bot.incidents.service import IncidentService
from stat_bot.incidents.templates import TemplateError
from stat_bot.incidents.templates import load as load_templates
from stat_bot.jobs.config import JobConfigs
from stat_bot.jobs.config_file import ConfigFile
from stat_bot.queue.base import Queue
from stat_bot.report.channels import IncidentChannels
from stat_bot.report.slack import SLACK_CALL_ERRORS, ChannelDirectory, slack_error, web_client
from stat_bot.settings import PROXY_VARIABLES, Settings

log = structlog.get_logger(__name__)
T = TypeVar("T")

SWITCH_INTERVAL = 0.0005
REFUSALS = {
    "invalid_auth",
    "not_authed",
    "account_inactive",
    "token_revoked",
    "not_allowed_token_type",
}


class BotStartError(Exception):
    """The bot cannot start; the message says why and what to change.

    `exit_status`: 2 when only a change of settings can help (a refused token, so
    systemd's RestartPreventExitStatus=2 can stop retrying), 1 when trying again
    later may (Slack unreachable), 0 when told to stop while waiting.
    """

    def __init__(self, message: str, *, exit_status: int = 1) -> None:
        super().__init__(message)
        self.exit_status = exit_status


def _retrying(
    what: str,
    call: Callable[[], T],
    settings: Settings,
    stop: threading.Event,
    beat: BotBeat | None = None,
) -> T:
    """`call` until it succeeds, backing off 1 s -> 30 s, for SLACK_CONNECT_TIMEOUT seconds."""
    started = time.monotonic()
    deadline = started + settings.slack_connect_timeout
    delay = 1.0
    while True:
        try:
            return call()
        except SlackApiError as error:
            code = error.response.get("error") if error.response is not None else None
            if code in REFUSALS:
                variable = "SLACK_APP_TOKEN" if what == "socket mode" else "SLACK_BOT_TOKEN"
                raise BotStartError(
                    f"Slack refused {variable} ({code}): check the token in your environment "
                    "file (DEPLOY.md, 'Slack app set-up')",
                    exit_status=2,
                ) from None
            reason = slack_error(error, what)
        except SLACK_CALL_ERRORS as error:
            reason = f"Slack at {settings.slack_api_url} cannot be reached for {what}: {error}"
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise BotStartError(
                f"{reason}; gave up after {time.monotonic() - started:.0f} s "
                "(SLACK_CONNECT_TIMEOUT)"
            )
        wait = min(delay, remaining)
        log.warning("Slack not reachable yet; retrying", reason=reason, retry_in=round(wait, 1))
        if beat is not None:
            beat.waiting(reason)
        if stop.wait(wait):
            raise BotStartError("stopped while waiting for Slack", exit_status=0)
        delay = min(delay * 2, 30.0)


class BotBeat:
    """Tells the queue, every HEARTBEAT_INTERVAL seconds, whether the bot is connected.

    The web server's /readyz and /metrics read these beats (`bot:<host>`: with a bot on
    each of several hosts, one connected is enough). They are written from a
    daemon thread of their own, never from the threads that handle Slack events, and
    a database problem here is logged, not raised: it must not take the bot down.
    """

    def __init__(self, settings: Settings, queue: Queue) -> None:
        self._queue = queue
        self._interval = settings.heartbeat_interval
        self._where = settings.slack_api_url
        self._handler: PromptSocketModeHandler | None = None
        self._waiting = f"connecting to Slack at {self._where}"
        self._lock = threading.Lock()
        self._stopped = False
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bot-heartbeat", daemon=True)
        self._hostname = socket.gethostname()
        # One beat per host, so bots on two hosts do not overwrite each other's state.
        self._component = f"bot:{self._hostname}"

    def start(self) -> None:
        self._beat(*self.state())
        self._thread.start()

    def waiting(self, reason: str) -> None:
        """Still connecting; `reason` says why (Slack unreachable, ...)."""
        self._waiting = reason

    def connected(self, handler: PromptSocketModeHandler) -> None:
        self._handler = handler
        self._beat(*self.state())

    def state(self) -> tuple[str, str]:
        handler = self._handler
        if handler is None:
            return "connecting", self._waiting
        if handler.client.is_connected():
            return "connected", f"socket mode via {self._where}"
        return "connecting", "reconnecting the socket mode connection"

    def stop(self, detail: str = "the bot exited") -> None:
        """The last beat: nothing the thread writes can come after it."""
        self._wake.set()
        self._beat("stopped", detail, last=True)
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._wake.wait(self._interval):
            self._beat(*self.state())

    def _beat(self, state: str, detail: str, *, last: bool = False) -> None:
        with self._lock:
            if self._stopped:
                return
            self._stopped = last
            try:
                self._queue.beat(
                    self._component, state, detail, hostname=self._hostname, pid=os.getpid()
                )
            except Exception as error:
                log.warning("bot heartbeat not recorded", state=state, reason=str(error))


def run_bot(settings: Settings, configs: JobConfigs | ConfigFile, queue: Queue) -> None:
    """Connect and serve until SIGTERM or SIGINT; BotStartError if it cannot start."""
    try:
        templates = load_templates(settings.templates_directory)
    except TemplateError as error:
        raise BotStartError(f"incident templates: {error}") from None
    if not settings.slack_configured:
        raise BotStartError(
            "SLACK_BOT_TOKEN and SLACK_APP_TOKEN are not set: the bot needs a Slack app "
            "(DEPLOY.md), or use `stat-bot run`, which starts a local Slack without them"
        )
    assert settings.slack_app_token is not None
    if urlsplit(settings.slack_api_url).hostname in ("127.0.0.1", "localhost", "::1"):
        # A proxy set for the outside world breaks the websocket to a local Slack.
        for name in PROXY_VARIABLES:
            os.environ.pop(name, None)
    # Many threads share the GIL here (socket reader, Bolt workers, listeners). At the
    # default 5 ms switch interval the socket reader waits up to 5 ms at every hand-over
    # behind busy listeners, so under a burst of commands acks fall far behind.
    sys.setswitchinterval(SWITCH_INTERVAL)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())

    beat = BotBeat(settings, queue)
    beat.start()
    try:
        probe = web_client(settings, retries=False)
        auth = _retrying("auth.test", probe.auth_test, settings, stop, beat)
        client = web_client(settings)
        people = SlackPeople(client, settings.slack_user_cache_seconds)
        chat = ChatCommands(
            settings, configs, queue, people, bot_name=auth.get("user") or "stat-bot"
        )
        service = IncidentService(
            settings,
            queue,
            templates,
            IncidentChannels(client),
            configs=lambda: chat.configs,
            groups_of=people.groups,
            job_refusal=chat.refusal,
        )
        chat.incidents = IncidentCommands(service, people, bot_name=chat.bot_name)
        replies = Replies(client, ChannelDirectory(client))
        app = create_app(
            settings,
            chat,
            client,
            bot_user_id=auth["user_id"],
            people=people,
            bot_id=auth.get("bot_id"),
            replies=replies,
        )
        handler = PromptSocketModeHandler(app, settings.slack_app_token.get_secret_value())
        _retrying("socket mode", handler.connect, settings, stop, beat)
    except BotStartError as error:
        beat.stop(f"did not start: {error}")
        raise
    except BaseException:
        beat.stop("did not start")
        raise
    beat.connected(handler)
    log.info(
        "bot connected",
        team=auth.get("team"),
        bot=auth.get("user"),
        slack=settings.slack_api_url,
        namespaces=len(chat.configs.namespaces),
    )
    try:
        stop.wait()
    finally:
        log.info("bot stopping")
        try:
            handler.close()  # waits for the listeners still running; they may hand over answers
            replies.close()  # then for those answers to be posted
        finally:
            beat.stop()
