"""Extensions' app-wide request hooks, confined to the requests they can act on.

Flask-Limiter and flask-login each add hooks that run before, after or at the end of
every request. On most requests (webhooks, the relay, health checks, /metrics: no
session, not the login form) they do nothing, yet each costs Flask's dispatch and its
own look-ups: together about a tenth of a webhook's CPU. `confine` lets an extension
register as it always does, then makes what it added run only where it can matter.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import Flask

T = TypeVar("T")


def _hook_lists(app: Flask) -> list[list[Callable[..., Any]]]:
    """The app-wide before, after and teardown hook lists (Flask keeps them by blueprint)."""
    return [
        app.before_request_funcs.setdefault(None, []),
        app.after_request_funcs.setdefault(None, []),
        app.teardown_request_funcs.setdefault(None, []),
    ]


def _only_when(hook: Callable[..., Any], when: Callable[[], bool]) -> Callable[..., Any]:
    """`hook`, run while `when()` holds; otherwise it passes its argument (a response) on,
    as an after-request hook must, or returns None, as a before-request hook that lets
    the request go on does."""

    @wraps(hook)
    def run(*args: Any) -> Any:
        if when():
            return hook(*args)
        return args[0] if args else None

    return run


def confine(app: Flask, register: Callable[[], T], when: Callable[[], bool]) -> T:
    """Call `register` (an extension's set-up on `app`); the app-wide hooks it adds run
    only while `when()` holds, in a request context. Returns what `register` returned."""
    hooks = _hook_lists(app)
    had = [list(funcs) for funcs in hooks]
    result = register()
    for funcs, before in zip(hooks, had, strict=True):
        funcs[:] = [f if f in before else _only_when(f, when) for f in funcs]
    return result
