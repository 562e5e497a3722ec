"""The dashboard through Flask's test client: the real app, a real SQLite queue, CSRF on.

Jobs are put into the queue the way the dispatcher does (enqueue, claim, start
with a log folder, finish), so the pages read exactly what a running service
leaves behind. The browser side (scripts, live updates) is in
tests/e2e/test_dashboard_browser.py.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from stat_bot.dispatcher.schedules import config_rows
from stat_bot.integrations.slack_emulator import EmulatorClient, EmulatorThread
from stat_bot.jobs.config import JobConfigs
from stat_bot.jobs.model import Job, JobRequest, JobStatus, Source
from stat_bot.local_slack import local_slack_file, write_local_slack_file
from stat_bot.queue import Queue
from stat_bot.settings import Settings
from stat_bot.web.stat_relay import PRIORITIES, TICKET_TYPES
from tests.web_fixtures import WEB_PASSWORD, WEB_USER, WebSession

CONFIG = {
    "system": {
        "description": "Examples",
        "jobs": {
            "hello": {"run_args_template": "echo Hello {name}", "report_stdout": True},
            "uptime": {"run_args_template": "uptime", "report_stdout": True},
        },
        "slack": [
            {"command": "hello [name]", "action": "schedule_job", "job_type": "hello"},
        ],
        "schedules": [
            {"cron": "0 * * * *", "job_type": "uptime", "name": "active-tickets"},
            {"cron": "30 6 * * *", "job_type": "uptime", "name": "morning"},
        ],
    },
    "ops": {
        "jobs": {"check": {"run_args_template": "true"}},
    },
}

PAGES = [
    "/",
    "/jobs/1",
    "/jobs/1/logs/stdout",
    "/schedules",
    "/ticket",
    "/charts",
    "/console",
    "/dispatchers",
]
APIS = ["/api/jobs", "/api/jobs/1", "/api/console/feed", "/api/dispatchers"]


@pytest.fixture
def configs(configure: Callable[[dict[str, Any]], JobConfigs]) -> JobConfigs:
    return configure(CONFIG)


@pytest.fixture
def app(make_web_app: Callable[..., Flask], configs: JobConfigs) -> Flask:
    return make_web_app(configs=configs)


@pytest.fixture
def web(app: Flask) -> WebSession:
    return WebSession(app.test_client())


def make_job(
    queue: Queue,
    settings: Settings,
    namespace: str = "system",
    job_type: str = "hello",
    *,
    args: dict[str, str] | None = None,
    status: JobStatus = JobStatus.SUCCEEDED,
    stdout: str = "",
    stderr: str = "",
    ran_for: float = 0.5,
    **request: Any,
) -> Job:
    """A job as the dispatcher leaves it: queued, or claimed, started with logs and finished."""
    result = queue.enqueue(
        JobRequest(namespace, job_type, args or {}, coalesce=False, concurrency=100, **request)
    )
    job = result.job
    if status is JobStatus.QUEUED:
        return job
    # The queue's clock, as a dispatcher claims by: on PostgreSQL it is the server's, read
    # now and then and carried on by this host's monotonic clock, so it can be a little
    # ahead of time.time() and a job queued just now not yet due by the latter.
    now = queue.now()
    (claimed,) = [j for j in queue.claim("test-worker", 100, now=now) if j.id == job.id]
    log_dir = settings.logs_dir / namespace / job_type / str(job.id)  # type: ignore[operator]
    log_dir.mkdir(parents=True)
    (log_dir / "stdout").write_text(stdout)
    (log_dir / "stderr").write_text(stderr)
    queue.mark_started(claimed.id, os.getpid(), str(log_dir))
    if status is not JobStatus.RUNNING:
        queue.finish(
            claimed.id, status, 0 if status is JobStatus.SUCCEEDED else 1, now=now + ran_for
        )
    found = queue.get(job.id)
    assert found is not None
    return found


def rows_of(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'<tr data-job-id="(\d+)"', html)]


# -- login, CSRF, headers, cookies ------------------------------------------------------------


@pytest.mark.parametrize("path", PAGES)
def test_every_page_redirects_to_login_when_logged_out(web: WebSession, path: str) -> None:
    response = web.get(path)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=")


@pytest.mark.parametrize("path", APIS)
def test_json_routes_answer_401_when_logged_out(web: WebSession, path: str) -> None:
    response = web.get(path)
    assert response.status_code == 401
    assert "log in" in response.get_json()["error"]


def test_login_then_every_page_renders_without_inline_script_or_style(
    web: WebSession, web_user: tuple[str, str], queue: Queue, settings: Settings
) -> None:
    job = make_job(queue, settings, stdout="hi\n")
    assert web.login().status_code == 302
    pages = ["/", f"/jobs/{job.id}", "/schedules", "/ticket", "/charts", "/console"]
    for path in [*pages, "/dispatchers"]:
        response = web.get(path)
        assert response.status_code == 200, path
        html = response.get_data(as_text=True)
        # The CSP allows scripts and styles only from files: none may be inline.
        assert not re.search(r"<script(?![^>]*\bsrc=)", html), path
        assert not re.search(r"<style|\sstyle=", html), path
        assert not re.search(r"\son[a-z]+=", html), path  # no inline event handlers
        assert 'name="csrf-token"' in html


def test_wrong_password_is_refused_and_says_so(web: WebSession, web_user: tuple[str, str]) -> None:
    response = web.login(WEB_USER, "not the password")
    assert response.status_code == 401
    assert "Wrong user name or password" in response.get_data(as_text=True)
    assert web.get("/").status_code == 302


def test_a_user_name_with_a_nul_byte_is_a_wrong_login_not_an_error(
    web: WebSession, web_user: tuple[str, str]
) -> None:
    for _ in range(2):  # the second hit updates the throttle's row for the name
        response = web.login("ada\x00admin", "not the password")
        assert response.status_code == 401
        assert "Wrong user name or password" in response.get_data(as_text=True)


def test_login_page_says_how_to_create_the_first_user(web: WebSession) -> None:
    html = web.get("/login").get_data(as_text=True)
    assert "stat-bot web-user add NAME" in html


@pytest.mark.parametrize(
    ("target", "landing"),
    [
        ("/schedules", "/schedules"),
        ("https://evil.example/", "/"),
        ("//evil.example/x", "/"),
        ("http:/evil.example", "/"),
    ],
)
def test_login_next_goes_only_to_this_site(
    web: WebSession, web_user: tuple[str, str], target: str, landing: str
) -> None:
    response = web.client.post(
        "/login",
        query_string={"next": target},
        data={"username": WEB_USER, "password": WEB_PASSWORD, "csrf_token": web.csrf()},
    )
    assert response.status_code == 302
    assert response.headers["Location"] == landing


def test_login_without_csrf_token_is_refused(web: WebSession, web_user: tuple[str, str]) -> None:
    response = web.client.post("/login", data={"username": WEB_USER, "password": WEB_PASSWORD})
    assert response.status_code == 400
    assert web.get("/").status_code == 302


def test_state_changes_are_post_only_and_need_the_csrf_token(
    logged_in: WebSession, queue: Queue, settings: Settings, configs: JobConfigs
) -> None:
    job = make_job(queue, settings, status=JobStatus.QUEUED)
    queue.sync_schedules(config_rows(configs))
    queue.suppress("system", "hello", time.time(), time.time() + 600)
    client = logged_in.client
    changes = [
        (f"/jobs/{job.id}/cancel", {}),
        ("/schedules/enabled", {"key": "system.morning", "enabled": "off"}),
        ("/suppressions/cancel", {"namespace": "system", "job_type": "hello"}),
        ("/logout", {}),
    ]
    for path, form in changes:
        assert client.get(path).status_code == 405, path
        refused = client.post(path, data=form)
        assert refused.status_code == 400, path
        assert "CSRF" in refused.get_data(as_text=True)
    # Nothing changed.
    current = queue.get(job.id)
    assert current is not None
    assert current.status is JobStatus.QUEUED
    assert all(s.enabled for s in queue.schedules())
    assert len(queue.suppressions(active_at=time.time())) == 1
    # JSON state changes need the X-CSRFToken header.
    refused = client.post("/api/console/post", json={"text": "hi"})
    assert refused.status_code == 400
    assert refused.get_json()["field"] == "csrf_token"


def test_security_headers_on_pages(logged_in: WebSession) -> None:
    response = logged_in.get("/")
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp
    assert "style-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert "Strict-Transport-Security" not in response.headers


def _session_cookie(response: Any) -> str:
    cookies = [c for c in response.headers.getlist("Set-Cookie") if "stat_bot_session=" in c]
    assert cookies, response.headers
    return cookies[-1]


def test_session_cookie_is_httponly_and_samesite(
    web: WebSession, web_user: tuple[str, str]
) -> None:
    cookie = _session_cookie(web.login())
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert "Secure" not in cookie  # plain http on a laptop: a Secure cookie would never return


def test_session_cookie_is_secure_behind_tls(
    make_settings: Callable[..., Settings],
    make_web_app: Callable[..., Flask],
    configs: JobConfigs,
    web_user: tuple[str, str],
) -> None:
    app = make_web_app(make_settings(web_secure_cookies=True), configs=configs)
    web = WebSession(app.test_client())
    response = web.login()
    cookie = _session_cookie(response)
    assert "Secure" in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    page = web.client.get("/", base_url="https://localhost")
    assert page.status_code == 200
    assert page.headers["Strict-Transport-Security"].startswith("max-age=")


def test_trusted_proxy_header_logs_in(
    make_settings: Callable[..., Settings],
    make_web_app: Callable[..., Flask],
    configs: JobConfigs,
) -> None:
    app = make_web_app(make_settings(web_trusted_user_header="X-Remote-User"), configs=configs)
    client = app.test_client()
    assert client.get("/").status_code == 302
    page = client.get("/", headers={"X-Remote-User": "carol"})
    assert page.status_code == 200
    assert '<span class="who">carol</span>' in page.get_data(as_text=True)
    # Without the header setting, the same header means nothing.
    plain = make_web_app(configs=configs).test_client()
    assert plain.get("/", headers={"X-Remote-User": "carol"}).status_code == 302


# -- dispatchers -------------------------------------------------------------------------------


def test_dispatchers_page_lists_every_host_and_marks_the_stale_one(
    logged_in: WebSession, queue: Queue, settings: Settings
) -> None:
    """Two hosts by the database's clock; hostb:303 stopped beating longer than LOST_AFTER ago."""
    now = queue.now()
    queue.register_worker("hosta:101:aaaaaa", "hosta", 101, now=now - 600)
    queue.register_worker("hostb:202:bbbbbb", "hostb", 202, now=now - 300)
    queue.register_worker("hostb:303:<b>x", "hostb", 303, now=now - 900)  # escaped, not bold
    queue.heartbeat("hostb:303:<b>x", now=now - settings.lost_after - 50)
    for worker in ("hosta:101:aaaaaa", "hostb:303:<b>x"):
        queue.enqueue(JobRequest("ops", "check", {}, coalesce=False, concurrency=100))
        assert len(queue.claim(worker, 1)) == 1
    queue.heartbeat("hosta:101:aaaaaa", now=now)
    queue.heartbeat("hostb:202:bbbbbb", now=now - 1)

    html = logged_in.get("/dispatchers").get_data(as_text=True)
    assert 'href="/dispatchers" class="current"' in html
    rows = re.findall(
        r'<tr class="dispatcher-(\w+)" data-worker-id="([^"]+)">(.*?)</tr>', html, re.S
    )
    assert [(state, wid) for state, wid, _ in rows] == [
        ("alive", "hosta:101:aaaaaa"),
        ("alive", "hostb:202:bbbbbb"),
        ("stale", "hostb:303:&lt;b&gt;x"),
    ]
    cells = {wid: re.findall(r"<td[^>]*>(.*?)</td>", body, re.S) for _, wid, body in rows}
    assert cells["hosta:101:aaaaaa"][:2] == ["hosta", "101"]
    assert cells["hosta:101:aaaaaa"][3] == "10 min ago"  # started
    assert cells["hostb:303:&lt;b&gt;x"][4] == "55 s ago"  # last heartbeat (LOST_AFTER 5 s)
    assert ">1</a>" in cells["hostb:303:&lt;b&gt;x"][5]  # the job it was running
    assert cells["hostb:202:bbbbbb"][5] == "0"
    assert '<span class="status s-stale">stale</span>' in cells["hostb:303:&lt;b&gt;x"][6]
    assert "<b>x" not in html
    assert "2 alive on hosta, hostb; 1 stale (hostb:303)" in html
    assert 'id="dispatcher-summary"' in html
    assert "dispatcher-summary notice" in html

    data = logged_in.get("/api/dispatchers").get_json()
    assert data["lost_after"] == settings.lost_after
    assert data["at"] == pytest.approx(queue.now(), abs=30)
    listed = {d["id"]: d for d in data["dispatchers"]}
    assert [d["state"] for d in data["dispatchers"]] == ["alive", "alive", "stale"]
    assert listed["hostb:303:<b>x"]["stale"] is True
    assert listed["hostb:303:<b>x"]["heartbeat_age"] == pytest.approx(55, abs=20)
    assert listed["hosta:101:aaaaaa"]["running"] == 1
    assert listed["hosta:101:aaaaaa"]["hostname"] == "hosta"
    assert listed["hosta:101:aaaaaa"]["pid"] == 101


def test_logs_of_a_job_another_host_ran_say_where_they_are(
    logged_in: WebSession, queue: Queue, settings: Settings
) -> None:
    """LOGS_DIR is per host unless shared: the job ran on hostb, this page is served here."""
    job = queue.enqueue(JobRequest("ops", "check", {}, coalesce=False)).job
    queue.register_worker("hostb:7:abcdef", "hostb", 7)
    assert len(queue.claim("hostb:7:abcdef", 1)) == 1
    queue.mark_started(job.id, 4242, "/srv/elsewhere/logs/ops/check/1")
    queue.finish(job.id, JobStatus.SUCCEEDED, 0)
    html = logged_in.get(f"/jobs/{job.id}").get_data(as_text=True)
    assert f"the stdout of job #{job.id} is on hostb, whose dispatcher ran it" in html
    download = logged_in.get(f"/jobs/{job.id}/logs/stderr")
    assert download.status_code == 404
    assert f"The stderr of job #{job.id} is on hostb" in download.get_data(as_text=True)


def test_dispatchers_page_says_how_to_start_one_when_none_is_registered(
    logged_in: WebSession,
) -> None:
    html = logged_in.get("/dispatchers").get_data(as_text=True)
    assert "none registered: start <code>stat-bot dispatcher</code>" in html
    assert "no dispatcher has registered: start stat-bot dispatcher." in html
    assert logged_in.get("/api/dispatchers").get_json()["dispatchers"] == []


# -- jobs --------------------------------------------------------------------------------------


def test_jobs_page_shows_running_queued_and_recent_with_source_and_link(
    logged_in: WebSession, queue: Queue, settings: Settings
) -> None:
    done = make_job(
        queue,
        settings,
        args={"name": "Ada"},
        user="U0ADMIN",
        channel="C0GENERAL",
        source=Source.SLACK,
    )
    running = make_job(queue, settings, "ops", "check", status=JobStatus.RUNNING)
    waiting = make_job(queue, settings, "system", "uptime", status=JobStatus.QUEUED)
    html = logged_in.get("/").get_data(as_text=True)
    assert set(re.findall(r'data-section="(\w+)"', html)) == {"running", "queued", "recent"}
    assert f'href="/jobs/{done.id}"' in html
    assert "slack: U0ADMIN in C0GENERAL" in html
    assert "name=Ada" in html
    assert "succeeded" in html
    assert "0.5 s" in html
    data = logged_in.get("/api/jobs").get_json()["sections"]
    assert [j["id"] for j in data["running"]] == [running.id]
    assert [j["id"] for j in data["queued"]] == [waiting.id]
    assert [j["id"] for j in data["recent"]] == [done.id]
    assert data["recent"][0]["source_text"] == "slack: U0ADMIN in C0GENERAL"
    assert data["recent"][0]["url"] == f"/jobs/{done.id}"


def test_jobs_filters_by_namespace_and_status(
    logged_in: WebSession, queue: Queue, settings: Settings
) -> None:
    ok = make_job(queue, settings)
    failed = make_job(queue, settings, status=JobStatus.FAILED)
    other = make_job(queue, settings, "ops", "check")
    queued = make_job(queue, settings, "ops", "check", status=JobStatus.QUEUED)
    assert sorted(rows_of(logged_in.get("/?namespace=ops").get_data(as_text=True))) == [
        other.id,
        queued.id,
    ]
    html = logged_in.get("/?status=failed").get_data(as_text=True)
    assert rows_of(html) == [failed.id]
    assert 'data-section="queued"' not in html  # only the sections the filter asks for
    both = logged_in.get("/?status=failed&status=succeeded&namespace=system")
    assert sorted(rows_of(both.get_data(as_text=True))) == sorted([ok.id, failed.id])
    api = logged_in.get("/api/jobs?namespace=ops&status=queued,succeeded").get_json()
    assert [j["id"] for j in api["sections"]["queued"]] == [queued.id]
    assert [j["id"] for j in api["sections"]["recent"]] == [other.id]
    assert "running" not in api["sections"]
    bad = logged_in.get("/?status=exploded")
    assert bad.status_code == 400
    assert "unknown status &#39;exploded&#39;" in bad.get_data(as_text=True)
    assert logged_in.get("/api/jobs?status=exploded").get_json()["field"] == "status"


def test_job_output_and_arguments_are_escaped(
    logged_in: WebSession, queue: Queue, settings: Settings
) -> None:
    evil = "<script>alert('x')</script>"
    job = make_job(
        queue,
        settings,
        args={"name": '<img src=x onerror="alert(1)">'},
        stdout=f"before\n{evil}\nafter\n",
        stderr="<b>bold</b>\n",
    )
    page = logged_in.get(f"/jobs/{job.id}").get_data(as_text=True)
    assert evil not in page
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page
    assert "<b>bold</b>" not in page
    assert "&lt;b&gt;bold&lt;/b&gt;" in page
    assert "<img src=x" not in page
    assert "&lt;img src=x" in page
    listing = logged_in.get("/").get_data(as_text=True)
    assert "<img src=x" not in listing
    assert "&lt;img src=x onerror=" in listing


def test_job_page_shows_arguments_timings_and_both_logs(
    logged_in: WebSession, queue: Queue, settings: Settings
) -> None:
    job = make_job(
        queue, settings, args={"name": "Ada"}, stdout="Hello Ada\n", stderr="warn\n", ran_for=2.0
    )
    html = logged_in.get(f"/jobs/{job.id}").get_data(as_text=True)
    assert f"Job #{job.id}" in html
    assert "system hello" in html
    assert "<th>name</th><td><code>Ada</code></td>" in html
    for label in ("created", "started", "finished", "duration"):
        assert f"<th>{label}</th>" in html
    assert "2.0 s" in html
    assert re.search(r'id="log-stdout".*Hello Ada', html, re.S)
    assert re.search(r'id="log-stderr".*warn', html, re.S)
    assert f'href="/jobs/{job.id}/logs/stdout"' in html
    assert "Cancel this job" not in html  # finished: nothing to cancel


def test_job_log_downloads_as_an_attachment(
    logged_in: WebSession, queue: Queue, settings: Settings
) -> None:
    text = "".join(f"line {i} <tag>\n" for i in range(5000))
    job = make_job(queue, settings, stdout=text)
    response = logged_in.get(f"/jobs/{job.id}/logs/stdout")
    assert response.status_code == 200
    assert response.headers["Content-Disposition"] == (
        f"attachment; filename=job-{job.id}-stdout.txt"
    )
    assert response.mimetype == "text/plain"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.get_data(as_text=True) == text
    # The page shows the end of a long log and says so.
    html = logged_in.get(f"/jobs/{job.id}").get_data(as_text=True)
    assert "5000 lines" in html
    assert "the last 2000 shown" in html
    assert logged_in.get(f"/jobs/{job.id}/logs/passwd").status_code == 404


def test_unknown_job_is_404(logged_in: WebSession, queue: Queue, settings: Settings) -> None:
    page = logged_in.get("/jobs/9999")
    assert page.status_code == 404
    assert "No job #9999" in page.get_data(as_text=True)
    assert logged_in.get("/jobs/9999/logs/stdout").status_code == 404
    api = logged_in.get("/api/jobs/9999")
    assert api.status_code == 404
    assert "no job #9999" in api.get_json()["error"]
    queued = make_job(queue, settings, status=JobStatus.QUEUED)
    missing = logged_in.get(f"/jobs/{queued.id}/logs/stdout")
    assert missing.status_code == 404
    assert "not there" in missing.get_data(as_text=True)


def test_cancel_a_queued_job_from_its_page(
    logged_in: WebSession, queue: Queue, settings: Settings
) -> None:
    job = make_job(queue, settings, status=JobStatus.QUEUED)
    assert "Cancel this job" in logged_in.get(f"/jobs/{job.id}").get_data(as_text=True)
    response = logged_in.post(f"/jobs/{job.id}/cancel")
    assert response.status_code == 302
    after = queue.get(job.id)
    assert after is not None
    assert after.status is JobStatus.CANCELLED
    page = logged_in.get(response.headers["Location"]).get_data(as_text=True)
    assert "was queued and is now cancelled" in page


# -- schedules and suppressions ---------------------------------------------------------------


def test_schedules_list_next_fire_and_the_interval_dropdown(
    logged_in: WebSession,
    queue: Queue,
    configs: JobConfigs,
    make_settings: Callable[..., Settings],
    make_web_app: Callable[..., Flask],
) -> None:
    empty = logged_in.get("/schedules").get_data(as_text=True)
    assert "appear once a dispatcher has started" in empty
    queue.sync_schedules(config_rows(configs))
    app = make_web_app(
        make_settings(active_tickets_schedule="system.active-tickets"), configs=configs
    )
    web = WebSession(app.test_client())
    web.login()
    html = web.get("/schedules").get_data(as_text=True)
    assert 'data-schedule="system.active-tickets"' in html
    assert 'data-schedule="system.morning"' in html
    assert html.count('id="interval"') == 1  # only the active-tickets schedule has it
    for label in ("1 hour", "2 hours", "5 hours", "1 day"):
        assert f">{label}</option>" in html
    assert re.search(r'<td class="next-fire">\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \(in ', html)
    queue.set_schedule("system.active-tickets", interval_seconds=7200)
    html = web.get("/schedules").get_data(as_text=True)
    assert '<option value="2h" selected>' in html
    assert "every 2 hours (set here; job_configs.py says 0 * * * *)" in html
    queue.set_schedule("system.active-tickets", interval_seconds=5400)
    html = web.get("/schedules").get_data(as_text=True)
    assert "every 90 minutes" in html
    assert '<option value="custom" selected disabled>' in html


def test_disable_and_enable_a_schedule_and_it_survives_a_config_sync(
    logged_in: WebSession, queue: Queue, configs: JobConfigs
) -> None:
    queue.sync_schedules(config_rows(configs))
    response = logged_in.post(
        "/schedules/enabled", data={"key": "system.morning", "enabled": "off"}
    )
    assert response.status_code == 302
    assert "is disabled" in logged_in.get("/schedules").get_data(as_text=True)
    queue.sync_schedules(config_rows(configs))  # what a dispatcher restart or config reload does
    (row,) = [s for s in queue.schedules() if s.key == "system.morning"]
    assert row.enabled is False
    assert row.enabled_override is False
    html = logged_in.get("/schedules").get_data(as_text=True)
    assert re.search(
        r'data-schedule="system.morning">.*?<td class="next-fire">disabled', html, re.S
    )
    logged_in.post("/schedules/enabled", data={"key": "system.morning", "enabled": "on"})
    (row,) = [s for s in queue.schedules() if s.key == "system.morning"]
    assert row.enabled is True
    assert row.enabled_override is True
    logged_in.post("/schedules/enabled", data={"key": "system.morning", "enabled": "default"})
    (row,) = [s for s in queue.schedules() if s.key == "system.morning"]
    assert row.enabled is True
    assert row.enabled_override is None
    missing = logged_in.post("/schedules/enabled", data={"key": "nope", "enabled": "off"})
    assert missing.status_code == 404
    bad = logged_in.post("/schedules/enabled", data={"key": "system.morning", "enabled": "maybe"})
    assert bad.status_code == 400


def test_cancel_a_suppression(logged_in: WebSession, queue: Queue) -> None:
    now = time.time()
    queue.suppress("system", "hello", now - 10, now + 3600, user="U0ADMIN")
    html = logged_in.get("/schedules").get_data(as_text=True)
    assert 'data-suppression="system hello"' in html
    assert "U0ADMIN" in html
    response = logged_in.post(
        "/suppressions/cancel", data={"namespace": "system", "job_type": "hello"}
    )
    assert response.status_code == 302
    assert queue.suppressions(active_at=now) == []
    html = logged_in.get("/schedules").get_data(as_text=True)
    assert "is no longer suppressed" in html
    assert 'data-suppression="system hello"' not in html


# -- ticket form and charts ----------------------------------------------------------------------


def test_ticket_form_offers_the_relays_choices(logged_in: WebSession) -> None:
    html = logged_in.get("/ticket").get_data(as_text=True)
    assert 'data-api="/slack-proxy"' in html
    for choice in (*TICKET_TYPES, *PRIORITIES):
        assert f'<option value="{choice}">' in html
    for field in ("summary", "type", "priority", "xname", "action"):
        assert f'id="error-{field}"' in html
    assert "STAT_CHANNEL" in html  # not set in tests: the page warns


def test_charts_count_jobs_per_hour_by_status_and_time_per_type(
    logged_in: WebSession, queue: Queue, settings: Settings
) -> None:
    for _ in range(3):
        make_job(queue, settings, ran_for=1.0)
    make_job(queue, settings, ran_for=5.0)
    make_job(queue, settings, status=JobStatus.FAILED, ran_for=0.2)
    make_job(queue, settings, "ops", "check", status=JobStatus.QUEUED)
    html = logged_in.get("/charts").get_data(as_text=True)
    totals = dict(re.findall(r'<g class="legend" data-status="(\w+)" data-total="(\d+)"', html))
    assert totals["succeeded"] == "4"
    assert totals["failed"] == "1"
    assert totals["queued"] == "1"
    assert totals["running"] == "0"
    this_hour = re.findall(r'data-status="succeeded" data-hour="[^"]+" data-count="(\d+)"', html)
    assert this_hour == ["4"]
    (hello,) = re.findall(
        r'data-type="system hello" data-count="(\d+)" data-median="([\d.]+)" '
        r'data-longest="([\d.]+)"',
        html,
    )
    assert hello == ("5", "1.000", "5.000")
    assert 'data-type="ops check"' not in html  # never ran: no run time
    assert "6 jobs created in the last 24 hours" in html
    assert logged_in.get("/charts?hours=5").status_code == 400
    assert logged_in.get("/charts?hours=168").status_code == 200


# -- the chat console page ---------------------------------------------------------------------


def test_console_outside_local_mode_says_it_is_only_for_local_mode(logged_in: WebSession) -> None:
    html = logged_in.get("/console").get_data(as_text=True)
    assert "only for local mode" in html
    assert 'id="feed"' not in html
    feed = logged_in.get("/api/console/feed")
    assert feed.status_code == 503
    assert "local mode" in feed.get_json()["error"]
    assert logged_in.post_json("/api/console/post", {"text": "hi"}).status_code == 503


def test_console_posts_as_a_user_and_reads_the_feed(
    logged_in: WebSession,
    settings: Settings,
    slack_emulator: EmulatorThread,
    emulator_client: EmulatorClient,
    slack_web_client: Any,
) -> None:
    write_local_slack_file(settings, slack_emulator.url)  # as `stat-bot run` does
    try:
        assert 'id="feed"' in logged_in.get("/console").get_data(as_text=True)
        posted = logged_in.post_json(
            "/api/console/post", {"text": "<b>hi</b> there", "user": "guest", "channel": "general"}
        )
        assert posted.status_code == 200, posted.get_data(as_text=True)
        channel, ts = posted.get_json()["channel"], posted.get_json()["ts"]
        (message,) = [m for m in emulator_client.messages("general") if m["ts"] == ts]
        assert message["text"] == "<b>hi</b> there"
        # The bot answers in the thread with code, and with fields.
        slack_web_client.chat_postMessage(
            channel=channel, thread_ts=ts, text="done:\n```\nline 1\n```"
        )
        slack_web_client.chat_postMessage(
            channel=channel,
            text="summary",
            blocks=[
                {
                    "type": "section",
                    "fields": [
                        {"type": "mrkdwn", "text": "*Load*\n0.5"},
                        {"type": "mrkdwn", "text": "*CPUs*\n2"},
                    ],
                }
            ],
        )
        events = logged_in.get("/api/console/feed?cursor=0").get_json()
        mine, reply, fields = events["events"][-3:]
        assert mine["who"] == "guest"
        assert mine["where"] == "#general"
        assert not mine["bot"]
        assert mine["parts"] == [{"type": "text", "text": "<b>hi</b> there"}]
        assert reply["bot"]
        assert reply["in_thread"]
        assert reply["parts"] == [
            {"type": "text", "text": "done:\n"},
            {"type": "code", "text": "line 1"},
        ]
        assert fields["parts"] == [
            {"type": "fields", "text": "", "fields": ["*Load*\n0.5", "*CPUs*\n2"]}
        ]
        later = logged_in.get(f"/api/console/feed?cursor={events['cursor']}").get_json()
        assert later["events"] == []
        assert later["cursor"] == events["cursor"]
        nobody = logged_in.post_json("/api/console/post", {"text": "hi", "user": "nobody"})
        assert nobody.status_code == 400
        assert "refused" in nobody.get_json()["error"]
        empty = logged_in.post_json("/api/console/post", {"text": "  "})
        assert empty.status_code == 400
        assert empty.get_json()["field"] == "text"
    finally:
        local_slack_file(settings).unlink()


def test_console_shows_buttons_and_selects_and_uses_them_as_the_chosen_user(
    logged_in: WebSession,
    settings: Settings,
    slack_emulator: EmulatorThread,
    emulator_client: EmulatorClient,
    slack_web_client: Any,
) -> None:
    write_local_slack_file(settings, slack_emulator.url)
    blocks = [
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": "Severity?"},
            "accessory": {
                "type": "static_select",
                "action_id": "severity",
                "placeholder": {"type": "plain_text", "text": "Pick"},
                "options": [{"text": {"type": "plain_text", "text": "<SEV1>"}, "value": "sev1"}],
            },
        },
        {
            "type": "actions",
            "elements": [
                {
                    "type": "button",
                    "action_id": "resolve",
                    "value": "7",
                    "style": "danger",
                    "text": {"type": "plain_text", "text": "Resolve"},
                }
            ],
        },
    ]
    try:
        posted = slack_web_client.chat_postMessage(channel="general", text="x", blocks=blocks)
        events = logged_in.get("/api/console/feed?cursor=0").get_json()["events"]
        assert events[-1]["controls"] == [
            {
                "type": "static_select",
                "action_id": "severity",
                "placeholder": "Pick",
                "options": [{"text": "<SEV1>", "value": "sev1"}],
            },
            {"type": "button", "action_id": "resolve", "value": "7", "text": "Resolve",
             "style": "danger"},
        ]  # fmt: skip
        use = {"channel": "C0GENERAL", "ts": posted["ts"], "user": "guest"}
        chose = logged_in.post_json("/api/console/click", {**use, "action_id": "severity",
                                                           "option": "sev1"})  # fmt: skip
        assert chose.status_code == 200, chose.get_data(as_text=True)
        clicked = logged_in.post_json("/api/console/click", {**use, "action_id": "resolve",
                                                             "value": "7"})  # fmt: skip
        assert clicked.status_code == 200
        sent = [e["event_type"] for e in emulator_client.acks(event_type="block_actions")]
        assert sent == ["block_actions", "block_actions"]
        wrong = logged_in.post_json("/api/console/click", {**use, "action_id": "severity",
                                                           "option": "sev9"})  # fmt: skip
        assert wrong.status_code == 400
        assert "sev1" in wrong.get_json()["error"]
        missing = logged_in.post_json("/api/console/click", {"channel": "general"})
        assert missing.status_code == 400
        assert missing.get_json()["field"] == "ts"
        no_csrf = logged_in.client.post("/api/console/click", json={**use, "action_id": "x"})
        assert no_csrf.status_code == 400
        # Happenings that are not messages come as notes.
        slack_web_client.conversations_setTopic(channel="general", topic="all calm")
        note = logged_in.get("/api/console/feed?cursor=0").get_json()["events"][-1]
        assert note["note"] == "stat-bot set the channel topic: all calm"
    finally:
        local_slack_file(settings).unlink()


def test_console_feed_needs_a_numeric_cursor(
    logged_in: WebSession, settings: Settings, slack_emulator: EmulatorThread, tmp_path: Path
) -> None:
    write_local_slack_file(settings, slack_emulator.url)
    bad = logged_in.get("/api/console/feed?cursor=abc")
    assert bad.status_code == 400
    assert bad.get_json()["field"] == "cursor"


def test_the_job_page_says_who_confirmed_a_guarded_job(
    logged_in: WebSession, queue: Queue, settings: Settings
) -> None:
    job = make_job(queue, settings, confirmed_by="alice")
    html = logged_in.get(f"/jobs/{job.id}").get_data(as_text=True)
    assert re.search(r"<th>confirmed by</th><td>alice</td>", html)
    plain = make_job(queue, settings)
    assert "confirmed by" not in logged_in.get(f"/jobs/{plain.id}").get_data(as_text=True)
