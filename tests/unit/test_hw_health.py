"""Node health: the totals line, merging findings, and the round trip sweeps store."""

from __future__ import annotations

from stat_bot.hardware.health import Finding, NodeHealth, State, by_severity, totals_line


def test_totals_line_worst_first():
    results = [NodeHealth(f"x1000c0s{i}b0n0", state=State.OK) for i in range(14)]
    results.append(NodeHealth("x1000c0s14b0n0", state=State.WARNING))
    results.append(NodeHealth("x1000c0s15b0n0", state=State.CRITICAL))
    assert totals_line(results) == "16 nodes: 1 critical, 1 warning, 14 ok"
    results.append(NodeHealth("x1000c1s0b0n0", state=State.TIMEOUT, reason="no answer in 5 s"))
    assert totals_line(results) == "17 nodes: 1 critical, 1 warning, 1 BMC timed out, 14 ok"
    assert totals_line([]) == "0 nodes"
    assert [r.state for r in by_severity(results)] == [
        State.CRITICAL,
        State.WARNING,
        State.TIMEOUT,
    ]


def test_findings_decide_state_unless_unreachable():
    health = NodeHealth("x1000c0s0b0n0", state=State.OK)
    health.add([Finding("warning", "Fan 2", "Fan 2: 300 RPM, warning below 500 RPM")])
    assert health.state is State.WARNING
    health.add([Finding("critical", "PSU 2", "PSU 2: Critical")])
    assert health.state is State.CRITICAL
    assert health.problems == ["Fan 2: 300 RPM, warning below 500 RPM", "PSU 2: Critical"]
    down = NodeHealth("x1000c0s1b0n0", state=State.AUTH_REFUSED, reason="HTTP 401")
    down.add([Finding("warning", "load", "load 90")])
    assert down.state is State.AUTH_REFUSED
    assert down.problems == ["credentials refused: HTTP 401"]


def test_round_trip():
    health = NodeHealth(
        "x1000c0s0b0n0",
        "nid000001",
        State.CRITICAL,
        [Finding("critical", "CPU1 Temp", "CPU1 Temp 92 °C, critical above 90 °C")],
        "On",
    )
    assert NodeHealth.from_dict(health.to_dict()) == health
