"""What the web app's routes share: settings, the queue, job configs, users, the outbox.

Built once per application (per gunicorn worker) and kept in `app.extensions`;
routes get it from `services()`. The queue is safe for every thread (they take
turns at its writing connection and read on their own), so one object serves all
of a worker's threads. The web server sends
nothing to Slack itself: its messages go into the queue's outbox with the change
that causes them, and `sender` makes an immediate try for a waiting request
through the same sender the dispatcher runs (report/outbox.py).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import tempfile
import threading
from functools import cached_property
from pathlib import Path

from flask import current_app

from stat_bot.jobs.config import JobConfigs
from stat_bot.jobs.config_file import ConfigFile
from stat_bot.queue import Queue, open_queue
from stat_bot.report.notifiers import Notifier
from stat_bot.report.outbox import OutboxSender
from stat_bot.settings import Settings
from stat_bot.web.users import UserStore

KEY = "stat_bot"


class SlackUnavailableError(Exception):
    """Slack is not configured, so the web server cannot send; the text says what to set."""


class Services:
    def __init__(
        self,
        settings: Settings,
        *,
        queue: Queue | None = None,
        configs: JobConfigs | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        self.settings = settings
        self._queue = queue
        self._config_file = ConfigFile.fixed(configs) if configs is not None else None
        self._notifier = notifier
        self._sender: OutboxSender | None = None
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
    def sender(self) -> OutboxSender:
        """This process's outbox sender, for a request that waits for its message to go out."""
        if self._sender is None:
            if self._notifier is None and not self.settings.slack_configured:
                raise SlackUnavailableError(
                    "Slack is not configured: set SLACK_BOT_TOKEN and SLACK_APP_TOKEN"
                )
            with self._lock:
                if self._sender is None:
                    from stat_bot.report.slack import SlackNotifier

                    notifier = self._notifier or SlackNotifier(self.settings)
                    self._sender = OutboxSender(
                        self.queue,
                        notifier,
                        self.settings,
                        owner=f"web:{socket.gethostname()}:{os.getpid()}",
                    )
        return self._sender

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
