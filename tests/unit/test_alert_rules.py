"""Alert rules: which alert change meets which rule, the job's args filled from labels and
checked by type (a hostile label refused, not run), and every mistake in an `alert_rules`
list explained at load time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from stat_bot.jobs.config import load_config, parse_config
from stat_bot.oncall.rules import matches, rule_outcomes
from stat_bot.queue.alert_model import Alert, AlertChange, AlertChangeKind, AlertStatus
from tests.unit.helpers import problems_of

ROOT = Path(__file__).resolve().parents[2]
FIRING, RESOLVED = AlertStatus.FIRING, AlertStatus.RESOLVED
RULE = {
    "alertname": ["NodeDown", "BMCUnreachable"],
    "labels": {"xname": True},
    "job_type": "check",
    "args": {"target": "{xname}"},
    "arg_types": {"target": "xname"},
}


def config(*rules: dict[str, Any], **namespace: Any) -> dict[str, Any]:
    body = {
        "jobs": {
            "check": {"run_args_template": "stat-bot task hw-check {target}"},
            "note": {"run_args_template": "echo {text}"},
            "power": {"run_args_template": "power {target}", "confirm": "Power {target}"},
        },
        "slack": [{"command": "check [target:target=all]", "job_type": "check"}],
        "alert_rules": list(rules),
    }
    body.update(namespace)
    return {"hw": body}


def change(
    kind: AlertChangeKind = AlertChangeKind.NEW,
    previous: AlertStatus | None = None,
    status: AlertStatus = FIRING,
    **alert: Any,
) -> AlertChange:
    values: dict[str, Any] = {
        "id": 7,
        "source": "alertmanager",
        "fingerprint": "abc",
        "title": "NodeDown: x1000c0s0b0n0 stopped answering",
        "service": "node",
        "severity": "critical",
        "labels": {"alertname": "NodeDown", "xname": "x1000c0s0b0n0", "severity": "critical"},
        "status": status,
        "first_fired_at": 100.0,
        "last_fired_at": 100.0,
        "resolved_at": None if status is FIRING else 200.0,
        "fire_count": 1,
        "url": None,
        "updated_at": 100.0,
    }
    values.update(alert)
    return AlertChange(Alert(**values), kind, previous)


def outcomes(rules: dict[str, Any], the_change: AlertChange) -> list:
    return rule_outcomes(parse_config(rules), the_change, site_channel="oncall")


def test_a_node_down_alert_checks_its_xname_once_per_firing():
    (outcome,) = outcomes(config(RULE), change())
    assert outcome.refusal is None
    request = outcome.request
    assert (request.namespace, request.job_type, dict(request.args)) == (
        "hw",
        "check",
        {"target": "x1000c0s0b0n0"},
    )
    assert request.channel == "oncall"
    assert outcome.key == "7:1:firing:hw:0"
    refired = change(AlertChangeKind.REFIRED, RESOLVED, fire_count=2)
    assert [o.key for o in outcomes(config(RULE), refired)] == ["7:2:firing:hw:0"]
    # A reminder (Slack repeats count as firings too) while it still fires queues nothing.
    assert outcomes(config(RULE), change(AlertChangeKind.REFIRED, FIRING, fire_count=3)) == []
    assert outcomes(config(RULE), change(AlertChangeKind.REPEATED, FIRING)) == []
    resolved = change(AlertChangeKind.RESOLVED, FIRING, RESOLVED)
    assert outcomes(config(RULE), resolved) == []
    assert len(outcomes(config({**RULE, "status": "resolved"}), resolved)) == 1


@pytest.mark.parametrize(
    ("rule", "met"),
    [
        ({"alertname": "nodedown"}, True),  # values ignore case
        ({"alertname": "re:^Node"}, True),
        ({"alertname": "re:^BMC"}, False),
        ({"severity": ["warning", "critical"]}, True),
        ({"labels": {"xname": "re:^x1000c0s\\d+b0n0$"}}, True),
        ({"labels": {"xname": "re:^x9"}}, False),
        ({"labels": {"rack": True}}, False),
        ({"labels": {"rack": False}}, True),
        ({"source": "pagerduty"}, False),
        ({"source": ["alertmanager", "slack"]}, True),
        ({"title": "re:stopped answering"}, True),
    ],
)
def test_conditions(rule: dict[str, Any], met: bool):
    spec = parse_config(
        config(
            {"job_type": "note", "args": {"text": "{title}"}, "arg_types": {"text": "str"}, **rule}
        )
    )
    (_, _, parsed) = next(spec.alert_rules())
    assert matches(parsed, change()) is met


def test_pagerduty_alerts_match_alertname_by_title():
    rule = {"alertname": "re:Disk full", "job_type": "note", "args": {"text": "{service}"}}
    rule["arg_types"] = {"text": "str"}
    pd = change(source="pagerduty", title="Disk full on db01", labels={"urgency": "high"})
    assert len(outcomes(config(rule), pd)) == 1


@pytest.mark.parametrize(
    "xname",
    ["x1000c0s0b0n0; rm -rf /", "all", "$(reboot)", "x1000c0s0b0n0 x1000c0s1b0n0", "x1000\n"],
)
def test_a_label_that_is_not_an_xname_is_refused_not_run(xname: str):
    (outcome,) = outcomes(config(RULE), change(labels={"alertname": "NodeDown", "xname": xname}))
    assert outcome.request is None
    assert "[target]" in outcome.refusal


def test_an_empty_label_does_not_meet_a_present_condition():
    assert outcomes(config(RULE), change(labels={"alertname": "NodeDown", "xname": " "})) == []


def test_without_arg_types_the_commands_placeholder_type_checks():
    rule = {k: v for k, v in RULE.items() if k != "arg_types"}
    bad = change(labels={"alertname": "NodeDown", "xname": "x1000;reboot"})
    (outcome,) = outcomes(config(rule), bad)
    assert outcome.request is None
    assert "[target] must be" in outcome.refusal


def test_the_shipped_example_rule_loads():
    configs = load_config(ROOT / "job_configs.py")
    rules = [(ns.name, rule.job_type) for ns, _, rule in configs.alert_rules()]
    assert ("hw", "check") in rules


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ({"job_type": "nope"}, "unknown job 'nope'"),
        ({"args": {"target": "{rack}"}}, "{rack} is not an alert value"),
        ({"args": {}}, "key 'args' must give exactly ['target']"),
        ({"alertname": "re:(unclosed"}, "'re:(unclosed' is not a regular expression"),
        ({"labels": {"xname": 5}}, "a condition is a value such as"),
        ({"labels": {"bad-name": True}}, "'bad-name' is not a label name"),
        ({"labels": {"xname": ""}}, "give a value, 're:<regex>'"),
        ({"source": "nagios"}, "'nagios' is not an alert source"),
        ({"status": "acked"}, "key 'status'"),
        ({"arg_types": {"target": "node"}}, "unknown type 'node'"),
        ({"arg_types": {"other": "xname"}}, "'other' is not one of the rule's args"),
        ({"job_type": "power"}, "asks for a confirmation"),
        ({"when": {"xname": True}}, "unknown key 'when'"),
        ({"channel": " "}, "key 'channel': give a channel"),
    ],
)
def test_mistakes_are_named(rule: dict[str, Any], expected: str):
    problems = problems_of(config({**RULE, **rule}))
    assert any("alert rule #1" in p and expected in p for p in problems), problems


def test_an_untyped_value_from_outside_must_get_a_type():
    rule = {"labels": {"text": True}, "job_type": "note", "args": {"text": "{text}"}}
    problems = problems_of(config(rule))
    assert any('give it a type to be checked by, e.g. "arg_types"' in p for p in problems)
