"""Queue contract: the security tables, server-side sessions, shared throttle windows, body
digests.

Moved here from the SQLite queue's unit tests so every backend runs them (PostgreSQL's
throttle upsert named a column the way only SQLite accepts, and nothing ran it).
"""

from __future__ import annotations

from stat_bot.jobs.model import JobRequest
from stat_bot.queue.base import Queue

HOUR = 3600.0


def test_sessions_open_close_and_expire(queue: Queue) -> None:
    queue.open_session("a" * 64, "ada", max_age=HOUR, now=1000.0)
    queue.open_session("b" * 64, "ada", max_age=HOUR, now=1000.0)
    assert queue.session_user("a" * 64, max_age=HOUR, now=1000.0 + HOUR) == "ada"
    assert queue.session_user("a" * 64, max_age=HOUR, now=1001.0 + HOUR) is None  # too old
    assert queue.close_session("a" * 64) is True
    assert queue.close_session("a" * 64) is False
    assert queue.session_user("a" * 64, max_age=HOUR, now=1000.0) is None
    assert queue.session_user("b" * 64, max_age=HOUR, now=1000.0) == "ada"
    assert queue.close_user_sessions("ada") == 1
    # Opening a session sweeps the expired ones.
    queue.open_session("c" * 64, "bob", max_age=HOUR, now=1000.0)
    queue.open_session("d" * 64, "bob", max_age=HOUR, now=2000.0 + HOUR)
    assert queue.close_user_sessions("bob") == 1


def test_throttle_counts_in_fixed_windows(queue: Queue) -> None:
    assert queue.throttle_get("k", now=0.0) == (0, None)
    assert queue.throttle_hit("k", 60, now=100.0) == 1
    assert queue.throttle_hit("k", 60, 2, now=120.0) == 3
    assert queue.throttle_get("k", now=159.0) == (3, 160.0)
    assert queue.throttle_get("k", now=160.0) == (0, None)  # the window ended
    assert queue.throttle_hit("k", 60, now=161.0) == 1  # a new one
    assert queue.throttle_get("k", now=161.0) == (1, 221.0)
    assert queue.throttle_hit("other", 60, now=161.0) == 1
    assert queue.throttle_clear("k") == 1
    assert queue.throttle_get("other", now=161.0)[0] == 1
    assert queue.throttle_clear() == 1


def test_a_replayed_body_writes_nothing(queue: Queue) -> None:
    request = JobRequest("demo", "hello", {"name": "a"}, coalesce=False)
    first = queue.accept_delivery("github", "d1", [request], digest="x" * 64, now=10.0)
    assert first is not None
    assert len(first) == 1
    assert queue.accept_delivery("github", "d2", [request], digest="x" * 64, now=11.0) is None
    # d2 was not recorded: with another body it is a new delivery.
    again = queue.accept_delivery("github", "d2", [request], digest="y" * 64, now=12.0)
    assert again is not None
    # A digest is per source.
    assert queue.accept_delivery("trac", "d1", [request], digest="x" * 64, now=13.0) is not None
    # A delivery id seen before leaves its new digest unrecorded too.
    assert queue.accept_delivery("github", "d1", [request], digest="z" * 64, now=14.0) is None
    assert queue.accept_delivery("github", "d3", [request], digest="z" * 64, now=15.0) is not None
    assert len(queue.jobs(limit=100)) == 4
    queue.prune(16.0)
    assert queue.accept_delivery("github", "d4", [request], digest="x" * 64, now=17.0) is not None


def test_a_delivery_is_counted_once_with_its_outcome(queue: Queue) -> None:
    """The webhook route's counter goes in the delivery's own transaction, once per call."""
    request = JobRequest("demo", "hello", {"name": "a"}, coalesce=False)
    c = "webhook_requests"
    assert queue.accept_delivery("github", "d1", [request], digest="a" * 64, counter=c)
    assert queue.accept_delivery("github", "d2", [], digest="b" * 64, counter=c) == []
    assert queue.accept_delivery("github", "d1", [request], digest="c" * 64, counter=c) is None
    assert queue.accept_delivery("github", "d3", [request], digest="a" * 64, counter=c) is None
    assert queue.accept_delivery("github", "d4", [request]) is not None  # no counter: not counted
    assert queue.counters(c) == {"accepted": 1, "ignored": 1, "duplicate": 2}
    assert len(queue.jobs(limit=100)) == 2
