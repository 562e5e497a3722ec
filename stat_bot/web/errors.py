"""Errors as people and programs expect them: JSON for the API routes, pages for people.

An API error body is always `{"error": "...", "field": "..."}` (`field` only when
one input was at fault), so a client can show the message next to the right field.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

# Routes called by programs (webhooks, the relay, JSON endpoints): errors as JSON.
API_PREFIXES = (
    "/github/",
    "/alerts/",
    "/trac",
    "/slack-proxy",
    "/set-interval",
    "/api/",
    "/healthz",
    "/readyz",
    "/metrics",
    "/status.json",
)


class ApiError(Exception):
    """A refusal with its HTTP status, a message saying what to change and the field at fault."""

    def __init__(
        self,
        status: int,
        error: str,
        field: str | None = None,
        errors: dict[str, str] | None = None,
    ) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.field = field
        # Every field at fault with its message, for forms that show them all at once;
        # `error` and `field` are the first of them, for clients that read one.
        self.errors = errors

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.error}
        if self.field is not None:
            body["field"] = self.field
        if self.errors:
            body["errors"] = self.errors
        return body


class RefusedError(ApiError):
    """A webhook's refusal (GitHub's, Trac's), with the result its counter records it as."""

    def __init__(self, status: int, result: str, error: str, field: str | None = None) -> None:
        super().__init__(status, error, field)
        self.result = result


def wants_json() -> bool:
    if request.path.startswith(API_PREFIXES):
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return (
        best == "application/json"
        and request.accept_mimetypes[best] > request.accept_mimetypes["text/html"]
    )


def _respond(
    status: int, message: str, field: str | None = None, errors: dict[str, str] | None = None
) -> tuple[Response | str, int]:
    if wants_json():
        return jsonify(ApiError(status, message, field, errors).body()), status
    return render_template("error.html", status=status, message=message), status


MESSAGES = {
    400: "The request was not understood.",
    401: "Log in first.",
    403: "You may not do that.",
    404: "There is nothing here.",
    405: "This address does not accept that method.",
    413: "The request body is too large.",
    429: "Too many requests: wait a moment and try again.",
    500: "Something went wrong on our side; it has been logged.",
}


def register(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def api_error(error: ApiError) -> tuple[Response | str, int]:
        return _respond(error.status, error.error, error.field, error.errors)

    @app.errorhandler(CSRFError)
    def csrf_error(error: CSRFError) -> tuple[Response | str, int]:
        return _respond(400, f"{error.description} Reload the page and try again.", "csrf_token")

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Response | tuple[Response | str, int]:
        if error.response is not None:  # made by whoever raised it (the login throttle's page)
            return error.response
        status = error.code or 500
        if status == 413:
            limit = app.config.get("MAX_CONTENT_LENGTH")
            return _respond(
                413, f"The request body is larger than the {limit:,} bytes accepted (WEB_MAX_BODY)."
            )
        return _respond(status, MESSAGES.get(status, error.description or error.name))

    @app.errorhandler(Exception)
    def unexpected(error: Exception) -> tuple[Response | str, int]:
        app.logger.exception("unhandled error on %s %s", request.method, request.path)
        return _respond(500, MESSAGES[500])
