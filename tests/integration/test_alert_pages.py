"""The dashboard's alert page and /api/alerts through Flask's test client, on the test's
real queue (SQLite and PostgreSQL): one ISO week of alerts with firings, an
acknowledgement and resolutions, as the webhooks and the Slack button record them."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from flask import Flask

from stat_bot.jobs.config import JobConfigs
from stat_bot.queue import Queue
from stat_bot.queue.alert_model import AlertEvent, AlertStatus
from tests.web_fixtures import WebSession

FIRING, RESOLVED = AlertStatus.FIRING, AlertStatus.RESOLVED
TITLE = 'NodeDown <script>alert("x")</script>'


def at(day: int, hour: int, minute: int = 0) -> float:
    """A moment in November 2026 (UTC); week 48 runs from Mon 23 to Mon 30."""
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC).timestamp()


@pytest.fixture
def web(make_web_app: Callable[..., Flask], configure: Callable[..., JobConfigs]) -> WebSession:
    configs = configure({"system": {"jobs": {"hello": {"run_args_template": "echo hi"}}}})
    return WebSession(make_web_app(configs=configs).test_client())


def seed(queue: Queue) -> None:
    def record(fp: str, status: AlertStatus, when: float, severity: str, service: str) -> None:
        title = TITLE if fp == "n" else f"{fp} alert"
        event = AlertEvent("alertmanager", fp, title, status, when, service, severity)
        queue.record_alerts([event], now=when)

    for day in (23, 24, 26):  # NodeDown: three firings, each resolved 30 min later
        record("n", FIRING, at(day, 8), "critical", "slurm")
        record("n", RESOLVED, at(day, 8, 30), "critical", "slurm")
    record("d", FIRING, at(24, 12), "warning", "lustre")
    record("w", FIRING, at(16, 12), "warning", "lustre")  # week 47
    disk = queue.alert_by_key("alertmanager", "d")
    assert disk is not None
    queue.acknowledge_alert(disk.id, "U0ALICE", at=at(24, 12, 10))


def test_the_page_needs_a_login_and_the_api_answers_401(web: WebSession, queue: Queue) -> None:
    assert web.get("/alerts?week=2026-W48").status_code == 302
    assert web.get("/api/alerts?week=2026-W48").status_code == 401


def test_a_week_of_alerts_in_numbers_and_a_chart(
    web: WebSession, web_user: tuple[str, str], queue: Queue
) -> None:
    seed(queue)
    assert web.login().status_code == 302
    response = web.get("/alerts?week=2026-W48")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert 'href="/alerts"' in html
    assert "Alerts: week 2026-W48" in html
    assert 'href="?week=2026-W47"' in html
    assert 'href="?week=2026-W49"' in html
    assert "Alerts fired <strong>4</strong> times." in html
    assert "median 10 min, p90 10 min" in html  # acknowledged 10 minutes after firing
    assert "median 30 min, p90 30 min" in html
    assert "NodeDown &lt;script&gt;" in html
    assert not re.search(r"<script(?![^>]*\bsrc=)", html)
    bars = re.findall(r'data-severity="(\w+)" data-day="([\d-]+)" data-count="(\d+)"', html)
    assert sorted(bars) == [
        ("critical", "2026-11-23", "1"),
        ("critical", "2026-11-24", "1"),
        ("critical", "2026-11-26", "1"),
        ("warning", "2026-11-24", "1"),
    ]
    assert 'style="' not in html  # the CSP allows no inline styles

    data = web.get("/api/alerts?week=2026-W48").get_json()
    assert data["firings"] == 4
    assert data["by_service"] == {"slurm": 3, "lustre": 1}
    assert data["by_severity"] == {"critical": 3, "warning": 1}
    assert [(a["title"], a["fired"]) for a in data["frequent"]] == [(TITLE, 3), ("d alert", 1)]
    assert data["frequent"][1]["acknowledged_by"] == "U0ALICE"
    assert (data["acknowledge"]["median"], data["resolve"]["p90"]) == (600.0, 1800.0)
    assert len(data["per_day"]) == 7

    earlier = web.get("/api/alerts?week=2026-W47").get_json()
    assert (earlier["firings"], earlier["frequent"][0]["title"]) == (1, "w alert")


@pytest.mark.parametrize(
    ("week", "words"),
    [
        ("2026-48", "write it as 2026-W48"),
        ("2026-W54", "2026 has no week 54"),
        ("x" * 300, "ISO week"),
        ("9999-W52", "give a year from 1971 to 9998"),  # its next week has no date
        ("0001-W01", "give a year from 1971 to 9998"),
    ],
)
def test_a_bad_week_is_refused_with_the_form_to_use(
    web: WebSession, web_user: tuple[str, str], queue: Queue, week: str, words: str
) -> None:
    web.login()
    page = web.get("/alerts", query_string={"week": week})
    assert page.status_code == 400
    assert words in page.get_data(as_text=True)
    api = web.get("/api/alerts", query_string={"week": week})
    assert api.status_code == 400
    assert words in api.get_json()["error"]
