"""`POST /github/<project>`: signed GitHub deliveries queue the jobs their rules name, once.

The real app (Flask test client) on a real SQLite queue and a real job_configs.py;
suppression notices go to the Slack emulator through the app's own Slack poster.
Payloads have GitHub's shapes (tests/github_payloads.py).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from structlog.testing import capture_logs

from stat_bot.actions import Requester, describe_time, perform
from stat_bot.integrations.slack_emulator import (
    APP_TOKEN,
    BOT_TOKEN,
    GENERAL_CHANNEL_ID,
    EmulatorClient,
    EmulatorThread,
    wait_for,
)
from stat_bot.jobs.config import JobConfigs, load_config
from stat_bot.jobs.matching import match_command
from stat_bot.jobs.model import Job, JobStatus
from stat_bot.queue import Queue
from stat_bot.settings import Settings
from tests import github_payloads as gh

SECRET = "It's a Secret to Everybody"
COUNTER = "webhook_requests"

RAW: dict[str, Any] = {
    "site": {
        "description": "the site's own deployment",
        "default_channel": "#general",
        "jobs": {
            "deploy": {"run_args_template": "echo deploy {sha}"},
            "notify": {"run_args_template": "echo {what}", "coalesce": False},
            "build": {
                "run_args_template": "echo build {branch} {sha}",
                "coalesce": False,
                "report_channel": "#builds",
            },
            "release": {"run_args_template": "echo release {tag}", "retries": 2, "concurrency": 3},
        },
        "slack": [
            {"command": "deploy [sha]", "job_type": "deploy"},
            {
                "command": "suppress deploy [start_at] [end_at]",
                "action": "schedule_suppression",
                "job_type": "deploy",
            },
            {
                "command": "cancel deploy suppression",
                "action": "cancel_suppression",
                "job_type": "deploy",
            },
        ],
        "webhooks": [
            {
                "event": "pull_request",
                "action": "closed",
                "merged": True,
                "branch": "default",
                "job_type": "deploy",
                "args": {"sha": "{sha}"},
                "delay_seconds": 60,
            },
            {
                "event": "pull_request",
                "action": "closed",
                "merged": True,
                "job_type": "notify",
                "args": {"what": "PR #{number} merged into {branch} by {sender}"},
            },
            {
                "event": "push",
                "branch": "main",
                "job_type": "build",
                "args": {"sha": "{sha}", "branch": "{branch}"},
            },
            {
                "event": "release",
                "action": "published",
                "job_type": "release",
                "args": {"tag": "{tag}"},
                "channel": "#releases",
            },
        ],
    },
    "docs": {
        "jobs": {"publish": {"run_args_template": "echo publish"}},
        "webhooks": [{"event": "push", "job_type": "publish"}],
    },
    "plain": {"jobs": {"hello": {"run_args_template": "echo hi"}}},
}


def deliver(
    client: FlaskClient,
    event: str,
    payload: Any = None,
    *,
    project: str = "site",
    secret: str = SECRET,
    delivery: str | None = None,
    body: bytes | None = None,
    headers: dict[str, str | None] | None = None,
) -> Any:
    """POST a delivery as GitHub does; `headers` values replace GitHub's, None removes one."""
    body = gh.encode(payload) if body is None else body
    sent: dict[str, str | None] = {
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/6a5d2b0",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or gh.delivery_id(),
        "X-GitHub-Hook-ID": "109948940",
        "X-Hub-Signature": gh.sign_sha1(secret, body),
        "X-Hub-Signature-256": gh.sign(secret, body),
    }
    sent.update(headers or {})
    return client.post(
        f"/github/{project}", data=body, headers={k: v for k, v in sent.items() if v is not None}
    )


def all_jobs(queue: Queue) -> list[Job]:
    return sorted(queue.jobs(limit=1000), key=lambda j: j.id)


@pytest.fixture
def make_app(
    make_web_app: Callable[..., Flask],
    make_settings: Callable[..., Settings],
    configure: Callable[[dict[str, Any]], JobConfigs],
) -> Callable[..., Flask]:
    configure(RAW)

    def make(**settings: Any) -> Flask:
        settings.setdefault("github_webhook_secret", SECRET)
        return make_web_app(make_settings(**settings))

    return make


@pytest.fixture
def client(make_app: Callable[..., Flask]) -> FlaskClient:
    return make_app().test_client()


# --- the signature ----------------------------------------------------------------------

SIGNATURE_CASES = {
    "valid": ({}, None, 202),
    "wrong secret": (
        {"X-Hub-Signature-256": gh.sign("not the secret", gh.encode(gh.push()))},
        None,
        403,
    ),
    "missing header": ({"X-Hub-Signature-256": None, "X-Hub-Signature": None}, None, 403),
    "sha1 only": ({"X-Hub-Signature-256": None}, None, 403),
    "sha1 in the sha256 header": (
        {"X-Hub-Signature-256": gh.sign_sha1(SECRET, gh.encode(gh.push()))},
        None,
        403,
    ),
    "no sha256= prefix": (
        {"X-Hub-Signature-256": gh.sign(SECRET, gh.encode(gh.push())).removeprefix("sha256=")},
        None,
        403,
    ),
    "body altered": (
        {"X-Hub-Signature-256": gh.sign(SECRET, gh.encode(gh.push()))},
        gh.encode(gh.push(after="f" * 40)),
        403,
    ),
    "non-ASCII signature": ({"X-Hub-Signature-256": "sha256=é" + "0" * 63}, None, 403),
}


@pytest.mark.parametrize("case", list(SIGNATURE_CASES))
def test_signature_matrix(case, client, queue):
    headers, body, status = SIGNATURE_CASES[case]
    response = deliver(client, "push", gh.push(), headers=headers, body=body)
    assert response.status_code == status, response.json
    if status == 202:
        (job,) = all_jobs(queue)
        assert response.json["jobs"] == [
            {"id": job.id, "job_type": "build", "start_after": job.start_after}
        ]
        assert queue.counters(COUNTER) == {"accepted": 1}
        return
    assert response.json["field"] == "X-Hub-Signature-256"
    assert "X-Hub-Signature-256" in response.json["error"]
    assert all_jobs(queue) == []
    assert queue.counters(COUNTER) == {"bad_signature": 1}


def test_refusals_say_what_to_fix(client):
    wrong = deliver(client, "push", gh.push(), secret="nope")
    assert "must be the same as GITHUB_WEBHOOK_SECRET" in wrong.json["error"]
    missing = deliver(
        client, "push", gh.push(), headers={"X-Hub-Signature-256": None, "X-Hub-Signature": None}
    )
    assert "give the webhook in GitHub a secret" in missing.json["error"]
    sha1 = deliver(client, "push", gh.push(), headers={"X-Hub-Signature-256": None})
    assert "only the SHA-1 X-Hub-Signature was sent" in sha1.json["error"]


def test_a_replayed_delivery_is_acknowledged_and_ignored(client, queue):
    delivery = gh.delivery_id()
    first = deliver(client, "push", gh.push(), delivery=delivery)
    again = deliver(client, "push", gh.push(), delivery=delivery)
    assert first.status_code == 202
    assert again.status_code == 200
    assert again.json == {
        "ok": True,
        "event": "push",
        "delivery": delivery,
        "duplicate": True,
        "jobs": [],
    }
    assert len(all_jobs(queue)) == 1
    assert queue.counters(COUNTER) == {"accepted": 1, "duplicate": 1}


def test_a_captured_body_replayed_with_a_new_delivery_id_enqueues_nothing(client, queue):
    body = gh.encode(gh.push())
    first = deliver(client, "push", gh.push(), body=body)
    replay = deliver(client, "push", gh.push(), body=body, delivery=gh.delivery_id())
    assert first.status_code == 202
    assert replay.status_code == 200
    assert replay.json["duplicate"] is True
    assert replay.json["jobs"] == []
    assert len(all_jobs(queue)) == 1
    assert queue.counters(COUNTER) == {"accepted": 1, "duplicate": 1}
    # Another body (another event) still goes through.
    other = deliver(client, "push", gh.push(after="e" * 40))
    assert other.status_code == 202
    assert len(all_jobs(queue)) == 2


def test_a_body_is_remembered_as_long_as_deliveries_are(client, queue):
    body = gh.encode(gh.push())
    assert deliver(client, "push", gh.push(), body=body).status_code == 202
    queue.prune(time.time() - 60)  # within the retention window: still remembered
    assert deliver(client, "push", gh.push(), body=body).json.get("duplicate") is True
    queue.prune(time.time() + 1)  # past it: forgotten with the delivery ids
    assert deliver(client, "push", gh.push(), body=body).status_code == 202
    assert len(all_jobs(queue)) == 2


@pytest.mark.parametrize(
    ("after", "fragment"),
    [("0d1a\u0000rm -rf", "NUL byte"), ("'" * 30_000, "126,976")],
    ids=["NUL byte", "beyond one argument's limit"],
)
def test_args_no_job_could_run_with_are_refused_and_nothing_recorded(
    client, queue, after, fragment
):
    delivery = gh.delivery_id()
    response = deliver(client, "push", gh.push(after=after), delivery=delivery)
    assert response.status_code == 400, response.json
    assert response.json["error"].startswith("not queued: ")
    assert fragment in response.json["error"]
    assert len(response.json["error"]) < 500
    assert all_jobs(queue) == []
    assert queue.counters(COUNTER) == {"bad_request": 1}
    # Not recorded: the same delivery id with a payload that can run is accepted.
    assert deliver(client, "push", gh.push(), delivery=delivery).status_code == 202


def test_concurrent_copies_of_one_delivery_enqueue_once(make_app, queue):
    app = make_app()
    delivery = gh.delivery_id()
    statuses: list[int] = []
    barrier = threading.Barrier(8)

    def send() -> None:
        client = app.test_client()
        barrier.wait()
        statuses.append(deliver(client, "push", gh.push(), delivery=delivery).status_code)

    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(statuses) == [200] * 7 + [202]
    assert len(all_jobs(queue)) == 1
    assert queue.counters(COUNTER) == {"accepted": 1, "duplicate": 7}


def test_without_a_secret_webhooks_are_off(make_app, queue):
    client = make_app(github_webhook_secret=None).test_client()
    response = deliver(client, "push", gh.push())
    assert response.status_code == 403
    assert "disabled until GITHUB_WEBHOOK_SECRET is set" in response.json["error"]
    assert all_jobs(queue) == []
    assert queue.counters(COUNTER) == {"disabled": 1}


def test_the_signature_is_checked_before_anything_else(client, queue):
    # Unsigned junk for a project that does not exist: the signature is what is refused,
    # so a stranger learns nothing about the projects or the payload rules.
    response = deliver(
        client,
        "push",
        body=b"{not json",
        project="nope",
        headers={"X-Hub-Signature-256": "sha256=00"},
    )
    assert response.status_code == 403
    assert "nope" not in response.json["error"]
    assert queue.counters(COUNTER) == {"bad_signature": 1}


# --- real payloads ------------------------------------------------------------------------


def test_a_merged_pull_request_deploys_a_minute_later(client, queue):
    before = time.time()
    response = deliver(client, "pull_request", gh.pull_request("closed", merged=True, sender="bob"))
    assert response.status_code == 202
    deploy, notify = all_jobs(queue)
    assert [j["job_type"] for j in response.json["jobs"]] == ["deploy", "notify"]
    assert (deploy.namespace, deploy.job_type, deploy.status) == (
        "site",
        "deploy",
        JobStatus.QUEUED,
    )
    assert deploy.args == {"sha": gh.MERGE_SHA}
    assert deploy.source == "webhook"
    assert deploy.user == "github bob"
    assert deploy.channel == "#general"  # the namespace's default channel
    assert before + 60 <= deploy.start_after <= time.time() + 60
    assert notify.args == {"what": "PR #12 merged into main by bob"}
    assert notify.start_after <= time.time()


def test_a_closed_unmerged_pull_request_queues_nothing_but_is_recorded(client, queue):
    delivery = gh.delivery_id()
    response = deliver(
        client, "pull_request", gh.pull_request("closed", merged=False), delivery=delivery
    )
    assert response.status_code == 200
    assert response.json == {"ok": True, "event": "pull_request", "delivery": delivery, "jobs": []}
    assert all_jobs(queue) == []
    again = deliver(
        client, "pull_request", gh.pull_request("closed", merged=False), delivery=delivery
    )
    assert again.json["duplicate"] is True
    assert queue.counters(COUNTER) == {"ignored": 1, "duplicate": 1}


def test_a_merge_into_another_branch_does_not_deploy(client, queue):
    response = deliver(client, "pull_request", gh.pull_request("closed", base="develop"))
    assert response.status_code == 202
    assert [j.job_type for j in all_jobs(queue)] == ["notify"]  # its rule names no branch


def test_a_push_to_main_builds_that_commit(client, queue):
    response = deliver(client, "push", gh.push("refs/heads/main", after="a" * 40))
    assert response.status_code == 202
    (build,) = all_jobs(queue)
    assert build.args == {"sha": "a" * 40, "branch": "main"}
    assert build.channel == "#builds"  # the job's report_channel before the namespace's


def test_pushes_elsewhere_are_ignored(client, queue):
    for ref in ("refs/heads/feature", "refs/tags/v1.0"):
        assert deliver(client, "push", gh.push(ref)).json["jobs"] == []
    assert deliver(client, "push", gh.push("refs/heads/main", deleted=True)).json["jobs"] == []
    assert all_jobs(queue) == []
    assert queue.counters(COUNTER) == {"ignored": 3}


def test_a_published_release(client, queue):
    response = deliver(client, "release", gh.release("published", tag="v2.1.0"))
    assert response.status_code == 202
    (job,) = all_jobs(queue)
    assert (job.job_type, job.args, job.channel) == ("release", {"tag": "v2.1.0"}, "#releases")
    assert (job.max_retries, job.concurrency) == (2, 3)  # the job type's own limits
    assert deliver(client, "release", gh.release("created")).json["jobs"] == []


def test_events_no_rule_names_are_acknowledged(client, queue):
    issue = {"action": "opened", "issue": {"number": 3}, "repository": gh.repository()}
    response = deliver(client, "issues", issue)
    assert response.status_code == 200
    assert response.json["jobs"] == []
    assert all_jobs(queue) == []


def test_ping_answers_and_records_nothing(client, queue):
    delivery = gh.delivery_id()
    for _ in range(2):  # a ping is not recorded, so the same one again is still a ping
        response = deliver(client, "ping", gh.ping(), delivery=delivery)
        assert response.status_code == 200
        assert response.json == {"ok": True, "event": "ping", "project": "site"}
    assert all_jobs(queue) == []
    assert queue.counters(COUNTER) == {"ping": 2}
    # Had it been recorded, this push with the ping's delivery id would be a duplicate.
    assert deliver(client, "push", gh.push(), delivery=delivery).status_code == 202


def test_an_unsigned_ping_is_refused(client):
    assert deliver(client, "ping", gh.ping(), secret="wrong").status_code == 403


def test_a_webhook_set_up_to_send_forms_fails_its_first_ping(client):
    # GitHub's "application/x-www-form-urlencoded" content type: the JSON in a `payload` field.
    response = deliver(
        client,
        "ping",
        body=b"payload=" + gh.encode(gh.ping()).replace(b"{", b"%7B"),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 415
    assert "set the webhook's Content type to application/json" in response.json["error"]


# --- bad requests ----------------------------------------------------------------------------


def test_invalid_json_is_refused_and_not_recorded(client, queue):
    delivery = gh.delivery_id()
    response = deliver(client, "push", body=b'{"ref": "refs/heads/main",', delivery=delivery)
    assert response.status_code == 400
    assert response.json["field"] == "body"
    assert response.json["error"].startswith("the body is not JSON")
    # Nothing was written: the same delivery, sent whole, is accepted.
    assert deliver(client, "push", gh.push(), delivery=delivery).status_code == 202
    assert len(all_jobs(queue)) == 1
    assert queue.counters(COUNTER) == {"bad_request": 1, "accepted": 1}


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"[]", "must be a JSON object (GitHub's event payload), not an array"),
        (b'"push"', "not a string"),
        (b"null", "not null"),
        (b"\xff\xfe", "the body is not JSON"),
    ],
)
def test_a_body_that_is_not_a_json_object(client, queue, body, fragment):
    response = deliver(client, "push", body=body)
    assert response.status_code == 400
    assert response.json["field"] == "body"
    assert fragment in response.json["error"]
    assert all_jobs(queue) == []


def test_a_payload_missing_what_its_event_always_has(client, queue):
    payload = gh.push()
    del payload["ref"]
    response = deliver(client, "push", payload)
    assert response.status_code == 400
    assert response.json == {"error": "push payload: the payload has no 'ref'", "field": "body"}
    assert all_jobs(queue) == []


def test_a_form_encoded_delivery_says_to_send_json(client, queue):
    response = deliver(
        client,
        "push",
        body=b"payload=%7B%7D",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 415
    assert response.json["field"] == "Content-Type"
    assert "set the webhook's Content type to application/json" in response.json["error"]
    assert all_jobs(queue) == []


def test_an_oversized_body_is_refused(make_app, queue):
    client = make_app(web_max_body=1024).test_client()
    payload = gh.push()  # ~5 kB, as GitHub's are
    response = deliver(client, "push", payload)
    assert response.status_code == 413
    assert "1,024 bytes" in response.json["error"]
    assert "WEB_MAX_BODY" in response.json["error"]
    assert all_jobs(queue) == []
    assert queue.counters(COUNTER) == {"too_large": 1}


@pytest.mark.parametrize(
    ("header", "value", "fragment"),
    [
        ("X-GitHub-Event", None, "no X-GitHub-Event header"),
        ("X-GitHub-Event", "Push Event", "'Push Event' is not the event's name"),
        ("X-GitHub-Delivery", None, "no X-GitHub-Delivery header"),
        ("X-GitHub-Delivery", "x" * 200, "is not the delivery's id"),
    ],
)
def test_github_headers_are_required(client, queue, header, value, fragment):
    response = deliver(client, "push", gh.push(), headers={header: value})
    assert response.status_code == 400
    assert response.json["field"] == header
    assert fragment in response.json["error"]
    assert all_jobs(queue) == []
    assert queue.counters(COUNTER) == {"bad_request": 1}


def test_an_unknown_project_is_named_with_the_valid_ones(client, queue):
    response = deliver(client, "push", gh.push(), project="sight")
    assert response.status_code == 400
    assert response.json == {
        "error": "unknown project 'sight': there is no such namespace in job_configs.py; "
        "projects with webhook rules: site, docs",
        "field": "project",
    }
    plain = deliver(client, "push", gh.push(), project="plain")
    assert plain.status_code == 400
    assert "the namespace has no webhooks rules" in plain.json["error"]
    assert all_jobs(queue) == []
    assert queue.counters(COUNTER) == {"unknown_project": 2}


def test_each_project_has_its_own_rules(client, queue):
    assert deliver(client, "push", gh.push("refs/heads/feature"), project="docs").status_code == 202
    (job,) = all_jobs(queue)
    assert (job.namespace, job.job_type) == ("docs", "publish")


def test_get_is_not_a_delivery(client):
    response = client.get("/github/site")
    assert response.status_code == 405
    assert "error" in response.json


def test_every_result_is_counted(make_app, client, queue):
    deliver(client, "ping", gh.ping())
    deliver(client, "push", gh.push())
    delivery = gh.delivery_id()
    deliver(client, "push", gh.push("refs/heads/x"), delivery=delivery)
    deliver(client, "push", gh.push("refs/heads/x"), delivery=delivery)
    deliver(client, "push", gh.push(), secret="bad")
    deliver(client, "push", body=b"{")
    deliver(client, "push", gh.push(), project="nope")
    deliver(make_app(github_webhook_secret=None).test_client(), "push", gh.push())
    deliver(make_app(web_max_body=1024).test_client(), "push", gh.push())
    assert queue.counters(COUNTER) == {
        "ping": 1,
        "accepted": 1,
        "ignored": 1,
        "duplicate": 1,
        "bad_signature": 1,
        "bad_request": 1,
        "unknown_project": 1,
        "disabled": 1,
        "too_large": 1,
    }


def test_logs_name_the_delivery_but_never_the_secret_or_signature(client):
    body = gh.encode(gh.push())
    signature = gh.sign(SECRET, body)
    with capture_logs() as logs:
        deliver(client, "push", body=body, delivery="d-1")
        deliver(client, "push", body=body, delivery="d-2", secret="hunter2")
    accepted, refused = (e for e in logs if e["event"].startswith("github webhook"))
    assert accepted["delivery"] == "d-1"
    assert accepted["result"] == "accepted"
    assert refused["result"] == "bad_signature"
    text = repr(logs)
    for secret in (SECRET, signature, signature.removeprefix("sha256="), "hunter2"):
        assert secret not in text


# --- suppressed jobs -----------------------------------------------------------------------


@pytest.fixture
def slack_client(make_app, slack_emulator: EmulatorThread) -> FlaskClient:
    app = make_app(
        slack_bot_token=BOT_TOKEN, slack_app_token=APP_TOKEN, slack_api_url=slack_emulator.api_url
    )
    return app.test_client()


def test_a_suppressed_deploy_is_announced_with_how_to_run_it(
    slack_client, queue, emulator_client: EmulatorClient, settings
):
    now = time.time()
    queue.suppress("site", "deploy", now - 60, now + 3600, "U0ADMIN")
    response = deliver(slack_client, "pull_request", gh.pull_request(sender="bob"))
    assert response.status_code == 202
    deploy = next(j for j in response.json["jobs"] if j["job_type"] == "deploy")
    assert deploy["suppressed_until"] == pytest.approx(now + 3600)
    notice = emulator_client.wait_for_message(
        GENERAL_CHANNEL_ID, lambda m: "suppressed" in m["text"]
    )
    text = notice["text"]
    assert text.startswith(
        f"`site deploy` (job #{deploy['id']}, queued by GitHub: pull request #12"
    )
    assert "merged into main in hpe-hpc/stat by bob" in text
    assert f"is suppressed until {describe_time(now + 3600, settings.tz)}; it will run then" in text
    assert f"`@stat-bot cancel {deploy['id']}`" in text
    # The way to run it now is a real command that really lifts the suppression.
    command = re.search(r"lift the suppression: `@stat-bot ([^`]+)`", text)
    assert command
    configs = load_config(settings.job_configs)  # what the bot would match it against
    match = match_command(configs, command.group(1))
    result = perform(match, configs, queue, Requester(user="U0ADMIN"), settings.tz, now=time.time())
    assert "Suppression of `site deploy` cancelled" in result.text
    assert queue.suppressions(active_at=time.time()) == []
    # Only the suppressed job is announced (the notify job ran free).
    time.sleep(0.2)
    notices = [m for m in emulator_client.messages(GENERAL_CHANNEL_ID) if "suppressed" in m["text"]]
    assert len(notices) == 1


def test_a_suppressed_job_without_a_lifting_command_says_so(
    make_app, configure, queue, slack_emulator, emulator_client
):
    raw = {
        "docs": {
            "default_channel": "#general",
            "jobs": {"publish": {"run_args_template": "echo publish"}},
            "webhooks": [{"event": "push", "job_type": "publish"}],
        }
    }
    configure(raw)
    client = make_app(
        slack_bot_token=BOT_TOKEN, slack_app_token=APP_TOKEN, slack_api_url=slack_emulator.api_url
    ).test_client()
    now = time.time()
    queue.suppress("docs", "publish", now - 1, now + 600)
    assert deliver(client, "push", gh.push(), project="docs").status_code == 202
    notice = emulator_client.wait_for_message(
        GENERAL_CHANNEL_ID, lambda m: "suppressed" in m["text"]
    )
    assert "No command lifts this suppression" in notice["text"]
    assert "a cancel_suppression command for `publish` in job_configs.py would" in notice["text"]


def test_slack_failing_never_fails_the_webhook(make_app, configure, queue, slack_emulator):
    raw = {
        "docs": {
            "default_channel": "#no-such-channel",
            "jobs": {"publish": {"run_args_template": "echo publish"}},
            "webhooks": [{"event": "push", "job_type": "publish"}],
        }
    }
    configure(raw)
    client = make_app(
        slack_bot_token=BOT_TOKEN, slack_app_token=APP_TOKEN, slack_api_url=slack_emulator.api_url
    ).test_client()
    now = time.time()
    queue.suppress("docs", "publish", now - 1, now + 600)
    with capture_logs() as logs:
        response = deliver(client, "push", gh.push(), project="docs")
        assert response.status_code == 202
        failed = wait_for(
            lambda: [e for e in logs if "Slack did not take the notice" in e["event"]],
            lambda found: found,
            what="the failed notice to be logged",
        )
    assert "#no-such-channel" in failed[0]["reason"]
    assert "channel_not_found" in failed[0]["reason"]
    assert len(all_jobs(queue)) == 1


def test_slack_not_configured_is_logged_and_the_job_still_queued(client, queue):
    now = time.time()
    queue.suppress("site", "deploy", now - 1, now + 600)
    with capture_logs() as logs:
        response = deliver(client, "pull_request", gh.pull_request())
    assert response.status_code == 202
    assert len(all_jobs(queue)) == 2
    (warning,) = [e for e in logs if e["event"] == "suppressed webhook job: cannot tell Slack"]
    assert "Slack is not configured" in warning["reason"]
