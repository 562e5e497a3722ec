"""The Slack bot end to end: `stat-bot bot` and `stat-bot dispatcher` as processes, the local
Slack emulator in between, and a test user typing commands and reading the answers.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stat_bot.integrations.slack_emulator import EmulatorThread
from stat_bot.jobs.model import JobStatus
from tests.conftest import cpu_seconds
from tests.e2e.slack_service import SlackService, message_text, running_service, start_service

BLOCKS = [
    {"type": "header", "text": {"type": "plain_text", "text": "Node report"}},
    {
        "type": "section",
        "text": {"type": "mrkdwn", "text": "*x1000c0s0b0n0* is up"},
        "fields": [{"type": "mrkdwn", "text": "*Power*\nOn"}],
    },
]

CONFIG = {
    "demo": {
        "description": "End-to-end demo jobs",
        "jobs": {
            "hello": {"run_args_template": "echo Hello {name}", "report_stdout": True},
            "nap": {"run_args_template": "sleep {seconds}; echo rested", "report_stdout": True},
            "blocks": {
                "run_args_template": "python3 blocks.py",
                "report_stdout": True,
                "report_format": "blocks",
            },
            "code": {
                "run_args_template": "seq 1 5",
                "report_stdout": True,
                "report_format": "code",
            },
            "file": {
                "run_args_template": "seq 1 3000",
                "report_stdout": True,
                "report_format": "file",
            },
            "fail": {"run_args_template": "echo broken disk >&2; exit 3"},
            "steps": {
                "run_args_template": "for i in 1 2 3 4 5 6; do echo step $i; sleep 0.5; done",
                "report_stdout": True,
            },
            "quiet": {"run_args_template": "true", "report_success": False},
        },
        "slack": [
            {"command": "hello [name=world]", "help": "Says hello", "job_type": "hello"},
            {"command": "nap [seconds:int]", "help": "Sleeps", "job_type": "nap"},
            {"command": "cancel nap", "action": "cancel_job", "job_type": "nap"},
            {
                "command": "suppress nap from [start_at] to [end_at]",
                "action": "schedule_suppression",
                "job_type": "nap",
            },
            {"command": "unsuppress nap", "action": "cancel_suppression", "job_type": "nap"},
            {"command": "blocks", "job_type": "blocks"},
            {"command": "code", "job_type": "code"},
            {"command": "file", "job_type": "file"},
            {"command": "fail", "job_type": "fail"},
            {"command": "steps", "job_type": "steps"},
            {"command": "quiet", "job_type": "quiet"},
        ],
    },
    "hw": {
        "description": "Hardware checks",
        "restricted": True,
        "jobs": {"check": {"run_args_template": "echo checked {xname}", "report_stdout": True}},
        "slack": [{"command": "check [xname:xname]", "help": "Checks a node", "job_type": "check"}],
    },
}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlackService]:
    home = tmp_path_factory.mktemp("slack-e2e")
    (home / "workspace" / "demo").mkdir(parents=True)
    (home / "workspace" / "demo" / "blocks.py").write_text(
        f"import json\nprint(json.dumps({BLOCKS!r}))\n"
    )
    # The only traceback allowed is the one the handler-error test causes on purpose.
    with running_service(home, CONFIG, expected_traceback='"event": "command failed"') as running:
        yield running


# --- help and understanding -----------------------------------------------------------------


def test_help_lists_namespaces(service: SlackService):
    where = service.say("@stat-bot help")
    text = message_text(service.reply(where, "Namespaces:"))
    assert "• `demo`: End-to-end demo jobs" in text
    assert "• `hw` :lock:: Hardware checks" in text


@pytest.mark.parametrize("command", ["@stat-bot demo help", "@stat-bot help demo"])
def test_namespace_help(service: SlackService, command: str):
    text = message_text(service.reply(service.say(command), "demo hello"))
    assert "• `demo nap [seconds:int]`: Sleeps" in text


def test_mention_anywhere_with_extra_space_and_a_full_stop(service: SlackService):
    where = service.say("please   @stat-bot   demo hello   Ada.  ")
    assert message_text(service.reply(where, "Hello")) == "Hello Ada"


def test_text_beyond_ascii_comes_through_the_socket_intact(service: SlackService):
    """Frames are decoded by the bot (bot/socket_mode.py), not checked byte by byte first."""
    where = service.say("@stat-bot démo hëllo Zoë ✓")
    text = message_text(service.reply(where, "understand"))
    assert "I didn't understand `démo hëllo Zoë ✓`" in text


def test_nonsense_gets_the_closest_commands(service: SlackService):
    text = message_text(service.reply(service.say("@stat-bot demo helo Ada"), "understand"))
    assert "I didn't understand `demo helo Ada`" in text
    assert "demo hello [name=world]" in text


def test_a_wrong_argument_names_it(service: SlackService):
    text = message_text(service.reply(service.say("@stat-bot demo nap soon"), "[seconds]"))
    assert "whole number" in text


# --- jobs from chat -------------------------------------------------------------------------


def test_a_command_reacts_queues_and_reports_in_its_thread(service: SlackService):
    where = service.say("@stat-bot demo hello Ada")
    reply = service.reply(where, "Hello Ada")
    assert reply["thread_ts"] == where[1]
    assert "crossed_fingers" in service.reactions(where)
    job = service.job_for(where)
    assert (job.user, job.channel, str(job.source)) == ("U0ADMIN", where[0], "slack")
    # Start notices go to the logs channel.
    service.slack.wait_for_message(
        "stat-bot-logs", lambda m: f"Job #{job.id} `demo hello`" in m["text"]
    )


def test_a_direct_message_needs_no_mention(service: SlackService):
    where = service.say("demo hello DM", channel="dm")
    assert message_text(service.reply(where, "Hello")) == "Hello DM"


def test_blocks_code_and_file_reports(service: SlackService):
    blocks = service.reply(service.say("@stat-bot demo blocks"), "Node report")
    assert blocks["blocks"] == BLOCKS
    code = service.reply(service.say("@stat-bot demo code"), "```")
    assert code["text"] == "```\n1\n2\n3\n4\n5\n```"
    where = service.say("@stat-bot demo file")
    message = service.slack.wait_for_reply(where[0], where[1], lambda m: m["files"])
    (file,) = message["files"]
    content = service.slack.file_content(file["id"])
    assert content == "".join(f"{i}\n" for i in range(1, 3001)).encode()


def test_a_failure_reports_and_is_reposted_to_tech_support(service: SlackService):
    where = service.say("@stat-bot demo fail")
    text = message_text(service.reply(where, "failed with exit status 3"))
    assert "broken disk" in text
    job = service.job_for(where)
    repost = service.slack.wait_for_message(
        "tech-support", lambda m: f"#{job.id} demo fail failed" in m["text"]
    )
    assert f"/archives/{where[0]}/p" in repost["text"]


def test_a_failure_from_a_dm_is_not_reposted(service: SlackService):
    where = service.say("demo fail", channel="dm")
    service.reply(where, "failed with exit status 3")
    job = service.job_for(where)
    time.sleep(1)
    assert not [m for m in service.slack.messages("tech-support") if f"#{job.id} " in m["text"]]


def test_a_second_job_of_a_running_type_says_it_waits(service: SlackService):
    first = service.say("@stat-bot demo nap 3")
    job = service.job_for(first)
    deadline = time.monotonic() + 10
    while service.queue.get(job.id).status is not JobStatus.RUNNING:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    second = service.say("@stat-bot demo nap 1")
    text = message_text(service.reply(second, "waits behind it"))
    assert f"#{job.id} of that type is running" in text
    assert "crossed_fingers" in service.reactions(second)
    # cancel_job removes the queued one; `cancel <id>` stops the running one.
    cancelled = message_text(service.reply(service.say("@stat-bot demo cancel nap"), "Cancelled"))
    assert "Cancelled queued `demo nap`" in cancelled
    stop = service.say(f"@stat-bot cancel {job.id}")
    assert "is running; its dispatcher is stopping it" in message_text(service.reply(stop))
    assert "was cancelled" in message_text(service.reply(first, "cancelled"))


def test_suppressions_from_chat(service: SlackService):
    bad = service.reply(service.say("@stat-bot demo suppress nap from 9am to 10:00"), "HH:MM")
    assert "[start_at] must be a time as HH:MM" in message_text(bad)
    good = service.reply(service.say("@stat-bot demo suppress nap from 00:00 to 23:59"), "from")
    assert "is suppressed from" in message_text(good)
    status = message_text(service.reply(service.say("@stat-bot status"), "Suppressions"))
    assert "demo nap" in status
    gone = service.reply(service.say("@stat-bot demo unsuppress nap"), "cancelled")
    assert "Suppression of `demo nap` cancelled" in message_text(gone)


def test_status_jobs_logs_and_remove(service: SlackService):
    hello = service.say("@stat-bot demo hello Logs")
    service.reply(hello, "Hello Logs")
    job = service.job_for(hello)
    jobs = message_text(service.reply(service.say("@stat-bot jobs demo"), "The last"))
    assert f"{job.id}" in jobs
    assert "demo hello" in jobs
    logs = message_text(service.reply(service.say(f"@stat-bot logs {job.id}"), "stdout of job"))
    assert "```\nHello Logs\n```" in logs
    status = message_text(service.reply(service.say("@stat-bot status"), "Dispatchers"))
    assert "*Dispatchers*" in status
    # ebmbot's wording for removing a queued job.
    # Held in the queue by a suppression that includes now whatever the time of day (a
    # chat window "00:00 to 23:59" means tomorrow's from 23:59 on).
    with contextlib.closing(service.queue) as queue:
        queue.suppress("demo", "nap", time.time() - 1, time.time() + 600)
    queued = service.say("@stat-bot demo nap 1")
    service.wait_reaction(queued, "crossed_fingers")
    queued_job = service.job_for(queued)
    removed = service.reply(service.say(f"@stat-bot remove job id {queued_job.id}"), "cancelled")
    assert message_text(removed) == f"Job #{queued_job.id} was queued and is now cancelled."
    service.say("@stat-bot demo unsuppress nap")


def test_long_jobs_get_a_progress_message_replaced_by_the_report(service: SlackService):
    where = service.say("@stat-bot demo steps")
    progress = service.reply(where, "has been running", progress=True)
    final = service.slack.wait_for_message(
        where[0],
        lambda m: (
            m["ts"] == progress["ts"] and "step 6" in m["text"] and "running" not in m["text"]
        ),
        thread_ts=where[1],
        timeout=15,
    )
    assert final["edited"]
    assert final["text"] == "\n".join(f"step {i}" for i in range(1, 7))
    # One message was kept up to date, not a new one per update.
    replies = [
        m for m in service.slack.messages(where[0], thread_ts=where[1]) if m["ts"] != where[1]
    ]
    assert len(replies) == 1


# --- who may do what --------------------------------------------------------------------------


def test_restricted_namespace_refuses_guests_and_serves_members(service: SlackService):
    for guest in ("guest", "visitor"):
        refused = service.say("@stat-bot hw check x1000c0s0b0n0", user=guest)
        assert "restricted to members" in message_text(service.reply(refused, "Sorry"))
    ok = service.say("@stat-bot hw check x1000c0s0b0n0")
    assert message_text(service.reply(ok, "checked")) == "checked x1000c0s0b0n0"
    assert '"command refused"' in service.log_of("bot")


def test_a_user_who_joined_after_start_is_looked_up(service: SlackService):
    newcomer = service.slack.add_user("newcomer", is_restricted=True)
    where = service.say("@stat-bot hw check x1000c0s0b0n0", user=newcomer["id"])
    assert "restricted to members" in message_text(service.reply(where, "Sorry"))


# --- what the bot ignores, and its own errors -------------------------------------------------


def test_its_own_messages_and_edits_are_ignored(service: SlackService):
    # In a DM the app hears every message (message.im), its own replies and edits included.
    where = service.say("demo hello Once", channel="dm")
    service.reply(where, "Hello Once")
    service.slack.edit(where[0], where[1], "demo hello Twice")
    time.sleep(1.5)
    replies = [m for m in service.slack.messages(where[0], thread_ts=where[1]) if m["bot_id"]]
    assert [m["text"] for m in replies] == ["Hello Once"]
    assert len([j for j in service.queue.jobs(limit=500) if j.thread_ts == where[1]]) == 1


def test_an_error_inside_a_handler_gets_an_x_and_a_note(service: SlackService):
    # A hand-edited database row no handler expects: a schedule whose cron is nonsense.
    database = service.home / "var" / "stat-bot.sqlite3"
    with sqlite3.connect(database) as conn:
        conn.execute(
            "INSERT INTO schedules (key, namespace, job_type, cron, updated_at) "
            "VALUES ('broken', 'demo', 'ghost', 'not a cron', 0)"
        )
    try:
        where = service.say("@stat-bot status")
        note = message_text(service.reply(where, "Sorry"))
    finally:
        with sqlite3.connect(database) as conn:
            conn.execute("DELETE FROM schedules WHERE key = 'broken'")
    assert "something went wrong inside STAT bot" in note
    service.wait_reaction(where, "x")
    reference = note.split("reference `")[1].split("`")[0]
    assert reference in service.log_of("bot")


def test_an_undeliverable_report_is_recorded_on_the_job(service: SlackService):
    queue = service.queue
    from stat_bot.jobs.model import JobRequest

    job = queue.enqueue(
        JobRequest(namespace="demo", job_type="hello", args={"name": "x"}, channel="#no-such")
    ).job
    deadline = time.monotonic() + 20
    while (current := queue.get(job.id)).report_state != "failed":
        assert time.monotonic() < deadline, current
        time.sleep(0.1)
    # Refused for good: given up at once, in words that say what to do.
    assert current.report_error == (
        "Slack has no channel #no-such that the bot can see: check the channel's name, "
        "or invite @stat-bot to it if it is private (channel_not_found)"
    )


# --- Slack misbehaving ---------------------------------------------------------------------------


@pytest.fixture
def fresh(tmp_path: Path, slack_emulator: EmulatorThread) -> Iterator[SlackService]:
    running = start_service(tmp_path, slack_emulator, CONFIG)
    yield running
    running.stop()


def test_a_burst_of_rate_limits_is_waited_out(fresh: SlackService):
    fresh.slack.rate_limit(count=6, retry_after=1, methods=["chat.postMessage"])
    where = fresh.say("@stat-bot demo hello Patience")
    assert message_text(fresh.reply(where, "Hello", timeout=30)) == "Hello Patience"
    limited = [c for c in fresh.slack.calls("chat.postMessage") if c["error"] == "ratelimited"]
    assert len(limited) == 6


def test_server_errors_are_retried(fresh: SlackService):
    fresh.slack.server_error(count=2, status=503, methods=["chat.postMessage"])
    where = fresh.say("@stat-bot demo hello Again")
    assert message_text(fresh.reply(where, "Hello", timeout=30)) == "Hello Again"
    failed = [c for c in fresh.slack.calls("chat.postMessage") if not c["ok"]]
    assert len(failed) == 2


def test_new_channels_are_joined_when_asked(tmp_path: Path, slack_emulator: EmulatorThread):
    running = start_service(tmp_path, slack_emulator, CONFIG, SLACK_JOIN_NEW_CHANNELS="true")
    try:
        channel = running.slack.add_channel("hpc-news")
        deadline = time.monotonic() + 15
        while not running.slack.calls("conversations.join"):
            assert time.monotonic() < deadline, running.log_of("bot")
            time.sleep(0.05)
        where = running.say("@stat-bot demo hello Incidents", channel=channel["id"])
        assert message_text(running.reply(where, "Hello")) == "Hello Incidents"
    finally:
        running.stop()


def test_a_bot_logging_at_debug_answers_text_beyond_ascii(
    tmp_path: Path, slack_emulator: EmulatorThread
):
    """At DEBUG slack-sdk logs each frame with a text pattern: frames reach it decoded."""
    running = start_service(tmp_path, slack_emulator, CONFIG, LOG_LEVEL="DEBUG")
    try:
        where = running.say("@stat-bot démo Zoë ✓")
        text = message_text(running.reply(where, "understand"))
        assert "I didn't understand `démo Zoë ✓`" in text
        assert "cannot use a string pattern" not in running.log_of("bot")
    finally:
        running.stop()


@pytest.mark.parametrize("kind", ["message", "close", "drop"])
def test_the_socket_comes_back_after_a_disconnect(fresh: SlackService, kind: str):
    before = fresh.slack.connections()["total"]
    cpu_before = cpu_seconds(fresh.processes["bot"].pid)
    started = time.monotonic()
    assert fresh.slack.disconnect(kind) >= 1
    fresh.wait_bot_connected(before + 1, timeout=10)
    took = time.monotonic() - started
    assert took < 10
    where = fresh.say(f"@stat-bot demo hello {kind}")
    assert message_text(fresh.reply(where, "Hello")) == f"Hello {kind}"
    time.sleep(2)  # no spinning while connected again either
    used = cpu_seconds(fresh.processes["bot"].pid) - cpu_before
    assert used < 0.5 * (time.monotonic() - started), f"bot used {used:.2f} s of CPU"


def test_start_up_without_slack_retries_then_gives_up_clearly(tmp_path: Path):
    import socket
    import subprocess

    from tests.conftest import STAT_BOT, write_configs
    from tests.e2e.slack_service import service_env

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    (tmp_path / "workspace").mkdir()
    write_configs(tmp_path / "job_configs.py", CONFIG)
    env = service_env(tmp_path, f"http://127.0.0.1:{port}/api/", SLACK_CONNECT_TIMEOUT="4")
    result = subprocess.run([STAT_BOT, "bot"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "Failed to send a request" not in result.stderr  # one line per try, ours
    assert result.stderr.count("Slack not reachable yet; retrying") == 3  # after 0, 1 and 3 s
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("stat-bot: Slack at http://127.0.0.1:")
    assert "gave up after 4 s (SLACK_CONNECT_TIMEOUT)" in last


def test_a_refused_token_stops_at_once(tmp_path: Path, slack_emulator: EmulatorThread):
    import subprocess

    from tests.conftest import STAT_BOT, write_configs
    from tests.e2e.slack_service import service_env

    (tmp_path / "workspace").mkdir()
    write_configs(tmp_path / "job_configs.py", CONFIG)
    env = service_env(tmp_path, slack_emulator.api_url, SLACK_BOT_TOKEN="xoxb-wrong-secret")
    result = subprocess.run([STAT_BOT, "bot"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2  # a settings problem: systemd should not keep retrying
    assert "Slack refused SLACK_BOT_TOKEN (invalid_auth)" in result.stderr
    assert "wrong-secret" not in result.stderr
