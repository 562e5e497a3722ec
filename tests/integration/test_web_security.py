"""The web server's security promises, through Flask's test client on the real app.

The relay token's scope, login throttling, logout that ends the session on the server,
and oversized ids or values answered 400/404 (never 500).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask, url_for

from stat_bot.jobs.config import JobConfigs
from stat_bot.jobs.model import JobStatus
from stat_bot.queue.sqlite import SQLiteQueue
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
    values = {"job_id": job_id, "stream": "stdout", "project": "system", "filename": "app.css"}
    found = []
    with app.test_request_context():
        for rule in app.url_map.iter_rules():
            path = url_for(rule.endpoint, **{name: values[name] for name in rule.arguments})
            for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
                found.append((method, path))
    return found


# -- STAT_RELAY_TOKEN opens only the relay ----------------------------------------------------


def test_the_relay_token_is_refused_on_every_route_but_the_relay(
    token_app: Flask, queue: SQLiteQueue, settings: Settings
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
    token_app: Flask, queue: SQLiteQueue, configs: JobConfigs
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
    logged_in: WebSession, queue: SQLiteQueue, settings: Settings
) -> None:
    job = make_job(queue, settings, stdout="visible\n")
    assert logged_in.get(f"/jobs/{job.id}/logs/stdout").status_code == 200
    assert logged_in.get("/api/jobs").status_code == 200
    assert queue.get(job.id).status is JobStatus.SUCCEEDED  # type: ignore[union-attr]
