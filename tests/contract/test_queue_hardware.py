"""Queue contract: the hw namespace's memory (each node's latest health, finished sweeps)."""

from __future__ import annotations

from stat_bot.queue.base import NodeHealthRow, Queue

T0 = 1_700_000_000.0


def row(xname: str, state: str = "ok", at: float = T0, **data) -> NodeHealthRow:
    return NodeHealthRow(xname, state, at, {"xname": xname, "state": state, **data})


def test_latest_health_is_kept_per_node_and_read_back(queue: Queue):
    assert queue.node_health() == {}
    kept = queue.record_node_health([row("x1000c0s0b0n0"), row("x1000c0s0b0n1", "critical")])
    assert kept == 2
    found = queue.node_health(["x1000c0s0b0n1", "x1000c0s9b0n0"])
    assert list(found) == ["x1000c0s0b0n1"]
    assert found["x1000c0s0b0n1"].state == "critical"
    assert found["x1000c0s0b0n1"].data == {"xname": "x1000c0s0b0n1", "state": "critical"}
    assert set(queue.node_health()) == {"x1000c0s0b0n0", "x1000c0s0b0n1"}


def test_an_older_check_never_replaces_a_newer_one(queue: Queue, other: Queue):
    queue.record_node_health([row("x1000c0s0b0n0", "critical", T0 + 10, job_id=2)])
    assert other.record_node_health([row("x1000c0s0b0n0", "ok", T0 + 5)]) == 0
    assert queue.node_health(["x1000c0s0b0n0"])["x1000c0s0b0n0"].state == "critical"
    other.record_node_health([NodeHealthRow("x1000c0s0b0n0", "ok", T0 + 20, {}, job_id=7)])
    latest = queue.node_health(["x1000c0s0b0n0"])["x1000c0s0b0n0"]
    assert (latest.state, latest.checked_at, latest.job_id) == ("ok", T0 + 20, 7)


def test_many_nodes_are_read_in_one_call(queue: Queue):
    names = [f"x1000c0s{s}b0n{n}" for s in range(8) for n in range(2)] * 80
    queue.record_node_health([row(x) for x in dict.fromkeys(names)])
    assert len(queue.node_health(names)) == 16


def test_a_sweep_is_stored_with_its_nodes_latest_health(queue: Queue, other: Queue):
    assert queue.last_sweep("x1000c0") is None
    results = [row("x1000c0s0b0n0"), row("x1000c0s1b0n0", "timeout", reason="no answer")]
    stored = queue.record_sweep("x1000c0", T0, T0 + 3, results, job_id=5)
    assert stored.scope == "x1000c0"
    assert stored.job_id == 5
    found = other.last_sweep("x1000c0")  # another host's dispatcher sees it
    assert found == stored
    assert found.results[1] == {"xname": "x1000c0s1b0n0", "state": "timeout", "reason": "no answer"}
    assert other.node_health(["x1000c0s1b0n0"])["x1000c0s1b0n0"].state == "timeout"
    assert other.last_sweep("all") is None  # scopes are kept apart


def test_the_previous_sweep_is_the_one_before_and_old_ones_are_pruned(queue: Queue):
    ids = [
        queue.record_sweep("all", T0 + i, T0 + i + 1, [row("x1000c0s0b0n0", at=T0 + i)], keep=3).id
        for i in range(5)
    ]
    latest = queue.last_sweep("all")
    assert latest is not None
    assert latest.id == ids[-1]
    before = queue.last_sweep("all", before_id=ids[-1])
    assert before is not None
    assert before.id == ids[-2]
    assert queue.last_sweep("all", before_id=ids[-3]) is None  # pruned: only 3 kept
    assert queue.node_health()["x1000c0s0b0n0"].checked_at == T0 + 4
