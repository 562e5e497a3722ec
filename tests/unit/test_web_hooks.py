"""The web app's own plumbing: extensions' hooks confined, Flask's coroutine check remembered."""

from __future__ import annotations

from typing import Any

from flask import Flask, Response

from stat_bot.web.app import App
from stat_bot.web.hooks import confine


def test_hooks_an_extension_adds_run_only_where_confined_and_others_everywhere() -> None:
    app = Flask(__name__)
    calls: list[str] = []

    @app.before_request
    def ours() -> None:
        calls.append("ours")

    def register() -> str:
        @app.before_request
        def theirs_before() -> None:
            calls.append("before")

        @app.after_request
        def theirs_after(response: Response) -> Response:
            calls.append("after")
            response.headers["X-Theirs"] = "1"
            return response

        @app.teardown_request
        def theirs_teardown(error: BaseException | None) -> None:
            calls.append("teardown")

        return "registered"

    assert confine(app, register, lambda: request_path() == "/login") == "registered"

    @app.get("/<name>")
    def page(name: str) -> str:
        return name

    client = app.test_client()
    other = client.get("/webhook")
    assert other.status_code == 200
    assert other.get_data() == b"webhook"
    assert "X-Theirs" not in other.headers  # the response was passed on untouched
    assert calls == ["ours"]
    calls.clear()
    login = client.get("/login")
    assert login.headers["X-Theirs"] == "1"
    assert calls == ["ours", "before", "after", "teardown"]


def request_path() -> str:
    from flask import request

    return request.path


def test_the_app_remembers_which_functions_are_coroutines_up_to_a_bound() -> None:
    app = App(__name__)

    def view() -> str:
        return "ok"

    assert app.ensure_sync(view) is view
    assert app.ensure_sync(view) is view
    funcs: list[Any] = [lambda: None for _ in range(App.SYNC_CACHE + 10)]
    for func in funcs:
        assert app.ensure_sync(func) is func
    assert len(app._sync) == App.SYNC_CACHE  # bounded, and still right past the bound
