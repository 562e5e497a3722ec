"""What the hardware rules remember per xname (Queue.loop_memory / remember_loop), every backend."""

from __future__ import annotations

from stat_bot.hardware.loop import Memory
from stat_bot.queue.base import Queue


def test_nothing_remembered_at_first(queue: Queue) -> None:
    assert queue.loop_memory(["x1000c0s0b0n0"]) == {}
    assert queue.loop_memory([]) == {}


def test_remembered_and_replaced_per_xname_seen_by_another_connection(
    queue: Queue, other: Queue
) -> None:
    first = Memory("x1000c0s0b0n0", ticket=12, problem="PSU 2: Critical", failing=True)
    second = Memory("x1000c0s0b0n1", drain_offer="ABC123")
    queue.remember_loop([first, second], now=100.0)
    got = other.loop_memory(["x1000c0s0b0n0", "x1000c0s0b0n1", "x1000c0s0b1n0"])
    assert got == {
        "x1000c0s0b0n0": Memory(
            "x1000c0s0b0n0", 12, "PSU 2: Critical", True, None, None, updated_at=100.0
        ),
        "x1000c0s0b0n1": Memory("x1000c0s0b0n1", drain_offer="ABC123", updated_at=100.0),
    }
    recovered = Memory("x1000c0s0b0n0", ticket=12, failing=False, resume_offer="RES999")
    queue.remember_loop([recovered], now=200.0)
    (after,) = other.loop_memory(["x1000c0s0b0n0"]).values()
    assert (after.failing, after.problem, after.resume_offer, after.updated_at) == (
        False,
        None,
        "RES999",
        200.0,
    )
