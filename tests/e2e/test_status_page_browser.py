"""The public status page in a real browser: Debian's Chromium (Playwright) against `stat-bot web`.

What only a browser shows: the page renders under the strict CSP with no console errors,
without logging in, and what a visitor reads (the status, the components) is there while
the incident's description is not.
"""

from __future__ import annotations

import re
import signal
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from stat_bot.incidents.model import EntryKind, IncidentDraft, TimelineEntry
from stat_bot.queue import open_queue
from stat_bot.settings import load_settings
from tests.conftest import STAT_BOT, subprocess_env, write_configs
from tests.e2e.test_dashboard_browser import CHROMIUM, CHROMIUM_ARGS, pytestmark  # noqa: F401

READY = re.compile(r"web server at (http://[\d.]+:\d+)/")
DESCRIPTION = "Secret GPFS hang on the login nodes"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`stat-bot web` (one gunicorn worker) on a queue holding one open and one resolved incident."""
    home = tmp_path_factory.mktemp("status-page")
    (home / "workspace").mkdir()
    write_configs(
        home / "job_configs.py", {"demo": {"jobs": {"hello": {"run_args_template": "true"}}}}
    )
    queue = open_queue(
        load_settings(
            database_url="",  # never the environment's: STATE_DIR/stat-bot.sqlite3, as the server
            state_dir=home / "var",
            workspace_dir=home / "workspace",
            job_configs=home / "job_configs.py",
            _env_file=None,
        )
    )  # as the server opens it: created and migrated
    try:
        now = queue.now()
        queue.open_incident(
            IncidentDraft(
                channel_id="C1",
                channel_name="inc-secret-channel",
                description=DESCRIPTION,
                status="investigating",
                opened_by="U0SECRET",
                opened_by_name="ada",
                xnames=("x1000c3s0b0n1",),
            ),
            entries=[TimelineEntry(EntryKind.OPENED, "opened", user="U0SECRET")],
            now=now - 1800,
        )
        old = queue.open_incident(
            IncidentDraft(
                channel_id="C2",
                channel_name="inc-old-secret",
                description="Old secret PDU trouble",
                status="identified",
                opened_by="U0SECRET",
                xnames=("x3000m0p1",),
            ),
            now=now - 2 * 86400,
        )
        queue.update_incident(
            old.id,
            version=old.version,
            changes={"status": "resolved", "resolved_at": now - 86400},
            now=now - 86400,
        )
    finally:
        queue.close()
    env = subprocess_env(home)
    env.update(WEB_WORKERS="1", WEB_THREADS="2", STATUS_PAGE_TITLE="Perlmutter status")
    log = home / "web.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            [STAT_BOT, "web", "--port", "0"], env=env, cwd=home, stdout=out, stderr=out
        )
    try:
        deadline = time.monotonic() + 30
        while not (match := READY.search(log.read_text(errors="replace"))):
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        yield match.group(1)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def test_a_visitor_sees_the_status_and_components_but_no_description(
    browser: Any, site: str
) -> None:
    context = browser.new_context(base_url=site)
    context.set_default_timeout(15_000)
    tab = context.new_page()
    problems: list[str] = []
    tab.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
    tab.on("pageerror", lambda e: problems.append(f"script error: {e}"))
    failed: list[str] = []
    tab.on("requestfailed", lambda r: failed.append(r.url))
    try:
        response = tab.goto("/status")
        assert response is not None
        assert response.status == 200
        assert tab.url.endswith("/status")  # not sent to /login
        assert tab.title() == "Perlmutter status"
        assert tab.inner_text("#overall") == "Investigating: 1 open incident"
        components = tab.inner_text("#components")
        assert "x1000" in components
        assert "x1000c3" in components
        assert "investigating" in components
        current = tab.inner_text("#open-incidents")
        assert re.search(r"Incident #\d+\s+investigating", current)
        assert "x1000c3" in current
        resolved = tab.inner_text("#resolved-incidents")
        assert re.search(r"Incident #\d+\s+resolved", resolved)
        assert "x3000" in resolved
        text = tab.inner_text("body")
        for secret in ("GPFS", "PDU", "secret", "U0SECRET", "inc-", "s0b0n1"):
            assert secret.lower() not in text.lower(), secret
        assert tab.locator("header nav").count() == 0  # no links into the dashboard
        # The page's stylesheet loaded under the CSP: the banner is coloured by app.css.
        colour = tab.eval_on_selector("#overall", "e => getComputedStyle(e).backgroundColor")
        assert colour == "rgb(198, 40, 40)"
        assert tab.context.cookies() == []
    finally:
        context.close()
    assert problems == []
    assert failed == []
