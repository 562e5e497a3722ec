"""Runbooks end to end: bot, dispatcher and web server as processes against the Slack emulator.

The index is built by `stat-bot task runbook-index` from a Markdown folder; an
Alertmanager payload posted to the web server gets the alert message in the on-call
channel and, in its thread, the best runbook section's steps with a link and Helpful /
Not helpful buttons; a click is recorded per person (a second changes it) and
acknowledged to the clicker alone; `@stat-bot runbook <words>` searches by hand.
"""

from __future__ import annotations

import json
import subprocess
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from stat_bot.integrations.slack_emulator import EmulatorThread
from stat_bot.integrations.slack_emulator.workspace import ADMIN_USER_ID, BOT_USER_ID
from tests.conftest import STAT_BOT
from tests.e2e.slack_service import SlackService, message_text, start_service
from tests.e2e.test_trac_bot import wait_listening
from tests.peers import free_port

TOKEN = "am-token-e2e"
NODE_DOWN = """# Node down

1. Check the BMC: `@stat-bot hw check <xname>`.
2. Drain the node: `@stat-bot hw drain <xname> "NodeDown"`.
3. Power cycle it <!channel> <https://evil.example|click me> only after the console shows a hang.

# GPFS hang

1. Run `mmdiag --waiters` on the node.
"""


def has_buttons(message: dict[str, Any]) -> bool:
    return any(b.get("type") == "actions" for b in message.get("blocks") or [])


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SlackService, int]]:
    home = tmp_path_factory.mktemp("runbooks-e2e")
    (home / "runbooks").mkdir()
    (home / "runbooks" / "node-down.md").write_text(NODE_DOWN)
    port = free_port()
    with EmulatorThread() as emulator:
        emulator.client().add_channel("oncall", members=[BOT_USER_ID, ADMIN_USER_ID])
        running = start_service(
            home,
            emulator,
            {"plain": {"jobs": {"hello": {"run_args_template": "echo hi"}}}},
            ONCALL_CHANNEL="oncall",
            ALERTMANAGER_TOKEN=TOKEN,
            RUNBOOK_DIRECTORY=str(home / "runbooks"),
            RUNBOOK_DIRECTORY_URL="https://git.example.org/stat/runbooks",
            RUNBOOK_TRAC_PREFIX="",
            WEB_PORT=str(port),
            WEB_WORKERS="1",
        )
        try:
            running.start("web")
            wait_listening(port, running)
            yield running, port
        finally:
            running.stop()
    for name in ("bot", "dispatcher", "web"):
        assert "Traceback" not in running.log_of(name), running.log_of(name)


def index(service: SlackService) -> str:
    done = subprocess.run(
        [STAT_BOT, "task", "runbook-index"],
        env=service.env, cwd=service.home, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def post_alert(port: int, fingerprint: str, alertname: str = "NodeDown") -> dict[str, Any]:
    alert = {
        "status": "firing",
        "labels": {"alertname": alertname, "severity": "critical", "xname": "x1000c0s0b0n0"},
        "annotations": {"summary": "x1000c0s0b0n0 stopped answering"},
        "startsAt": "2026-12-01T08:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "fingerprint": fingerprint,
    }
    body = {"version": "4", "status": "firing", "receiver": "stat-bot", "alerts": [alert]}
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/alerts/alertmanager",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def test_an_alert_gets_its_runbook_steps_in_its_thread_and_a_click_is_recorded(
    service: tuple[SlackService, int],
) -> None:
    running, port = service
    slack = running.slack
    # Before the index is built a search says how to build it.
    where = running.say("@stat-bot runbook node down")
    assert "index is empty" in message_text(running.reply(where, "runbook", timeout=20))
    out = index(running)
    assert "markdown: 1 pages read, 1 parsed (new or changed)" in out
    assert "2 sections in the index." in out
    assert "markdown: 1 pages read, 0 parsed (new or changed), 1 unchanged" in index(running)

    answer = post_alert(port, "e2e-node-down")
    (alert,) = answer["alerts"]
    parent = slack.wait_for_message(
        "oncall", lambda m: "NodeDown" in m.get("text", "") and m.get("bot_id"), timeout=20
    )
    reply = slack.wait_for_reply("oncall", parent["ts"], has_buttons, timeout=20)
    text = message_text(reply)
    assert "<https://git.example.org/stat/runbooks/node-down.md#node-down|Node down>" in text
    assert "Drain the node" in text
    # The page's text is escaped: no broadcast, no link of its own.
    assert "<!channel>" not in text
    assert "&lt;!channel&gt;" in text
    assert "<https://evil.example" not in text
    (actions,) = [b for b in reply["blocks"] if b["type"] == "actions"]
    helpful, not_helpful = actions["elements"]
    assert (helpful["action_id"], not_helpful["action_id"]) == (
        "runbook-helpful",
        "runbook-not-helpful",
    )

    admin = ADMIN_USER_ID
    slack.click(admin, "oncall", reply["ts"], "runbook-helpful", wait_ack=True)
    said = slack.wait_for_ephemeral(lambda e: "was helpful" in e["text"], user=admin)
    assert "(1 helpful, 0 not helpful" in said["text"]
    # Someone reading the public channel without being in it is answered by DM.
    visitor = slack.add_user("oncaller")["id"]
    slack.click(visitor, "oncall", reply["ts"], "runbook-helpful", wait_ack=True)
    dm = slack.wait_for_message(visitor, lambda m: "was helpful" in m.get("text", ""))
    assert "(2 helpful, 0 not helpful" in dm["text"]
    queue = running.queue
    try:
        summary = queue.runbook_answers([alert["id"]])[alert["id"]]
        assert (summary.title, summary.helpful, summary.not_helpful) == ("Node down", 2, 0)
        slack.click(admin, "oncall", reply["ts"], "runbook-not-helpful", wait_ack=True)
        slack.wait_for_ephemeral(lambda e: "not helpful to you" in e["text"], user=admin)
        summary = queue.runbook_answers([alert["id"]])[alert["id"]]
        assert (summary.helpful, summary.not_helpful) == (1, 1)  # changed, not added
    finally:
        queue.close()

    # An alert no runbook answers gets its message and nothing in its thread: the
    # answer would have been stored with the alert, in the request's transaction.
    (other,) = post_alert(port, "e2e-unknown", alertname="TapeLibraryOffline")["alerts"]
    slack.wait_for_message(
        "oncall", lambda m: "TapeLibraryOffline" in m.get("text", ""), timeout=20
    )
    queue = running.queue
    try:
        assert queue.runbook_answers([other["id"]]) == {}
        assert queue.outbox_find(f"runbook:{other['id']}:1") == []
    finally:
        queue.close()
    where = running.say("@stat-bot runbook gpfs waiters")
    found = message_text(running.reply(where, "Runbook sections", timeout=20))
    assert "GPFS hang" in found
    assert "mmdiag" in found
    # The slash command answers the one who typed it alone.
    slack.command(ADMIN_USER_ID, "general", "/runbook", "node down", wait_ack=True)
    shown = slack.wait_for_ephemeral(lambda e: "Runbook sections" in e["text"], user=ADMIN_USER_ID)
    assert "node-down.md#node-down|Node down>" in shown["text"]
