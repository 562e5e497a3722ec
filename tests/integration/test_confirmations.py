"""Guarded jobs through the bot's command handling on a real SQLite queue.

A command for a job with `confirm` is offered, not queued; who may answer, what a
second click or a late one is told, and that confirming is one transaction (many
clicks at once queue one job). People are looked up in a dictionary here; the
real Bolt app and Slack emulator are in tests/e2e/test_confirm_buttons.py.
"""

from __future__ import annotations

import json
import threading
import time

import pytest

from stat_bot.bot.chat import Answer, Asker, ChatCommands, Person
from stat_bot.hardware.inventory import Node, write_inventory
from stat_bot.queue import Queue, open_queue
from stat_bot.queue.base import ConfirmationState
from stat_bot.report.outbox import decode
from tests.integration.conftest import wait_until

CONFIG = {
    "power": {
        "description": "Guarded actions for the tests",
        "jobs": {
            "power": {
                "run_args_template": "echo power {action} {target}",
                "report_stdout": True,
                "confirm": "Power {action} {target}",
                "confirm_by": ["@hpc-admins"],
                "exclusive": "target",
                "coalesce": False,
            },
            "check": {"run_args_template": "echo check {target}"},
        },
        "slack": [
            {"command": "power [target:target] [action:on|off]", "job_type": "power"},
            {"command": "check [target:target]", "job_type": "check"},
        ],
    },
    "closed": {
        "allowed_users": ["U0ALICE", "U0ADMIN"],
        "jobs": {
            "reboot": {
                "run_args_template": "echo reboot {target}",
                "confirm": "Reboot {target}",
                "exclusive": "target",
            }
        },
        "slack": [{"command": "reboot [target:target]", "job_type": "reboot"}],
    },
}

PEOPLE = {
    "U0ADMIN": Person("U0ADMIN", "admin", groups=frozenset({"hpc-admins"})),
    "U0ALICE": Person("U0ALICE", "alice"),
    "U0BOB": Person("U0BOB", "bob"),
}


class Directory:
    def person(self, user_id: str) -> Person:
        return PEOPLE[user_id]

    def groups(self, user_id: str) -> frozenset[str]:
        return PEOPLE[user_id].groups

    def name(self, user_id: str) -> str | None:
        return PEOPLE[user_id].name


def ask(user: str) -> Asker:
    return Asker(user, "C0GENERAL", "1700000000.000100")


def text_of(answer: Answer) -> str:
    return "\n".join(m.text for m in answer.messages)


@pytest.fixture
def chat(configure, settings, queue: Queue) -> ChatCommands:
    return ChatCommands(settings, configure(CONFIG), queue, Directory())


def offered(chat: ChatCommands, text: str, user: str = "U0ALICE") -> str:
    answer = chat.handle(text, ask(user))
    assert answer.reaction == "question", text_of(answer)
    (offer,) = chat.queue.confirmations(states=[ConfirmationState.PENDING], limit=1)
    return offer.code


def test_a_guarded_command_is_offered_with_buttons_not_queued(chat: ChatCommands, queue):
    code = offered(chat, "power power x1000c0s0b0n0 off")
    assert queue.jobs() == []
    offer = queue.get_confirmation(code)
    assert offer.summary == "Power `off` `x1000c0s0b0n0`"
    assert (offer.requested_by, offer.channel, offer.thread_ts) == (
        "U0ALICE",
        "C0GENERAL",
        "1700000000.000100",
    )
    report = decode(queue.outbox_get(offer.offer_id).payload)
    (message,) = report.messages
    actions = message.blocks[-1]["elements"]
    assert [(a["action_id"], a["value"]) for a in actions] == [
        ("stat_confirm", code),
        ("stat_cancel", code),
    ]
    assert f"`@stat-bot confirm {code}`" in message.text
    assert "Target: `x1000c0s0b0n0` (as typed" in message.text  # no inventory here


def test_someone_else_is_refused_in_words_and_nothing_changes(chat: ChatCommands, queue):
    code = offered(chat, "power power x1000c0 off")
    answer = chat.handle(f"confirm {code}", ask("U0BOB"))
    assert "Sorry <@U0BOB>, only <@U0ALICE> or @hpc-admins may confirm" in text_of(answer)
    assert queue.get_confirmation(code).state is ConfirmationState.PENDING
    assert queue.jobs() == []
    assert "may cancel" in text_of(chat.handle(f"cancel-confirm {code}", ask("U0BOB")))
    assert queue.get_confirmation(code).state is ConfirmationState.PENDING


def test_the_requester_confirms_and_the_job_records_who(chat: ChatCommands, queue):
    code = offered(chat, "power power x1000c0 off")
    answer = chat.handle(f"confirm {code.lower()}", ask("U0ALICE"))
    (job,) = queue.jobs()
    assert f"Confirmed: job #{job.id} `power power` queued." in text_of(answer)
    assert job.confirmed_by == "alice"
    assert job.args == {"target": "x1000c0", "action": "off"}
    assert queue.job_locks(job.id) == ["x1000.c0."]
    again = chat.handle(f"confirm {code}", ask("U0ADMIN"))
    assert f"`{code}` was already decided" in text_of(again)
    assert "Confirmed by <@U0ALICE>" in text_of(again)
    assert len(queue.jobs()) == 1


def test_an_admin_of_the_group_may_confirm_and_a_namespace_list_counts_too(chat, queue):
    code = offered(chat, "power power x1000c0 on")
    chat.handle(f"confirm {code}", ask("U0ADMIN"))
    assert queue.jobs()[0].confirmed_by == "admin"
    closed = offered(chat, "closed reboot x1000c1")
    assert "Sorry <@U0BOB>" in text_of(chat.handle(f"confirm {closed}", ask("U0BOB")))
    chat.handle(f"confirm {closed}", ask("U0ADMIN"))  # in allowed_users: an admin of it
    assert queue.get_confirmation(closed).state is ConfirmationState.CONFIRMED


def test_cancel_by_the_typed_words_in_either_order(chat: ChatCommands, queue):
    first = offered(chat, "power power x1000c0 on")
    assert "Cancelled" in text_of(chat.handle(f"cancel-confirm {first}", ask("U0ALICE")))
    second = offered(chat, "power power x1000c0 on")
    assert "Cancelled" in text_of(chat.handle(f"confirm {second} cancel", ask("U0ADMIN")))
    assert queue.jobs() == []
    late = chat.handle(f"confirm {first}", ask("U0ALICE"))
    assert "Cancelled by <@U0ALICE>; nothing was done." in text_of(late)


def test_many_clicks_at_once_queue_one_job(configure, settings, queue, chat):
    code = offered(chat, "power power x1000c0 off")
    answers: list[str] = []
    start = threading.Barrier(8)
    configs = chat.configs
    # Each its own queue (connections), as separate bot processes would have.
    queues = [open_queue(settings) for _ in range(8)]

    def click(user: str, own: Queue) -> None:
        mine = ChatCommands(settings, configs, own, Directory())
        start.wait()
        answers.append(text_of(mine.decide(code, user, confirm=True)))

    threads = [
        threading.Thread(target=click, args=("U0ALICE" if i % 2 else "U0ADMIN", own))
        for i, own in enumerate(queues)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    for own in queues:
        own.close()
    assert len(queue.jobs()) == 1
    assert sum(a.startswith("Confirmed: job #") for a in answers) == 1
    assert sum("already decided" in a for a in answers) == 7


def test_a_late_answer_is_refused_and_says_to_ask_again(make_settings, configure, queue):
    settings = make_settings(hw_confirm_expiry=0.3)
    chat = ChatCommands(settings, configure(CONFIG), queue, Directory())
    code = offered(chat, "power power x1000c0 off")
    expires = queue.get_confirmation(code).expires_at
    wait_until(lambda: time.time() > expires, what="the offer's expiry")
    answer = chat.handle(f"confirm {code}", ask("U0ALICE"))
    assert "expired before you could confirm it; nothing was done. Ask again." in text_of(answer)
    assert queue.jobs() == []
    assert queue.get_confirmation(code).state is ConfirmationState.EXPIRED
    edits = [decode(i.payload) for i in queue.outbox_items() if i.kind == "confirm"]
    assert any(e.meta.get("replaces_outbox") for e in edits)


def test_with_an_inventory_the_offer_names_the_nodes_and_a_typo_is_refused_first(
    make_settings, configure, queue, home
):
    path = home / "inventory.csv"
    write_inventory(
        path,
        [
            Node(f"x1000c0s{s}b0n{n}", f"127.0.0.1:{9000 + 2 * s + n}", f"nid{2 * s + n + 1:03d}")
            for s in range(2)
            for n in range(2)
        ],
    )
    chat = ChatCommands(make_settings(hw_inventory=path), configure(CONFIG), queue, Directory())
    code = offered(chat, "power power x1000c0 off")
    offer = queue.get_confirmation(code)
    assert offer.request.targets.xnames == (
        "x1000c0s0b0n0",
        "x1000c0s0b0n1",
        "x1000c0s1b0n0",
        "x1000c0s1b0n1",
    )
    text = decode(queue.outbox_get(offer.offer_id).payload).messages[0].text
    assert "4 nodes: `x1000c0s[0-1]b0n[0-1]` (nid[001-004])" in text
    refused = chat.handle("power power x1000c7 off", ask("U0ALICE"))
    assert "not in the inventory" in text_of(refused)
    assert len(queue.confirmations()) == 1  # nothing offered for the typo
    chat.handle(f"confirm {code}", ask("U0ALICE"))
    (job,) = queue.jobs()
    assert len(queue.job_locks(job.id)) == 4
    assert json.loads(json.dumps(offer.request.to_dict()))["targets"]["from_inventory"]


def test_the_command_line_offers_and_answers_like_the_bot(configure, cli, queue):
    configure(CONFIG)
    offered_ = cli("--json", "enqueue", "power power x1000c0s0b0n0 off")
    assert offered_.returncode == 0, offered_.stderr
    code = json.loads(offered_.stdout)["code"]
    assert queue.jobs() == []
    confirmed = cli("--json", "confirm", code.lower())
    assert confirmed.returncode == 0, confirmed.stderr
    job = json.loads(confirmed.stdout)["job"]
    assert job["confirmed_by"].startswith("cli:")
    again = cli("confirm", code)
    assert again.returncode == 1
    assert f"`{code}` was already decided" in again.stdout
    shown = cli("jobs")
    assert f"confirmed by {job['confirmed_by']}" in shown.stdout
    second = json.loads(cli("--json", "enqueue", "power power x1000c1 on").stdout)["code"]
    cancelled = cli("confirm", second, "--cancel")
    assert cancelled.returncode == 0, cancelled.stdout
    assert len(queue.jobs()) == 1


def test_help_marks_guarded_commands_and_explains_the_typed_answers(chat: ChatCommands):
    assert "(asks for a confirmation)" in text_of(chat.handle("power help", ask("U0BOB")))
    assert "`confirm <code>` and `cancel-confirm <code>`" in text_of(
        chat.handle("help", ask("U0BOB"))
    )
    assert text_of(chat.handle("confirm", ask("U0BOB"))).startswith("Usage: `confirm <code>`")
    assert "is not a confirmation code" in text_of(chat.handle("confirm $$$", ask("U0BOB")))
    assert "There is no confirmation `ZZZZZZ`" in text_of(
        chat.handle("confirm zzzzzz", ask("U0BOB"))
    )
