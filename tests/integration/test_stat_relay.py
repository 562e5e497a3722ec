"""The STAT relay against a real app, queue and Slack emulator: /slack-proxy and /set-interval.

Tickets go through the real SlackPoster into the emulator's channel; "Slack down" is
the emulator answering HTTP 500 or a Slack URL on a closed port. Intervals are kept in
the real SQLite schedules table and read back by a new queue, app and dispatcher.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from structlog.testing import capture_logs

from stat_bot.dispatcher.schedules import config_rows
from stat_bot.integrations.slack_emulator import (
    ADMIN_USER_ID,
    APP_TOKEN,
    BOT_TOKEN,
    EmulatorClient,
    EmulatorThread,
)
from stat_bot.jobs.config import JobConfigs
from stat_bot.jobs.model import Source
from stat_bot.jobs.schedules import row_next_due
from stat_bot.queue import Queue, open_queue
from stat_bot.settings import Settings
from stat_bot.web.stat_relay import INTERVALS
from tests.integration.conftest import wait_until
from tests.peers import free_port
from tests.web_fixtures import WebSession

TOKEN = "relay-token-for-tests"
ORIGIN = "https://stat.example.org"
TICKET = {
    "summary": "Node will not boot",
    "type": "hardware",
    "priority": "HIGH",
    "xname": "x1000c0s0b0n0",
    "action": "new",
}
SCHEDULE = "trac.active-tickets"
CONFIG = {
    "trac": {
        "jobs": {"active-tickets": {"run_args_template": "true", "report_success": False}},
        "schedules": [
            {"cron": "0 8 * * *", "job_type": "active-tickets", "name": "active-tickets"}
        ],
    }
}
BEARER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def relay_settings(make_settings: Callable[..., Settings], slack_emulator: EmulatorThread):
    """Settings for a web server that reaches the emulator as its Slack."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "slack_bot_token": BOT_TOKEN,
            "slack_app_token": APP_TOKEN,
            "slack_api_url": slack_emulator.api_url,
            "stat_channel": "general",
            "stat_relay_token": TOKEN,
            "web_cors_origins": ORIGIN,
        }
        values.update(overrides)
        return make_settings(**values)

    return make


@pytest.fixture
def relay(
    make_web_app: Callable[..., Flask],
    relay_settings: Callable[..., Settings],
    web_user: tuple[str, str],
    configure: Callable[[dict[str, Any]], JobConfigs],
) -> Callable[..., WebSession]:
    """A logged-in session on an app made with `relay_settings(**overrides)`."""
    configure(CONFIG)  # the dashboard, where the session gets its CSRF token, needs one

    def make(**overrides: Any) -> WebSession:
        session = WebSession(make_web_app(relay_settings(**overrides)).test_client())
        assert session.login(*web_user).status_code == 302
        return session

    return make


def tickets(emulator_client: EmulatorClient) -> list[dict[str, Any]]:
    return [m for m in emulator_client.messages("general") if m.get("bot_id")]


# -- /slack-proxy -----------------------------------------------------------------------------


def test_a_valid_form_is_posted_to_the_stat_channel(relay, emulator_client, queue, web_user):
    response = relay().post_json("/slack-proxy", TICKET)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["ok"] is True
    assert body["channel"] == "general"
    (message,) = tickets(emulator_client)
    assert message["ts"] == body["ts"]
    assert "Node will not boot" in message["text"]
    (section,) = message["blocks"]
    fields = [f["text"] for f in section["fields"]]
    # Choices in the form's spelling, and who sent it.
    assert "*Type*\nHardware" in fields
    assert "*Priority*\nHigh" in fields
    assert f"*Submitted by*\n{web_user[0]}" in fields
    assert queue.counters("relay_requests") == {"posted": 1}


def test_the_relay_token_works_without_a_session_or_csrf(
    make_web_app, relay_settings, emulator_client
):
    client = make_web_app(relay_settings()).test_client()
    response = client.post("/slack-proxy", json=TICKET, headers=BEARER)
    assert response.status_code == 200, response.get_json()
    (message,) = tickets(emulator_client)
    assert "*Submitted by*\nrelay" in [f["text"] for f in message["blocks"][0]["fields"]]


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"summary": None}, "summary", "summary is required"),
        ({"summary": "   "}, "summary", "blank"),
        ({"summary": "x" * 201}, "summary", "at most 200"),
        ({"type": "Rumour"}, "type", "one of Bug, Feature Request"),
        ({"priority": "P0"}, "priority", "one of High, Medium, Low"),
        ({"action": "deleted"}, "action", "one of new, accepted"),
        ({"xname": "node12"}, "xname", "x1000c0s0b0n0"),
        ({"xname": None}, "xname", "xname is required"),
        ({"xname": 12}, "xname", "must be text"),
        ({"reporter": "bob"}, "reporter", "unknown field reporter"),
    ],
)
def test_each_kind_of_invalid_form_is_refused_naming_the_field(
    relay, emulator_client, queue, change, field, words
):
    body = {k: v for k, v in {**TICKET, **change}.items() if v is not None}
    response = relay().post_json("/slack-proxy", body)
    assert response.status_code == 400
    answer = response.get_json()
    assert answer["field"] == field
    assert words in answer["error"]
    assert tickets(emulator_client) == []  # nothing half-done: no message
    assert queue.counters("relay_requests") == {"invalid": 1}


@pytest.mark.parametrize(
    ("data", "content_type"),
    [("not json", "application/json"), ("[1, 2]", "application/json"), ("a=b", "text/plain")],
)
def test_a_body_that_is_not_a_json_object_is_refused(
    make_web_app, relay_settings, emulator_client, data, content_type
):
    client = make_web_app(relay_settings()).test_client()
    response = client.post("/slack-proxy", data=data, content_type=content_type, headers=BEARER)
    assert response.status_code == 400
    assert "JSON" in response.get_json()["error"]
    assert tickets(emulator_client) == []


def test_without_login_the_relay_answers_401(make_web_app, relay_settings, emulator_client):
    client = make_web_app(relay_settings()).test_client()
    assert client.post("/slack-proxy", json=TICKET).status_code == 401
    wrong = {"Authorization": "Bearer not-the-token"}
    response = client.post("/slack-proxy", json=TICKET, headers=wrong)
    assert response.status_code == 401
    assert "STAT_RELAY_TOKEN" in response.get_json()["error"]
    assert tickets(emulator_client) == []


def test_a_session_without_the_csrf_header_is_refused(relay, emulator_client):
    session = relay()
    response = session.client.post("/slack-proxy", json=TICKET)
    assert response.status_code == 400
    assert response.get_json()["field"] == "csrf_token"
    assert tickets(emulator_client) == []


def test_get_is_not_allowed(relay):
    response = relay().get("/slack-proxy")
    assert response.status_code == 405
    assert "error" in response.get_json()


def test_without_stat_channel_the_relay_answers_503_naming_it(relay, emulator_client, queue):
    response = relay(stat_channel=None).post_json("/slack-proxy", TICKET)
    assert response.status_code == 503
    assert "STAT_CHANNEL" in response.get_json()["error"]
    assert queue.counters("relay_requests") == {"not_configured": 1}


def test_slack_answering_500_gives_502_with_the_reason_logged(relay, emulator_client, queue):
    session = relay()
    emulator_client.server_error(count=5, methods=["chat.postMessage"])
    with capture_logs() as logs:
        started = time.monotonic()
        response = session.post_json("/slack-proxy", TICKET)
        took = time.monotonic() - started
    assert response.status_code == 502
    error = response.get_json()["error"]
    assert error.startswith("Slack refused a message to general")
    assert took < 5, f"the relay took {took:.1f} s to give up"  # one retry, not Slack's backoff
    (event,) = [e for e in logs if e["event"] == "STAT ticket not posted"]
    assert event["reason"] == error
    assert TOKEN not in repr(logs)
    assert BOT_TOKEN not in repr(logs)
    assert queue.counters("relay_requests") == {"slack_failed": 1}
    assert tickets(emulator_client) == []


def test_one_slack_hiccup_is_retried(relay, emulator_client):
    emulator_client.server_error(count=1, methods=["chat.postMessage"])
    response = relay().post_json("/slack-proxy", TICKET)
    assert response.status_code == 200, response.get_json()
    assert len(tickets(emulator_client)) == 1


def test_unreachable_slack_gives_502_quickly(relay, queue):
    session = relay(slack_api_url=f"http://127.0.0.1:{free_port()}/api/")
    started = time.monotonic()
    response = session.post_json("/slack-proxy", TICKET)
    took = time.monotonic() - started
    assert response.status_code == 502
    assert "could not be reached" in response.get_json()["error"]
    assert took < 5, f"the relay took {took:.1f} s to give up"


def test_a_channel_the_bot_is_not_in_gives_502_saying_to_invite_it(relay, emulator_client):
    emulator_client.add_channel("stat-tickets", members=[ADMIN_USER_ID])
    response = relay(stat_channel="stat-tickets").post_json("/slack-proxy", TICKET)
    assert response.status_code == 502
    error = response.get_json()["error"]
    assert "not_in_channel" in error
    assert "invite the bot to stat-tickets or change STAT_CHANNEL" in error


def test_without_slack_tokens_the_relay_says_what_to_set(make_web_app, make_settings, web_user):
    session = WebSession(make_web_app(make_settings(stat_channel="general")).test_client())
    session.login(*web_user)
    response = session.post_json("/slack-proxy", TICKET)
    assert response.status_code == 502
    assert "SLACK_BOT_TOKEN" in response.get_json()["error"]


# -- CORS -------------------------------------------------------------------------------------


def preflight(client: Any, path: str, origin: str) -> Any:
    return client.options(
        path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "Content-Type, Authorization, X-CSRFToken",
        },
    )


@pytest.mark.parametrize("path", ["/slack-proxy", "/set-interval"])
def test_a_preflight_from_an_allowed_origin_is_answered(make_web_app, relay_settings, path):
    client = make_web_app(relay_settings()).test_client()
    response = preflight(client, path, ORIGIN)
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    allowed = response.headers["Access-Control-Allow-Headers"].lower()
    for header in ("content-type", "authorization", "x-csrftoken"):
        assert header in allowed
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    assert "Access-Control-Allow-Credentials" not in response.headers


def test_a_preflight_from_another_origin_gets_no_cors_headers(make_web_app, relay_settings):
    client = make_web_app(relay_settings()).test_client()
    response = preflight(client, "/slack-proxy", "https://evil.example.com")
    assert "Access-Control-Allow-Origin" not in response.headers


def test_cross_origin_answers_carry_cors_headers_even_when_refused(
    make_web_app, relay_settings, emulator_client
):
    client = make_web_app(relay_settings()).test_client()
    headers = {**BEARER, "Origin": ORIGIN}
    ok = client.post("/slack-proxy", json=TICKET, headers=headers)
    assert ok.status_code == 200
    assert ok.headers["Access-Control-Allow-Origin"] == ORIGIN
    refused = client.post("/slack-proxy", json={**TICKET, "type": "?"}, headers=headers)
    assert refused.status_code == 400
    assert refused.headers["Access-Control-Allow-Origin"] == ORIGIN  # so the page can read why


def test_cors_is_only_on_the_relay_routes(make_web_app, relay_settings):
    client = make_web_app(relay_settings()).test_client()
    for path in ("/healthz", "/login"):
        response = client.get(path, headers={"Origin": ORIGIN})
        assert "Access-Control-Allow-Origin" not in response.headers, path


def test_no_cors_headers_when_no_origin_is_configured(make_web_app, relay_settings):
    client = make_web_app(relay_settings(web_cors_origins="")).test_client()
    response = preflight(client, "/slack-proxy", ORIGIN)
    assert not [h for h in response.headers if h[0].startswith("Access-Control-")]


# -- /set-interval ------------------------------------------------------------------------------


@pytest.fixture
def scheduled(configure: Callable[[dict[str, Any]], JobConfigs], queue: Queue) -> JobConfigs:
    """The active-tickets schedule, stored as a starting dispatcher stores it."""
    configs = configure(CONFIG)
    queue.sync_schedules(config_rows(configs))
    return configs


def stored(queue: Queue) -> Any:
    (row,) = [r for r in queue.schedules() if r.key == SCHEDULE]
    return row


def test_get_shows_the_configured_cron_when_nothing_was_set(relay, scheduled, settings, queue):
    response = relay().get("/set-interval")
    assert response.status_code == 200
    body = response.get_json()
    assert body["schedule"] == SCHEDULE
    assert body["interval"] is None
    assert body["interval_seconds"] is None
    assert body["cron"] == "0 8 * * *"
    assert body["next_fire_at"] == row_next_due(stored(queue), settings.tz, time.time())


@pytest.mark.parametrize(("name", "seconds"), INTERVALS.items())
def test_each_interval_is_stored_and_answered(relay, scheduled, queue, name, seconds):
    before = time.time()
    response = relay().post_json("/set-interval", {"interval": name})
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["interval"] == name
    assert body["interval_seconds"] == seconds
    assert before + seconds <= body["next_fire_at"] <= time.time() + seconds
    row = stored(queue)
    assert row.interval_seconds == seconds
    assert body["next_fire_at"] == row.interval_since + seconds


def test_minutes_and_a_form_post_work_too(relay, scheduled, queue):
    session = relay()
    response = session.post_json("/set-interval", {"minutes": 90})
    assert response.get_json()["interval"] is None
    assert response.get_json()["interval_seconds"] == 5400
    response = session.post("/set-interval", data={"interval": "2h"})  # csrf_token in the form
    assert response.status_code == 200, response.get_json()
    assert stored(queue).interval_seconds == 7200
    response = session.post_json("/set-interval", {"interval": 60})  # HPC-STAT's page: minutes
    assert response.get_json()["interval"] == "1h"


def test_default_goes_back_to_the_cron(relay, scheduled, queue, settings):
    session = relay()
    session.post_json("/set-interval", {"interval": "5h"})
    response = session.post_json("/set-interval", {"interval": "default"})
    assert response.status_code == 200
    body = response.get_json()
    assert body["interval"] is None
    assert body["interval_seconds"] is None
    row = stored(queue)
    assert row.interval_seconds is None
    assert body["next_fire_at"] == row_next_due(row, settings.tz, time.time())


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"interval": "3h"}, "interval"),
        ({"interval": ""}, "interval"),
        ({"minutes": 1}, "minutes"),
        ({"minutes": "often"}, "minutes"),
        ({}, "interval"),
        ([], "interval"),
        ({"interval": "1h", "schedule": "other"}, "schedule"),
    ],
)
def test_invalid_intervals_are_refused_and_change_nothing(relay, scheduled, queue, body, field):
    session = relay()
    session.post_json("/set-interval", {"interval": "2h"})
    response = session.post_json("/set-interval", body)
    assert response.status_code == 400
    assert response.get_json()["field"] == field
    assert stored(queue).interval_seconds == 7200


def test_an_unknown_schedule_is_404_saying_where_to_define_it(relay, configure, queue):
    configure(CONFIG)  # configured, but no dispatcher has stored it yet
    session = relay(active_tickets_schedule="trac.nightly")
    for response in (
        session.get("/set-interval"),
        session.post_json("/set-interval", {"interval": "1h"}),
    ):
        assert response.status_code == 404
        error = response.get_json()["error"]
        assert "'trac.nightly'" in error
        assert "ACTIVE_TICKETS_SCHEDULE" in error
        assert "job_configs.py" in error
        assert "dispatcher" in error


def test_set_interval_needs_a_login(make_web_app, relay_settings, scheduled, queue):
    client = make_web_app(relay_settings()).test_client()
    assert client.get("/set-interval").status_code == 401
    assert client.post("/set-interval", json={"interval": "1h"}).status_code == 401
    assert stored(queue).interval_seconds is None
    response = client.post("/set-interval", json={"interval": "1h"}, headers=BEARER)
    assert response.status_code == 200


def test_the_interval_survives_a_restart(
    relay, scheduled, settings, make_web_app, relay_settings, web_user
):
    relay().post_json("/set-interval", {"interval": "5h"})
    # A new queue object and a new app on the same database, as after a restart.
    fresh = open_queue(settings)
    try:
        # A dispatcher starting again syncs the config: the web-set interval is kept.
        fresh.sync_schedules(config_rows(scheduled))
        session = WebSession(make_web_app(relay_settings(), queue=fresh).test_client())
        session.login(*web_user)
        body = session.get("/set-interval").get_json()
        assert body["interval"] == "5h"
        (row,) = fresh.schedules()
        assert body["next_fire_at"] == row.interval_since + 5 * 3600
    finally:
        fresh.close()


def test_a_dispatcher_fires_at_the_interval_set(scheduled, queue, thread_dispatcher):
    # A daily cron, overridden by a 1-second interval (the web's floor is 5 minutes;
    # the queue takes any): the dispatcher fires at since + k seconds, not at the cron.
    row = queue.set_schedule(SCHEDULE, interval_seconds=1)
    assert row is not None
    assert row.interval_since is not None
    thread_dispatcher(scheduled)

    def fired() -> list[float]:
        return sorted(
            j.created_at
            for j in queue.jobs(limit=100)
            if j.source == Source.SCHEDULE and j.job_type == "active-tickets"
        )

    times = wait_until(lambda: len(fired()) >= 2 and fired(), timeout=10, what="two fires")
    for t in times:
        k = t - row.interval_since
        assert k >= 1, (t, row.interval_since)
        assert k == int(k), (t, row.interval_since)


def test_a_database_failure_is_503_and_changes_nothing(
    make_web_app, relay_settings, configure, unmigrated_queue
):
    configure(CONFIG)
    # A database without STAT bot's tables (DATABASE_URL pointing at the wrong one).
    client = make_web_app(relay_settings(), queue=unmigrated_queue).test_client()
    for response in (
        client.get("/set-interval", headers=BEARER),
        client.post("/set-interval", json={"interval": "1h"}, headers=BEARER),
    ):
        assert response.status_code == 503
        error = response.get_json()["error"]
        assert "queue database is not available" in error
        assert "nothing was changed" in error


def test_a_ticket_is_posted_even_when_it_cannot_be_counted(
    make_web_app, relay_settings, emulator_client, unmigrated_queue
):
    # No tables to count in.
    client = make_web_app(relay_settings(), queue=unmigrated_queue).test_client()
    with capture_logs() as logs:
        response = client.post("/slack-proxy", json=TICKET, headers=BEARER)
    assert response.status_code == 200, response.get_json()
    assert len(tickets(emulator_client)) == 1
    assert [e["result"] for e in logs if e["event"] == "relay request not counted"] == ["posted"]
