"""The dashboard in a real browser: Debian's Chromium driven by Playwright, against the service
as a newcomer starts it (`stat-bot run` in local mode: emulator, bot, dispatcher, web server).

What only a browser shows: the page scripts run under the strict CSP, the jobs table
updates without a reload, the interval dropdown and the ticket form talk to the STAT
relay with the CSRF header, and the chat console reaches the bot through the local Slack.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from stat_bot.integrations.slack_emulator import BOT_TOKEN, EmulatorClient, wait_for
from stat_bot.queue.base import ScheduleRow
from stat_bot.queue.sqlite import SQLiteQueue
from tests.conftest import STAT_BOT, subprocess_env, write_configs

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]
USER, PASSWORD = "tester", "browser test password"
SCHEDULE = "system.active-tickets"
DASHBOARD = re.compile(r"dashboard: (http://127\.0\.0\.1:\d+/)")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.exists() and not os.environ.get("CI"),
        reason="needs Debian's chromium (/usr/bin/chromium): `apt-get install chromium`, "
        "which `python3 bootstrap.py test` does; in CI this test never skips",
    ),
]

CONFIG = {
    "system": {
        "description": "Examples",
        "jobs": {
            "hello": {"run_args_template": "echo Hello {name}", "report_stdout": True},
            "uptime": {"run_args_template": "uptime", "report_stdout": True},
        },
        "slack": [
            {
                "command": "hello [name=world]",
                "help": "Say hello",
                "action": "schedule_job",
                "job_type": "hello",
            },
        ],
        "schedules": [{"cron": "0 6 * * *", "job_type": "uptime", "name": "active-tickets"}],
    },
}


@dataclass
class Service:
    home: Path
    env: dict[str, str]
    url: str
    slack: EmulatorClient

    def queue(self) -> SQLiteQueue:
        return SQLiteQueue(self.home / "var" / "stat-bot.sqlite3")

    def schedule(self) -> ScheduleRow:
        queue = self.queue()
        try:
            (row,) = [s for s in queue.schedules() if s.key == SCHEDULE]
        finally:
            queue.close()
        return row

    def stat_bot(self, *args: str, stdin: str | None = None) -> str:
        result = subprocess.run(
            [STAT_BOT, *args],
            env=self.env,
            cwd=self.home,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout


def _wait(what: str, check: Any, timeout: float = 30.0, log: Path | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := check()):
        tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
        assert time.monotonic() < deadline, f"gave up waiting for {what}\n{tail}"
        time.sleep(0.05)
    return found


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """`stat-bot run --no-console` in a test home, with a web user and the active-tickets schedule."""
    home = tmp_path_factory.mktemp("dashboard")
    (home / "workspace").mkdir()
    write_configs(home / "job_configs.py", CONFIG)
    env = subprocess_env(home)
    env.update(WEB_PORT="0", ACTIVE_TICKETS_SCHEDULE=SCHEDULE, WEB_WORKERS="1")
    added = subprocess.run(
        [STAT_BOT, "web-user", "add", USER, "--password-stdin"],
        env=env,
        cwd=home,
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert added.returncode == 0, added.stderr
    err_path = home / "run.err"
    with err_path.open("w") as err:
        process = subprocess.Popen(
            [STAT_BOT, "run", "--no-console"],
            env=env,
            cwd=home,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:

        def banner() -> re.Match[str] | None:
            assert process.poll() is None, err_path.read_text()
            return DASHBOARD.search(err_path.read_text(errors="replace"))

        url = _wait("the dashboard's address", banner, log=err_path)[1]
        assert "no dashboard users yet" not in err_path.read_text()
        local = json.loads((home / "var" / "local-slack.json").read_text())["url"]
        slack = EmulatorClient(local)
        slack.wait_for_connections(total=1, connected=1, timeout=30)  # the bot is in
        found = Service(home, env, url, slack)

        def synced() -> bool:
            queue = found.queue()
            try:
                return any(s.key == SCHEDULE for s in queue.schedules())
            finally:
                queue.close()

        _wait("the dispatcher to store the schedules", synced, log=err_path)
        yield found
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            assert process.wait(40) == 0, err_path.read_text()[-3000:]
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any, service: Service) -> Iterator[Any]:
    """A fresh, logged-in browser session; fails the test on any CSP violation or page error."""
    context = browser.new_context(base_url=service.url)
    context.set_default_timeout(15_000)
    tab = context.new_page()
    problems: list[str] = []
    tab.on(
        "console",
        lambda m: (
            problems.append(m.text)
            if m.type == "error" and "Content Security Policy" in m.text
            else None
        ),
    )
    tab.on("pageerror", lambda e: problems.append(f"script error: {e}"))
    _log_in(tab)
    yield tab
    context.close()
    assert problems == [], problems


def _log_in(tab: Any) -> None:
    tab.goto("/")
    assert "/login?next=" in tab.url
    tab.fill('input[name="username"]', USER)
    tab.fill('input[name="password"]', PASSWORD)
    tab.click('form.login button[type="submit"]')
    tab.wait_for_selector("h1:text('Jobs')")


def test_log_in_and_visit_every_page(browser: Any, service: Service) -> None:
    context = browser.new_context(base_url=service.url)
    tab = context.new_page()
    problems: list[str] = []
    tab.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    try:
        tab.goto("/schedules")
        tab.fill('input[name="username"]', USER)
        tab.fill('input[name="password"]', "wrong password")
        tab.click('form.login button[type="submit"]')
        assert "Wrong user name or password" in tab.inner_text(".flash-error")
        tab.fill('input[name="password"]', PASSWORD)
        tab.click('form.login button[type="submit"]')
        tab.wait_for_url(re.compile(r"/schedules$"))  # back where ?next= said
        assert tab.inner_text(".who") == USER
        for link in ("Jobs", "Schedules", "STAT ticket", "Charts", "Dispatchers", "Chat console"):
            tab.click(f"header nav a:text('{link}')")
            tab.wait_for_selector("h1")
            assert tab.inner_text("h1").startswith(link)
        tab.click("form.logout button")
        tab.wait_for_url(re.compile(r"/login"))
        tab.goto("/")
        assert "/login?next=" in tab.url
    finally:
        context.close()
    # 401s on purpose above are fine; anything else (CSP, scripts) is not.
    assert [p for p in problems if "401" not in p and "UNAUTHORIZED" not in p.upper()] == []


def test_the_dispatchers_page_shows_this_hosts_dispatcher_alive(
    page: Any, service: Service
) -> None:
    queue = service.queue()
    try:
        (worker,) = queue.workers()  # `stat-bot run` starts one dispatcher
    finally:
        queue.close()
    page.click("header nav a:text('Dispatchers')")
    row = page.wait_for_selector(f"tr[data-worker-id='{worker.id}']")
    cells = [c.inner_text() for c in row.query_selector_all("td")]
    assert cells[:3] == [worker.hostname, str(worker.pid), worker.id]
    assert cells[6] == "alive"
    assert page.inner_text("#dispatcher-summary").startswith(f"1 alive on {worker.hostname}")


def test_a_finishing_job_appears_on_the_jobs_page_without_reload(
    page: Any, service: Service
) -> None:
    page.evaluate("window.stillTheSamePage = true")
    out = service.stat_bot("enqueue", "system hello Browser")
    job_id = int(re.search(r"Job #(\d+)", out)[1])  # type: ignore[index]
    row = f'section[data-section="recent"] tr[data-job-id="{job_id}"]'
    page.wait_for_selector(f"{row} .status:text('succeeded')", timeout=20_000)
    assert page.evaluate("window.stillTheSamePage") is True  # no reload happened
    assert "system hello" in page.inner_text(row)
    assert "name=Browser" in page.inner_text(row)
    assert "cli" in page.inner_text(row)
    assert "updates by itself" in page.inner_text("#live")
    page.click(f"{row} a")
    page.wait_for_selector(f"h1:text('Job #{job_id}')")
    assert page.inner_text("#log-stdout pre") == "Hello Browser"
    with page.expect_download() as download:
        page.click("#log-stdout a:text('Download stdout')")
    assert download.value.suggested_filename == f"job-{job_id}-stdout.txt"
    assert Path(download.value.path()).read_text() == "Hello Browser\n"


def test_the_interval_dropdown_changes_the_schedule(page: Any, service: Service) -> None:
    page.goto("/schedules")
    page.select_option("#interval", "2h")
    page.wait_for_selector("#interval-status.field-ok")
    assert "Saved" in page.inner_text("#interval-status")
    assert service.schedule().interval_seconds == 7200
    page.reload()
    assert page.eval_on_selector("#interval", "s => s.value") == "2h"
    assert "every 2 hours" in page.inner_text(f'tr[data-schedule="{SCHEDULE}"] .timing')
    page.select_option("#interval", "default")
    page.wait_for_selector("#interval-status.field-ok")
    assert service.schedule().interval_seconds is None
    # Disable and enable by the buttons; the state is kept in the queue.
    page.click(f'tr[data-schedule="{SCHEDULE}"] button:text("Disable")')
    page.wait_for_selector(".flash:text('is disabled')")
    assert service.schedule().enabled is False
    page.click(f'tr[data-schedule="{SCHEDULE}"] button:text("Enable")')
    page.wait_for_selector(".flash:text('is enabled')")
    assert service.schedule().enabled is True


def test_the_ticket_form_shows_field_errors_then_posts_to_slack(
    page: Any, service: Service
) -> None:
    page.goto("/ticket")
    # Local mode's own Trac: the form offers that site's types and priorities.
    types = page.eval_on_selector_all("#type option", "els => els.map(e => e.value)")
    assert types == ["", "defect", "enhancement", "task"]
    priorities = page.eval_on_selector_all("#priority option", "els => els.map(e => e.value)")
    assert priorities == ["", "blocker", "critical", "major", "minor", "trivial"]
    page.click("#ticket button[type='submit']")
    page.wait_for_selector("#error-summary:not(:empty)")
    # Every field at fault is marked at once, not one per submit.
    for field in ("summary", "type", "priority", "xname"):
        assert field in page.inner_text(f"#error-{field}")
        assert page.get_attribute(f"#{field}", "aria-invalid") == "true"
    assert page.inner_text("#ticket-result") == "Please correct the 4 fields marked above."
    page.fill("#summary", "Node will not boot <b>x</b>")
    page.select_option("#type", "defect")
    page.select_option("#priority", "major")
    page.fill("#xname", "not-an-xname")
    page.click("#ticket button[type='submit']")
    page.wait_for_selector("#error-xname:not(:empty)")
    assert page.inner_text("#error-summary") == ""  # the fixed field's error is gone
    assert "xname" in page.inner_text("#error-xname").lower()
    page.fill("#xname", "x1000c0s0b0n0")
    page.click("#ticket button[type='submit']")
    page.wait_for_selector("#ticket-result.ok")
    assert page.inner_text("#ticket-result") == "Posted to general."
    message = service.slack.wait_for_message(
        "general", lambda m: "Node will not boot" in json.dumps(m), timeout=10
    )
    assert "x1000c0s0b0n0" in json.dumps(message)


def test_the_chat_console_runs_a_command(page: Any, service: Service) -> None:
    page.goto("/console")
    page.fill("#chat-text", "@stat-bot system hello Console")
    page.press("#chat-text", "Enter")
    page.wait_for_selector(
        ".feed .message:not(.from-bot) .body:has-text('@stat-bot system hello Console')"
    )
    reply = page.wait_for_selector(
        ".feed .message.from-bot.in-thread .body:has-text('Hello Console')", timeout=20_000
    )
    assert reply is not None
    assert page.input_value("#chat-text") == ""
    # The bot's reaction shows on the message it answered.
    page.wait_for_selector(".feed .reactions .reaction:text(':crossed_fingers:')")


def test_the_chat_console_clicks_buttons_and_chooses_options(page: Any, service: Service) -> None:
    from slack_sdk import WebClient

    bot = WebClient(token=BOT_TOKEN, base_url=service.slack.url + "/api/")
    page.goto("/console")
    page.select_option("#chat select[name='user']", "guest")
    posted = bot.chat_postMessage(
        channel="general",
        text="Incident 3",
        blocks=[
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": "Incident 3: <b>nid0001</b> down"},
                "accessory": {
                    "type": "static_select",
                    "action_id": "browser_severity",
                    "placeholder": {"type": "plain_text", "text": "Severity"},
                    "options": [
                        {"text": {"type": "plain_text", "text": "SEV1 <i>"}, "value": "sev1"},
                        {"text": {"type": "plain_text", "text": "SEV2"}, "value": "sev2"},
                    ],
                },
            },
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "action_id": "browser_resolve",
                        "value": "3",
                        "text": {"type": "plain_text", "text": "Resolve <now>"},
                    }
                ],
            },
        ],
    )
    message = f".feed .message[data-ts='{posted['ts']}']"
    button = page.wait_for_selector(f"{message} .controls button:text('Resolve <now>')")
    assert page.inner_text(f"{message} .controls select option[value='sev1']") == "SEV1 <i>"
    since = time.time() - 60
    button.click()
    page.select_option(f"{message} .controls select", "sev2")

    def clicks() -> list[dict[str, Any]]:
        return service.slack.acks(since=since, event_type="block_actions")

    sent = wait_for(clicks, lambda found: found if len(found) >= 2 else None, what="two clicks")
    assert len(sent) == 2
    assert page.inner_text("#chat-error") == ""


def test_the_alerts_page_draws_the_week_and_moves_between_weeks(
    page: Any, service: Service
) -> None:
    from stat_bot.queue.alert_model import AlertEvent, AlertStatus

    queue = service.queue()
    try:
        now = queue.now()
        queue.record_alerts(
            [AlertEvent("alertmanager", "browser-1", "NodeDown: x1", AlertStatus.FIRING, now,
                        "slurm", "critical")]
        )  # fmt: skip
    finally:
        queue.close()
    page.click("header nav a:text('Alerts')")
    page.wait_for_selector("h1:text('Alerts: week')")
    this_week = page.inner_text("h1").removeprefix("Alerts: week ")
    bar = page.wait_for_selector("svg[data-chart='alerts-per-day'] rect[data-severity='critical']")
    assert bar.get_attribute("data-count") == "1"
    # The colour comes from app.css (the CSP allows no inline style): the class applied.
    assert bar.evaluate("e => getComputedStyle(e).fill") == "rgb(200, 40, 40)"
    assert "NodeDown: x1" in page.inner_text("#frequent-alerts")
    page.click("a[rel='prev']")
    page.wait_for_selector("h1")
    assert page.inner_text("h1") != f"Alerts: week {this_week}"
    assert page.inner_text("#frequent-alerts").strip().endswith("none")
