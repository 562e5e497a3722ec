"""The Flask application factory: settings in, a configured app with every blueprint out."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from flask import Flask
from flask_wtf.csrf import CSRFProtect
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import IntegerConverter

from stat_bot.jobs.config import JobConfigs
from stat_bot.queue import Queue
from stat_bot.report.notifiers import Notifier
from stat_bot.settings import Settings, get_settings
from stat_bot.web import auth, errors
from stat_bot.web.services import KEY, Services, secret_key
from stat_bot.web.session_cookies import SessionCookies

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

csrf = CSRFProtect()

# Scripts and styles come only from this site (no CDN); pages may not be framed.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)
# (lower-case name, name, value) of the headers every response gets unless it has its own.
SECURITY_HEADERS = tuple(
    (name.lower(), name, value)
    for name, value in (
        ("X-Content-Type-Options", "nosniff"),
        ("X-Frame-Options", "DENY"),
        ("Referrer-Policy", "same-origin"),
        ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
    )
)
HSTS = (("strict-transport-security", "Strict-Transport-Security", "max-age=31536000"),)


class BoundedInt(IntegerConverter):
    """`<int:...>` in every route, up to the largest id a queue holds (2**63 - 1).

    A longer number is a 404 like any id that names nothing, rather than an overflow deep
    in the database driver (a 500) or Python's refusal to read a 5,000-digit int.
    """

    regex = r"\d{1,19}"

    def __init__(self, map: Any, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max", 2**63 - 1)
        super().__init__(map, *args, **kwargs)


class App(Flask):
    """Flask, remembering which of its hooks and views are coroutines.

    Flask asks that of every hook and view on every request (`ensure_sync` looks into
    the function's code each time): seven hooks and a view, about 2 % of a webhook's CPU,
    for an answer that never changes. Remembered for up to SYNC_CACHE functions.
    """

    SYNC_CACHE = 512

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sync: dict[Callable[..., Any], Callable[..., Any]] = {}

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        try:
            return self._sync[func]
        except KeyError:
            pass
        except TypeError:  # not hashable
            return super().ensure_sync(func)
        sync = super().ensure_sync(func)
        if len(self._sync) < self.SYNC_CACHE:
            self._sync[func] = sync
        return sync


def create_app(
    settings: Settings | None = None,
    *,
    queue: Queue | None = None,
    configs: JobConfigs | None = None,
    notifier: Notifier | None = None,
) -> Flask:
    """A STAT bot web app. Tests pass their own settings, queue, configs or Slack poster."""
    settings = settings or get_settings()
    app = App(__name__)
    app.url_map.converters["int"] = BoundedInt  # before any route is added
    app.config.update(
        SECRET_KEY=secret_key(settings),
        MAX_CONTENT_LENGTH=settings.web_max_body,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.secure_cookies,
        SESSION_COOKIE_NAME="stat_bot_session",
        PERMANENT_SESSION_LIFETIME=timedelta(hours=12),
        REMEMBER_COOKIE_HTTPONLY=True,
        REMEMBER_COOKIE_SECURE=settings.secure_cookies,
        WTF_CSRF_TIME_LIMIT=None,  # valid for the session's life: a dashboard left open works
    )
    app.session_interface = SessionCookies()
    app.json.sort_keys = False  # type: ignore[attr-defined]  # keys in the order written
    app.extensions[KEY] = Services(settings, queue=queue, configs=configs, notifier=notifier)

    errors.register(app)
    auth.init_app(app)  # first: its checks (the relay token's scope) run before CSRF's
    csrf.init_app(app)
    _register_blueprints(app)

    headers = SECURITY_HEADERS + (HSTS if settings.secure_cookies else ())
    app.wsgi_app = SecurityHeaders(app.wsgi_app, headers)  # type: ignore[method-assign]
    if settings.web_proxy_count:
        n = settings.web_proxy_count
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)  # type: ignore[method-assign]
    return app


class SecurityHeaders:
    """WSGI middleware: every answer gets the security headers, unless the route set its own.

    Added to the plain list of headers on the way out, rather than in an after-request hook
    through werkzeug's Headers (which checks each value again): a webhook's answer pays for
    them too, and this way costs a tenth as much. Error pages and redirects get them alike.
    """

    def __init__(self, app: WSGIApplication, headers: tuple[tuple[str, str, str], ...]) -> None:
        self.app = app
        self.headers = headers  # (lower-case name, name, value)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Any:
        def start(status: str, sent: list[tuple[str, str]], exc_info: Any = None) -> Any:
            present = {name.lower() for name, _ in sent}
            extra = [(name, value) for low, name, value in self.headers if low not in present]
            return start_response(status, sent + extra, exc_info)

        return self.app(environ, start)


def _register_blueprints(app: Flask) -> None:
    from stat_bot.web import (
        alert_pages,
        alerts,
        console_page,
        dashboard,
        github,
        health,
        incident_pages,
        metrics,
        stat_relay,
        status_page,
        trac_hook,
    )

    for module in (
        github,
        alerts,
        trac_hook,
        stat_relay,
        health,
        metrics,
        dashboard,
        console_page,
        incident_pages,
        alert_pages,
        status_page,
    ):
        module.init_app(app, csrf)
