"""Closing the loop (stat_bot/tasks/hw_loop.py) against a real tracd and a real slurmctld.

A critical result opens a Trac ticket for the xname (or comments on the open one),
offers a drain with the reason STAT#<ticket>: <problem>; confirming queues the drain
job, whose script drains the node in Slurm; a second failing check opens nothing
and offers nothing again; a passing check comments on the ticket and offers resume.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from stat_bot.actions import decide
from stat_bot.hardware.health import Finding, NodeHealth, State
from stat_bot.hardware.inventory import Node, write_inventory
from stat_bot.hardware.loop import problem_text
from stat_bot.integrations.trac import TracClient
from stat_bot.jobs.config import JobConfigs, render_template
from stat_bot.jobs.model import JobRequest, Source
from stat_bot.queue import Queue
from stat_bot.queue.base import ConfirmationState
from stat_bot.settings import Settings
from stat_bot.tasks import TaskContext
from stat_bot.tasks.hw_loop import apply_rules
from tests.slurm_fixtures import SlurmCluster
from tests.trac_fixtures import TracServer

pytestmark = [pytest.mark.trac, pytest.mark.slurm]

ROOT = Path(__file__).resolve().parents[2]
WORKSPACE = ROOT / "workspace" / "hw"
CABINETS = itertools.count(9100)
USER = "U0ADMIN"
CHANNEL = "C0HW"


def hw_config(**rule: Any) -> dict[str, Any]:
    jobs = {
        "drain": {
            "run_args_template": "python3 slurm_cmd.py drain {target} {reason}",
            "confirm": "Drain {target} in Slurm ({reason})",
            "exclusive": "target",
            "coalesce": False,
        },
        "resume": {
            "run_args_template": "python3 slurm_cmd.py resume {target}",
            "confirm": "Resume {target} in Slurm",
            "exclusive": "target",
            "coalesce": False,
        },
    }
    return {"hw": {"jobs": jobs, "hw_rules": [rule or {"when": "critical"}]}}


class Loop:
    """A cabinet of two nodes (nid000001, nid000002), its settings, configs and queue."""

    def __init__(
        self,
        tmp_path: Path,
        tracd: TracServer | None,
        slurm: SlurmCluster,
        queue: Queue,
        configure: Callable[[dict[str, Any]], JobConfigs],
        make_settings: Callable[..., Settings],
        monkeypatch: pytest.MonkeyPatch,
        **rule: Any,
    ) -> None:
        self.cabinet = f"x{next(CABINETS)}"
        self.xnames = [f"{self.cabinet}c0s0b0n0", f"{self.cabinet}c0s0b0n1"]
        self.inventory = tmp_path / "inventory.csv"
        write_inventory(
            self.inventory,
            [
                Node(x, f"127.0.0.1:{9 + i}", f"nid{i + 1:06d}", i + 1, None)
                for i, x in enumerate(self.xnames)
            ],
        )
        monkeypatch.setenv("SLURM_CONF", slurm.env["SLURM_CONF"])
        trac = (
            {
                "trac_url": tracd.url,
                "trac_user": tracd.user,
                "trac_password": tracd.password,
            }
            if tracd
            else {"trac_url": None}
        )
        self.settings = make_settings(hw_inventory=self.inventory, **trac)
        self.configs = configure(hw_config(**rule))
        self.queue = queue
        self.slurm = slurm
        self.trac = tracd.client() if tracd else None

    def ctx(self, job_id: int | None = None) -> TaskContext:
        return TaskContext(self.settings, self.configs, lambda: self.queue, job_id=job_id)

    def check(
        self, *results: NodeHealth, ticket: int | None = None, job_id: int | None = None, **kw: Any
    ) -> list[str]:
        values = {"channel": CHANNEL, "thread_ts": None, "requested_by": USER, **kw}
        return apply_rules(self.ctx(job_id), list(results), ticket=ticket, **values)

    def critical(self, index: int = 1, text: str = "PSU 2: Critical") -> NodeHealth:
        return NodeHealth(
            self.xnames[index],
            f"nid{index + 1:06d}",
            State.CRITICAL,
            [Finding("critical", text.split(":")[0], text)],
            checked_at=datetime(2026, 12, 2, 1, 30, tzinfo=UTC),
        )

    def ok(self, index: int = 1) -> NodeHealth:
        return NodeHealth(
            self.xnames[index],
            f"nid{index + 1:06d}",
            State.OK,
            checked_at=datetime(2026, 12, 2, 2, 0, tzinfo=UTC),
        )

    def tickets(self, index: int = 1) -> list[dict[str, str]]:
        assert self.trac is not None
        return self.trac.query(
            columns=("id", "summary", "xname"), status="!closed", xname=self.xnames[index]
        )

    def confirm_and_run(self, code: str) -> subprocess.CompletedProcess[str]:
        """Confirm the offer as the requester, then run the queued job's command as the
        dispatcher would (in workspace/hw, with the job environment)."""
        result = decide(self.queue, code, confirm=True, by=USER)
        assert result.job is not None, result.text
        job = result.job
        spec = self.configs.job(job.namespace, job.job_type)
        command = render_template(spec.run_args_template, job.args)
        env = {**self.settings.job_environment(), "HW_INVENTORY": str(self.inventory)}
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        return subprocess.run(
            ["bash", "-c", command],
            cwd=WORKSPACE,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )


@pytest.fixture
def make_loop(
    tmp_path: Path,
    slurm_cluster: SlurmCluster,
    queue: Queue,
    configure: Callable[[dict[str, Any]], JobConfigs],
    make_settings: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> Iterator[Callable[..., Loop]]:
    made: list[Loop] = []

    def make(trac: bool = True, **rule: Any) -> Loop:
        tracd = request.getfixturevalue("tracd") if trac else None
        loop = Loop(
            tmp_path, tracd, slurm_cluster, queue, configure, make_settings, monkeypatch, **rule
        )
        made.append(loop)
        return loop

    yield make
    for loop in made:  # the session's tracd is shared: leave no active tickets behind
        close_tickets(loop.trac, f"^{loop.cabinet}")


def close_tickets(client: TracClient | None, xname: str) -> None:
    """Close the open tickets whose xname matches (Trac query syntax: ^ begins with)."""
    if client is None:
        return
    for row in client.query(columns=("id",), status="!closed", xname=xname):
        client.close(int(row["id"]), "fixed")


def code_in(lines: list[str]) -> str:
    (line,) = [line for line in lines if "@stat-bot confirm " in line]
    return line.rsplit("@stat-bot confirm ", 1)[1].strip("`")


def test_critical_opens_a_ticket_offers_a_drain_and_confirming_drains_in_slurm(
    make_loop: Callable[..., Loop],
) -> None:
    loop = make_loop()
    lines = loop.check(loop.ok(0), loop.critical())
    (ticket,) = loop.tickets()
    number = int(ticket["id"])
    label = f"{loop.xnames[1]} (nid000002)"
    assert ticket["summary"] == f"{label}: PSU 2: Critical"
    assert ticket["xname"] == loop.xnames[1]
    assert lines[0] == f"Opened STAT#{number} for {label}"
    assert lines[1].startswith(f"Drain of {label} (STAT#{number}: PSU 2: Critical) offered")
    code = code_in(lines)
    offer = loop.queue.get_confirmation(code)
    assert offer is not None
    assert offer.state is ConfirmationState.PENDING
    assert offer.channel == CHANNEL
    assert offer.requested_by == USER
    assert offer.request.args == {
        "target": loop.xnames[1],
        "reason": f"STAT#{number}: PSU 2: Critical",
    }
    assert "Drain" in offer.summary
    assert not loop.slurm.slurm().node_states(["nid000002"])["nid000002"].drained  # not yet

    done = loop.confirm_and_run(code)
    assert done.returncode == 0, done.stderr
    state = loop.slurm.slurm().node_states(["nid000002"])["nid000002"]
    assert state.drained
    assert state.reason == f"STAT#{number}: PSU 2: Critical"
    assert not loop.slurm.slurm().node_states(["nid000001"])["nid000001"].drained


def test_a_second_failing_check_opens_no_ticket_and_offers_no_second_drain(
    make_loop: Callable[..., Loop],
) -> None:
    loop = make_loop()
    first = loop.check(loop.critical())
    code = code_in(first)
    second = loop.check(loop.critical())
    assert len(loop.tickets()) == 1
    number = loop.tickets()[0]["id"]
    assert second == [
        f"STAT#{number} already records {loop.xnames[1]} (nid000002): PSU 2: Critical",
        f"drain of {loop.xnames[1]} (nid000002) already offered: confirm with "
        f"`@stat-bot confirm {code}`",
    ]
    pending = list(loop.queue.confirmations(states=[ConfirmationState.PENDING]))
    assert [c.code for c in pending] == [code]
    # a new problem on the same node is commented on the same ticket
    third = loop.check(loop.critical(text="CPU1 Temp: 95 C, critical above 90 C"))
    assert third[0] == f"Commented on STAT#{number} ({loop.xnames[1]} (nid000002))"
    ticket = loop.trac.ticket(int(number))
    assert "CPU1 Temp: 95 C" in ticket.comments[-1].new
    assert len(loop.tickets()) == 1


def test_an_open_ticket_for_the_xname_is_commented_instead_of_a_duplicate(
    make_loop: Callable[..., Loop],
) -> None:
    loop = make_loop()
    existing = loop.trac.create(
        summary="PSU noise", type="defect", priority="major", xname=loop.xnames[1]
    )
    lines = loop.check(loop.critical())
    assert lines[0] == f"Commented on STAT#{existing} ({loop.xnames[1]} (nid000002))"
    assert [int(t["id"]) for t in loop.tickets()] == [existing]
    assert "PSU 2: Critical" in loop.trac.ticket(existing).comments[-1].new
    assert f"(STAT#{existing}: PSU 2: Critical) offered" in lines[1]


def test_recovery_comments_on_the_ticket_and_offers_resume_which_resumes(
    make_loop: Callable[..., Loop],
) -> None:
    loop = make_loop()
    done = loop.confirm_and_run(code_in(loop.check(loop.critical())))
    assert done.returncode == 0, done.stderr
    number = int(loop.tickets()[0]["id"])

    lines = loop.check(loop.ok(0), loop.ok())
    label = f"{loop.xnames[1]} (nid000002)"
    assert lines[0] == f"Commented on STAT#{number} ({label})"
    comment = loop.trac.ticket(number).comments[-1].new
    assert f"{label} passed its check at 2026-12-02 02:00:00 UTC" in comment
    assert f"drained in Slurm (STAT#{number}: PSU 2: Critical)" in comment
    assert lines[1].startswith(f"Resume of {label} offered")
    resume = code_in(lines)
    assert loop.queue.get_confirmation(resume).request.args == {"target": loop.xnames[1]}

    again = loop.check(loop.ok())  # no second comment, no second offer
    assert again == [
        f"resume of {label} already offered: confirm with `@stat-bot confirm {resume}`"
    ]
    assert len(loop.trac.ticket(number).comments) == 1

    back = loop.confirm_and_run(resume)
    assert back.returncode == 0, back.stderr
    assert not loop.slurm.slurm().node_states(["nid000002"])["nid000002"].drained
    assert loop.check(loop.ok()) == []  # recovered and resumed: quiet


def test_a_ticket_that_asked_for_the_check_gets_the_result_and_names_the_drain(
    make_loop: Callable[..., Loop],
) -> None:
    loop = make_loop()
    asking = loop.trac.create(
        summary="node 1 flaky", type="defect", priority="major", xname=loop.cabinet
    )
    lines = loop.check(loop.ok(0), loop.critical(), ticket=asking)
    assert lines[0] == f"Commented the result on STAT#{asking}"
    comment = loop.trac.ticket(asking).comments[-1].new
    assert "2 nodes: 1 ok, 1 critical" in comment
    assert "PSU 2: Critical" in comment
    assert loop.tickets() == []  # no ticket of its own for the node
    assert f"(STAT#{asking}: PSU 2: Critical) offered" in lines[1]


def test_the_check_trac_runs_for_a_ticket_the_rules_opened_does_not_comment_it_again(
    make_loop: Callable[..., Loop],
) -> None:
    loop = make_loop()
    loop.check(loop.critical())
    number = int(loop.tickets()[0]["id"])
    lines = loop.check(loop.critical(), ticket=number)
    assert lines[0] == f"STAT#{number} already records this result"
    assert loop.trac.ticket(number).comments == []
    # with something new to say, it does comment
    lines = loop.check(loop.critical(text="Fan 3: Critical"), ticket=number)
    assert lines[0] == f"Commented the result on STAT#{number}"


def test_a_cancelled_drain_offer_is_not_made_again_until_the_node_recovers(
    make_loop: Callable[..., Loop],
) -> None:
    loop = make_loop(trac=False)
    code = code_in(loop.check(loop.critical()))
    assert "Cancelled" in decide(loop.queue, code, confirm=False, by=USER).text
    lines = loop.check(loop.critical())
    assert "was cancelled: not offered again" in lines[-1]
    assert [c.code for c in loop.queue.confirmations()] == [code]
    loop.check(loop.ok())
    assert "offered: confirm with" in loop.check(loop.critical())[-1]


def test_direct_drain_queues_the_drain_job_without_an_offer(
    make_loop: Callable[..., Loop],
) -> None:
    loop = make_loop(drain="direct", ticket=False)
    lines = loop.check(loop.critical())
    assert len(lines) == 1
    assert lines[0].startswith(
        f"Drain of {loop.xnames[1]} (nid000002) (STAT: PSU 2: Critical): job #"
    )
    (job,) = loop.queue.jobs(limit=5)
    assert job.job_type == "drain"
    assert job.args["reason"] == "STAT: PSU 2: Critical"
    assert loop.queue.confirmations() == []


def test_without_trac_the_drain_is_still_offered_and_the_report_says_why(
    make_loop: Callable[..., Loop],
) -> None:
    loop = make_loop(trac=False)
    lines = loop.check(loop.critical())
    assert lines[0] == f"no ticket for {loop.xnames[1]} (nid000002): Trac is not set up (TRAC_URL)"
    assert "(STAT: PSU 2: Critical) offered" in lines[1]


def test_a_node_slurm_does_not_know_is_named(
    make_loop: Callable[..., Loop], tmp_path: Path
) -> None:
    loop = make_loop(trac=False)
    result = loop.critical()
    result.hostname = "nosuchhost"
    lines = loop.check(result)
    assert (
        lines[-1] == f"not drained (Slurm does not know nosuchhost): {loop.xnames[1]} (nosuchhost)"
    )


def test_nothing_to_do_for_healthy_nodes_and_warnings(make_loop: Callable[..., Loop]) -> None:
    loop = make_loop()
    warning = NodeHealth(loop.xnames[0], "nid000001", State.WARNING, [Finding("warning", "F", "F")])
    assert loop.check(loop.ok(), warning) == []
    assert loop.queue.loop_memory(loop.xnames) == {}


def test_a_problem_with_shell_characters_reaches_slurm_as_written(
    make_loop: Callable[..., Loop], tmp_path: Path
) -> None:
    loop = make_loop(trac=False)
    marker = tmp_path / "ran"
    result = loop.critical(text=f"DIMM A1: Critical; $(touch {marker}) `touch {marker}`")
    done = loop.confirm_and_run(code_in(loop.check(result)))
    assert done.returncode == 0, done.stderr
    reason = loop.slurm.slurm().node_states(["nid000002"])["nid000002"].reason
    assert reason == f"STAT: {problem_text(result)}"  # cut at 120 characters
    assert "$(touch " in reason
    assert not marker.exists()


def test_a_scheduled_sweep_leaves_out_what_was_so_at_the_last_check(
    make_loop: Callable[..., Loop],
) -> None:
    loop = make_loop()
    sweep = loop.queue.enqueue(
        JobRequest("hw", "sweep", channel=CHANNEL, source=Source.SCHEDULE)
    ).job
    first = loop.check(loop.critical(), job_id=sweep.id, requested_by=None)
    assert first[0].startswith("Opened STAT#")
    assert "offered" in first[1]
    offer = loop.queue.get_confirmation(code_in(first))
    assert offer.request.source is Source.SCHEDULE
    assert offer.requested_by is None  # a schedule asked: the rule's confirmers decide
    assert loop.check(loop.critical(), job_id=sweep.id) == []  # quiet: nothing changed
    # a person asking again is told where things stand
    assert len(loop.check(loop.critical())) == 2
