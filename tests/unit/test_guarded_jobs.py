"""Guarded jobs: `confirm` and `exclusive` in job_configs.py, `[target:target]`, lock keys."""

from __future__ import annotations

from typing import Any

import pytest

from stat_bot.hardware.inventory import Inventory, Node
from stat_bot.jobs.config import parse_config
from stat_bot.jobs.matching import match_command
from stat_bot.jobs.model import ArgsError, JobRequest, JobStatus, Source
from stat_bot.jobs.params import PLACEHOLDER, ParamError, parse_placeholder
from stat_bot.jobs.requests import build_request
from stat_bot.jobs.targets import LOCK_ALL, expand, overlap, typed_locks
from stat_bot.report.confirmations import CANCEL_ACTION, CONFIRM_ACTION, offer_report
from stat_bot.report.messages import Outcome, build_report
from tests.unit.helpers import make_job, one_namespace, problems_of

POWER_JOB = {
    "run_args_template": "echo power {action} {target}",
    "confirm": "Power {action} {target}",
    "exclusive": "target",
}
POWER_COMMAND = {"command": "power [target:target] [action:on|off]", "job_type": "power"}


def power_config(**job: Any) -> dict[str, Any]:
    return one_namespace({"power": {**POWER_JOB, **job}}, [POWER_COMMAND])


def inventory(*xnames: str) -> Inventory:
    return Inventory(
        [
            Node(x, f"127.0.0.1:{8000 + i}", hostname=f"nid{i + 1:03d}", nid=i + 1)
            for i, x in enumerate(xnames)
        ],
        source="test-inventory.csv",
    )


# --- job_configs.py ---------------------------------------------------------------------


def test_a_guarded_job_loads_with_its_options():
    configs = parse_config(power_config(confirm_by=["@hpc-admins", "U0ADMIN1"]))
    job = configs.job("ns", "power")
    assert (job.confirm, job.exclusive, job.confirm_by) == (
        "Power {action} {target}",
        "target",
        ["@hpc-admins", "U0ADMIN1"],
    )


@pytest.mark.parametrize(
    ("key", "entry", "what"),
    [
        (
            "schedules",
            {
                "cron": "0 6 * * *",
                "job_type": "power",
                "args": {"target": "x1000", "action": "off"},
            },
            "a schedule",
        ),
        (
            "trac_rules",
            {
                "event": "created",
                "when": {"xname": True},
                "job_type": "power",
                "args": {"target": "{xname}", "action": "off"},
            },
            "a rule",
        ),
    ],
)
def test_nothing_without_a_person_may_queue_a_guarded_job(key, entry, what):
    """Anyone who can file a Trac ticket must not be able to power a node off."""
    config = power_config()
    config["ns"][key] = [entry]
    problems = problems_of(config)
    assert any(
        f"job 'power' asks for a confirmation ('confirm'), which {what} cannot give" in p
        for p in problems
    ), problems


def test_confirm_text_may_use_only_the_jobs_args():
    (problem,) = problems_of(power_config(confirm="Power {acton} {target}"))
    assert "job 'power': key 'confirm': {acton} is not one of the job's args" in problem
    assert "did you mean 'action'?" in problem


def test_an_empty_confirm_text_is_refused():
    (problem,) = problems_of(power_config(confirm="  "))
    assert "key 'confirm'" in problem
    assert "not an empty one" in problem


def test_exclusive_must_name_an_arg():
    (problem,) = problems_of(power_config(exclusive="targets"))
    assert "key 'exclusive': 'targets' is not one of the job's args" in problem
    assert "did you mean 'target'?" in problem


def test_the_locked_placeholder_must_be_a_target():
    raw = one_namespace(
        {"power": POWER_JOB}, [{"command": "power [target] [action:on|off]", "job_type": "power"}]
    )
    (problem,) = problems_of(raw)
    assert "locks the xnames of [target]" in problem
    assert "[target:target]" in problem


def test_confirm_by_without_confirm_is_refused():
    job = {"run_args_template": "echo {target}", "confirm_by": ["U0ADMIN1"]}
    (problem,) = problems_of(one_namespace({"power": job}))
    assert "key 'confirm_by'" in problem
    assert "asks for no confirmation" in problem


def test_confirm_by_takes_user_ids_and_group_handles_only():
    (problem,) = problems_of(power_config(confirm_by=["alice"]))
    assert "'alice' is neither a Slack user id" in problem


def test_confirm_is_a_built_in_word_not_a_namespace():
    (problem,) = problems_of({"confirm": {"jobs": {}}})
    assert "the name is a built-in command" in problem


# --- the target placeholder ---------------------------------------------------------------


def target_param():
    return parse_placeholder(PLACEHOLDER.fullmatch("[target:target]"))


@pytest.mark.parametrize(
    "text", ["x1000c0s0b0n0", "x1000c0", "x1000c[0-3]s0b0n0", "nid[001-004]", "all", "node17"]
)
def test_a_target_placeholder_takes_what_targets_name(text):
    assert target_param().convert(text) == ("all" if text == "all" else text)


def test_a_wrong_target_is_refused_naming_the_placeholder_and_the_part():
    with pytest.raises(ParamError) as caught:
        target_param().convert("x1000q0")
    message = str(caught.value)
    assert message.startswith("[target] must be a target such as x1000c0s0b0n0")
    assert "'q'" in message


def test_a_command_with_a_bad_target_is_refused_when_typed():
    configs = parse_config(power_config())
    with pytest.raises(Exception) as caught:
        match_command(configs, "ns power x1000c0s0b0n99999 off")
    assert "[target]" in str(caught.value)


# --- locks ----------------------------------------------------------------------------------


def keys(*xnames: str) -> tuple[str, ...]:
    return expand(",".join(xnames), None).locks


def test_an_xname_overlaps_its_ancestors_and_itself_only():
    (chassis,) = keys("x1000c0")
    (node,) = keys("x1000c0s0b0n0")
    (other_node,) = keys("x1000c0s0b0n1")
    assert overlap(chassis, node)
    assert overlap(node, chassis)
    assert overlap(node, node)
    assert not overlap(node, other_node)


def test_containment_is_by_component_not_by_text_prefix():
    (c1,) = keys("x1000c1")
    (c10_node,) = keys("x1000c10s0b0n0")
    assert "x1000c10s0b0n0".startswith("x1000c1")  # the trap a text prefix falls into
    assert not overlap(c1, c10_node)
    (x1,) = keys("x1")
    (x10,) = keys("x10c0")
    assert not overlap(x1, x10)


def test_a_target_that_is_not_all_xnames_locks_everything_without_an_inventory():
    assert typed_locks("nid[001-004]") == (LOCK_ALL,)
    assert typed_locks("all") == (LOCK_ALL,)
    assert overlap(LOCK_ALL, keys("x3000c0s1b0n0")[0])


def test_a_range_of_xnames_locks_each():
    assert len(typed_locks("x1000c0s[0-3]b0n0")) == 4


def test_with_an_inventory_the_target_becomes_its_nodes():
    nodes = inventory("x1000c0s0b0n0", "x1000c0s0b0n1", "x1000c1s0b0n0", "x1000c10s0b0n0")
    chassis = expand("x1000c1", nodes)
    assert chassis.xnames == ("x1000c1s0b0n0",)
    assert chassis.hostnames == ("nid003",)
    assert chassis.from_inventory
    by_nid = expand("nid[001-002]", nodes)
    assert by_nid.xnames == ("x1000c0s0b0n0", "x1000c0s0b0n1")
    assert not any(overlap(a, b) for a in chassis.locks for b in by_nid.locks)
    assert any(overlap(a, b) for a in expand("x1000c0", nodes).locks for b in by_nid.locks)


def test_a_target_the_inventory_does_not_know_is_refused():
    with pytest.raises(ArgsError) as caught:
        expand("x9000c0", inventory("x1000c0s0b0n0"))
    assert "x9000c0" in str(caught.value)
    assert "not in the inventory" in str(caught.value)


def test_the_request_carries_its_nodes_and_locks_and_survives_storage():
    configs = parse_config(power_config())
    request = build_request(
        configs.namespaces["ns"],
        "power",
        source=Source.SLACK,
        args={"target": "x1000c0", "action": "off"},
        user="U1",
        inventory=inventory("x1000c0s0b0n0", "x1000c0s1b0n0"),
    )
    assert request.targets is not None
    assert len(request.locks) == 2
    assert JobRequest.from_dict(request.to_dict()) == request


def test_a_job_without_exclusive_locks_nothing():
    configs = parse_config(one_namespace({"hello": {"run_args_template": "echo hi"}}))
    request = build_request(configs.namespaces["ns"], "hello", source=Source.CLI)
    assert request.targets is None
    assert request.locks == ()


# --- messages ---------------------------------------------------------------------------------


def test_the_offer_has_the_summary_the_nodes_two_buttons_and_the_typed_fallback():
    from stat_bot.queue.base import Confirmation

    request = JobRequest(
        "ns", "power", {"target": "x1000c0", "action": "off"},
        targets=expand("x1000c0", inventory("x1000c0s0b0n0", "x1000c0s1b0n0")),
    )  # fmt: skip
    offer = Confirmation(
        code="ABC234", request=request, requested_by="U1", channel="C1", thread_ts="1.2",
        summary="Power `off` `x1000c0`", created_at=0.0, expires_at=600.0, offer_id=None,
    )  # fmt: skip
    report = offer_report(offer)
    (message,) = report.messages
    blocks = message.blocks
    assert blocks[0]["text"]["text"].endswith("Power `off` `x1000c0`")
    assert "2 nodes: `x1000c0s[0-1]b0n0` (nid[001-002])" in blocks[1]["text"]["text"]
    buttons = blocks[-1]["elements"]
    assert [(b["action_id"], b["value"]) for b in buttons] == [
        (CONFIRM_ACTION, "ABC234"),
        (CANCEL_ACTION, "ABC234"),
    ]
    assert "`@stat-bot confirm ABC234`" in message.text
    assert (report.channel, report.thread_ts) == ("C1", "1.2")


def test_a_confirmed_jobs_report_names_who_confirmed():
    from stat_bot.jobs.config import JobSpec

    job = make_job(confirmed_by="alice")
    spec = JobSpec(run_args_template="echo", report_stdout=True)
    report = build_report(job, spec, Outcome(JobStatus.SUCCEEDED, 0, stdout="done\n"))
    assert report.messages[-1].text.endswith("_Confirmed by @alice._")
    failed = build_report(job, spec, Outcome(JobStatus.FAILED, 1))
    # A failure report is blocks (it has an "Open an incident" button): a context line.
    (context,) = [b for b in failed.messages[-1].blocks if b["type"] == "context"]
    assert context["elements"][0]["text"] == "Confirmed by @alice."


def test_a_huge_typed_target_locks_everything_without_being_expanded():
    """A rule can fill a target from a Trac ticket's field: `x[0-99999999]` must not hang
    the process that builds the request (NodeSet would build every name)."""
    assert typed_locks("x[0-99999999]") == (LOCK_ALL,)
    assert typed_locks("x1000c[0-1]") == ("x1000.c0.", "x1000.c1.")


def test_a_failed_jobs_report_offers_to_open_an_incident():
    from stat_bot.jobs.config import JobSpec
    from stat_bot.report.messages import OPEN_INCIDENT_ACTION

    job = make_job()
    spec = JobSpec(run_args_template="echo", report_stdout=True)
    failed = build_report(job, spec, Outcome(JobStatus.FAILED, 1, stderr_tail="x" * 5000))
    message = failed.messages[-1]
    sections = [b for b in message.blocks if b["type"] == "section"]
    assert all(len(b["text"]["text"]) <= 3000 for b in sections)
    assert "".join(b["text"]["text"] for b in sections).replace("\n", "") == message.text.replace(
        "\n", ""
    )
    (button,) = [e for b in message.blocks if b["type"] == "actions" for e in b["elements"]]
    assert (button["action_id"], button["value"]) == (OPEN_INCIDENT_ACTION, str(job.id))
    succeeded = build_report(job, spec, Outcome(JobStatus.SUCCEEDED, 0, stdout="ok\n"))
    assert OPEN_INCIDENT_ACTION not in str(succeeded.messages)
