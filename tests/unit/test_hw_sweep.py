"""Sweep comparison: new problems, recovered nodes, changed and unchanged problems."""

from __future__ import annotations

from stat_bot.hardware.health import Finding, NodeHealth, State
from stat_bot.hardware.sweep import compare


def ok(xname: str) -> NodeHealth:
    return NodeHealth(xname, state=State.OK)


def bad(xname: str, *findings: tuple[str, str, str]) -> NodeHealth:
    health = NodeHealth(xname, state=State.OK)
    health.add(Finding(sev, comp, text) for sev, comp, text in findings)
    return health


def down(xname: str, state: State = State.UNREACHABLE, reason: str = "refused") -> NodeHealth:
    return NodeHealth(xname, state=state, reason=reason)


PSU = ("critical", "PSU 2", "PSU 2: Critical")


def test_first_sweep_reports_every_problem_as_new_worst_first():
    diff = compare(None, [ok("a"), bad("b", ("warning", "Fan 1", "Fan 1: Warning")), bad("c", PSU)])
    assert diff.first
    assert not diff.quiet
    assert [c.xname for c in diff.new] == ["c", "b"]
    assert diff.summary().startswith("first sweep")


def test_the_same_problems_again_are_quiet_and_counted():
    before = [ok("a"), bad("b", PSU), down("c")]
    after = [ok("a"), bad("b", PSU), down("c", reason="connection refused again")]
    diff = compare(before, after)
    assert diff.quiet
    assert [h.xname for h in diff.unchanged] == ["b", "c"]
    assert diff.summary() == "2 problems unchanged"


def test_a_reading_that_moves_is_the_same_problem():
    hot = ("critical", "CPU1 Temp", "CPU1 Temp 92 °C, critical above 90 °C")
    hotter = ("critical", "CPU1 Temp", "CPU1 Temp 95 °C, critical above 90 °C")
    assert compare([bad("a", hot)], [bad("a", hotter)]).quiet


def test_new_recovered_and_changed_are_told_apart():
    before = [ok("a"), bad("b", PSU), bad("c", ("warning", "Fan 1", "Fan 1: Warning")), ok("d")]
    after = [
        bad("a", PSU),  # new
        ok("b"),  # recovered
        bad("c", ("critical", "Fan 1", "Fan 1: Critical")),  # changed: warning -> critical
        down("d", State.TIMEOUT),  # new: a BMC that stopped answering
        bad("e", PSU),  # not swept before: new
    ]
    diff = compare(before, after)
    assert not diff.quiet
    assert [c.xname for c in diff.new] == ["a", "e", "d"]  # critical before timeout
    assert diff.new[0].before is not None
    assert diff.new[1].before is None
    assert [c.xname for c in diff.recovered] == ["b"]
    assert [(c.before.state, c.after.state) for c in diff.changed] == [
        (State.WARNING, State.CRITICAL)
    ]
    assert diff.summary() == "3 new problems, 1 recovered, 1 changed, 0 problems unchanged"


def test_another_component_failing_on_a_sick_node_is_a_change():
    psu1 = ("critical", "PSU 1", "PSU 1: Critical")
    diff = compare([bad("a", PSU)], [bad("a", PSU, psu1)])
    assert [c.xname for c in diff.changed] == ["a"]


def test_a_bmc_that_now_refuses_credentials_is_a_change():
    diff = compare([down("a")], [down("a", State.AUTH_REFUSED)])
    assert len(diff.changed) == 1


def test_nodes_taken_out_of_the_inventory_are_named_but_not_a_change():
    diff = compare([ok("a"), bad("b", PSU)], [ok("a")])
    assert diff.gone == ["b"]
    assert diff.quiet
    assert "1 no longer in the inventory" in diff.summary()
