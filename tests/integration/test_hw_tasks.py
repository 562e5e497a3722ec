"""The hw tasks and script against the project's many-BMC Redfish emulator, as jobs run them.

Each runs as the dispatcher runs it: `stat-bot task hw-...` or `python3 hw.py ...` in
workspace/hw/, a real subprocess with the settings in its environment, reading the
emulator's inventory; what they keep is read back from the same database (SQLite or
PostgreSQL: DATABASE_URL in their environment, as the dispatcher passes it on).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from stat_bot.integrations.redfish_emulator import EmulatorControl
from stat_bot.jobs.model import JobRequest, Source
from stat_bot.queue import open_queue
from stat_bot.queue.base import Queue
from stat_bot.settings import PROXY_VARIABLES, load_settings
from tests.conftest import ROOT, STAT_BOT
from tests.redfish_fixtures import TEST_TIMEOUT, RedfishFleet


@dataclass
class Site:
    """STATE_DIR and DATABASE_URL of a site whose jobs run the hw tasks, and its queues."""

    state: Path
    database_url: str  # "": STATE_DIR's SQLite file
    opened: list[Queue] = field(default_factory=list)

    def queue(self) -> Queue:
        """The site's queue, as the service opens it (closed at the end of the test)."""
        settings = load_settings(
            state_dir=self.state, database_url=self.database_url, _env_file=None
        )
        self.opened.append(open_queue(settings))
        return self.opened[-1]


def environment(fleet: RedfishFleet, site: Site, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in PROXY_VARIABLES
        and k != "DATABASE_URL"
        and not k.startswith(("SLACK_", "TRAC_", "REDFISH_", "HW_"))
    }
    if site.database_url:
        env["DATABASE_URL"] = site.database_url
    env.update(
        STATE_DIR=str(site.state),
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


@contextmanager
def made_site(tmp_path: Path, database_url: str) -> Iterator[Site]:
    """A site on the test's backend with a migrated database, as the service leaves it."""
    made = Site(tmp_path / "var", "" if database_url.startswith("sqlite:") else database_url)
    try:
        made.queue()
        yield made
    finally:
        for queue in made.opened:
            queue.close()


@pytest.fixture
def site(tmp_path: Path, database_url: str) -> Iterator[Site]:
    with made_site(tmp_path, database_url) as made:
        yield made


@pytest.fixture
def script_site(tmp_path: Path) -> Site:
    """A site for `hw.py` alone, which never opens the queue (workspace scripts do not)."""
    return Site(tmp_path / "var", "")


def test_check_reports_totals_and_problems_and_keeps_latest_health(
    redfish_fleet: RedfishFleet, site: Site
) -> None:
    env = environment(redfish_fleet, site)
    result = answer(run(env, STAT_BOT, "task", "hw-check", "x1000c0s[0-2]"))
    assert result["text"] == "6 nodes: 2 ok, 1 warning, 3 critical"
    text = body(result)
    assert "*x1000c0s1b0n0* (nid000003): PSU 2: Critical" in text
    assert "CPU1 Temp 92 °C, critical above 90 °C" in text
    assert "*x1000c0s2b0n1*" in text  # powered off: a warning
    kept = site.queue().node_health()
    assert sorted(kept) == sorted(f"x1000c0s{s}b0n{n}" for s in range(3) for n in range(2))
    assert kept["x1000c0s1b0n0"].state == "critical"

    shown = answer(run(env, STAT_BOT, "task", "hw-show", "x1000c0s[1,3]b0n0"))
    text = body(shown)
    assert "selects 2 nodes" in text
    assert "latest known: 1 node: 1 critical" in text
    assert "never checked: 1 (x1000c0s3b0n0)" in text


def test_a_sweep_reports_exactly_the_change_since_the_previous_one(
    redfish_fleet: RedfishFleet, site: Site
) -> None:
    env = environment(redfish_fleet, site)
    first = answer(run(env, STAT_BOT, "task", "hw-sweep", "x1000c0s[3-5]"))
    assert first["text"].startswith("Sweep of x1000c0s[3-5]: 6 nodes: 6 ok; first sweep")
    redfish_fleet.control.variant("x1000c0s4b0n1", "critical_psu")
    second = answer(run(env, STAT_BOT, "task", "hw-sweep", "x1000c0s[3-5]"))
    assert second["text"] == (
        "Sweep of x1000c0s[3-5]: 6 nodes: 5 ok, 1 critical; 1 new problem, 0 problems unchanged"
    )
    text = body(second)
    assert "*New problems* (1)\n:red_circle: *x1000c0s4b0n1* (nid000010): PSU 2: Critical" in text
    assert "Recovered" not in text
    # Scheduled and nothing changed: no output at all, so the job's report is skipped.
    q = site.queue()
    job = q.enqueue(JobRequest("hw", "sweep", source=Source.SCHEDULE)).job
    quiet = run(env, STAT_BOT, "task", "--job-id", str(job.id), "hw-sweep", "x1000c0s[3-5]")
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout == ""
    assert q.last_sweep("x1000c0s[3-5]").job_id == job.id  # kept all the same
    # HW_SWEEP_REPORT_UNCHANGED: it reports anyway, counting the problem as unchanged.
    env["HW_SWEEP_REPORT_UNCHANGED"] = "true"
    loud = run(env, STAT_BOT, "task", "--job-id", str(job.id), "hw-sweep", "x1000c0s[3-5]")
    assert answer(loud)["text"].endswith("; 1 problem unchanged")


def test_a_hanging_bmc_does_not_stall_the_sweep(redfish_fleet: RedfishFleet, site: Site) -> None:
    redfish_fleet.control.fault("x1000c0s5b0", "hang")
    redfish_fleet.control.fault("x1000c0s4b0", "refuse")
    env = environment(redfish_fleet, site)
    started = time.monotonic()
    result = answer(run(env, STAT_BOT, "task", "hw-sweep", "x1000c0s[3-5]"))
    took = time.monotonic() - started
    assert result["text"].startswith(
        "Sweep of x1000c0s[3-5]: 6 nodes: 2 ok, 2 credentials refused, 2 BMC timed out"
    )
    # One BMC's budget (three request timeouts) at most, plus the process's start.
    assert took < 3 * TEST_TIMEOUT + 20
    text = body(result)
    assert "*x1000c0s5b0n0* (nid000011): BMC timed out" in text
    assert "*x1000c0s4b0n0* (nid000009): credentials refused" in text


def test_without_an_inventory_the_answer_says_how_to_set_one(
    redfish_fleet: RedfishFleet, site: Site
) -> None:
    """A mistake is answered in the asker's thread (exit 0), not a failure for tech support."""
    env = environment(redfish_fleet, site)
    del env["HW_INVENTORY"]
    result = answer(run(env, STAT_BOT, "task", "hw-check", "x1000c0"))
    assert result["text"].startswith("HW_INVENTORY is not set")
    assert "xname,bmc,hostname,nid,system" in body(result)
    script = answer(run(env, sys.executable, "hw.py", "inventory", "all"))
    assert script["text"].startswith("HW_INVENTORY is not set")


def test_a_target_outside_the_inventory_or_misspelt_is_named(
    redfish_fleet: RedfishFleet, site: Site
) -> None:
    env = environment(redfish_fleet, site)
    outside = answer(run(env, STAT_BOT, "task", "hw-check", "x1000c7"))
    assert outside["text"].startswith("not in the inventory")
    assert "x1000c7" in outside["text"]
    misspelt = answer(run(env, STAT_BOT, "task", "hw-sweep", "x1000q0"))
    assert "'q'" in misspelt["text"]
    assert site.queue().last_sweep("x1000q0") is None


def test_a_broken_inventory_fails_the_job_with_every_problem(
    redfish_fleet: RedfishFleet, site: Site, tmp_path: Path
) -> None:
    broken = tmp_path / "inventory.csv"
    broken.write_text("xname,bmc\nx1000c0s0b0n0,\nx1000c0s0b0n0,10.0.0.1\n")
    env = environment(redfish_fleet, site)
    env["HW_INVENTORY"] = str(broken)
    done = run(env, STAT_BOT, "task", "hw-show", "all")
    assert done.returncode == 1
    assert f"{broken}:2: x1000c0s0b0n0 has no bmc" in done.stderr
    script = run(env, sys.executable, "hw.py", "firmware", "all")
    assert script.returncode == 1
    assert f"{broken}:2:" in script.stderr


def test_the_script_powers_nodes_and_reads_inventory_firmware_and_logs(
    redfish_fleet: RedfishFleet, script_site: Site, tmp_path: Path
) -> None:
    password_file = tmp_path / "redfish-password"
    password_file.write_text(redfish_fleet.process.password + "\n")
    env = environment(redfish_fleet, script_site, REDFISH_PASSWORD_FILE=str(password_file))
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


# What a hostile (or broken) BMC may say in any string it returns: Slack's control
# sequences, a broadcast mention, markdown, and a line break followed by a fake result.
HOSTILE = (
    "<!channel> <!here> <@U0ADMIN> <http://evil.example|click> @channel & `tick` *bold*"
    "\n:large_green_circle: *x1000c0s9b0n9*: ok"
)
FORBIDDEN = ("<!channel>", "<!here>", "<@U0ADMIN>", "<http://evil", "@channel", "\n:large_green")


def hostile_bmc(control: EmulatorControl, bmc: str = "x1000c0s3b0") -> None:
    """Every string of node 0 of `bmc` that reaches an answer, replaced by HOSTILE."""
    r = "/redfish/v1"
    entries = f"{r}/Systems/Node0/LogServices/SEL/Entries"
    control.patch(
        bmc,
        {
            f"{r}/Systems/Node0": {
                "Manufacturer": HOSTILE,
                "Model": HOSTILE,
                "SerialNumber": HOSTILE,
                "BiosVersion": HOSTILE,
            },
            f"{r}/Chassis/Node0/Power": {
                "PowerSupplies": {"1": {"Name": HOSTILE, "Status": {"Health": "Critical"}}}
            },
            f"{r}/Chassis/Node0/Thermal": {
                "Temperatures": {"0": {"Name": HOSTILE, "ReadingCelsius": 95}}
            },
            entries: {
                "Members": {
                    "+": [
                        {
                            "@odata.id": f"{entries}/99",
                            "Id": "99",
                            "EntryType": "SEL",
                            "Severity": "Critical",
                            "Created": "2099-01-01T00:00:00Z",
                            "Message": HOSTILE,
                        }
                    ]
                }
            },
            f"{r}/UpdateService/FirmwareInventory/Node0_BIOS": {"Version": HOSTILE},
        },
    )


def test_strings_from_a_bmc_cannot_notify_link_or_forge_lines(
    redfish_fleet: RedfishFleet, site: Site
) -> None:
    hostile_bmc(redfish_fleet.control)
    env = environment(redfish_fleet, site)
    answers = {
        "check": answer(run(env, STAT_BOT, "task", "hw-check", "x1000c0s3b0n0")),
        "sweep": answer(run(env, STAT_BOT, "task", "hw-sweep", "x1000c0s3")),
        "show": answer(run(env, STAT_BOT, "task", "hw-show", "x1000c0s3b0n0")),
        "inventory": answer(run(env, sys.executable, "hw.py", "inventory", "x1000c0s3b0n0")),
        "firmware": answer(run(env, sys.executable, "hw.py", "firmware", "x1000c0s[3-4]")),
        "sel": answer(run(env, sys.executable, "hw.py", "sel", "x1000c0s3b0n0", "1")),
    }
    for name, result in answers.items():
        text = body(result) + "\n" + result["text"]
        assert "&lt;!channel&gt; &lt;!here&gt; &lt;@U0ADMIN&gt; &lt;http://evil" in text, name
        for bad in FORBIDDEN:
            assert bad not in text, (name, bad)
    assert answers["check"]["text"] == "1 node: 1 critical"


def test_a_huge_event_log_count_is_refused_with_the_largest_allowed(
    redfish_fleet: RedfishFleet, script_site: Site
) -> None:
    env = environment(redfish_fleet, script_site)
    refused = answer(run(env, sys.executable, "hw.py", "sel", "all", "100000"))
    assert refused["text"] == (
        "count must be between 1 and 1,000, not 100,000: e.g. `hw sel all 1000` "
        "(a long list comes as a CSV file)"
    )
    every = answer(run(env, sys.executable, "hw.py", "sel", "all", "1000"))
    assert every["file"]["filename"] == "hw-sel.csv"
    assert len(every["blocks"]) <= 50
    assert all(len(b["text"]["text"]) <= 3000 for b in every["blocks"] if "text" in b)
    assert "more lines: every node is in the CSV file" in body(every)


def test_a_persons_sweep_always_answers_and_scopes_never_compare_with_each_other(
    redfish_fleet: RedfishFleet, site: Site
) -> None:
    env = environment(redfish_fleet, site)
    q = site.queue()
    scope = {"target": "x1000c0s[1-2]"}
    scheduled = q.enqueue(JobRequest("hw", "sweep", args=scope, source=Source.SCHEDULE)).job
    first = run(env, STAT_BOT, "task", "--job-id", str(scheduled.id), "hw-sweep", "x1000c0s[1-2]")
    assert answer(first)["text"].endswith(
        "first sweep of this scope: nothing earlier to compare with"
    )
    again = run(env, STAT_BOT, "task", "--job-id", str(scheduled.id), "hw-sweep", "x1000c0s[1-2]")
    assert again.returncode == 0, again.stderr
    assert again.stdout == ""  # scheduled, nothing changed: nothing posted
    # Someone asks in chat while the scheduled sweep is queued: the request joins it, and
    # the unchanged sweep answers, with the problems counted.
    joined = q.enqueue(
        JobRequest("hw", "sweep", args=scope, source=Source.SLACK, channel="C1", thread_ts="1.2")
    )
    assert joined.job.id == scheduled.id
    person = answer(
        run(env, STAT_BOT, "task", "--job-id", str(scheduled.id), "hw-sweep", "x1000c0s[1-2]")
    )
    assert person["text"].endswith("; 4 problems unchanged"), person["text"]
    # Asked in chat on its own: answers as well.
    asked = q.enqueue(JobRequest("hw", "check", source=Source.SLACK)).job
    own = run(env, STAT_BOT, "task", "--job-id", str(asked.id), "hw-sweep", "x1000c0s[1-2]")
    assert answer(own)["text"].endswith("problems unchanged")
    # A narrower scope over the same nodes is a scope of its own: nothing to compare with,
    # so the scheduled job reports it as a first sweep rather than as "no change".
    narrower = run(env, STAT_BOT, "task", "--job-id", str(scheduled.id), "hw-sweep", "x1000c0s1")
    assert "first sweep of this scope" in answer(narrower)["text"]
    assert q.last_sweep("x1000c0s1").job_id == scheduled.id
    assert q.last_sweep("x1000c0s[1-2]").job_id == asked.id  # each scope keeps its own
