"""What the signed webhook routes (GitHub's, Trac's) share: the secret, the HMAC check, the
JSON body, counting and logging each request's result, and how a queued job is answered.

Each route keeps only what is its own: its headers, its payload, its messages' wording.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import structlog
from flask import request
from pydantic import SecretStr
from werkzeug.exceptions import RequestEntityTooLarge

from stat_bot.jobs.model import ArgsError
from stat_bot.queue.base import EnqueueResult
from stat_bot.web.errors import RefusedError
from stat_bot.web.services import services

log = structlog.get_logger(__name__)


def secret_or_refuse(secret: SecretStr | None, disabled: str) -> bytes:
    """The route's secret; refused as `disabled` (403) while it is not set."""
    if secret is None or not secret.get_secret_value():
        raise RefusedError(403, "disabled", disabled)
    return secret.get_secret_value().encode()


def verify_sha256(
    secret: bytes,
    body: bytes,
    header: str,
    *,
    missing: str,
    mismatch: str,
    scheme: str = "sha256",
    several: bool = False,
) -> None:
    """Refuse (403) unless header `header` is `<scheme>=` + HMAC-SHA256(secret, body) in hex.

    GitHub and Trac send one `sha256=`; PagerDuty sends `v1=`, and during a secret's
    rotation several comma-separated, any one of which may match (`several`).
    `missing` and `mismatch` say, in the sender's terms, how to fix those two cases.
    Each comparison takes the same time however much of the digest matches.
    """
    value = request.headers.get(header)
    if not value:
        raise RefusedError(403, "bad_signature", missing, header)
    sent = value.split(",") if several else [value]
    digests = []
    for one in sent:
        named, _, digest = one.strip().partition("=")
        if named == scheme and digest:
            digests.append(digest.lower().encode("latin-1", "replace"))
    if not digests:
        raise RefusedError(
            403,
            "bad_signature",
            f"{header} must be '{scheme}=' followed by the body's HMAC-SHA256 in hex",
            header,
        )
    expected = hmac.new(secret, body, hashlib.sha256).hexdigest().encode()
    matched = False
    for digest in digests:  # every one compared: the time says nothing of which matched
        matched |= hmac.compare_digest(expected, digest)
    if not matched:
        raise RefusedError(403, "bad_signature", mismatch, header)


def json_body(body: bytes, *, content_type_hint: str = "") -> Any:
    """The body parsed as JSON; 415 unless sent as application/json, 400 if it is not JSON."""
    if request.mimetype != "application/json":
        raise RefusedError(
            415,
            "bad_request",
            f"the body is {request.mimetype or 'of no type'!s}, not application/json"
            + content_type_hint,
            "Content-Type",
        )
    try:
        return json.loads(body)
    except ValueError as error:
        raise RefusedError(400, "bad_request", f"the body is not JSON: {error}", "body") from None


def refused_args(error: ArgsError) -> RefusedError:
    """A matched rule whose args no job could run with (a NUL byte, too long): 400, why."""
    return RefusedError(400, "bad_request", f"not queued: {error}", "body")


def job_body(enqueued: EnqueueResult, *, namespace: bool = False) -> dict[str, Any]:
    """A queued job as the answer lists it."""
    job = enqueued.job
    body: dict[str, Any] = {"id": job.id}
    if namespace:
        body["namespace"] = job.namespace
    body.update(job_type=job.job_type, start_after=job.start_after)
    if enqueued.coalesced:
        body["coalesced"] = True
    if enqueued.suppressed_until is not None:
        body["suppressed_until"] = enqueued.suppressed_until
    return body


def count(counter: str, result: str) -> None:
    """Count a request for /metrics; a failure to count never changes the answer."""
    try:
        services().queue.count(counter, result)
    except Exception:
        log.warning("could not count a request", counter=counter, result=result, exc_info=True)


@contextmanager
def counting_refusals(counter: str, refused: str, **context: Any) -> Iterator[None]:
    """Count and log (as `refused`) a request refused inside, then let the refusal answer."""
    try:
        yield
    except RefusedError as refusal:
        count(counter, refusal.result)
        log.warning(
            refused, **context, result=refusal.result, status=refusal.status, reason=refusal.error
        )
        raise
    except RequestEntityTooLarge:
        count(counter, "too_large")  # the app's 413 handler answers, naming WEB_MAX_BODY
        log.warning(refused, **context, result="too_large", status=413)
        raise
