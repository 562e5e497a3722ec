"""`stat-bot web`: the app served by gunicorn, configured from Settings (not a config file).

gunicorn's own application class is used, so its worker management, graceful
reloads (SIGHUP) and shutdown (SIGTERM) behave as its documentation says. Each
worker builds its own app (`create_app`) after forking: no database connection
is shared across a fork.
"""

from __future__ import annotations

import socket
from typing import Any

from gunicorn.app.base import BaseApplication

from stat_bot.settings import Settings


class WebServer(BaseApplication):  # type: ignore[misc]
    def __init__(
        self, settings: Settings, *, port: int | None = None, on_ready: Any = None
    ) -> None:
        self.settings = settings
        self.port = settings.web_port if port is None else port
        self.on_ready = on_ready
        super().__init__()

    def load_config(self) -> None:
        s = self.settings
        options: dict[str, Any] = {
            "bind": f"{s.web_host}:{self.port}",
            "workers": s.web_workers,
            "threads": s.web_threads,
            "worker_class": "gthread",  # keep-alive and threads: webhooks are short and many
            "keepalive": 5,
            "timeout": 60,
            "graceful_timeout": 20,
            "accesslog": None,
            "errorlog": "-",
            "loglevel": s.log_level.lower(),
            "proc_name": "stat-bot-web",
            "forwarded_allow_ips": "*" if s.web_proxy_count else "127.0.0.1",
            "limit_request_line": 8190,
            "when_ready": self._when_ready,
            # gunicorn's control socket would be one per user ($HOME/.gunicorn), shared by
            # every server on the machine; STAT bot is managed by signals (systemd) instead.
            "control_socket_disable": True,
        }
        for key, value in options.items():
            self.cfg.set(key, value)

    def _when_ready(self, server: Any) -> None:
        if self.on_ready is not None:
            host, port = server.LISTENERS[0].sock.getsockname()[:2]
            self.on_ready(host, port)

    def load(self) -> Any:
        from stat_bot.web.app import create_app

        return create_app(self.settings)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def serve(settings: Settings, *, on_ready: Any = None) -> None:
    """Run gunicorn in this process until SIGTERM/SIGINT (it forks the workers)."""
    port = settings.web_port or free_port(settings.web_host)
    WebServer(settings, port=port, on_ready=on_ready).run()
