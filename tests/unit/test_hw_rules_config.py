"""`hw_rules` in job_configs.py: the schema closing the loop reads, and its error messages."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

from stat_bot.hardware.loop import LoopRule
from stat_bot.jobs.config import load_config, parse_config
from tests.unit.helpers import problems_of

JOBS = {
    "drain": {"run_args_template": "python3 slurm_cmd.py drain {target} {reason}"},
    "resume": {"run_args_template": "python3 slurm_cmd.py resume {target}"},
}
ROOT = Path(__file__).resolve().parents[2]


def hw(*rules: Any, jobs: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"hw": {"jobs": JOBS if jobs is None else jobs, "hw_rules": list(rules)}}


def test_defaults_are_ticket_confirm_drain_offer_resume_for_critical() -> None:
    configs = parse_config(hw({}))
    assert configs.hw_rules("hw") == [LoopRule()]
    rule = LoopRule()
    assert (rule.when, rule.xnames, rule.ticket, rule.drain, rule.resume) == (
        ("critical",),
        ("*",),
        True,
        "confirm",
        "offer",
    )
    assert configs.hw_rules("other") == []


def test_a_full_rule_is_read_into_a_loop_rule() -> None:
    configs = parse_config(
        hw(
            {
                "when": ["critical", "unreachable"],
                "xnames": "x1000c1*",
                "ticket": False,
                "ticket_type": "task",
                "ticket_priority": "major",
                "drain": "direct",
                "resume": "no",
                "channel": "#hw",
            }
        )
    )
    (rule,) = configs.hw_rules("hw")
    assert rule == LoopRule(
        when=("critical", "unreachable"),
        xnames=("x1000c1*",),
        ticket=False,
        ticket_type="task",
        ticket_priority="major",
        drain="direct",
        resume="no",
        channel="#hw",
    )


def test_wrong_values_are_named_with_the_choices() -> None:
    problems = problems_of(
        hw({"when": "broken"}, {"drain": True}, {"resume": "yes"}, {"colour": "red"})
    )
    assert len(problems) == 4, problems
    assert problems[0].startswith("namespace 'hw', hw rule #1: key 'when")
    assert "'broken' is not a check state; give one or more of critical, warning" in problems[0]
    assert "hw rule #2: key 'drain'" in problems[1]
    assert "'confirm', 'direct', 'no'" in problems[1]
    assert "hw rule #3: key 'resume'" in problems[2]
    assert "'offer', 'direct', 'no'" in problems[2]
    assert "hw rule #4: unknown key 'colour'; valid keys: when, xnames, ticket" in problems[3]


def test_the_drain_and_resume_jobs_must_exist_and_take_the_args_the_rule_fills() -> None:
    problems = problems_of(
        hw(
            {"drain_job": "drian"},
            {"resume_job": "drain"},
        )
    )
    assert len(problems) == 2, problems
    assert "hw rule #1 (critical -> ticket on, drain confirm, resume offer)" in problems[0]
    assert "key 'drain_job': unknown job 'drian' (did you mean 'drain'?)" in problems[0]
    assert "key 'resume_job': job 'drain' must take exactly {target}" in problems[1]


def test_a_rule_that_never_drains_needs_no_drain_job() -> None:
    configs = parse_config(hw({"drain": "no", "resume": "no"}, jobs={}))
    assert configs.hw_rules("hw")[0].drain == "no"


def test_empty_patterns_are_refused() -> None:
    (problem,) = problems_of(hw({"xnames": []}))
    assert "key 'xnames'" in problem
    assert "'x1000c0*'" in problem


def test_the_shipped_job_configs_has_a_valid_hw_rule_and_trac_rule() -> None:
    configs = load_config(ROOT / "job_configs.py")
    assert configs.hw_rules("hw")
    rules = [rule for ns, rule in configs.trac_rules() if ns.name == "hw"]
    assert [r.job_type for r in rules] == ["check-ticket"]
    assert rules[0].args == {"xname": "{xname}", "ticket": "{ticket}"}


def test_the_readme_example_is_a_valid_rule_with_the_defaults_it_claims() -> None:
    text = (ROOT / "README.md").read_text()
    section = text.split("### Hardware rules: closing the loop", 1)[1]
    example = section.split("```python\n", 1)[1].split("```", 1)[0]
    rules = ast.literal_eval("{" + example + "}")["hw_rules"]
    configs = parse_config({"hw": {"jobs": JOBS, "hw_rules": rules}})
    assert configs.hw_rules("hw") == [LoopRule()]
