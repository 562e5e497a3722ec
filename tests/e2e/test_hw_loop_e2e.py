"""Closing the loop end to end: the bot and the dispatcher with every real peer.

The real Bolt app and dispatcher (separate `stat-bot` processes) against the Slack
emulator, the project's many-BMC Redfish emulator (x1000c0s1b0n0 = nid000003 has a
critical PSU), a real tracd and a real slurmctld. `@stat-bot hw check` of the node
opens a Trac ticket for its xname and offers a drain in the thread; the requester's
click drains it in Slurm with the reason `STAT#<ticket>: PSU 2: Critical`. Then the
BMC is flipped healthy: the next check comments "passed its check" on the ticket and
offers to resume, and that click resumes the node. A check a new ticket asks for
(`stat-bot task hw-check X --ticket N`, what the trac rule queues) comments its result
into that ticket.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stat_bot.integrations.slack_emulator import EmulatorThread
from stat_bot.jobs.config import load_config
from stat_bot.queue.sqlite import SQLiteQueue
from tests.conftest import ROOT, STAT_BOT, subprocess_env
from tests.e2e.slack_service import SlackService, message_text, service_env
from tests.redfish_fixtures import TEST_TIMEOUT, RedfishFleet
from tests.slurm_fixtures import SlurmCluster
from tests.trac_fixtures import TracServer

pytestmark = [pytest.mark.trac, pytest.mark.slurm]

NODE = "x1000c0s1b0n0"  # FLEET_VARIANTS: critical_psu; nid000003 in the emulator's inventory
HOST = "nid000003"
WAIT = 90.0  # a check, a drain or a resume through the queue on a busy 2-core machine


def shipped_hw_namespace() -> str:
    """job_configs.py with the `hw` namespace exactly as shipped (hw_rules, trac rule...)."""
    load_config(ROOT / "job_configs.py")  # it must load as it is
    return (
        f"import runpy\n"
        f"raw_config = {{'hw': runpy.run_path({str(ROOT / 'job_configs.py')!r})"
        f"['raw_config']['hw']}}\n"
    )


def hw_environment(fleet: RedfishFleet, tracd: TracServer, slurm: SlurmCluster) -> dict[str, str]:
    return {
        "WORKSPACE_DIR": str(ROOT / "workspace"),
        "HW_INVENTORY": str(fleet.process.inventory),
        "REDFISH_USERNAME": fleet.process.username,
        "REDFISH_PASSWORD": fleet.process.password,
        "REDFISH_TIMEOUT": str(TEST_TIMEOUT),
        "REDFISH_VERIFY_TLS": "false",
        **tracd.environ(),
        **slurm.env,
    }


@pytest.fixture
def service(
    tmp_path: Path,
    redfish_fleet: RedfishFleet,
    tracd: TracServer,
    slurm_cluster: SlurmCluster,
) -> Iterator[SlackService]:
    (tmp_path / "workspace").mkdir()
    (tmp_path / "job_configs.py").write_text(shipped_hw_namespace())
    env = hw_environment(redfish_fleet, tracd, slurm_cluster)
    with EmulatorThread() as emulator:
        running = SlackService(tmp_path, emulator, service_env(tmp_path, emulator.api_url, **env))
        try:
            running.start("dispatcher")
            running.start("bot")
            yield running
        finally:
            running.stop()
            redfish_fleet.control.reset()
            close_tickets(tracd, NODE)  # the session's tracd is shared: no active leftovers
    tracebacks = [
        line
        for name in ("bot", "dispatcher")
        for line in running.log_of(name).splitlines()
        if "Traceback" in line
    ]
    assert not tracebacks, tracebacks


def has_buttons(message: dict[str, Any]) -> bool:
    """An offer's Confirm/Cancel buttons (a failing check's "Open an incident" is not one)."""
    return any(
        e.get("action_id") == "stat_confirm"
        for b in message.get("blocks") or []
        if b.get("type") == "actions"
        for e in b.get("elements") or []
    )


def code_of(offer: dict[str, Any]) -> str:
    (actions,) = [b for b in offer["blocks"] if b["type"] == "actions"]
    return actions["elements"][0]["value"]


def text_of(message: dict[str, Any]) -> str:
    """message_text and the context blocks' elements (where a check's notes go)."""
    parts = [message_text(message)]
    for block in message.get("blocks") or []:
        for element in block.get("elements") or []:
            text = element.get("text", "") if isinstance(element, dict) else ""
            parts.append(text.get("text", "") if isinstance(text, dict) else text)
    return "\n".join(parts)


def final(service: SlackService, where: tuple[str, str], wanted: str) -> str:
    """The bot's reply in the thread containing `wanted` (not a progress note)."""
    reply = service.slack.wait_for_reply(
        *where,
        lambda m: m["bot_id"] and wanted in text_of(m) and not text_of(m).startswith(":hourglass"),
        timeout=WAIT,
    )
    return text_of(reply)


def offer_in(service: SlackService, where: tuple[str, str], words: str) -> dict[str, Any]:
    return service.slack.wait_for_reply(
        *where, lambda m: has_buttons(m) and words in message_text(m), timeout=WAIT
    )


def close_tickets(tracd: TracServer, xname: str) -> None:
    client = tracd.client()
    for row in client.query(columns=("id",), status="!closed", xname=xname):
        client.close(int(row["id"]), "fixed")


def open_tickets(tracd: TracServer, xname: str) -> list[dict[str, str]]:
    return tracd.client().query(columns=("id", "summary", "xname"), status="!closed", xname=xname)


def wait_for(predicate: Any, what: str, timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, what
        time.sleep(0.1)
    return value


def test_critical_psu_ticket_drain_after_confirmation_then_recovery_comment_and_resume(
    service: SlackService,
    redfish_fleet: RedfishFleet,
    tracd: TracServer,
    slurm_cluster: SlurmCluster,
) -> None:
    close_tickets(tracd, NODE)  # from an earlier test on this tracd
    slurm = slurm_cluster.slurm()

    where = service.say(f"@stat-bot hw check {NODE}")
    report = final(service, where, "1 node: 1 critical")
    (ticket,) = open_tickets(tracd, NODE)
    number = int(ticket["id"])
    assert ticket["summary"].startswith(f"{NODE} ({HOST}): PSU 2: Critical")
    problem = ticket["summary"].split(": ", 1)[1]  # the PSU, and how many more findings
    assert f"Opened STAT#{number} for {NODE} ({HOST})" in report
    offer = offer_in(service, where, "Drain")
    assert f"STAT#{number}: {problem}" in message_text(offer)
    assert not slurm.node_states([HOST])[HOST].drained  # nothing before the click

    service.slack.click("admin", where[0], offer["ts"], "stat_confirm", wait_ack=True)
    drained = final(service, where, "Drained")
    assert f"Drained {HOST} in Slurm (STAT#{number}: {problem})" in drained
    state = slurm.node_states([HOST])[HOST]
    assert state.drained
    assert state.reason == f"STAT#{number}: {problem}"

    # The same failure again: no second ticket, no second drain offer.
    again = service.say(f"@stat-bot hw check {NODE}")
    repeat = final(service, again, "1 node: 1 critical")
    assert "already drained in Slurm" in repeat
    assert len(open_tickets(tracd, NODE)) == 1
    assert [m for m in service.slack.messages(again[0], thread_ts=again[1]) if has_buttons(m)] == []

    # The PSU is replaced: the BMC reports healthy.
    redfish_fleet.control.variant(NODE, "healthy")
    healed = service.say(f"@stat-bot hw check {NODE}")
    passed = final(service, healed, "1 node: 1 ok")
    assert f"Commented on STAT#{number}" in passed
    comments = tracd.client().ticket(number).comments
    assert f"{NODE} ({HOST}) passed its check" in comments[-1].new
    resume = offer_in(service, healed, "Resume")
    service.slack.click("admin", healed[0], resume["ts"], "stat_confirm", wait_ack=True)
    assert f"Resumed {HOST} in Slurm" in final(service, healed, "Resumed")
    assert not slurm.node_states([HOST])[HOST].drained


def test_a_new_ticket_with_an_xname_gets_the_check_result_as_a_comment(
    tmp_path: Path,
    redfish_fleet: RedfishFleet,
    tracd: TracServer,
    slurm_cluster: SlurmCluster,
) -> None:
    """What the shipped trac rule queues (`check-ticket`) run as the dispatcher runs it."""
    node = "x1000c0s2b0n0"  # failed_dimm
    asking = tracd.client().create(
        summary="memory errors", type="defect", priority="major", xname=node
    )
    (rule,) = [r for ns, r in load_config(ROOT / "job_configs.py").trac_rules() if ns.name == "hw"]
    assert rule.job_type == "check-ticket"
    (tmp_path / "job_configs.py").write_text(shipped_hw_namespace())
    SQLiteQueue(tmp_path / "var" / "stat-bot.sqlite3").migrate()
    env = subprocess_env(tmp_path)
    env.update(hw_environment(redfish_fleet, tracd, slurm_cluster))
    env["PATH"] = f"{Path(STAT_BOT).parent}{os.pathsep}{env.get('PATH', '')}"
    done = subprocess.run(
        [STAT_BOT, "task", "hw-check", node, "--ticket", str(asking)],
        cwd=ROOT / "workspace" / "hw",
        env=env,
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert done.returncode == 0, done.stderr
    assert f"Commented the result on STAT#{asking}" in json.dumps(json.loads(done.stdout))
    comment = wait_for(lambda: tracd.client().ticket(asking).comments, "no comment")[-1].new
    assert "STAT bot's hardware check for this ticket: 1 node: 1 critical" in comment
    assert f"{node} (nid000005)" in comment
    close_tickets(tracd, node)
