"""Fixtures for the web app: an app on the test home's settings and queue, a logged-in client.

Tests use Flask's test client against the real app (the test's real queue, real
job_configs.py, CSRF on); browser tests and benchmarks use gunicorn instead.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from stat_bot.jobs.config import JobConfigs
from stat_bot.queue import Queue
from stat_bot.settings import Settings
from stat_bot.web import create_app
from stat_bot.web.users import UserStore

WEB_USER = "admin"
WEB_PASSWORD = "correct horse battery"
CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)">')


def csrf_from(html: str) -> str:
    match = CSRF_META.search(html)
    assert match, "no csrf-token meta tag in the page"
    return match.group(1)


class WebSession:
    """A test client that logs in through the form and sends the CSRF token like the pages do."""

    def __init__(self, client: FlaskClient) -> None:
        self.client = client
        self._csrf: str | None = None

    def csrf(self) -> str:
        if self._csrf is None:
            # Logged in, /login redirects to the dashboard, which has the token too.
            page = self.client.get("/login", follow_redirects=True)
            self._csrf = csrf_from(page.get_data(as_text=True))
        return self._csrf

    def login(self, name: str = WEB_USER, password: str = WEB_PASSWORD) -> Any:
        response = self.client.post(
            "/login", data={"username": name, "password": password, "csrf_token": self.csrf()}
        )
        self._csrf = None  # a new session after login: fetch the token again
        return response

    def get(self, *args: Any, **kwargs: Any) -> Any:
        return self.client.get(*args, **kwargs)

    def post(self, url: str, *, data: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        """A form POST with the CSRF token added."""
        return self.client.post(url, data={"csrf_token": self.csrf(), **(data or {})}, **kwargs)

    def post_json(self, url: str, body: Any, **kwargs: Any) -> Any:
        """A JSON POST with the X-CSRFToken header, as the pages' JavaScript sends it."""
        headers = {"X-CSRFToken": self.csrf(), **kwargs.pop("headers", {})}
        return self.client.post(url, json=body, headers=headers, **kwargs)


@pytest.fixture
def web_user(settings: Settings) -> tuple[str, str]:
    """A dashboard user in the test home's users file."""
    assert settings.web_users_file is not None
    UserStore(settings.web_users_file).set(WEB_USER, WEB_PASSWORD)
    return WEB_USER, WEB_PASSWORD


@pytest.fixture
def make_web_app(settings: Settings, queue: Queue) -> Callable[..., Flask]:
    """create_app on the test settings and queue; keyword arguments go to create_app."""

    def make(app_settings: Settings | None = None, **kwargs: Any) -> Flask:
        kwargs.setdefault("queue", queue)
        app = create_app(app_settings or settings, **kwargs)
        app.config["TESTING"] = True
        return app

    return make


@pytest.fixture
def web_app(
    make_web_app: Callable[..., Flask], configure: Callable[[dict[str, Any] | str], JobConfigs]
) -> Flask:
    """The app with the shipped-like `system` namespace unless the test configured its own."""
    return make_web_app()


@pytest.fixture
def web(web_app: Flask) -> WebSession:
    """An anonymous browser-like session on `web_app`."""
    return WebSession(web_app.test_client())


@pytest.fixture
def logged_in(web: WebSession, web_user: tuple[str, str]) -> WebSession:
    response = web.login(*web_user)
    assert response.status_code == 302, response.get_data(as_text=True)
    return web
