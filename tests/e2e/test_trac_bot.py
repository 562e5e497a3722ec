"""The `trac` namespace end to end: a user in the Slack emulator, `stat-bot bot` and
`stat-bot dispatcher` as processes, the shipped trac config and scripts, and a real tracd.

The commands go through the bot and the dispatcher exactly as in production; the
tickets are then read back from Trac with the client to check what really changed.
The scheduled active-tickets report runs in services of its own, with the schedule's
interval set short through the queue (as /set-interval does) before they start.
"""

from __future__ import annotations

import random
import runpy
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stat_bot.dispatcher.schedules import config_rows
from stat_bot.integrations.slack_emulator import EmulatorThread
from stat_bot.jobs.config import parse_config
from stat_bot.jobs.model import JobStatus
from stat_bot.queue.sqlite import SQLiteQueue
from tests.e2e.slack_service import SlackService, message_text, start_service
from tests.trac_fixtures import TracServer, free_port, require_trac

ROOT = Path(__file__).resolve().parents[2]
SCHEDULE = "trac.active-tickets"
NOTIFY_SECRET = "the plugin's secret"

pytestmark = pytest.mark.trac


def trac_config() -> dict[str, Any]:
    """The `trac` namespace exactly as job_configs.py ships it."""
    return {"trac": runpy.run_path(str(ROOT / "job_configs.py"))["raw_config"]["trac"]}


def prepare(home: Path) -> None:
    """The shipped scripts in the test's workspace."""
    (home / "workspace").mkdir(exist_ok=True)
    (home / "workspace" / "trac").symlink_to(ROOT / "workspace" / "trac")


def schedule_every(home: Path, seconds: float) -> SQLiteQueue:
    """Store the config's schedules with an interval override, as /set-interval would."""
    (home / "var").mkdir(exist_ok=True)
    queue = SQLiteQueue(home / "var" / "stat-bot.sqlite3")
    queue.migrate()
    queue.sync_schedules(config_rows(parse_config(trac_config())))
    assert queue.set_schedule(SCHEDULE, interval_seconds=seconds) is not None
    return queue


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, tracd: TracServer) -> Iterator[SlackService]:
    """Bot, dispatcher and web server; Trac's plugin sends its events to the web server."""
    home = tmp_path_factory.mktemp("trac-e2e")
    prepare(home)
    port = free_port()
    with EmulatorThread() as emulator:
        running = start_service(
            home,
            emulator,
            trac_config(),
            STAT_CHANNEL="stat-bot-logs",
            TRAC_WEBHOOK_SECRET=NOTIFY_SECRET,
            WEB_PORT=str(port),
            WEB_WORKERS="1",
            **tracd.environ(),
        )
        try:
            running.start("web")
            wait_listening(port, running)
            tracd.set_notify(f"http://127.0.0.1:{port}/trac", NOTIFY_SECRET)
            yield running
        finally:
            tracd.set_notify(None, None)  # the session's tracd, as the other tests expect it
            running.stop()
    for name in ("bot", "dispatcher", "web"):
        assert "Traceback" not in running.log_of(name), running.log_of(name)


def wait_listening(port: int, running: SlackService, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        assert running.processes["web"].poll() is None, running.log_of("web")
        assert time.monotonic() < deadline, running.log_of("web")
        time.sleep(0.05)


def notices(service: SlackService, number: int) -> list[str]:
    """The plugin's messages about ticket `number` in the STAT channel, oldest first."""
    return [
        message_text(m)
        for m in service.slack.messages("stat-bot-logs")
        if m.get("bot_id") and f"STAT ticket #{number} " in m.get("text", "")
    ]


def ticket_number(text: str) -> int:
    return int(text.split("/ticket/", 1)[1].split("|", 1)[0])


def test_help_lists_the_trac_commands(service: SlackService):
    text = message_text(service.reply(service.say("@stat-bot trac help"), "trac active"))
    assert "• `trac new [type] [priority] [xname:xname] [summary...]`" in text
    assert "• `trac close [id:int] [resolution=fixed]`" in text


def test_a_ticket_from_slack_through_its_life(service: SlackService, tracd: TracServer):
    cab = f"x{random.randint(2000, 8999)}"
    where = service.say(f"@stat-bot trac new defect critical {cab}c0s2b1n0 Node will not boot")
    created = service.reply(where, "Created")
    number = ticket_number(message_text(created))
    assert f"<{tracd.url}/ticket/{number}|#{number}> Node will not boot" in message_text(created)
    ticket = tracd.client().ticket(number)
    assert ticket.fields["xname"] == f"{cab}c0s2b1n0"
    assert ticket.fields["description"] == "Opened via STAT bot for Slack user @admin (U0ADMIN)."

    active = service.reply(service.say("@stat-bot trac active"), "Active tickets")
    assert active["blocks"][0]["type"] == "header"
    assert "*By priority*" in message_text(active)

    listed = service.reply(service.say(f"@stat-bot trac xname {cab}c0"), f"Tickets for {cab}c0")
    assert f"|#{number}> Node will not boot · `{cab}c0s2b1n0` · nobody" in message_text(listed)

    commented = service.say(f"@stat-bot trac comment {number} Reseated the DIMMs; <b> & ü")
    assert "Reseated the DIMMs; &lt;b&gt; &amp; ü" in message_text(
        service.reply(commented, "Commented on")
    )
    assigned = service.say(f"@stat-bot trac assign {number} alice")
    assert "to *alice*" in message_text(service.reply(assigned, "Assigned"))
    closed = service.say(f"@stat-bot trac close {number} worksforme")
    assert "as *worksforme*" in message_text(service.reply(closed, "Closed"))

    ticket = tracd.client().ticket(number)
    assert (ticket.fields["status"], ticket.fields["resolution"]) == ("closed", "worksforme")
    assert ticket.fields["owner"] == "alice"
    comments = [c.new for c in ticket.comments]
    assert "Reseated the DIMMs; <b> & ü" in comments[0]
    assert all("(via STAT bot for Slack user @admin (U0ADMIN))" in c for c in comments)

    # Each change made from Slack came back from Trac's plugin into the STAT channel.
    deadline = time.monotonic() + 15
    while len(seen := notices(service, number)) < 4:
        assert time.monotonic() < deadline, seen
        time.sleep(0.05)
    created, commented, assigned, closed_notice = seen[:4]
    assert "created" in created
    assert f"{cab}c0s2b1n0" in created
    assert "Reseated the DIMMs; &lt;b&gt; &amp; ü" in commented
    assert "alice" in assigned
    assert "closed (worksforme)" in closed_notice

    # Matched on the report's own field (a real newline): on a loaded machine a progress
    # message quoting the job's output as JSON ("*Status*\\nclosed") may come first.
    shown = service.reply(
        service.say(f"@stat-bot trac ticket {number}"), "*Status*\nclosed (worksforme)"
    )
    assert shown["text"] == f"#{number} Node will not boot"  # the notification's text
    text = message_text(shown)
    assert "*Status*\nclosed (worksforme)" in text
    assert "*Owner*\nalice" in text


def test_a_missing_ticket_is_answered_in_the_thread_not_reposted(service: SlackService):
    where = service.say("@stat-bot trac ticket 987654")
    text = message_text(service.reply(where, "Trac has no ticket #987654"))
    assert ":warning:" in text
    job = service.job_for(where)
    assert job.status is JobStatus.SUCCEEDED  # the asker's mistake: nothing for tech support


def test_trac_stopped_mid_run_gives_a_clear_message(service: SlackService, tracd_down: TracServer):
    where = service.say("@stat-bot trac active")
    text = message_text(service.reply(where, "failed"))
    assert f"Trac at {tracd_down.url} is unreachable" in text
    job = service.job_for(where)
    service.slack.wait_for_message(
        "tech-support", lambda m: f"#{job.id} trac active failed" in m["text"]
    )


# --- the scheduled report -------------------------------------------------------------


def reports(queue: SQLiteQueue) -> list[Any]:
    return [
        j
        for j in queue.jobs(limit=50)
        if j.job_type == "active-report" and j.status is JobStatus.SUCCEEDED
    ]


def wait_reports(queue: SQLiteQueue, count: int, timeout: float = 30.0) -> list[Any]:
    deadline = time.monotonic() + timeout
    while len(done := reports(queue)) < count:
        assert time.monotonic() < deadline, f"{len(done)} of {count} scheduled reports ran"
        time.sleep(0.1)
    return sorted(done, key=lambda j: j.created_at)


def test_the_scheduled_report_posts_to_the_stat_channel_at_its_interval(
    tmp_path: Path, tracd: TracServer
):
    number = tracd.client().create(
        summary="Scheduled report sees me", type="task", priority="blocker", xname="x9999c0"
    )
    prepare(tmp_path)
    queue = schedule_every(tmp_path, 2)
    with EmulatorThread() as emulator:
        running = start_service(
            tmp_path, emulator, trac_config(), STAT_CHANNEL="general", **tracd.environ()
        )
        try:
            first, second = wait_reports(queue, 2)[:2]
            assert second.created_at - first.created_at == pytest.approx(2.0)
            assert first.user == f"schedule {SCHEDULE}"
            posted = running.slack.wait_for_message(
                "general", lambda m: "Active tickets" in message_text(m)
            )
            assert posted.get("thread_ts") in (None, posted["ts"])  # top level, not a thread
            assert f"{tracd.url}/ticket/{number}" in message_text(posted)
        finally:
            running.stop()
            queue.close()


def test_the_scheduled_report_stays_quiet_when_nothing_is_active(tmp_path: Path):
    require_trac()
    trac = TracServer(tmp_path / "trac")
    (tmp_path / "trac").mkdir()
    trac.build()
    trac.start()
    home = tmp_path / "home"
    home.mkdir()
    prepare(home)
    queue = schedule_every(home, 1)
    try:
        with EmulatorThread() as emulator:
            running = start_service(
                home,
                emulator,
                trac_config(),
                STAT_CHANNEL="general",
                TRAC_REPORT_WHEN_EMPTY="false",
                **trac.environ(),
            )
            try:
                wait_reports(queue, 2)
                time.sleep(0.5)  # a report would be posted right after its job ends
                assert [message_text(m) for m in running.slack.messages("general")] == []
                running.say("@stat-bot trac active")  # the command itself always answers
                running.slack.wait_for_message(
                    "general",
                    lambda m: "No active tickets." in message_text(m),
                    thread_ts=running.slack.messages("general")[0]["ts"],
                )
            finally:
                running.stop()
    finally:
        queue.close()
        trac.stop()
