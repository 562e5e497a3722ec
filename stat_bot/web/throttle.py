"""Login throttling: Flask-Limiter on POST /login, per user name and per client address.

Only failed logins count (a 401 from the form), so someone who types their password right
is never slowed down; past WEB_LOGIN_LIMIT_USER or WEB_LOGIN_LIMIT_ADDRESS the form answers
429 with `Retry-After`, even for the right password, until the window ends.

Flask-Limiter keeps its counts in a `limits` storage. Its in-memory one is per process, so
with several gunicorn workers each would allow the full number and a restart would forget
them all. The default here (WEB_RATELIMIT_STORAGE=queue) is `QueueStorage`, which counts in
the queue database every worker and process already shares (its SQL is in queue/); any
other `limits` URI (redis://...) may be set instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import structlog
from flask import Flask, Response, flash, render_template, request
from flask_limiter import Limiter, RequestLimit
from limits.storage import Storage

from stat_bot.queue.base import Queue, QueueError
from stat_bot.web.hooks import confine
from stat_bot.web.services import services

log = structlog.get_logger(__name__)

QUEUE_SCHEME = "stat-bot-queue"
LOGIN_ENDPOINT = "auth.login"


class QueueStorage(Storage):
    """A `limits` storage on the STAT bot queue: fixed windows, one row per key."""

    STORAGE_SCHEME = [QUEUE_SCHEME]  # noqa: RUF012  # as limits declares it

    def __init__(
        self,
        uri: str | None = None,
        wrap_exceptions: bool = False,
        *,
        queue_of: Callable[[], Queue] | None = None,
        **options: Any,
    ) -> None:
        if queue_of is None:
            raise ValueError(f"{QUEUE_SCHEME}:// needs the queue (queue_of)")
        self._queue_of = queue_of
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        return QueueError

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        return self._queue_of().throttle_hit(key, expiry, amount)

    def get(self, key: str) -> int:
        return self._queue_of().throttle_get(key)[0]

    def get_expiry(self, key: str) -> float:
        """When the window ends, on this host's clock (limits compares it with time.time()),
        though the queue keeps it on its own (the database server's)."""
        queue = self._queue_of()
        expires = queue.throttle_get(key)[1]
        return time.time() if expires is None else expires - queue.now() + time.time()

    def check(self) -> bool:
        try:
            self._queue_of().throttle_get("check")
        except QueueError:
            return False
        return True

    def reset(self) -> int | None:
        return self._queue_of().throttle_clear()

    def clear(self, key: str) -> None:
        self._queue_of().throttle_clear(key)


def _user_key() -> str:
    # Printable characters only: a NUL (which PostgreSQL refuses in text) or another
    # control character typed as a user name must count against the name, not fail.
    name = request.form.get("username", "").strip()[:64]
    return "user:" + "".join(ch if ch.isprintable() else "?" for ch in name)


def _address_key() -> str:
    return "address:" + (request.remote_addr or "unknown")


def _failed(response: Response) -> bool:
    return response.status_code == 401


def _refused(limit: RequestLimit) -> Response:
    """The login form again, saying how long to wait (Flask-Limiter adds Retry-After)."""
    wait = max(1, int(limit.reset_at - time.time()))
    log.warning(
        "web login throttled",
        user=request.form.get("username", "").strip()[:64],
        remote=request.remote_addr,
        limit=str(limit.limit),
        retry_after=wait,
    )
    flash(f"Too many failed logins: try again in {wait} seconds.", "error")
    html = render_template(
        "login.html", username=request.form.get("username", "").strip()[:64], no_users=False
    )
    return Response(html, status=429, headers={"Retry-After": str(wait)})


def _on_login_form() -> bool:
    return request.endpoint == LOGIN_ENDPOINT


def init_app(app: Flask) -> Limiter:
    """Throttle failed logins on `app`; returns the app's own Limiter."""
    settings = app.extensions["stat_bot"].settings
    uri = settings.web_ratelimit_storage
    options: dict[str, Any] = {}
    if uri == "queue":
        uri = f"{QUEUE_SCHEME}://"
        options["queue_of"] = lambda: services().queue
    # Only the login form is limited, so Flask-Limiter's app-wide hooks (its check before,
    # its deductions after, its clean-up) run for that endpoint alone: on every other
    # request they did nothing, at ~0.1 ms of CPU, a tenth of a webhook's budget.
    limiter = confine(
        app,
        lambda: Limiter(
            key_func=_address_key,
            app=app,
            storage_uri=uri,
            storage_options=options,
            strategy="fixed-window",
            headers_enabled=False,  # _refused sets Retry-After itself; no per-request work
            on_breach=_refused,
            key_prefix="stat-bot-login",
        ),
        _on_login_form,
    )
    view = app.view_functions[LOGIN_ENDPOINT]
    view = limiter.limit(
        settings.web_login_limit_user, key_func=_user_key, methods=["POST"], deduct_when=_failed
    )(view)
    view = limiter.limit(
        settings.web_login_limit_address,
        key_func=_address_key,
        methods=["POST"],
        deduct_when=_failed,
    )(view)
    app.view_functions[LOGIN_ENDPOINT] = view
    return limiter
