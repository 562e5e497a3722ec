"""The web server's security promises, through Flask's test client on the real app.

The relay token's scope, login throttling, logout that ends the session on the server,
and oversized ids or values answered 400/404 (never 500).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask, url_for
from structlog.testing import capture_logs

from stat_bot.jobs.config import JobConfigs
from stat_bot.jobs.model import JobStatus
from stat_bot.queue import Queue
from stat_bot.settings import Settings
from tests.integration.test_dashboard import CONFIG, make_job
from tests.web_fixtures import WebSession

TOKEN = "relay-token-for-security-tests"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
RELAY_PATHS = {"/slack-proxy", "/set-interval"}


@pytest.fixture
def configs(configure: Callable[[dict[str, Any]], JobConfigs]) -> JobConfigs:
    return configure(CONFIG)


@pytest.fixture
def web_app(make_web_app: Callable[..., Flask], configs: JobConfigs) -> Flask:
    return make_web_app(configs=configs)


@pytest.fixture
def token_app(
    make_web_app: Callable[..., Flask],
    make_settings: Callable[..., Settings],
    configs: JobConfigs,
) -> Flask:
    settings = make_settings(
        stat_relay_token=TOKEN, active_tickets_schedule="system.active-tickets"
    )
    return make_web_app(settings, configs=configs)


def concrete_paths(app: Flask, job_id: int) -> list[tuple[str, str]]:
    """Every route of the app as (method, path), placeholders filled with real values."""
    values = {
        "job_id": job_id,
        "incident_id": 1,
        "stream": "stdout",
        "project": "system",
        "filename": "app.css",
    }
    found = []
    with app.test_request_context():
        for rule in app.url_map.iter_rules():
            path = url_for(rule.endpoint, **{name: values[name] for name in rule.arguments})
            for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
                found.append((method, path))
    return found


# -- STAT_RELAY_TOKEN opens only the relay ----------------------------------------------------


def test_the_relay_token_is_refused_on_every_route_but_the_relay(
    token_app: Flask, queue: Queue, settings: Settings
) -> None:
    job = make_job(queue, settings, args={"name": "secret-arg"}, stdout="secret output\n")
    client = token_app.test_client()
    routes = concrete_paths(token_app, job.id)
    paths = {path for _, path in routes}
    # The routes that leaked before: the jobs API, job pages and log downloads.
    for leaked in (
        "/api/jobs",
        f"/api/jobs/{job.id}",
        f"/jobs/{job.id}",
        f"/jobs/{job.id}/logs/stdout",
    ):
        assert leaked in paths
    checked = 0
    for method, path in routes:
        if path in RELAY_PATHS:
            continue
        response = client.open(path, method=method, headers=BEARER)
        assert response.status_code in (401, 403), (method, path, response.status_code)
        text = response.get_data(as_text=True)
        assert "secret output" not in text, (method, path)
        assert "secret-arg" not in text, (method, path)
        checked += 1
    assert checked >= 15
    # The pages and the API name what the token is for.
    response = client.get(f"/jobs/{job.id}/logs/stdout", headers=BEARER)
    assert response.status_code == 403
    assert "/slack-proxy and /set-interval" in response.get_data(as_text=True)
    assert (
        client.get("/api/jobs", headers=BEARER)
        .get_json()["error"]
        .startswith("STAT_RELAY_TOKEN opens only")
    )


def test_the_relay_token_still_opens_the_relay(
    token_app: Flask, queue: Queue, configs: JobConfigs
) -> None:
    from stat_bot.dispatcher.schedules import config_rows

    queue.sync_schedules(config_rows(configs))
    client = token_app.test_client()
    response = client.get("/set-interval", headers=BEARER)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["schedule"] == "system.active-tickets"
    # The slack proxy answers past authentication (400: the form is empty).
    response = client.post("/slack-proxy", json={}, headers=BEARER)
    assert response.status_code == 400, response.get_json()


def test_a_logged_in_session_still_reads_everything(
    logged_in: WebSession, queue: Queue, settings: Settings
) -> None:
    job = make_job(queue, settings, stdout="visible\n")
    assert logged_in.get(f"/jobs/{job.id}/logs/stdout").status_code == 200
    assert logged_in.get("/api/jobs").status_code == 200
    assert queue.get(job.id).status is JobStatus.SUCCEEDED  # type: ignore[union-attr]


# -- logout ends the session on the server ----------------------------------------------------


def test_a_cookie_copied_before_logout_no_longer_works(
    web_app: Flask, web_user: tuple[str, str], queue: Queue, settings: Settings
) -> None:
    job = make_job(queue, settings, stdout="private\n")
    session = WebSession(web_app.test_client())
    assert session.login(*web_user).status_code == 302
    cookie = session.client.get_cookie("stat_bot_session")
    assert cookie is not None
    copy = web_app.test_client()
    copy.set_cookie("stat_bot_session", cookie.value)
    assert copy.get(f"/jobs/{job.id}").status_code == 200  # the copy works while logged in
    assert session.post("/logout").status_code == 302
    # The copy still holds the signed cookie, but the server ended the session.
    assert copy.get(f"/jobs/{job.id}").status_code == 302
    assert copy.get("/api/jobs").status_code == 401
    assert session.get("/").status_code == 302
    # Logging in again gives a new session that works; the old cookie stays dead.
    assert session.login(*web_user).status_code == 302
    assert session.get("/").status_code == 200
    assert copy.get("/api/jobs").status_code == 401


def test_two_sessions_of_one_user_end_separately(web_app: Flask, web_user: tuple[str, str]) -> None:
    first, second = WebSession(web_app.test_client()), WebSession(web_app.test_client())
    assert first.login(*web_user).status_code == 302
    assert second.login(*web_user).status_code == 302
    assert first.post("/logout").status_code == 302
    assert first.get("/api/jobs").status_code == 401
    assert second.get("/api/jobs").status_code == 200


def test_a_cookie_naming_the_user_is_not_a_session(
    web_app: Flask, web_user: tuple[str, str]
) -> None:
    """Flask-Login's id in the cookie is a server-side session id, not the user's name."""
    client = web_app.test_client()
    with client.session_transaction() as cookie:
        cookie["_user_id"] = web_user[0]
        cookie["_fresh"] = True
    assert client.get("/api/jobs").status_code == 401


# -- login throttling ---------------------------------------------------------------------


@pytest.fixture
def throttled_app(
    make_web_app: Callable[..., Flask], make_settings: Callable[..., Settings], configs: JobConfigs
) -> Flask:
    settings = make_settings(
        web_login_limit_user="3 per minute", web_login_limit_address="5 per minute"
    )
    return make_web_app(settings, configs=configs)


def login_as(session: WebSession, name: str, password: str, address: str = "10.0.0.1") -> Any:
    return session.client.post(
        "/login",
        data={"username": name, "password": password, "csrf_token": session.csrf()},
        environ_base={"REMOTE_ADDR": address},
    )


def test_failed_logins_are_throttled_per_user_with_retry_after(
    throttled_app: Flask, web_user: tuple[str, str]
) -> None:
    name, password = web_user
    session = WebSession(throttled_app.test_client())
    with capture_logs() as logs:
        for _ in range(3):
            assert login_as(session, name, "wrong password").status_code == 401
        refused = login_as(session, name, password)  # even the right password, for now
    assert refused.status_code == 429
    retry = int(refused.headers["Retry-After"])
    assert 0 < retry <= 60
    assert "Too many failed logins" in refused.get_data(as_text=True)
    assert session.get("/").status_code == 302  # not logged in
    # Another user from another address is not held up by this one's failures.
    other = WebSession(throttled_app.test_client())
    assert login_as(other, "nobody", "wrong password", "10.0.0.2").status_code == 401
    events = [e["event"] for e in logs]
    assert events.count("web login refused") == 3
    assert "web login throttled" in events
    assert password not in repr(logs)
    assert "wrong password" not in repr(logs)


def test_failed_logins_are_throttled_per_address(
    throttled_app: Flask, web_user: tuple[str, str]
) -> None:
    session = WebSession(throttled_app.test_client())
    for n in range(5):  # different names, one address: under the per-user limit each time
        assert login_as(session, f"user{n}", "wrong password").status_code == 401
    refused = login_as(session, web_user[0], web_user[1])
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) > 0
    # The same user from another address gets in.
    assert login_as(session, web_user[0], web_user[1], "10.0.0.9").status_code == 302


def test_successful_logins_are_not_counted(throttled_app: Flask, web_user: tuple[str, str]) -> None:
    for _ in range(8):
        session = WebSession(throttled_app.test_client())
        with capture_logs() as logs:
            assert login_as(session, *web_user).status_code == 302
        assert [e["event"] for e in logs if e["event"].startswith("web login")] == ["web login"]


def test_the_throttle_is_shared_by_every_app_on_one_queue(
    make_web_app: Callable[..., Flask],
    make_settings: Callable[..., Settings],
    configs: JobConfigs,
    web_user: tuple[str, str],
    queue: Queue,
) -> None:
    """Two apps (two gunicorn workers) count into the same queue table."""
    settings = make_settings(web_login_limit_user="3 per minute")
    one = WebSession(make_web_app(settings, configs=configs).test_client())
    two = WebSession(make_web_app(settings, configs=configs).test_client())
    assert login_as(one, web_user[0], "wrong password").status_code == 401
    assert login_as(two, web_user[0], "wrong password").status_code == 401
    assert login_as(one, web_user[0], "wrong password").status_code == 401
    assert login_as(two, *web_user).status_code == 429
    queue.throttle_clear()
    assert login_as(two, *web_user).status_code == 302


def test_a_bad_rate_limit_setting_is_named(make_settings: Callable[..., Settings]) -> None:
    from stat_bot.settings import SettingsError

    with pytest.raises((SettingsError, ValueError), match="not a rate limit"):
        make_settings(web_login_limit_user="lots")


# -- oversized ids and values: 400/404, never 500 -----------------------------------------------

HUGE_IDS = ["99999999999999999999999", "9223372036854775808", "9" * 5000]


@pytest.mark.parametrize("huge", HUGE_IDS, ids=["23 digits", "2**63", "5000 digits"])
def test_oversized_job_ids_are_404(logged_in: WebSession, huge: str) -> None:
    client = logged_in.client
    for path in (f"/jobs/{huge}", f"/jobs/{huge}/logs/stdout", f"/api/jobs/{huge}"):
        assert client.get(path).status_code == 404, path
    assert logged_in.post(f"/jobs/{huge}/cancel").status_code == 404


def test_the_largest_job_id_is_an_ordinary_not_found(logged_in: WebSession) -> None:
    response = logged_in.get("/api/jobs/9223372036854775807")
    assert response.status_code == 404
    assert "no job #9223372036854775807" in response.get_json()["error"]


def test_oversized_query_and_form_values_are_answered_without_a_500(
    logged_in: WebSession, queue: Queue, settings: Settings
) -> None:
    make_job(queue, settings)
    huge = "x" * 200_000
    digits = "9" * 5000
    gets = [
        ("/", {"namespace": huge}),
        ("/api/jobs", {"namespace": huge}),
        ("/api/jobs", {"status": huge}),
        ("/api/jobs", {"status": [huge] * 50}),
        ("/charts", {"hours": digits}),
        ("/charts", {"hours": huge}),
        ("/api/console/feed", {"cursor": digits}),
        ("/login", {"next": huge}),
    ]
    for path, query in gets:
        response = logged_in.get(path, query_string=query)
        assert response.status_code < 500, (path, list(query))
        assert len(response.get_data()) < 50_000, (path, list(query))  # not echoed back
    api = logged_in.get("/api/jobs", query_string={"status": huge})
    assert api.status_code == 400
    assert "characters" in api.get_json()["error"]  # an excerpt of it, saying how long it was
    login = WebSession(logged_in.client.application.test_client())
    refused = login_as(login, huge, huge)
    assert refused.status_code == 401
    assert len(refused.get_data()) < 50_000
    posts = [
        ("/schedules/enabled", {"key": huge, "enabled": "on"}),
        ("/schedules/enabled", {"key": "k", "enabled": huge}),
        ("/suppressions/cancel", {"namespace": huge, "job_type": huge}),
    ]
    for path, form in posts:
        response = logged_in.post(path, data=form)
        assert response.status_code < 500, path
        assert len(response.get_data()) < 50_000, path


SECURITY_HEADERS = (
    "X-Content-Type-Options",
    "X-Frame-Options",
    "Referrer-Policy",
    "Content-Security-Policy",
)


def test_every_answer_gets_the_security_headers_once_and_a_routes_own_is_kept(
    web_app: Flask,
) -> None:
    @web_app.get("/framed-on-purpose")
    def framed() -> Any:
        return "", 200, {"x-frame-options": "SAMEORIGIN"}  # its own, in another case

    client = web_app.test_client()
    for response in (client.get("/framed-on-purpose"), client.post("/github/system")):
        for name in SECURITY_HEADERS:
            assert len(response.headers.getlist(name)) == 1, (response.request.path, name)
    assert client.get("/framed-on-purpose").headers["X-Frame-Options"] == "SAMEORIGIN"
    assert client.post("/github/system").headers["X-Frame-Options"] == "DENY"


def test_error_answers_get_the_security_headers_too(
    web_app: Flask, make_web_app: Callable[..., Flask], make_settings: Callable[..., Settings]
) -> None:
    """Added on the way out of the whole app, so no answer Flask makes goes without them."""
    client = web_app.test_client()
    signed = make_web_app(make_settings(github_webhook_secret="s3cret")).test_client()
    too_large = b"x" * (web_app.config["MAX_CONTENT_LENGTH"] + 1)
    answers = {
        "not found": client.get("/no-such-page"),
        "wrong method": client.get("/github/system"),
        "too large": signed.post("/github/system", data=too_large),
        "login redirect": client.get("/"),
    }
    assert [answers[k].status_code for k in answers] == [404, 405, 413, 302]
    for what, response in answers.items():
        for name in SECURITY_HEADERS:
            assert len(response.headers.getlist(name)) == 1, (what, name)
        assert "Strict-Transport-Security" not in response.headers, what
    secure = make_web_app(make_settings(web_secure_cookies=True)).test_client()
    assert secure.get("/no-such-page").headers["Strict-Transport-Security"] == "max-age=31536000"


def test_an_answer_to_a_request_without_cookies_sets_none_and_does_not_vary_by_them(
    web_app: Flask, web_user: tuple[str, str]
) -> None:
    client = web_app.test_client()
    for response in (client.post("/github/system"), client.get("/healthz")):
        assert "Set-Cookie" not in response.headers, response.request.path
        assert "Cookie" not in response.headers.get("Vary", ""), response.request.path
    # A browser's session still works: the login page sets the cookie, the login uses it.
    web = WebSession(web_app.test_client())
    assert "Set-Cookie" in web.client.get("/login").headers
    assert web.login(*web_user).status_code == 302
    assert web.client.get("/").status_code == 200
