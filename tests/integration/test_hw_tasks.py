"""The hw tasks and script against the project's many-BMC Redfish emulator, as jobs run them.

Each runs as the dispatcher runs it: `stat-bot task hw-...` or `python3 hw.py ...` in
workspace/hw/, a real subprocess with the settings in its environment, reading the
emulator's inventory; what they keep is read back from the same SQLite file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from stat_bot.jobs.model import JobRequest, Source
from stat_bot.queue import open_queue
from stat_bot.queue.base import Queue
from stat_bot.settings import PROXY_VARIABLES, load_settings
from tests.conftest import ROOT, STAT_BOT
from tests.redfish_fixtures import TEST_TIMEOUT, RedfishFleet


def environment(fleet: RedfishFleet, state: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in PROXY_VARIABLES and not k.startswith(("SLACK_", "TRAC_", "REDFISH_", "HW_"))
    }
    env.update(
        STATE_DIR=str(state),
        JOB_CONFIGS=str(ROOT / "job_configs.py"),
        WORKSPACE_DIR=str(ROOT / "workspace"),
        HW_INVENTORY=str(fleet.process.inventory),
        REDFISH_USERNAME=fleet.process.username,
        REDFISH_PASSWORD=fleet.process.password,
        REDFISH_TIMEOUT=str(TEST_TIMEOUT),
        PYTHONPATH=str(ROOT / "workspace"),
        **extra,
    )
    return env


def run(env: dict[str, str], *argv: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        argv,
        cwd=ROOT / "workspace" / "hw",
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def answer(done: subprocess.CompletedProcess) -> dict[str, Any]:
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def body(result: dict[str, Any]) -> str:
    parts = []
    for block in result["blocks"]:
        if "text" in block:
            parts.append(block["text"]["text"])
        parts += [e["text"] for e in block.get("elements", [])]
    return "\n".join(parts)


@pytest.fixture
def state(tmp_path: Path) -> Path:
    """STATE_DIR with a database, as the service leaves it for its jobs."""
    queue(tmp_path / "var").close()
    return tmp_path / "var"


def queue(state: Path) -> Queue:
    return open_queue(load_settings(state_dir=state))


def test_check_reports_totals_and_problems_and_keeps_latest_health(
    redfish_fleet: RedfishFleet, state: Path
) -> None:
    env = environment(redfish_fleet, state)
    result = answer(run(env, STAT_BOT, "task", "hw-check", "x1000c0s[0-2]"))
    assert result["text"] == "6 nodes: 3 critical, 1 warning, 2 ok"
    text = body(result)
    assert "*x1000c0s1b0n0* (nid000003): PSU 2: Critical" in text
    assert "CPU1 Temp 92 °C, critical above 90 °C" in text
    assert "*x1000c0s2b0n1*" in text  # powered off: a warning
    kept = queue(state).node_health()
    assert sorted(kept) == sorted(f"x1000c0s{s}b0n{n}" for s in range(3) for n in range(2))
    assert kept["x1000c0s1b0n0"].state == "critical"

    shown = answer(run(env, STAT_BOT, "task", "hw-show", "x1000c0s[1,3]b0n0"))
    text = body(shown)
    assert "selects 2 nodes" in text
    assert "latest known: 1 node: 1 critical" in text
    assert "never checked: 1 (x1000c0s3b0n0)" in text


def test_a_sweep_reports_exactly_the_change_since_the_previous_one(
    redfish_fleet: RedfishFleet, state: Path
) -> None:
    env = environment(redfish_fleet, state)
    first = answer(run(env, STAT_BOT, "task", "hw-sweep", "x1000c0s[3-5]"))
    assert first["text"].startswith("Sweep of x1000c0s[3-5]: 6 nodes: 6 ok; first sweep")
    redfish_fleet.control.variant("x1000c0s4b0n1", "critical_psu")
    second = answer(run(env, STAT_BOT, "task", "hw-sweep", "x1000c0s[3-5]"))
    assert second["text"] == (
        "Sweep of x1000c0s[3-5]: 6 nodes: 1 critical, 5 ok; 1 new problem, 0 problems unchanged"
    )
    text = body(second)
    assert "*New problems* (1)\n:red_circle: *x1000c0s4b0n1* (nid000010): PSU 2: Critical" in text
    assert "Recovered" not in text
    # Scheduled and nothing changed: no output at all, so the job's report is skipped.
    q = queue(state)
    job = q.enqueue(JobRequest("hw", "sweep", source=Source.SCHEDULE)).job
    quiet = run(env, STAT_BOT, "task", "--job-id", str(job.id), "hw-sweep", "x1000c0s[3-5]")
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout == ""
    assert q.last_sweep("x1000c0s[3-5]").job_id == job.id  # kept all the same
    # HW_SWEEP_REPORT_UNCHANGED: it reports anyway, counting the problem as unchanged.
    env["HW_SWEEP_REPORT_UNCHANGED"] = "true"
    loud = run(env, STAT_BOT, "task", "--job-id", str(job.id), "hw-sweep", "x1000c0s[3-5]")
    assert answer(loud)["text"].endswith("; 1 problem unchanged")


def test_a_hanging_bmc_does_not_stall_the_sweep(redfish_fleet: RedfishFleet, state: Path) -> None:
    redfish_fleet.control.fault("x1000c0s5b0", "hang")
    redfish_fleet.control.fault("x1000c0s4b0", "refuse")
    env = environment(redfish_fleet, state)
    started = time.monotonic()
    result = answer(run(env, STAT_BOT, "task", "hw-sweep", "x1000c0s[3-5]"))
    took = time.monotonic() - started
    assert result["text"].startswith(
        "Sweep of x1000c0s[3-5]: 6 nodes: 2 credentials refused, 2 BMC timed out, 2 ok"
    )
    # One BMC's budget (three request timeouts) at most, plus the process's start.
    assert took < 3 * TEST_TIMEOUT + 20
    text = body(result)
    assert "*x1000c0s5b0n0* (nid000011): BMC timed out" in text
    assert "*x1000c0s4b0n0* (nid000009): credentials refused" in text


def test_without_an_inventory_the_answer_says_how_to_set_one(
    redfish_fleet: RedfishFleet, state: Path
) -> None:
    """A mistake is answered in the asker's thread (exit 0), not a failure for tech support."""
    env = environment(redfish_fleet, state)
    del env["HW_INVENTORY"]
    result = answer(run(env, STAT_BOT, "task", "hw-check", "x1000c0"))
    assert result["text"].startswith("HW_INVENTORY is not set")
    assert "xname,bmc,hostname,nid,system" in body(result)
    script = answer(run(env, sys.executable, "hw.py", "inventory", "all"))
    assert script["text"].startswith("HW_INVENTORY is not set")


def test_a_target_outside_the_inventory_or_misspelt_is_named(
    redfish_fleet: RedfishFleet, state: Path
) -> None:
    env = environment(redfish_fleet, state)
    outside = answer(run(env, STAT_BOT, "task", "hw-check", "x1000c7"))
    assert outside["text"].startswith("not in the inventory")
    assert "x1000c7" in outside["text"]
    misspelt = answer(run(env, STAT_BOT, "task", "hw-sweep", "x1000q0"))
    assert "'q'" in misspelt["text"]
    assert queue(state).last_sweep("x1000q0") is None


def test_a_broken_inventory_fails_the_job_with_every_problem(
    redfish_fleet: RedfishFleet, state: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "inventory.csv"
    broken.write_text("xname,bmc\nx1000c0s0b0n0,\nx1000c0s0b0n0,10.0.0.1\n")
    env = environment(redfish_fleet, state)
    env["HW_INVENTORY"] = str(broken)
    done = run(env, STAT_BOT, "task", "hw-show", "all")
    assert done.returncode == 1
    assert f"{broken}:2: x1000c0s0b0n0 has no bmc" in done.stderr
    script = run(env, sys.executable, "hw.py", "firmware", "all")
    assert script.returncode == 1
    assert f"{broken}:2:" in script.stderr


def test_the_script_powers_nodes_and_reads_inventory_firmware_and_logs(
    redfish_fleet: RedfishFleet, state: Path, tmp_path: Path
) -> None:
    password_file = tmp_path / "redfish-password"
    password_file.write_text(redfish_fleet.process.password + "\n")
    env = environment(redfish_fleet, state, REDFISH_PASSWORD_FILE=str(password_file))
    env["REDFISH_PASSWORD"] = ""  # read from the file instead
    off = answer(run(env, sys.executable, "hw.py", "power", "x1000c0s3b0n0", "off"))
    assert off["text"] == "power off on 1 node: 1 done"
    assert "GracefulShutdown sent (was On)" in body(off)
    status = answer(run(env, sys.executable, "hw.py", "power", "x1000c0s3b0n[0-1]", "status"))
    assert status["text"] == "2 nodes: 1 on, 1 off"

    redfish_fleet.control.patch(
        "x1000c0s4b0",
        {"/redfish/v1/UpdateService/FirmwareInventory/Node1_BIOS": {"Version": "ex425.bios-1.6.0"}},
    )
    firmware = answer(run(env, sys.executable, "hw.py", "firmware", "all"))
    assert firmware["text"].startswith("1 of 12 nodes differ from the fleet's majority")
    assert (
        "*x1000c0s4b0n1* (nid000010): BIOS ex425.bios-1.6.0, fleet runs ex425.bios-1.7.3"
        in body(firmware)
    )

    inventory = answer(run(env, sys.executable, "hw.py", "inventory", "x1000c0s0b0n1"))
    assert "HPE Cray EX425" in body(inventory)
    assert "512 GiB" in body(inventory)
    sel = answer(run(env, sys.executable, "hw.py", "sel", "x1000c0s1b0n1", "2"))
    assert sel["text"] == "1 node: 2 event-log entries"

    redfish_fleet.control.fault("x1000c0s5b0", "garbage")
    garbled = answer(run(env, sys.executable, "hw.py", "power", "x1000c0s5b0n0", "status"))
    assert "could not be read" in garbled["text"]
    assert "BMC answered garbage" in body(garbled)
