"""Security promises of the bot, end to end: `stat-bot bot` and `stat-bot dispatcher` as
processes against the local Slack emulator, a test user typing commands.

Guests cannot read a restricted namespace's jobs; Slack is asked only the user lookups a
namespace needs, and a failed one says so; overlong input is quoted as an excerpt; args
no program can be given are refused when queued.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stat_bot.integrations.slack_emulator import EmulatorThread
from stat_bot.jobs.model import JobStatus
from tests.e2e.slack_service import SlackService, message_text, running_service, start_service

CONFIG = {
    "demo": {
        "description": "Open to everyone",
        "jobs": {
            "hello": {"run_args_template": "echo Hello {name}", "report_stdout": True},
            "say": {"run_args_template": "echo {text}", "report_stdout": True},
        },
        "slack": [
            {"command": "hello [name=world]", "job_type": "hello"},
            {"command": "say [text...]", "job_type": "say"},
        ],
    },
    "hw": {
        "description": "Members only",
        "restricted": True,
        "jobs": {
            "check": {"run_args_template": "echo checked {xname}", "report_stdout": True},
            "nap": {"run_args_template": "sleep {seconds}"},
        },
        "slack": [
            {"command": "check [xname:xname]", "job_type": "check"},
            {"command": "nap [seconds:int]", "job_type": "nap"},
        ],
    },
    "ops": {
        "description": "Admins only",
        "allowed_users": ["@hpc-admins"],
        "jobs": {"deploy": {"run_args_template": "echo deployed", "report_stdout": True}},
        "slack": [{"command": "deploy", "job_type": "deploy"}],
    },
}

SECRET_XNAME = "x9000c7s7b0n7"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlackService]:
    home = tmp_path_factory.mktemp("slack-security")
    with running_service(home, CONFIG) as running:
        yield running


def group_lookups(service: SlackService) -> int:
    return len(service.slack.calls("usergroups.list"))


# --- guests and restricted namespaces' history ----------------------------------------------


def test_a_guest_cannot_read_a_restricted_namespaces_jobs(service: SlackService):
    checked = service.say(f"@stat-bot hw check {SECRET_XNAME}")
    service.reply(checked, f"checked {SECRET_XNAME}")
    job = service.job_for(checked)
    open_job = service.say("@stat-bot demo hello Everyone")
    service.reply(open_job, "Hello Everyone")
    # A member sees it.
    member = message_text(service.reply(service.say("@stat-bot jobs"), "The last"))
    assert SECRET_XNAME in member
    for guest in ("guest", "visitor"):
        listing = message_text(service.reply(service.say("@stat-bot jobs", user=guest), "jobs"))
        assert SECRET_XNAME not in listing
        assert "hw check" not in listing
        assert "demo hello" in listing  # the open namespace's jobs are still listed
        assert "Not shown: jobs in `hw`" in listing
        refused = service.say("@stat-bot jobs hw", user=guest)
        assert "restricted to members" in message_text(service.reply(refused, "Sorry"))
        logs = service.say(f"@stat-bot logs {job.id}", user=guest)
        text = message_text(service.reply(logs, "Sorry"))
        assert "restricted to members" in text
        assert SECRET_XNAME not in text


def test_a_guest_does_not_see_a_restricted_job_in_status(service: SlackService):
    napping = service.say("@stat-bot hw nap 60")
    job = service.job_for(napping)
    queue = service.queue
    deadline = time.monotonic() + 20
    while queue.get(job.id).status is not JobStatus.RUNNING:  # type: ignore[union-attr]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    try:
        member = message_text(service.reply(service.say("@stat-bot status"), "Dispatchers"))
        assert "hw nap" in member
        guest = message_text(
            service.reply(service.say("@stat-bot status", user="guest"), "Dispatchers")
        )
        assert "hw nap" not in guest
        assert "Not shown: jobs in `hw`" in guest
    finally:
        service.reply(service.say(f"@stat-bot cancel {job.id}"), f"Job #{job.id}")
        queue.close()


def test_a_member_outside_the_group_cannot_list_its_jobs(service: SlackService):
    bob = service.slack.add_user("bob")
    deployed = service.say("@stat-bot ops deploy")
    service.reply(deployed, "deployed")
    listing = message_text(service.reply(service.say("@stat-bot jobs", user=bob["id"]), "jobs"))
    assert "ops deploy" not in listing
    admin = message_text(service.reply(service.say("@stat-bot jobs"), "The last"))
    assert "ops deploy" in admin


def test_a_restricted_namespace_without_allowed_users_asks_for_no_user_groups(
    service: SlackService,
):
    before = group_lookups(service)
    service.reply(service.say("@stat-bot hw check x1000c0s0b0n0", user="guest"), "Sorry")
    newcomer = service.slack.add_user("member-new")
    where = service.say("@stat-bot hw check x1000c0s0b0n0", user=newcomer["id"])
    service.reply(where, "checked")
    assert group_lookups(service) == before


# --- overlong input ------------------------------------------------------------------------


def test_an_overlong_command_is_quoted_as_a_short_excerpt(service: SlackService):
    word = "z" * 20_000
    for command in (f"@stat-bot {word}", f"@stat-bot demo {word}", f"@stat-bot jobs {word}"):
        reply = message_text(service.reply(service.say(command), "20,0"))
        assert len(reply) < 1_000, command[:40]
        assert "z" * 200 not in reply


def test_oversized_job_ids_are_not_jobs(service: SlackService):
    for command, words in (
        ("@stat-bot logs 99999999999999999999999", "No job #99999999999999999999999;"),
        ("@stat-bot cancel 99999999999999999999999", "No job #99999999999999999999999."),
        ("@stat-bot logs 9223372036854775807", "No job #9223372036854775807;"),
        ("@stat-bot cancel " + "9" * 5000, "(5,000 characters)"),
    ):
        reply = message_text(service.reply(service.say(command), words))
        assert len(reply) < 500


# --- args no program can be given ----------------------------------------------------------


def test_a_nul_byte_in_args_is_refused_when_queued(service: SlackService):
    before = len(service.queue.jobs(limit=1000))
    where = service.say("@stat-bot demo say two words\u0000hidden")
    reply = message_text(service.reply(where, "NUL"))
    assert "not queued" in reply
    assert len(service.queue.jobs(limit=1000)) == before


def test_args_beyond_the_argument_limit_are_refused_when_queued(service: SlackService):
    before = len(service.queue.jobs(limit=1000))
    # 30,000 apostrophes fit in a Slack message but take 150,000 bytes once shell-quoted.
    where = service.say("@stat-bot demo say it " + "'" * 30_000)
    reply = message_text(service.reply(where, "not queued"))
    assert "126,976" in reply
    assert len(reply) < 1_000
    assert len(service.queue.jobs(limit=1000)) == before


# --- a failing user-group lookup -------------------------------------------------------------


@pytest.fixture
def fresh(tmp_path: Path, slack_emulator: EmulatorThread) -> Iterator[SlackService]:
    running = start_service(tmp_path, slack_emulator, CONFIG)
    yield running
    running.stop()


def test_a_failed_group_lookup_says_so_and_is_not_repeated_at_once(fresh: SlackService):
    bob = fresh.slack.add_user("bob")
    fresh.slack.server_error(count=100, status=503, methods=["usergroups.list"])
    first = fresh.say("@stat-bot ops deploy", user=bob["id"])
    text = message_text(fresh.reply(first, "Sorry", timeout=60))
    assert "could not check whether you may use `ops`" in text
    assert "usergroups.list" in text
    assert "limited to" not in text  # not a misleading "you are not allowed"
    asked = group_lookups(fresh)
    second = fresh.say("@stat-bot ops deploy", user=bob["id"])
    assert "could not check" in message_text(fresh.reply(second, "Sorry", timeout=30))
    assert group_lookups(fresh) == asked  # the failure was remembered, Slack not asked again
    # Someone listed by id, or an open namespace, needs no group lookup at all.
    hello = fresh.say("@stat-bot demo hello Still", user=bob["id"])
    assert message_text(fresh.reply(hello, "Hello")) == "Hello Still"
