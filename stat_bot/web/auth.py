"""Who is asking: a logged-in session, a trusted proxy's header, or the relay's bearer token.

Pages and state-changing routes need one of these. Sessions come from the login
form (Flask-Login, password hashes from `users.py`); a reverse proxy that already
authenticated the user may say who it is in WEB_TRUSTED_USER_HEADER; programs on
other sites (the HPC-STAT Trac page) send STAT_RELAY_TOKEN as a bearer token.
The token opens only the relay's two routes (TOKEN_ENDPOINTS): it is handed to
another site's page, so it must not also read job history, arguments or logs.
Cookie-authenticated state changes also need the CSRF token (Flask-WTF); a bearer
token cannot be sent by a forged cross-site form, so it needs none.

A login session is held on the server: the cookie carries a random session id, the
queue keeps its hash with the user's name, and every request looks it up. Logout
deletes the row, so a copy of the cookie taken before logout opens nothing after it
(a signed cookie alone would stay valid until the secret key changed).
Failed logins are throttled (throttle.py); logins, failures and logouts are logged,
never the password.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar
from urllib.parse import urlsplit

import structlog
from flask import (
    Blueprint,
    Flask,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import LoginManager, UserMixin, current_user, login_user, logout_user
from flask_wtf.csrf import CSRFError, validate_csrf
from wtforms import ValidationError

from stat_bot.web.errors import ApiError
from stat_bot.web.hooks import confine
from stat_bot.web.services import services

log = structlog.get_logger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

bp = Blueprint("auth", __name__)
login_manager = LoginManager()
login_manager.login_view = "auth.login"
login_manager.login_message = "Log in to see this page."

# The only routes STAT_RELAY_TOKEN opens (stat_relay.py): /slack-proxy and /set-interval.
TOKEN_ENDPOINTS = frozenset({"stat_relay.slack_proxy", "stat_relay.set_interval"})
TOKEN_REFUSED = (
    "STAT_RELAY_TOKEN opens only /slack-proxy and /set-interval; "
    "log in to the dashboard for everything else"
)


class User(UserMixin):
    """A dashboard user; `via` says how they were recognised (session, proxy or token).

    A session user's id (what Flask-Login keeps in the cookie) is the server-side
    session id, not the name: the name comes from the queue on each request.
    """

    def __init__(self, name: str, via: str = "session", session_id: str | None = None) -> None:
        self.id = session_id or name
        self.name = name
        self.via = via
        self.session_id = session_id


def _session_hash(session_id: str) -> str:
    """What the queue keeps: a leaked database holds no usable session ids."""
    return hashlib.sha256(session_id.encode()).hexdigest()


def _max_age() -> float:
    return float(current_app.permanent_session_lifetime.total_seconds())


@login_manager.user_loader
def _load(session_id: str) -> User | None:
    svc = services()
    name = svc.queue.session_user(_session_hash(session_id), max_age=_max_age())
    # A session stays valid only while its user does: removing a user logs them out.
    if name is None or not svc.users.exists(name):
        return None
    return User(name, session_id=session_id)


@login_manager.request_loader
def _from_request(req: Any) -> User | None:
    settings = services().settings
    header = settings.web_trusted_user_header
    if header:
        name = (req.headers.get(header) or "").strip()
        if name:
            return User(name, via="proxy")
    if has_relay_token(req) and req.endpoint in TOKEN_ENDPOINTS:
        return User("relay", via="token")
    return None


def has_relay_token(req: Any) -> bool:
    """Whether the request carries `Authorization: Bearer <STAT_RELAY_TOKEN>` (constant time)."""
    token = services().settings.stat_relay_token
    auth = req.headers.get("Authorization", "")
    return (
        token is not None
        and bool(token.get_secret_value())
        and auth.startswith("Bearer ")
        and hmac.compare_digest(auth[7:].strip().encode(), token.get_secret_value().encode())
    )


def refuse_token_elsewhere() -> None:
    """403 for the relay token on any route but the relay's (not a login page or a redirect).

    Saying so plainly helps whoever wired the token to the wrong address; a 302 to /login
    would look like a server fault to a program.
    """
    if "Authorization" not in request.headers:
        return  # the common case (pages, webhooks), decided without more work
    if request.endpoint is None or request.endpoint in TOKEN_ENDPOINTS:
        return
    if request.method != "OPTIONS" and has_relay_token(request):
        log.warning("relay token refused", path=request.path[:200], remote=request.remote_addr)
        raise ApiError(403, TOKEN_REFUSED)


def who() -> str:
    """The current user's name, for logs and job sources."""
    return current_user.name if current_user.is_authenticated else "anonymous"


def api_login_required(fn: F) -> F:
    """For JSON routes: 401 unless authenticated; cookie sessions must send the CSRF token."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not current_user.is_authenticated:
            raise ApiError(
                401,
                "log in to the dashboard, or send `Authorization: Bearer <STAT_RELAY_TOKEN>`",
            )
        if request.method not in ("GET", "HEAD", "OPTIONS") and current_user.via == "session":
            try:
                validate_csrf(request.headers.get("X-CSRFToken") or request.form.get("csrf_token"))
            except (ValidationError, CSRFError) as error:
                raise ApiError(
                    400, f"CSRF token missing or invalid ({error}); reload the page", "csrf_token"
                ) from None
        return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _safe_next(target: str | None) -> str:
    """Only a path on this site: never an open redirect to somewhere else."""
    if target:
        parts = urlsplit(target)
        if (
            not parts.scheme
            and not parts.netloc
            and target.startswith("/")
            and not target.startswith("//")
        ):
            return target
    return url_for("dashboard.index")


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    store = services().users
    if request.method == "POST":
        name = request.form.get("username", "").strip()
        password = request.form.get("password", "")
        if store.verify(name, password):
            session_id = secrets.token_urlsafe(32)
            services().queue.open_session(_session_hash(session_id), name, max_age=_max_age())
            login_user(User(name, session_id=session_id), remember=False)
            log.info("web login", user=name, remote=request.remote_addr)
            return redirect(_safe_next(request.args.get("next")))
        log.warning("web login refused", user=name[:64], remote=request.remote_addr)
        flash("Wrong user name or password.", "error")
        shown = name[:64]  # no user name is longer: an overlong one is not echoed back
        return render_template("login.html", username=shown, no_users=not store.names()), 401
    if current_user.is_authenticated:
        return redirect(_safe_next(request.args.get("next")))
    return render_template("login.html", username="", no_users=not store.names())


@bp.route("/logout", methods=["POST"])
def logout() -> Any:
    if current_user.is_authenticated and current_user.session_id:
        services().queue.close_session(_session_hash(current_user.session_id))
        log.info("web logout", user=current_user.name, remote=request.remote_addr)
    logout_user()
    return redirect(url_for("auth.login"))


def _sent_cookies() -> bool:
    # Not `session`: in Flask, looking at it marks it accessed (and the answer `Vary: Cookie`).
    return bool(request.environ.get("HTTP_COOKIE"))


def init_app(app: Flask) -> None:
    from stat_bot.web import throttle

    # flask-login's hook after each request refreshes or clears a remember cookie the client
    # sent, or sets one for a login made with remember=True, which STAT bot never makes: a
    # request that sent no cookie (webhooks, the relay, health checks) gives it nothing to do.
    confine(app, lambda: login_manager.init_app(app), _sent_cookies)
    app.before_request(refuse_token_elsewhere)
    app.register_blueprint(bp)
    throttle.init_app(app)
