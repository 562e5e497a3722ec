"""The public status page and the dashboard's incident pages through Flask's test client.

The real app on the test's real queue (SQLite and PostgreSQL, see tests/conftest.py), with
incidents opened and changed the way the Slack side does it (Queue.open_incident /
update_incident). The browser side is in tests/e2e/test_status_page_browser.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask

from stat_bot.incidents.model import EntryKind, Incident, IncidentDraft, TimelineEntry
from stat_bot.jobs.config import JobConfigs
from stat_bot.jobs.model import JobStatus
from stat_bot.queue import Queue
from stat_bot.settings import Settings
from tests.integration.test_dashboard import make_job
from tests.web_fixtures import WEB_USER, WebSession

CONFIG = {"system": {"jobs": {"hello": {"run_args_template": "echo hi"}}}}
DESCRIPTION = 'GPFS <script>alert("x")</script> hangs & stalls'
CHANNEL = "inc-20270115-gpfs-hang-zebra"
USER, USER_NAME = "U0SECRETUSER", "adalovelace"
INTERNAL_LINKS = ("/schedules", "/console", "/dispatchers", "/deliveries", "/incidents", "Log out")


@pytest.fixture
def configs(configure: Callable[[dict[str, Any]], JobConfigs]) -> JobConfigs:
    return configure(CONFIG)


@pytest.fixture
def web(make_web_app: Callable[..., Flask], configs: JobConfigs) -> WebSession:
    return WebSession(make_web_app(configs=configs).test_client())


def open_incident(
    queue: Queue,
    *,
    xnames: tuple[str, ...],
    status: str = "investigating",
    ago: float = 3600,
    description: str = DESCRIPTION,
    channel_name: str = CHANNEL,
) -> Incident:
    return queue.open_incident(
        IncidentDraft(
            channel_id="C0SECRETCHAN",
            channel_name=channel_name,
            description=description,
            status=status,
            opened_by=USER,
            opened_by_name=USER_NAME,
            xnames=xnames,
            tickets=(4711,),
        ),
        entries=[
            TimelineEntry(EntryKind.OPENED, "opened the incident", user=USER, user_name=USER_NAME)
        ],
        now=queue.now() - ago,
    )


def resolve(queue: Queue, incident: Incident, *, ago: float = 60, **changes: Any) -> Incident:
    return queue.update_incident(
        incident.id,
        version=incident.version,
        changes={"status": "resolved", "resolved_at": queue.now() - ago, **changes},
        entries=[TimelineEntry(EntryKind.RESOLVED, "resolved", user=USER, user_name=USER_NAME)],
    )


def two_incidents(queue: Queue) -> tuple[Incident, Incident]:
    """One open on chassis x1000c3 (a node in it), one resolved on x3000c0."""
    current = open_incident(queue, xnames=("x1000c3s0b0n1",))
    old = open_incident(queue, xnames=("x3000c0s2b1n0",), ago=3 * 86400, channel_name="inc-old-one")
    return current, resolve(queue, old, ago=86400)


# -- the public page ---------------------------------------------------------------------------


def test_status_page_is_public_with_security_headers_and_no_internal_names(
    web: WebSession, queue: Queue
) -> None:
    current, old = two_incidents(queue)
    response = web.get("/status")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    assert "Content-Security-Policy" in response.headers
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Cache-Control"] == "public, max-age=10"
    assert "Set-Cookie" not in response.headers  # a public page starts no session
    assert '<meta name="robots" content="noindex">' in html
    assert not re.search(r"<script|\sstyle=|\son[a-z]+=", html)
    assert "Investigating: 1 open incident" in html
    assert f"Incident #{current.id}" in html
    assert f"Incident #{old.id}" in html
    assert "<code>x1000c3</code>" in html
    assert "<code>x3000c0</code>" in html
    for secret in (
        "GPFS",
        "hangs",
        CHANNEL,
        "inc-old-one",
        USER,
        USER_NAME,
        "4711",
        "s0b0n1",
        "C0SECRETCHAN",
    ):
        assert secret not in html, secret
    for link in INTERNAL_LINKS:
        assert link not in html, link


def test_status_feed_is_the_same_data_as_json_for_other_sites(
    web: WebSession, queue: Queue
) -> None:
    current, old = two_incidents(queue)
    response = web.get("/status.json", headers={"Origin": "https://elsewhere.example"})
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert response.headers["Cache-Control"] == "public, max-age=10"
    assert "Set-Cookie" not in response.headers
    assert "Content-Security-Policy" in response.headers
    data = response.get_json()
    assert data["title"] == "System status"
    assert data["state"] == "investigating"
    assert data["components"] == [
        {"name": "x1000", "kind": "cabinet", "state": "investigating"},
        {"name": "x1000c3", "kind": "chassis", "state": "investigating"},
    ]
    assert [(i["id"], i["status"], i["open"], i["components"]) for i in data["incidents"]] == [
        (current.id, "investigating", True, ["x1000", "x1000c3"]),
        (old.id, "resolved", False, ["x3000", "x3000c0"]),
    ]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", data["incidents"][1]["resolved_at"])
    text = response.get_data(as_text=True)
    for secret in ("GPFS", "script", CHANNEL, USER, USER_NAME, "4711", "s0b0n1", "s2b1n0"):
        assert secret not in text, secret


def test_a_logged_in_visitor_gets_the_same_cacheable_page_without_a_cookie(
    web: WebSession, web_user: tuple[str, str], queue: Queue
) -> None:
    """A shared cache may keep these answers: they must not carry anyone's session."""
    two_incidents(queue)
    anonymous = web.get("/status.json").get_json()
    assert web.login().status_code == 302
    for path in ("/status", "/status.json"):
        response = web.get(path)
        assert response.status_code == 200
        assert "Set-Cookie" not in response.headers, path
    html = web.get("/status").get_data(as_text=True)
    assert "Log out" not in html
    assert WEB_USER not in html
    logged_in = web.get("/status.json").get_json()
    assert {**logged_in, "updated_at": ""} == {**anonymous, "updated_at": ""}


def test_operational_and_older_resolved_incidents_drop_off(
    make_web_app: Callable[..., Flask],
    make_settings: Callable[..., Settings],
    configs: JobConfigs,
    queue: Queue,
) -> None:
    resolve(queue, open_incident(queue, xnames=("x1000c0",), ago=9 * 86400), ago=5 * 86400)
    client = make_web_app(make_settings(status_page_resolved_days=2), configs=configs).test_client()
    data = client.get("/status.json").get_json()
    assert (data["state"], data["summary"], data["incidents"]) == (
        "operational",
        "All systems operational",
        [],
    )
    assert "All systems operational" in client.get("/status").get_data(as_text=True)
    client = make_web_app(make_settings(status_page_resolved_days=7), configs=configs).test_client()
    assert [i["status"] for i in client.get("/status.json").get_json()["incidents"]] == ["resolved"]


def test_both_answer_404_when_disabled(
    make_web_app: Callable[..., Flask],
    make_settings: Callable[..., Settings],
    configs: JobConfigs,
    queue: Queue,
) -> None:
    two_incidents(queue)
    client = make_web_app(make_settings(status_page_enabled=False), configs=configs).test_client()
    page = client.get("/status")
    assert page.status_code == 404
    assert "Incident #" not in page.get_data(as_text=True)
    feed = client.get("/status.json")
    assert feed.status_code == 404
    assert feed.get_json() == {"error": "There is nothing here."}
    assert "Access-Control-Allow-Origin" not in feed.headers


def test_details_show_the_description_escaped_and_the_nodes(
    make_web_app: Callable[..., Flask],
    make_settings: Callable[..., Settings],
    configs: JobConfigs,
    queue: Queue,
) -> None:
    two_incidents(queue)
    settings = make_settings(status_page_details=True, status_page_title="Perlmutter <status>")
    client = make_web_app(settings, configs=configs).test_client()
    html = client.get("/status").get_data(as_text=True)
    assert "<title>Perlmutter &lt;status&gt;</title>" in html
    assert "GPFS &lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; hangs &amp; stalls" in html
    assert "<script" not in html
    assert "<code>x1000c3s0b0n1</code>" in html
    data = client.get("/status.json").get_json()
    assert data["incidents"][0]["description"] == DESCRIPTION
    assert data["incidents"][0]["nodes"] == ["x1000c3s0b0n1"]
    text = json.dumps(data)
    for secret in (CHANNEL, USER, USER_NAME, "4711"):
        assert secret not in text, secret


# -- the dashboard's incident pages ----------------------------------------------------------


@pytest.mark.parametrize("path", ["/incidents", "/incidents/1"])
def test_incident_pages_need_a_login(web: WebSession, queue: Queue, path: str) -> None:
    two_incidents(queue)
    response = web.get(path)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=")


@pytest.mark.parametrize("path", ["/api/incidents", "/api/incidents/1"])
def test_incident_apis_answer_401_when_logged_out(web: WebSession, queue: Queue, path: str) -> None:
    two_incidents(queue)
    response = web.get(path)
    assert response.status_code == 401
    assert "log in" in response.get_json()["error"]


def test_the_list_shows_open_incidents_first_with_roles_and_postmortem(
    web: WebSession, web_user: tuple[str, str], queue: Queue, make_settings: Any
) -> None:
    current, old = two_incidents(queue)
    queue.update_incident(current.id, version=None, changes={"roles": {"commander": "U0COMMANDER"}})
    queue.update_incident(
        old.id, version=None, changes={"postmortem": "https://wiki.example/Incidents/2027-01"}
    )
    assert web.login().status_code == 302
    html = web.get("/incidents").get_data(as_text=True)
    assert 'href="/incidents"' in html
    assert ">Incidents</a>" in html
    assert html.index(f'data-incident-id="{current.id}"') < html.index(
        f'data-incident-id="{old.id}"'
    )
    assert f"#{CHANNEL}" in html
    assert "GPFS &lt;script&gt;" in html
    assert "<script>alert" not in html
    assert "commander: U0COMMANDER" in html
    assert "open for 1.0 h" in html
    assert "lasted 2.0 d" in html
    assert '<a href="https://wiki.example/Incidents/2027-01">' in html
    assert not re.search(r"<script(?![^>]*\bsrc=)", html)

    data = web.get("/api/incidents").get_json()
    assert [(i["id"], i["open"]) for i in data["incidents"]] == [
        (current.id, True),
        (old.id, False),
    ]
    first = data["incidents"][0]
    assert (first["description"], first["roles"], first["xnames"], first["tickets"]) == (
        DESCRIPTION,
        {"commander": "U0COMMANDER"},
        ["x1000c3s0b0n1"],
        [4711],
    )
    assert first["url"] == f"/incidents/{current.id}"


def test_the_incident_page_shows_the_whole_timeline_with_links_to_jobs(
    web: WebSession, web_user: tuple[str, str], queue: Queue, settings: Settings
) -> None:
    incident, _ = two_incidents(queue)
    job = make_job(queue, settings, "system", "hello", status=JobStatus.FAILED)
    queue.update_incident(
        incident.id,
        version=None,
        changes={"jobs": (job.id,), "status": "identified"},
        entries=[
            TimelineEntry(EntryKind.STATUS, "status: identified", user="U2", user_name="grace"),
            TimelineEntry(EntryKind.NOTE, "<b>bold</b> guess", user="U2", user_name="grace"),
        ],
    )
    assert web.login().status_code == 302
    response = web.get(f"/incidents/{incident.id}")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert f"Incident #{incident.id}" in html
    assert 'class="status s-identified"' in html
    for text in ("opened the incident", "status: identified", "@grace", "@adalovelace"):
        assert text in html, text
    assert "&lt;b&gt;bold&lt;/b&gt; guess" in html
    assert f'<a class="job-link" href="/jobs/{job.id}">job #{job.id}</a>' in html
    assert f'href="/jobs/{job.id}"' in html
    assert html.index("opened the incident") < html.index("status: identified")

    data = web.get(f"/api/incidents/{incident.id}").get_json()
    kinds = [e["kind"] for e in data["timeline"]]
    assert kinds[0] == "opened"
    assert "job" in kinds
    assert "note" in kinds
    (job_entry,) = [e for e in data["timeline"] if e["kind"] == "job"]
    assert (job_entry["job_id"], job_entry["job_url"]) == (job.id, f"/jobs/{job.id}")
    assert "failed" in job_entry["text"]

    missing = web.get("/incidents/999999")
    assert missing.status_code == 404
    assert "No incident #999999" in missing.get_data(as_text=True)
    assert web.get("/api/incidents/999999").get_json()["error"].startswith("No incident #999999")
