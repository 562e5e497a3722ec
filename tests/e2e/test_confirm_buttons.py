"""Guarded jobs end to end: the real Bolt app and dispatcher against the Slack emulator.

A command for a job with `confirm` gets an offer with Confirm/Cancel buttons in its
thread; a click arrives as Socket Mode `interactive` envelope (`block_actions`), as
Slack sends it. Someone not allowed is refused; the requester's click queues the job,
which runs and whose report names who confirmed; the typed fallback and Cancel work.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from stat_bot.integrations.slack_emulator import EmulatorError
from stat_bot.queue.base import ConfirmationState
from tests.e2e.slack_service import SlackService, message_text, running_service

CONFIG = {
    "power": {
        "description": "Guarded actions (a test namespace)",
        "jobs": {
            "power": {
                "run_args_template": "echo power {action} {target}",
                "report_stdout": True,
                "confirm": "Power {action} {target}",
                "confirm_by": ["@hpc-admins"],
                "exclusive": "target",
                "coalesce": False,
            },
        },
        "slack": [{"command": "power [target:target] [action:on|off]", "job_type": "power"}],
    },
}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlackService]:
    home = tmp_path_factory.mktemp("confirm-e2e")
    (home / "workspace" / "power").mkdir(parents=True)
    with running_service(home, CONFIG) as running:
        yield running


@pytest.fixture(scope="module")
def people(service: SlackService) -> dict[str, str]:
    """Two ordinary members (neither in @hpc-admins): name -> user id."""
    return {name: service.slack.add_user(name)["id"] for name in ("alice", "bob")}


def has_buttons(message: dict[str, Any]) -> bool:
    return any(b.get("type") == "actions" for b in message.get("blocks") or [])


def offer_of(service: SlackService, where: tuple[str, str]) -> dict[str, Any]:
    """The offer with buttons the bot posted in the command's thread."""
    channel, ts = where
    return service.slack.wait_for_reply(channel, ts, has_buttons, timeout=20)


def code_of(offer: dict[str, Any]) -> str:
    (actions,) = [b for b in offer["blocks"] if b["type"] == "actions"]
    return actions["elements"][0]["value"]


def thread_reply(service: SlackService, where: tuple[str, str], match: str) -> dict[str, Any]:
    return service.reply(where, match, timeout=20)


def edited_offer(service: SlackService, where: tuple[str, str], ts: str) -> dict[str, Any]:
    """The offer once a decision has edited it (its buttons gone)."""
    channel, thread = where
    return service.slack.wait_for_message(
        channel,
        lambda m: m["ts"] == ts and m["edited"] and not has_buttons(m),
        thread_ts=thread,
        timeout=20,
    )


def test_a_guarded_command_gets_buttons_and_only_an_allowed_click_runs_it(
    service: SlackService, people: dict[str, str]
):
    where = service.say("@stat-bot power power x1000c0s0b0n0 off", user="alice")
    offer = offer_of(service, where)
    text = message_text(offer)
    assert "Power `off` `x1000c0s0b0n0`" in text
    assert "Target: `x1000c0s0b0n0`" in text
    code = code_of(offer)
    assert f"`@stat-bot confirm {code}`" in text
    assert [
        e["action_id"] for b in offer["blocks"] if b["type"] == "actions" for e in b["elements"]
    ] == [
        "stat_confirm",
        "stat_cancel",
    ]
    channel = where[0]

    # bob may use the namespace but is neither the requester nor in @hpc-admins.
    click = service.slack.click("bob", channel, offer["ts"], "stat_confirm", wait_ack=True)
    assert click["acked"] is True  # within the emulator's wait (Slack wants 3 s)
    refusal = thread_reply(service, where, "Sorry")
    assert f"Sorry <@{people['bob']}>, only <@{people['alice']}> or @hpc-admins may confirm" in (
        message_text(refusal)
    )
    queue = service.queue
    try:
        assert queue.get_confirmation(code).state is ConfirmationState.PENDING
        assert [j for j in queue.jobs() if j.thread_ts == where[1]] == []
    finally:
        queue.close()

    service.slack.click("alice", channel, offer["ts"], "stat_confirm", wait_ack=True)
    report = thread_reply(service, where, "power off x1000c0s0b0n0")
    assert "Confirmed by @alice." in message_text(report)
    edited = edited_offer(service, where, offer["ts"])
    assert f"Confirmed by <@{people['alice']}>" in message_text(edited)
    job = service.job_for(where)
    assert job.confirmed_by == "alice"
    start = service.slack.wait_for_message(
        "stat-bot-logs", lambda m: f"Job #{job.id} " in m["text"], timeout=20
    )
    assert "confirmed by @alice" in start["text"]

    # A second answer, typed, changes nothing and says who decided.
    again = service.say(f"@stat-bot confirm {code}", user="admin")
    assert f"Confirmed by <@{people['alice']}>" in message_text(service.reply(again, "already"))
    # The buttons are gone: a stale click has nothing to press.
    with pytest.raises(EmulatorError) as caught:
        service.slack.click("alice", channel, offer["ts"], "stat_confirm")
    assert caught.value.code == "action_not_found"


def test_an_admin_confirms_by_typing_the_code(service: SlackService, people: dict[str, str]):
    where = service.say("@stat-bot power power x1000c1 on", user="alice")
    code = code_of(offer_of(service, where))
    service.slack.post("admin", where[0], f"<@U0BOT> confirm {code}", thread_ts=where[1])
    report = thread_reply(service, where, "power on x1000c1")
    assert "Confirmed by @admin." in message_text(report)


def test_cancel_leaves_nothing_to_run(service: SlackService, people: dict[str, str]):
    where = service.say("@stat-bot power power x1000c2 off", user="alice")
    offer = offer_of(service, where)
    code = code_of(offer)
    service.slack.click("alice", where[0], offer["ts"], "stat_cancel", wait_ack=True)
    edited = edited_offer(service, where, offer["ts"])
    assert f"Cancelled by <@{people['alice']}>; nothing was done." in message_text(edited)
    queue = service.queue
    try:
        assert queue.get_confirmation(code).state is ConfirmationState.CANCELLED
        assert [j for j in queue.jobs() if j.thread_ts == where[1]] == []
    finally:
        queue.close()
