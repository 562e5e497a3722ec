"""What the web app's routes share: settings, the queue, job configs, users, Slack.

Built once per application (per gunicorn worker) and kept in `app.extensions`;
routes get it from `services()`. The queue gives each thread its own
connection, so one object serves all of a worker's threads.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
import threading
from functools import cached_property
from pathlib import Path

from flask import current_app

from stat_bot.jobs.config import JobConfigs
from stat_bot.jobs.config_file import ConfigFile
from stat_bot.queue import Queue, open_queue
from stat_bot.report.messages import Message
from stat_bot.settings import Settings
from stat_bot.web.users import UserStore

KEY = "stat_bot"


class SlackUnavailableError(Exception):
    """Slack is not configured or could not take the message; the text says which and why."""


class SlackPoster:
    """Posts the web server's own messages (relay tickets, suppressed-deploy notices)."""

    def __init__(self, settings: Settings) -> None:
        from slack_sdk.http_retry.builtin_handlers import (
            ConnectionErrorRetryHandler,
            ServerErrorRetryHandler,
        )

        from stat_bot.report.slack import ChannelDirectory, web_client

        self._client = web_client(settings)
        self._channels = ChannelDirectory(self._client)
        # For a person waiting on the answer (the STAT relay): one retry, not Slack's
        # patient backoff, which takes ~17 s to give up on an unreachable Slack.
        self._quick = web_client(settings, retries=False)
        self._quick.retry_handlers = [
            ConnectionErrorRetryHandler(max_retry_count=1),
            ServerErrorRetryHandler(max_retry_count=1),
        ]

    def post(self, channel: str, message: Message, *, quick: bool = False) -> str | None:
        """Post and return the message's ts; SlackUnavailableError with the reason if it failed.

        `quick`: give up after one retry (about a second when Slack is down), for requests
        whose caller is waiting; otherwise retry as the reports do.
        """
        from slack_sdk.errors import SlackClientError

        from stat_bot.report.notifiers import DeliveryError
        from stat_bot.report.slack import post, slack_error

        client = self._quick if quick else self._client
        try:
            return post(client, self._channels, channel, None, message)
        except DeliveryError as error:
            raise SlackUnavailableError(str(error)) from None
        except (SlackClientError, OSError) as error:
            raise SlackUnavailableError(slack_error(error, f"a message to {channel}")) from None


class Services:
    def __init__(
        self,
        settings: Settings,
        *,
        queue: Queue | None = None,
        configs: JobConfigs | None = None,
        slack: SlackPoster | None = None,
    ) -> None:
        self.settings = settings
        self._queue = queue
        self._config_file = ConfigFile.fixed(configs) if configs is not None else None
        self._slack = slack
        self._lock = threading.Lock()

    @property
    def queue(self) -> Queue:
        if self._queue is None:
            with self._lock:
                if self._queue is None:
                    self._queue = open_queue(self.settings)
        return self._queue

    @property
    def configs(self) -> JobConfigs:
        """job_configs.py as it is now (jobs/config_file.py: re-read when the file changes,
        a broken edit keeps the last good one); ConfigError if it never loaded."""
        if self._config_file is None:
            with self._lock:
                if self._config_file is None:
                    self._config_file = ConfigFile(self.settings.job_configs)
        return self._config_file.current()

    @cached_property
    def users(self) -> UserStore:
        env = self.settings.web_users.get_secret_value() if self.settings.web_users else ""
        assert self.settings.web_users_file is not None
        return UserStore(self.settings.web_users_file, env)

    @property
    def slack(self) -> SlackPoster:
        if self._slack is None:
            if not self.settings.slack_configured:
                raise SlackUnavailableError(
                    "Slack is not configured: set SLACK_BOT_TOKEN and SLACK_APP_TOKEN"
                )
            with self._lock:
                if self._slack is None:
                    self._slack = SlackPoster(self.settings)
        return self._slack

    def local_slack_url(self) -> str | None:
        """The local mode emulator's URL while `stat-bot run` is up in local mode."""
        from stat_bot.local_slack import read_local_slack_url

        return read_local_slack_url(self.settings)


def services() -> Services:
    return current_app.extensions[KEY]  # type: ignore[no-any-return]


def secret_key(settings: Settings) -> str:
    """WEB_SECRET_KEY, or a random key made once in STATE_DIR that every worker shares."""
    if settings.web_secret_key is not None:
        return settings.web_secret_key.get_secret_value()
    path: Path = settings.state_dir / "web-secret-key"
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written whole under another name, then linked into place: a worker starting at the
    # same moment either links first or reads the complete key, never an empty file.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".web-secret-key-")
    try:
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(32) + "\n")
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        os.unlink(tmp)
    return path.read_text().strip()
