"""Queue contract: what the web server keeps (schedule overrides, webhook deliveries,
counters, component beats) and the figures it reads (counts, timings).

Moved here from the SQLite queue's unit tests so every backend runs them.
"""

from __future__ import annotations

import threading

import pytest

from stat_bot.jobs.model import JobRequest, JobStatus, ReportState, Source
from stat_bot.queue.base import KEEP, Queue, ScheduleRow
from tests.contract.conftest import Backend

T0 = 1_700_000_000.0


def request(job_type: str = "deploy", namespace: str = "ns", **values) -> JobRequest:
    return JobRequest(namespace=namespace, job_type=job_type, **values)


def schedule(key: str = "ns.report", **values) -> ScheduleRow:
    fields = {"namespace": "ns", "job_type": "report", "cron": "0 8 * * *"}
    fields.update(values)
    return ScheduleRow(key=key, **fields)


def test_interval_override_survives_config_sync_and_can_be_cleared(queue: Queue):
    queue.sync_schedules([schedule()], now=T0)
    changed = queue.set_schedule("ns.report", interval_seconds=7200, now=T0 + 10)
    assert changed is not None
    assert (changed.interval_seconds, changed.interval_since) == (7200, T0 + 10)
    queue.sync_schedules([schedule(cron="0 9 * * *")], now=T0 + 20)  # a dispatcher restart
    (row,) = queue.schedules()
    assert (row.cron, row.interval_seconds, row.interval_since) == ("0 9 * * *", 7200, T0 + 10)
    cleared = queue.set_schedule("ns.report", interval_seconds=None, now=T0 + 30)
    assert cleared is not None
    assert cleared.interval_seconds is None
    assert cleared.interval_since is None


def test_enabled_override_wins_over_the_config_and_decides_firing(queue: Queue):
    queue.sync_schedules([schedule()], now=T0)
    off = queue.set_schedule("ns.report", enabled=False)
    assert off is not None
    assert (off.enabled, off.enabled_override) == (False, False)
    queue.sync_schedules([schedule(enabled=True)], now=T0 + 1)
    assert queue.schedules()[0].enabled is False
    req = request("report", source=Source.SCHEDULE)
    assert queue.fire_schedule("ns.report", T0 + 86400, req) is None
    queue.set_schedule("ns.report", enabled=None)  # back to the config's: enabled
    assert queue.schedules()[0].enabled is True
    assert queue.fire_schedule("ns.report", T0 + 86400, req) is not None


def test_set_schedule_keeps_what_it_is_not_given(queue: Queue):
    queue.sync_schedules([schedule()], now=T0)
    queue.set_schedule("ns.report", interval_seconds=3600, now=T0)
    row = queue.set_schedule("ns.report", enabled=False, interval_seconds=KEEP)
    assert row is not None
    assert row.interval_seconds == 3600
    assert row.enabled is False


def test_set_schedule_of_an_unknown_key_is_none(queue: Queue):
    assert queue.set_schedule("ns.nope", enabled=False) is None


def test_a_delivery_enqueues_its_jobs_once(queue: Queue):
    first = queue.accept_delivery(
        "github", "abc", [request(delay_seconds=60), request("build")], now=T0
    )
    assert first is not None
    assert [r.job.job_type for r in first] == ["deploy", "build"]
    assert first[0].job.start_after == T0 + 60
    assert queue.accept_delivery("github", "abc", [request()], now=T0 + 1) is None
    assert queue.accept_delivery("other", "abc", [], now=T0 + 2) == []  # another source
    assert len(queue.jobs()) == 2


def test_concurrent_replays_enqueue_exactly_once(queue: Queue, backend: Backend):
    results: list[object] = []
    instances = [backend.open() for _ in range(8)]  # one each, as separate processes have

    def deliver(q: Queue) -> None:
        results.append(q.accept_delivery("github", "same", [request()]))

    threads = [threading.Thread(target=deliver, args=(q,)) for q in instances]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r is not None for r in results) == 1
    assert len(queue.jobs()) == 1


def test_a_delivery_reports_an_active_suppression(queue: Queue):
    queue.suppress("ns", "deploy", T0 - 10, T0 + 600)
    (result,) = queue.accept_delivery("github", "d", [request(delay_seconds=60)], now=T0) or []
    assert result.suppressed_until == T0 + 600


def test_old_deliveries_are_pruned_with_history(queue: Queue):
    queue.accept_delivery("github", "old", [], now=T0)
    queue.prune(T0 + 100)
    assert queue.accept_delivery("github", "old", [], now=T0 + 200) == []


def test_counters_add_up_across_connections(queue: Queue, other: Queue):
    queue.count("webhook_requests", "accepted")
    other.count("webhook_requests", "accepted", 2)
    other.count("webhook_requests", "bad_signature")
    queue.count("relay_requests", "ok")
    assert queue.counters("webhook_requests") == {"accepted": 3, "bad_signature": 1}
    assert queue.counters("nothing") == {}


def test_beats_keep_each_components_latest_state(queue: Queue):
    queue.beat("bot", "connecting", hostname="h", pid=1, now=T0)
    queue.beat("bot", "connected", "socket mode", hostname="h", pid=1, now=T0 + 5)
    (beat,) = queue.beats()
    assert (beat.component, beat.state, beat.detail, beat.at) == (
        "bot",
        "connected",
        "socket mode",
        T0 + 5,
    )


def test_job_counts_and_timings(queue: Queue):
    a = queue.enqueue(request("a"), now=T0).job
    queue.enqueue(request("b", delay_seconds=30), now=T0 + 1)
    (claimed,) = queue.claim("w", 1, now=T0 + 2)
    assert claimed.id == a.id
    queue.finish(a.id, JobStatus.FAILED, 1, report_state=ReportState.FAILED, now=T0 + 5)
    counts = {(c.job_type, c.status, c.report_state): c.count for c in queue.job_counts()}
    assert counts == {
        ("a", JobStatus.FAILED, ReportState.FAILED): 1,
        ("b", JobStatus.QUEUED, ReportState.PENDING): 1,
    }
    timings = queue.job_timings(since=T0)
    assert [(t.job_type, t.started_at, t.finished_at) for t in timings] == [
        ("a", T0 + 2, T0 + 5),
        ("b", None, None),
    ]
    assert timings[1].start_after == T0 + 31
    assert queue.job_timings(since=T0 + 1) == timings[1:]


@pytest.mark.parametrize("limit", [1, 5])
def test_job_timings_limit(queue: Queue, limit: int):
    for n in range(3):
        queue.enqueue(request(f"t{n}"), now=T0 + n)
    assert len(queue.job_timings(since=0, limit=limit)) == min(limit, 3)


def test_throttle_windows_add_up_across_instances_and_restart_when_they_end(
    queue: Queue, other: Queue
):
    assert queue.throttle_hit("login:ada", 60, now=T0) == 1
    assert other.throttle_hit("login:ada", 60, now=T0 + 1) == 2  # another web worker
    assert queue.throttle_hit("login:ada", 60, 3, now=T0 + 2) == 5
    assert other.throttle_get("login:ada", now=T0 + 3) == (5, T0 + 60)
    # The window ended: the next hit starts a new one rather than adding to the old.
    assert queue.throttle_hit("login:ada", 60, now=T0 + 61) == 1
    assert other.throttle_get("login:ada", now=T0 + 62) == (1, T0 + 121)
    assert queue.throttle_get("login:bob", now=T0) == (0, None)
    assert other.throttle_clear("login:ada") == 1
    assert queue.throttle_get("login:ada", now=T0 + 62) == (0, None)
