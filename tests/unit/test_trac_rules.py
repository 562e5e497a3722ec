"""Trac rules: which ticket event meets which rule, what it passes to the job, the event's
shape as the plugin sends it, and every mistake in a `trac_rules` list explained."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import pytest

from stat_bot.jobs.config import TracRuleSpec, parse_config
from stat_bot.jobs.trac_rules import (
    VALUES,
    EventError,
    TicketEvent,
    matches,
    read_ticket_event,
    rule_args,
)
from tests.unit.helpers import problems_of

ROOT = Path(__file__).resolve().parents[2]

FIELDS = {
    "summary": "Node will not boot",
    "reporter": "alice",
    "owner": "",
    "type": "Hardware",
    "priority": "High",
    "status": "new",
    "resolution": "",
    "xname": "x1000c0s0b0n0",
    "component": "compute",
    "time": "2025-01-31T09:15:00+00:00",
    "changetime": "2025-01-31T09:15:00+00:00",
}


def body(**values: Any) -> dict[str, Any]:
    """An event as the plugin sends it: a created ticket unless `values` say otherwise."""
    event: dict[str, Any] = {
        "event": "created",
        "id": "3f1c2b7e-7f4e-4d8a-9a51-0a3b2c1d4e5f",
        "ticket": 12,
        "fields": dict(FIELDS),
        "old_values": {},
        "comment": "",
        "author": "alice",
        "time": "2025-01-31T09:15:00+00:00",
        "link": "https://trac.example.org/stat/ticket/12",
    }
    event.update(values)
    return event


def event(**values: Any) -> TicketEvent:
    return read_ticket_event(body(**values))


def changed(old: dict[str, str], **new: str) -> TicketEvent:
    """A change of ticket #12: `old` the previous values, `new` the fields after it."""
    return event(event="changed", fields={**FIELDS, **new}, old_values=old, author="bob")


def rule(**values: Any) -> TracRuleSpec:
    return TracRuleSpec.model_validate({"event": "created", "job_type": "check", **values})


# --- the event -------------------------------------------------------------------------------


def test_an_event_reads_every_field_including_custom_ones():
    got = event(fields={**FIELDS, "rack": "r12", "cc": None})
    assert got.event == "created"
    assert got.ticket == 12
    assert got.fields["xname"] == "x1000c0s0b0n0"
    assert got.fields["rack"] == "r12"
    assert got.fields["cc"] == ""  # null: an empty field
    assert got.value("ticket") == "12"
    assert got.value("author") == "alice"
    assert got.value("no_such_field") == ""


def test_parts_a_newer_plugin_may_add_are_ignored():
    assert event(project="STAT", trac_version="1.6").ticket == 12


@pytest.mark.parametrize(
    ("values", "fragment"),
    [
        ({"event": "edited"}, "'event' must be one of created, changed, deleted (got 'edited')"),
        ({"event": None}, "the event has no 'event'"),
        ({"id": "has space"}, "'id' must be the event's unique id"),
        ({"id": "x" * 129}, "'id' must be the event's unique id"),
        ({"ticket": "12"}, "'ticket' must be the ticket's number (got '12')"),
        ({"ticket": 0}, "'ticket' must be the ticket's number"),
        ({"ticket": True}, "'ticket' must be the ticket's number"),
        ({"fields": None}, "the event has no 'fields' object"),
        ({"fields": ["summary"]}, "'fields' must be an object of field names to values, not an array"),
        ({"fields": {"Summary!": "x"}}, "'fields' has the field name 'Summary!'"),
        ({"fields": {"summary": {"text": "x"}}}, "fields.summary must be a string or null, not an object"),
        ({"old_values": {"status": ["new"]}}, "old_values.status must be a string or null, not an array"),
        ({"comment": 5.5}, None),  # a number is text enough
        ({"author": True}, "author must be a string or null, not true or false"),
        ({"fields": {f"f{i}": "" for i in range(201)}}, "'fields' has 201 fields"),
    ],
)  # fmt: skip
def test_a_malformed_event_names_the_part_at_fault(values, fragment):
    if fragment is None:
        assert event(**values).comment == "5.5"
        return
    with pytest.raises(EventError, match=re.escape(fragment)):
        event(**values)


@pytest.mark.parametrize("payload", [[], "created", None, 12])
def test_the_body_must_be_an_object(payload):
    with pytest.raises(EventError, match="the body must be a JSON object"):
        read_ticket_event(payload)


@pytest.mark.parametrize(
    ("made", "action"),
    [
        (lambda: event(), "new"),
        (lambda: event(event="deleted", author=""), "deleted"),
        (lambda: changed({"status": "new", "owner": ""}, status="assigned", owner="bob"),
         "new → assigned"),
        (lambda: changed({"status": "assigned", "resolution": ""}, status="closed",
                         resolution="fixed"), "assigned → closed (fixed)"),
        (lambda: changed({"status": "closed", "resolution": "fixed"}, status="reopened",
                         resolution=""), "closed → reopened"),
        (lambda: changed({"owner": "alice"}, owner="bob"), "reassigned to bob"),
        (lambda: changed({"owner": "alice"}, owner=""), "unassigned"),
        (lambda: changed({}), "updated"),
        (lambda: event(event="changed", comment="Reseated the DIMM"), "commented"),
        (lambda: changed({"priority": "Low"}), "updated"),
        # An old value equal to the new one is no change at all (Trac sends what was touched).
        (lambda: event(event="changed", old_values={"priority": "High"}, comment="x"),
         "commented"),
    ],
)  # fmt: skip
def test_action_says_what_happened_to_the_status(made, action):
    assert made().action == action


# --- matching ----------------------------------------------------------------------------


def test_a_new_ticket_with_an_xname_matches_the_hardware_check():
    check = rule(when={"xname": True}, args={"node": "{xname}"})
    assert matches(check, event())
    assert not matches(check, event(fields={**FIELDS, "xname": ""}))
    assert not matches(check, event(fields={**FIELDS, "xname": "   "}))
    without = dict(FIELDS)
    del without["xname"]
    assert not matches(check, event(fields=without))
    assert rule_args(check, event()) == {"node": "x1000c0s0b0n0"}


def test_a_rule_only_matches_its_own_event():
    assert not matches(rule(), changed({"priority": "Low"}))
    assert not matches(rule(event="deleted"), event())
    assert matches(rule(event="deleted"), event(event="deleted"))


def test_a_rule_without_conditions_matches_every_event_of_its_kind():
    assert matches(rule(), event())
    assert matches(rule(), event(fields={}))


def test_false_wants_an_empty_field():
    unowned = rule(when={"owner": False})
    assert matches(unowned, event())
    assert not matches(unowned, event(fields={**FIELDS, "owner": "bob"}))


@pytest.mark.parametrize(
    ("condition", "value", "expected"),
    [
        ("Hardware", "Hardware", True),
        ("hardware", "HARDWARE", True),  # case ignored
        ("hard", "Hardware", False),  # the whole value, not a part
        ("x1000c0*", "x1000c0s0b0n0", True),
        ("x1000c0*", "x1000c1s0b0n0", False),
        (["Hardware", "Cable"], "Cable", True),
        (["Hardware", "Cable"], "Firmware", False),
        ("*", "", True),
    ],
)
def test_text_conditions_are_glob_patterns(condition, value, expected):
    spec = rule(when={"type": condition})
    assert matches(spec, event(fields={**FIELDS, "type": value})) is expected


def test_every_condition_must_hold():
    spec = rule(when={"type": "Hardware", "priority": ["High", "Critical"], "xname": True})
    assert matches(spec, event())
    assert not matches(spec, event(fields={**FIELDS, "priority": "Low"}))


def test_conditions_may_name_the_events_own_values():
    by_alice = rule(when={"author": "alice"})
    assert matches(by_alice, event())
    assert not matches(by_alice, event(author="mallory"))


def test_changed_wants_one_of_its_fields_altered():
    closing = rule(event="changed", changed=["status"], when={"status": "closed"})
    closed = changed({"status": "assigned"}, status="closed", resolution="fixed")
    assert matches(closing, closed)
    # A later comment on the closed ticket does not close it again.
    comment = event(
        event="changed", fields={**FIELDS, "status": "closed"}, comment="thanks", old_values={}
    )
    assert not matches(closing, comment)
    assert matches(rule(event="changed", changed=["owner", "status"]), closed)


def test_when_tests_the_values_after_the_change():
    to_high = rule(event="changed", when={"priority": "High"})
    assert matches(to_high, changed({"priority": "Low"}, priority="High"))
    assert not matches(to_high, changed({"priority": "High"}, priority="Low"))


def test_args_fill_ticket_and_event_values():
    spec = rule(
        args={
            "what": "#{ticket} {event} by {author}: {summary} ({xname}, {rack})",
            "url": "{link}",
        }
    )
    got = rule_args(spec, event(fields={**FIELDS, "rack": "r12"}))
    assert got == {
        "what": "#12 created by alice: Node will not boot (x1000c0s0b0n0, r12)",
        "url": "https://trac.example.org/stat/ticket/12",
    }


def test_a_field_the_ticket_lacks_is_empty_in_args():
    assert rule_args(rule(args={"node": "{xname}"}), event(fields={})) == {"node": ""}


def test_literal_braces_stay_braces():
    assert rule_args(rule(args={"j": "{{x}} {xname}"}), event()) == {"j": "{x} x1000c0s0b0n0"}


# --- validation --------------------------------------------------------------------------

JOBS = {
    "check": {"run_args_template": "python3 check.py {node}"},
    "note": {"run_args_template": "echo {what}"},
    "tally": {"run_args_template": "true"},
}


def trac_rules(*rules: Any, jobs: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"hw": {"jobs": JOBS if jobs is None else jobs, "trac_rules": list(rules)}}


def test_a_valid_rule_list_loads():
    configs = parse_config(
        trac_rules(
            {"event": "created", "when": {"xname": True}, "job_type": "check",
             "args": {"node": "{xname}"}, "delay_seconds": 5, "channel": "#hw"},
            {"event": "changed", "changed": ["status"], "when": {"status": "closed"},
             "job_type": "note", "args": {"what": "#{ticket} closed by {author}"}},
            {"event": "deleted", "job_type": "tally"},
        )
    )  # fmt: skip
    rules = [r for _, r in configs.trac_rules()]
    assert [(r.event, r.job_type) for r in rules] == [
        ("created", "check"),
        ("changed", "note"),
        ("deleted", "tally"),
    ]
    assert rules[0].when == {"xname": True}
    assert rules[0].delay_seconds == 5


def test_every_namespaces_rules_are_listed_in_file_order():
    raw = {
        **trac_rules({"event": "created", "job_type": "tally"}),
        "report": {
            "jobs": {"count": {"run_args_template": "true"}},
            "trac_rules": [{"event": "deleted", "job_type": "count"}],
        },
    }
    configs = parse_config(raw)
    assert [(ns.name, r.job_type) for ns, r in configs.trac_rules()] == [
        ("hw", "tally"),
        ("report", "count"),
    ]


def test_the_example_in_job_configs_py_is_valid():
    """The commented example in the shipped job_configs.py loads once uncommented."""
    text = (ROOT / "job_configs.py").read_text()
    block = re.search(r'# "trac_rules": \[\n(.*?)\n\s*# \],', text, re.S)
    assert block, "job_configs.py has no commented trac_rules example"
    rules = ast.literal_eval("[" + re.sub(r"(?m)^\s*# ?", "", block.group(1)) + "]")
    configs = parse_config(trac_rules(*rules))
    assert len(configs.namespaces["hw"].spec.trac_rules) == len(rules) == 2
    new, closed = rules
    assert matches(TracRuleSpec.model_validate(new), event())
    assert not matches(TracRuleSpec.model_validate(closed), event())


def test_unknown_key_names_the_rule_and_suggests():
    (problem,) = problems_of(
        trac_rules({"event": "created", "job_type": "tally", "wehn": {"xname": True}})
    )
    assert problem.startswith("namespace 'hw', trac rule #1 (created -> tally): ")
    assert "unknown key 'wehn' (did you mean 'when'?)" in problem
    assert "valid keys: event, when, changed, job_type, args" in problem


def test_unknown_event_lists_the_known_ones():
    (problem,) = problems_of(trac_rules({"event": "modified", "job_type": "tally"}))
    assert "trac rule #1 (modified -> tally): key 'event'" in problem
    assert "'created', 'changed' or 'deleted'" in problem


def test_unknown_job_type_suggests_the_close_one():
    (problem,) = problems_of(trac_rules({"event": "created", "job_type": "chek"}))
    assert "key 'job_type': unknown job 'chek' (did you mean 'check'?)" in problem
    assert "jobs in this namespace: check, note, tally" in problem


@pytest.mark.parametrize(
    ("rule_", "fragment"),
    [
        ({"when": {"xname": "present"}}, None),  # text is a pattern: valid, matches "present"
        ({"when": {"xname": ""}}, "key 'when.xname': give a pattern such as 'x1000c0*'"),
        ({"when": {"type": []}}, "key 'when.type': give a pattern"),
        ({"when": {"type": ["Cable", " "]}}, "key 'when.type': give a pattern"),
        ({"when": {"XName": True}}, "'XName' is not a Trac field name"),
        ({"when": {"xname": 1}}, "key 'when': when.xname must be True (not empty), False"),
        ({"when": {"xname": [1]}}, "a list of patterns, not [1]"),
        ({"changed": ["status"]}, "key 'changed': only a changed event alters fields"),
        ({"event": "changed", "changed": ["Status"]}, "'Status' is not a Trac field name"),
        ({"delay_seconds": -1}, "key 'delay_seconds'"),
    ],
)
def test_conditions_a_rule_cannot_meet(rule_, fragment):
    spec = {"event": "created", "job_type": "tally", **rule_}
    if fragment is None:
        parse_config(trac_rules(spec))
        return
    problems = problems_of(trac_rules(spec))
    assert any(fragment in p for p in problems), problems


def test_args_must_fill_exactly_the_jobs_template_fields():
    (problem,) = problems_of(trac_rules({"event": "created", "job_type": "check"}))
    assert "key 'args' must give exactly ['node'] for job 'check'" in problem
    assert "got []" in problem
    (extra,) = problems_of(
        trac_rules({"event": "created", "job_type": "tally", "args": {"node": "{xname}"}})
    )
    assert "must give exactly [] for job 'tally'" in extra


def test_args_may_only_use_ticket_values_or_fields_named_in_when():
    (problem,) = problems_of(
        trac_rules({"event": "created", "job_type": "check", "args": {"node": "{xnmae}"}})
    )
    assert "key 'args.node': {xnmae} is not a ticket value (did you mean 'xname'?)" in problem
    assert '"when": {"xnmae": True}' in problem
    # A site's own custom field, once the rule names it in `when`:
    parse_config(
        trac_rules(
            {"event": "created", "job_type": "check", "when": {"rack": True},
             "args": {"node": "{rack}"}}
        )
    )  # fmt: skip
    for name in VALUES:
        parse_config(
            trac_rules({"event": "created", "job_type": "note", "args": {"what": f"{{{name}}}"}})
        )


def test_malformed_args_placeholders():
    (problem,) = problems_of(
        trac_rules({"event": "created", "job_type": "check", "args": {"node": "{xname:.5}"}})
    )
    assert "key 'args.node': placeholder {xname:.5} must be a plain name" in problem


def test_rules_keep_their_place_when_an_earlier_one_is_refused():
    problems = problems_of(
        trac_rules(
            "not a rule",
            {"event": "created", "job_type": "tally", "colour": "red"},
            {"event": "created", "job_type": "nope"},
        )
    )
    assert len(problems) == 3, problems
    assert problems[0].startswith("namespace 'hw', trac rule #1: ")
    assert "trac rule #2 (created -> tally): unknown key 'colour'" in problems[1]
    assert "trac rule #3 (created -> nope): key 'job_type': unknown job 'nope'" in problems[2]


def test_a_refused_job_is_not_blamed_again_in_its_rules():
    (problem,) = problems_of(
        trac_rules(
            {"event": "created", "job_type": "broken"},
            jobs={**JOBS, "broken": {"run_args_template": "x", "timeout": -1}},
        )
    )
    assert "job 'broken'" in problem


def test_trac_rules_must_be_a_list():
    (problem,) = problems_of({"hw": {"jobs": JOBS, "trac_rules": {"event": "created"}}})
    assert "namespace 'hw': key 'trac_rules'" in problem
    assert "list" in problem


def test_webhook_rules_are_unaffected_by_trac_rules_beside_them():
    raw = trac_rules({"event": "deleted", "job_type": "tally"})
    raw["hw"]["webhooks"] = [{"event": "push", "job_type": "tally"}]
    configs = parse_config(raw)
    assert configs.webhook_projects() == ["hw"]
    assert len(list(configs.trac_rules())) == 1
