"""The bot's answers, without Slack: a real SQLite queue and real job configs.

People are looked up in a dictionary here (Slack's own lookup is exercised end
to end against the emulator); everything else is the production code.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from stat_bot.bot.chat import (
    Answer,
    Asker,
    ChatCommands,
    LookupFailedError,
    Person,
    command_text,
    unescape,
)
from stat_bot.jobs.model import JobStatus, Source
from stat_bot.queue.sqlite import SQLiteQueue
from stat_bot.settings import Settings

CONFIG = {
    "system": {
        "description": "Everyday checks",
        "jobs": {
            "hello": {"run_args_template": "echo Hello {name}", "report_stdout": True},
            "sleepy": {"run_args_template": "sleep {seconds}"},
        },
        "slack": [
            {"command": "hello [name=world]", "help": "Says hello", "job_type": "hello"},
            {"command": "nap [seconds:int]", "help": "Sleeps", "job_type": "sleepy"},
            {"command": "cancel nap", "action": "cancel_job", "job_type": "sleepy"},
            {
                "command": "suppress nap from [start_at] to [end_at]",
                "action": "schedule_suppression",
                "job_type": "sleepy",
            },
        ],
    },
    "hw": {
        "description": "Hardware checks",
        "restricted": True,
        "jobs": {"check": {"run_args_template": "echo {xname}"}},
        "slack": [{"command": "check [xname:xname]", "help": "Checks a node", "job_type": "check"}],
    },
    "trac": {
        "description": "Tickets",
        "allowed_users": ["U0ALICE", "@hpc-admins"],
        "jobs": {"active": {"run_args_template": "echo active", "coalesce": False}},
        "slack": [{"command": "active", "job_type": "active"}],
    },
}

PEOPLE = {
    "U0ADMIN": Person("U0ADMIN", "admin", groups=frozenset({"hpc-admins"})),
    "U0ALICE": Person("U0ALICE", "alice"),
    "U0BOB": Person("U0BOB", "bob"),
    "U0GUEST": Person("U0GUEST", "guest", is_guest=True),
}


class Directory:
    def __init__(self) -> None:
        self.asked: list[str] = []

    def person(self, user_id: str) -> Person:
        self.asked.append(user_id)
        return PEOPLE[user_id]

    def groups(self, user_id: str) -> frozenset[str]:
        self.asked.append(f"groups of {user_id}")
        return PEOPLE[user_id].groups

    def name(self, user_id: str) -> str | None:
        return PEOPLE[user_id].name


@pytest.fixture
def chat(configure, settings: Settings, queue: SQLiteQueue) -> ChatCommands:
    return ChatCommands(settings, configure(CONFIG), queue, Directory())


def ask(user: str = "U0ADMIN", *, im: bool = False) -> Asker:
    return Asker(user, "D0X" if im else "C0GENERAL", "1700000000.000100", is_im=im)


def text_of(answer: Answer) -> str:
    return "\n".join(m.text for m in answer.messages)


# --- reading the command out of a message -------------------------------------------------


@pytest.mark.parametrize(
    ("text", "command"),
    [
        ("<@U0BOT> system hello Ada", "system hello Ada"),
        ("  <@U0BOT>   system   hello  Ada.  ", "system hello Ada"),
        ("hey <@U0BOT>: status", "status"),
        ("system hello Ada <@U0BOT>", "system hello Ada"),
        ("<@U0BOT|stat-bot> jobs", "jobs"),
        ("system hello Ada", "system hello Ada"),  # a DM needs no mention
        (
            "<@U0BOT> trac note &lt;b&gt; &amp; <https://x.org/a|x.org/a>",
            "trac note <b> & https://x.org/a",
        ),
        ("<@U0BOT> hello <@U0ALICE>", "hello <@U0ALICE>"),  # other mentions are arguments
    ],
)
def test_command_text(text: str, command: str):
    assert command_text(text, "U0BOT") == command


def test_unescape_channel_references():
    assert unescape("in <#C0GENERAL|general> and <#C0LOGS>") == "in #general and #C0LOGS"


# --- help ---------------------------------------------------------------------------------


def test_help_lists_namespaces_with_locks_on_restricted_ones(chat: ChatCommands):
    for text in ("help", ""):
        answer = chat.handle(text, ask())
        body = text_of(answer)
        assert "• `hw` :lock:: Hardware checks" in body
        assert "• `system`: Everyday checks" in body
        assert "`@stat-bot <namespace> help`" in body


@pytest.mark.parametrize("text", ["system help", "help system", "HELP system", "system"])
def test_namespace_help_lists_commands_with_parameter_types(chat: ChatCommands, text: str):
    body = text_of(chat.handle(text, ask()))
    assert "• `system hello [name=world]`: Says hello" in body
    assert "• `system nap [seconds:int]`: Sleeps" in body
    assert "`[seconds]`: a whole number" in body


def test_help_for_an_unknown_namespace_suggests(chat: ChatCommands):
    body = text_of(chat.handle("help sytem", ask()))
    assert body.startswith("I didn't understand `help sytem`.")
    assert "`@stat-bot help`" in body


# --- configured commands --------------------------------------------------------------------


def test_a_command_queues_its_job_and_only_reacts(chat: ChatCommands, queue: SQLiteQueue):
    answer = chat.handle("system hello Ada", ask())
    assert answer.reaction == "crossed_fingers"
    assert answer.messages == []
    (job,) = queue.jobs()
    assert (job.namespace, job.job_type, job.args) == ("system", "hello", {"name": "Ada"})
    assert job.source == Source.SLACK
    assert (job.user, job.channel, job.thread_ts, job.is_im) == (
        "U0ADMIN",
        "C0GENERAL",
        "1700000000.000100",
        False,
    )


def test_the_same_command_while_queued_joins_the_job_and_says_so(
    chat: ChatCommands, queue: SQLiteQueue
):
    queue.suppress("system", "hello", time.time() - 1, time.time() + 600)
    chat.handle("system hello Ada", ask("U0ADMIN"))
    bob = Asker("U0BOB", "C0GENERAL", "1700000000.000200")
    answer = chat.handle("system hello Ada", bob)
    (job,) = queue.jobs()
    assert answer.reaction == "crossed_fingers"
    assert text_of(answer).startswith(
        f"Joined job #{job.id} `system hello`, already queued for @admin; "
        "its result comes to this thread too"
    )
    (joined,) = queue.requesters(job.id)
    assert (joined.user, joined.user_name, joined.channel, joined.thread_ts) == (
        "U0BOB", "bob", "C0GENERAL", "1700000000.000200",
    )  # fmt: skip
    # Other arguments are another job, queued as usual.
    other = chat.handle("system hello Bob", bob)
    assert "Joined" not in text_of(other)
    assert f"Job #{job.id + 1} `system hello` queued" in text_of(other)
    assert sorted(j.args["name"] for j in queue.jobs()) == ["Ada", "Bob"]


def test_a_command_behind_a_running_job_says_so(chat: ChatCommands, queue: SQLiteQueue):
    chat.handle("system nap 30", ask())
    (first,) = queue.claim("w1", 1)
    answer = chat.handle("system nap 5", ask())
    assert answer.reaction == "crossed_fingers"
    body = text_of(answer)
    assert f"#{first.id} of that type is running, so this one waits behind it" in body


def test_argument_problems_name_the_argument(chat: ChatCommands, queue: SQLiteQueue):
    body = text_of(chat.handle("system nap soon", ask()))
    assert "[seconds]" in body
    assert "whole number" in body
    assert queue.jobs() == []


def test_unknown_text_suggests_the_closest_commands(chat: ChatCommands):
    body = text_of(chat.handle("sytem helo Ada", ask()))
    assert body.startswith("I didn't understand `sytem helo Ada`.")
    assert "• `system hello [name=world]`: Says hello" in body
    assert "Say `@stat-bot help`" in body


def test_cancel_and_suppression_actions(chat: ChatCommands, queue: SQLiteQueue):
    chat.handle("system nap 30", ask())
    assert "Cancelled queued `system sleepy`" in text_of(chat.handle("system cancel nap", ask()))
    assert queue.jobs()[0].status is JobStatus.CANCELLED
    bad = text_of(chat.handle("system suppress nap from 25:00 to 10:00", ask()))
    assert "[start_at] must be a time as HH:MM" in bad
    # The words `stat-bot enqueue` prints for the same mistake (tests/integration/test_cli.py).
    assert bad.startswith("`system suppress nap from 25:00 to 10:00`: [start_at] must be")
    good = text_of(chat.handle("system suppress nap from 01:00 to 02:00", ask()))
    assert "is suppressed from" in good
    assert len(queue.suppressions()) == 1


# --- permissions ------------------------------------------------------------------------------


@pytest.mark.parametrize("guest", ["U0GUEST"])
def test_a_restricted_namespace_refuses_guests(chat: ChatCommands, queue: SQLiteQueue, guest):
    body = text_of(chat.handle("hw check x1000c0s0b0n0", ask(guest)))
    assert "`hw` is restricted to members of this workspace" in body
    assert queue.jobs() == []
    assert chat.handle("hw check x1000c0s0b0n0", ask("U0BOB")).reaction == "crossed_fingers"


def test_allowed_users_admit_listed_users_and_group_members(chat: ChatCommands, queue: SQLiteQueue):
    refused = text_of(chat.handle("trac active", ask("U0BOB")))
    assert "`trac` commands are limited to <@U0ALICE>, @hpc-admins" in refused
    assert chat.handle("trac active", ask("U0ALICE")).reaction
    assert chat.handle("trac active", ask("U0ADMIN")).reaction  # via @hpc-admins
    assert [j.user for j in queue.jobs()] == ["U0ADMIN", "U0ALICE"]
    assert [j.user_name for j in queue.jobs()] == ["admin", "alice"]


def test_open_namespaces_do_not_look_people_up(chat: ChatCommands):
    chat.handle("system hello", ask("U0GUEST"))
    assert chat.people.asked == []  # type: ignore[attr-defined]


# --- built-ins ----------------------------------------------------------------------------------


def test_status_shows_running_and_queued(chat: ChatCommands, queue: SQLiteQueue):
    assert "Nothing is running or queued." in text_of(chat.handle("status", ask()))
    chat.handle("system nap 30", ask())
    chat.handle("system hello Ada", ask())
    queue.claim("w1", 1)
    body = text_of(chat.handle("status", ask()))
    assert "*Running (1)*" in body
    assert "*Queued (1)*" in body
    assert "system sleepy" in body
    assert "system hello" in body


def test_jobs_lists_history_optionally_by_namespace(chat: ChatCommands, queue: SQLiteQueue):
    assert text_of(chat.handle("jobs", ask())) == "No jobs yet."
    chat.handle("system hello Ada", ask())
    chat.handle("hw check x1000c0s0b0n0", ask())
    body = text_of(chat.handle("jobs system", ask()))
    assert "The last 1 jobs in `system`" in body
    assert "hw check" not in body
    assert "There is no namespace `nope`" in text_of(chat.handle("jobs nope", ask()))


def test_cancel_and_remove_job_id(chat: ChatCommands, queue: SQLiteQueue):
    chat.handle("system nap 30", ask())
    chat.handle("system hello", ask())
    first, second = sorted(j.id for j in queue.jobs())
    assert text_of(chat.handle(f"cancel {first}", ask())) == (
        f"Job #{first} was queued and is now cancelled."
    )
    assert text_of(chat.handle(f"remove job id {second}", ask())) == (
        f"Job #{second} was queued and is now cancelled."
    )
    assert text_of(chat.handle("cancel 999", ask())) == "No job #999."
    assert "is not a job id" in text_of(chat.handle("cancel soon", ask()))


def test_guests_cannot_cancel_or_read_restricted_jobs(chat: ChatCommands, queue: SQLiteQueue):
    chat.handle("hw check x1000c0s0b0n0", ask())
    (job,) = queue.jobs()
    assert "restricted" in text_of(chat.handle(f"cancel {job.id}", ask("U0GUEST")))
    assert "restricted" in text_of(chat.handle(f"logs {job.id}", ask("U0GUEST")))
    assert queue.get(job.id).status is JobStatus.QUEUED


def test_logs_in_a_code_block_or_as_a_file_when_long(
    chat: ChatCommands, queue: SQLiteQueue, tmp_path: Path
):
    chat.handle("system hello Ada", ask())
    (job,) = queue.claim("w1", 1)
    log_dir = tmp_path / "logs" / str(job.id)
    log_dir.mkdir(parents=True)
    (log_dir / "stdout").write_text("".join(f"line {i}\n" for i in range(100)))
    (log_dir / "stderr").write_text("x" * 9000 + "\n")
    queue.mark_started(job.id, 1, str(log_dir))
    queue.finish(job.id, JobStatus.SUCCEEDED, 0, now=time.time())

    tail = chat.handle(f"logs {job.id}", ask())
    body = text_of(tail)
    assert body.startswith(f"stdout of job #{job.id} (the last 40 of 100 lines):\n```\nline 60\n")
    assert body.endswith("line 99\n```")
    head = text_of(chat.handle(f"logs #{job.id} stdout head", ask()))
    assert "(the first 40 of 100 lines)" in head
    assert "line 0\n" in head
    (as_file,) = chat.handle(f"logs {job.id} stderr", ask()).messages
    assert as_file.file is not None
    assert as_file.file.content == b"x" * 9000 + b"\n"
    assert "Usage: `logs <job id>" in text_of(chat.handle("logs", ask()))
    assert "I don't know `both` here" in text_of(chat.handle(f"logs {job.id} both", ask()))
    assert text_of(chat.handle("logs 999", ask())).startswith("No job #999")


# --- what a person who may not use a namespace can read ------------------------------------


def test_jobs_and_status_leave_out_namespaces_the_asker_may_not_use(
    chat: ChatCommands, queue: SQLiteQueue
):
    chat.handle("hw check x1000c0s0b0n7", ask())
    chat.handle("trac active", ask())
    chat.handle("system hello Ada", ask())
    everything = text_of(chat.handle("jobs", ask()))
    assert "x1000c0s0b0n7" in everything
    assert "trac active" in everything
    guest = text_of(chat.handle("jobs", ask("U0GUEST")))
    assert "x1000c0s0b0n7" not in guest
    assert "trac active" not in guest  # the guest is not in trac's allowed_users either
    assert "system hello" in guest
    assert "(Not shown: jobs in `hw`, `trac`, which you may not use.)" in guest
    bob = text_of(chat.handle("jobs", ask("U0BOB")))  # a member: hw yes, trac no
    assert "x1000c0s0b0n7" in bob
    assert "trac active" not in bob
    assert "restricted" in text_of(chat.handle("jobs hw", ask("U0GUEST")))
    status = text_of(chat.handle("status", ask("U0GUEST")))
    assert "hw check" not in status
    assert "system hello" in status


class FailingGroups(Directory):
    def groups(self, user_id: str) -> frozenset[str]:
        raise LookupFailedError("Slack's usergroups.list failed (missing_scope)")


def test_a_failed_group_lookup_is_said_not_taken_for_a_refusal(
    configure, settings: Settings, queue: SQLiteQueue
):
    chat = ChatCommands(settings, configure(CONFIG), queue, FailingGroups())
    body = text_of(chat.handle("trac active", ask("U0BOB")))
    assert "could not check whether you may use `trac`" in body
    assert "missing_scope" in body
    assert "limited to" not in body
    assert chat.handle("trac active", ask("U0ALICE")).reaction  # listed by id: no lookup
    assert queue.jobs()[0].user == "U0ALICE"
    # A restricted namespace without allowed_users never asks for groups.
    assert chat.handle("hw check x1000c0s0b0n0", ask("U0BOB")).reaction


def test_overlong_input_is_quoted_as_an_excerpt(chat: ChatCommands):
    word = "q" * 10_000
    for text in (word, f"system {word}", f"jobs {word}", f"cancel {word}", f"logs 1 {word}"):
        body = text_of(chat.handle(text, ask()))
        assert len(body) < 1_000, text[:20]
        assert re.search(r"\(10,0\d\d characters\)", body), text[:20]
    assert text_of(chat.handle("cancel " + "9" * 5000, ask())).startswith("No job #999")
    assert text_of(chat.handle("logs 99999999999999999999999", ask())).startswith(
        "No job #99999999999999999999999;"
    )
    assert "is not a job id" in text_of(chat.handle("cancel ²", ask()))
