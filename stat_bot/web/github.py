"""GitHub webhooks: `POST /github/<project>` checks the signature, matches rules, enqueues.

`<project>` is a namespace of job_configs.py with a `webhooks` rule list. The
checks run in this order, each refusal saying what to fix:

1. GITHUB_WEBHOOK_SECRET unset: 403, webhooks are off (nothing unsigned is ever enqueued).
2. The raw body (413 above WEB_MAX_BODY) must carry a valid `X-Hub-Signature-256`
   (HMAC-SHA256 with the secret, compared in constant time) before anything in it is read.
3. `X-GitHub-Event` and `X-GitHub-Delivery` must be present: 400.
4. The project must be a namespace with webhook rules: 400 naming the valid ones.
5. The body must be a JSON object (content type application/json): 415 / 400.
6. `ping` (sent when the webhook is created): 200. Not recorded as a delivery: it
   enqueues nothing, so a repeated ping is harmless.
7. Rules for the event are matched, and the delivery is recorded and its jobs
   enqueued in one transaction (`Queue.accept_delivery`): a delivery id seen before,
   or a body seen before (its SHA-256 digest is kept as long as the delivery ids, so a
   captured body replayed under a new `X-GitHub-Delivery` is caught too), is
   acknowledged (200, `duplicate`) and enqueues nothing; no rule matched is 200 with
   no jobs (still recorded); otherwise 202 with the jobs.

A job that lands in an active suppression gets a notice in the namespace's channel
saying until when and how to lift it, stored in the outbox with the delivery and
delivered like every other message; Slack being down never fails the webhook.
Every request is counted in the queue counter `webhook_requests` by result (for
/metrics; a delivery's accepted, ignored or duplicate in the transaction that records
it) and logged, without the secret or the signature.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from typing import Any

import structlog
from flask import Blueprint, Flask, Response, jsonify, request
from flask_wtf.csrf import CSRFProtect

from stat_bot.actions import describe_time
from stat_bot.jobs.config import JobConfigs, Namespace, WebhookSpec
from stat_bot.jobs.model import ArgsError, JobRequest, Source
from stat_bot.jobs.requests import build_request
from stat_bot.jobs.webhooks import (
    JSON_TYPES,
    GitHubEvent,
    PayloadError,
    matches,
    read_event,
    rule_args,
)
from stat_bot.queue.base import EnqueueResult, OutboxMessage, OutboxState
from stat_bot.report.messages import Message, Report
from stat_bot.report.notices import suppressed_text
from stat_bot.report.outbox import outgoing
from stat_bot.web.errors import RefusedError
from stat_bot.web.services import SlackUnavailableError, services
from stat_bot.web.signed import (
    count,
    counting_refusals,
    job_body,
    json_body,
    refused_args,
    secret_or_refuse,
    verify_sha256,
)

log = structlog.get_logger(__name__)

bp = Blueprint("github", __name__)

COUNTER = "webhook_requests"  # read by /metrics; labels: the RESULTS below
RESULTS = (
    "accepted", "duplicate", "ignored", "ping", "bad_signature", "bad_request",
    "unknown_project", "disabled", "too_large",
)  # fmt: skip
# Counted by the queue in the transaction that records the delivery (accept_delivery).
COUNTED_WITH_DELIVERY = frozenset({"accepted", "duplicate", "ignored"})
SOURCE = "github"  # deliveries are unique per source
NOTICE_WAIT = 10.0  # the first tries at a suppression notice; the outbox retries after
SIGNATURE = "X-Hub-Signature-256"
EVENT_NAME = re.compile(r"^[a-z_]{1,64}$")
DELIVERY_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def init_app(app: Flask, csrf: CSRFProtect) -> None:
    """Register the webhook route; exempt from CSRF, since it authenticates by signature."""
    csrf.exempt(bp)
    app.register_blueprint(bp)


@bp.post("/github/<project>")
def receive(project: str) -> tuple[Response, int]:
    started = time.perf_counter()
    context = {
        "project": project[:100],
        "github_event": request.headers.get("X-GitHub-Event", "")[:64],
        "delivery": request.headers.get("X-GitHub-Delivery", "")[:128],
    }
    with counting_refusals(COUNTER, "github webhook refused", **context):
        result, status, body = _receive(project)
    if result not in COUNTED_WITH_DELIVERY:
        count(COUNTER, result)
    log.info(
        "github webhook",
        **context,
        result=result,
        status=status,
        jobs=[job["id"] for job in body.get("jobs", ())],
        ms=round((time.perf_counter() - started) * 1000, 2),
    )
    return jsonify(body), status


def _receive(project: str) -> tuple[str, int, dict[str, Any]]:
    """The result to count, the status and the body; RefusedError for anything refused."""
    svc = services()
    secret = secret_or_refuse(
        svc.settings.github_webhook_secret,
        "GitHub webhooks are disabled until GITHUB_WEBHOOK_SECRET is set; set it, and the "
        "same secret in the webhook's settings in GitHub",
    )
    body = request.get_data(cache=False)  # RequestEntityTooLarge above WEB_MAX_BODY
    _verify(secret, body)
    event = _header("X-GitHub-Event", EVENT_NAME, "the event's name, such as push")
    delivery = _header("X-GitHub-Delivery", DELIVERY_ID, "the delivery's id (a GUID)")
    namespace = _project(svc.configs, project)
    # Before answering a ping: a webhook set up to send forms should fail its first ping.
    payload = _payload(body)
    if event == "ping":
        return "ping", 200, {"ok": True, "event": "ping", "project": project}
    rules = [rule for rule in namespace.spec.webhooks if rule.event == event]
    requests: list[JobRequest] = []
    github: GitHubEvent | None = None
    if rules:
        try:
            github = read_event(event, payload)
        except PayloadError as error:
            raise RefusedError(400, "bad_request", f"{event} payload: {error}", "body") from None
        try:
            requests = [
                _request(namespace, rule, github) for rule in rules if matches(rule, github)
            ]
        except ArgsError as error:
            raise refused_args(error) from None
    # GitHub signs the body alone, so the body is what an attacker replays; per project, as
    # GitHub sends the same body to every webhook of a repository.
    digest = hashlib.sha256(project.encode() + b"\0" + body).hexdigest()
    ref = f"{SOURCE}:{delivery}"

    def notices(results: list[EnqueueResult]) -> list[OutboxMessage]:
        return [
            outgoing(notice, "notice", ref=ref)
            for enqueued in results
            if github is not None
            and (notice := _suppressed_notice(namespace, enqueued, github)) is not None
        ]

    results = svc.queue.accept_delivery(
        SOURCE, delivery, requests, digest=digest, notices=notices, counter=COUNTER
    )
    answer: dict[str, Any] = {"ok": True, "event": event, "delivery": delivery}
    if results is None:
        return "duplicate", 200, {**answer, "duplicate": True, "jobs": []}
    answer["jobs"] = [job_body(r) for r in results]
    if not results:
        return "ignored", 200, answer
    if any(r.suppressed_until is not None for r in results):
        _try_notices(ref)
    return "accepted", 202, answer


def _verify(secret: bytes, body: bytes) -> None:
    """Refuse unless X-Hub-Signature-256 is `sha256=` + HMAC-SHA256(secret, raw body) in hex."""
    if SIGNATURE not in request.headers and "X-Hub-Signature" in request.headers:
        raise RefusedError(
            403,
            "bad_signature",
            f"only the SHA-1 X-Hub-Signature was sent; STAT bot checks {SIGNATURE} "
            "(SHA-256), which GitHub sends with every delivery of a webhook that has a secret",
            SIGNATURE,
        )
    verify_sha256(
        secret,
        body,
        SIGNATURE,
        missing=f"no {SIGNATURE} header: give the webhook in GitHub a secret, the same as "
        "GITHUB_WEBHOOK_SECRET",
        mismatch=f"{SIGNATURE} does not match the body: the webhook's secret in GitHub must be "
        "the same as GITHUB_WEBHOOK_SECRET",
    )


def _header(name: str, pattern: re.Pattern[str], what: str) -> str:
    value = request.headers.get(name, "").strip()
    if not value:
        raise RefusedError(400, "bad_request", f"no {name} header: GitHub sends {what} in it", name)
    if not pattern.match(value):
        raise RefusedError(
            400, "bad_request", f"{name} {value[:80]!r} is not {what} as GitHub sends it", name
        )
    return value


def _project(configs: JobConfigs, project: str) -> Namespace:
    namespace = configs.namespaces.get(project)
    if namespace is not None and namespace.spec.webhooks:
        return namespace
    why = (
        "there is no such namespace in job_configs.py"
        if namespace is None
        else "the namespace has no webhooks rules in job_configs.py"
    )
    valid = ", ".join(configs.webhook_projects()) or "none yet: add a webhooks list to a namespace"
    raise RefusedError(
        400,
        "unknown_project",
        f"unknown project {project[:100]!r}: {why}; projects with webhook rules: {valid}",
        "project",
    )


def _payload(body: bytes) -> dict[str, Any]:
    payload = json_body(
        body,
        content_type_hint=": set the webhook's Content type to application/json in GitHub",
    )
    if not isinstance(payload, dict):
        raise RefusedError(
            400,
            "bad_request",
            "the body must be a JSON object (GitHub's event payload), "
            f"not {JSON_TYPES.get(type(payload), 'null')}",
            "body",
        )
    return payload


def _request(namespace: Namespace, rule: WebhookSpec, github: GitHubEvent) -> JobRequest:
    """The job a matched rule asks for (jobs/requests.py: its limits, where it reports)."""
    return build_request(
        namespace,
        rule.job_type,
        source=Source.WEBHOOK,
        args=rule_args(rule, github),
        channel=rule.channel,
        user=f"github {github.sender}",
        delay_seconds=rule.delay_seconds,
    )


def _suppressed_notice(
    namespace: Namespace, enqueued: EnqueueResult, github: GitHubEvent
) -> Report | None:
    """The namespace channel's word that a job waits in a suppression, and how to lift it."""
    if enqueued.suppressed_until is None:
        return None
    settings = services().settings
    channel = namespace.spec.default_channel or enqueued.job.channel
    if not channel:
        log.warning(
            "suppressed webhook job: no channel to say so in",
            project=namespace.name,
            job_id=enqueued.job.id,
        )
        return None
    when = describe_time(enqueued.suppressed_until, settings.tz)
    text = suppressed_text(namespace, enqueued, github, when, settings.slack_app_username)
    return Report([Message(text)], "info", channel=channel, title=f"#{enqueued.job.id} suppressed")


def _try_notices(ref: str) -> None:
    """Try the stored notices now, from a thread: Slack must not hold GitHub's request up.

    What this try does not deliver stays in the outbox for the dispatcher's sender.
    """
    svc = services()
    items = svc.queue.outbox_find(ref)
    try:
        sender = svc.sender
    except SlackUnavailableError as error:
        log.warning("suppressed webhook job: cannot tell Slack", reason=str(error), ref=ref)
        return

    def run() -> None:
        for stored in items:
            where = {"job_id": stored.job_id, "channel": stored.channel, "item": stored.id}
            try:
                item = sender.deliver_within(stored.id, NOTICE_WAIT)
            except Exception:
                log.exception("suppressed webhook job: the notice failed", **where)
                continue
            if item is not None and item.state is OutboxState.DELIVERED:
                log.info("suppressed webhook job: notice posted", **where)
            elif item is not None and item.state is OutboxState.PENDING:
                log.warning(
                    "suppressed webhook job: notice not posted yet; the outbox retries it",
                    **where,
                    reason=item.last_error,
                )
            else:
                log.warning(
                    "suppressed webhook job: Slack did not take the notice",
                    **where,
                    reason=item.last_error if item else "it is gone",
                )

    threading.Thread(target=run, name="github-notice", daemon=True).start()
