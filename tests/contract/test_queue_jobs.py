"""Queue contract: jobs through their life (enqueue, claim, finish, cancel, suppress,
coalesce, recover), schedules firing once, history, wake-ups and group commit.

Moved here from the SQLite queue's unit tests so every backend runs them.
"""

from __future__ import annotations

import dataclasses
import select
import time
from typing import Any

import pytest

from stat_bot.jobs.model import Job, JobRequest, JobStatus, ReportState, Source
from stat_bot.queue.base import CancelOutcome, Queue, ScheduleRow

T0 = 1_700_000_000.0


def request(job_type: str = "hello", namespace: str = "ns", **values) -> JobRequest:
    return JobRequest(namespace=namespace, job_type=job_type, **values)


def readable(fd: int, timeout: float) -> bool:
    ready, _, _ = select.select([fd], [], [], timeout)
    return bool(ready)


def test_enqueue_stores_the_request(queue: Queue):
    result = queue.enqueue(
        request(
            args={"name": "Ada \u00e9"},
            channel="C1",
            thread_ts="1.2",
            user="U1",
            source=Source.SLACK,
            retries=2,
            concurrency=3,
            is_im=True,
        ),
        now=T0,
    )
    job = result.job
    assert result.coalesced is False
    assert result.running == ()
    assert result.suppressed_until is None
    assert job.status is JobStatus.QUEUED
    assert (job.namespace, job.job_type, job.args) == ("ns", "hello", {"name": "Ada \u00e9"})
    assert (job.channel, job.thread_ts, job.user, job.source) == ("C1", "1.2", "U1", "slack")
    assert (job.max_retries, job.concurrency, job.is_im) == (2, 3, True)
    assert (job.created_at, job.start_after) == (T0, T0)
    assert (job.started_at, job.finished_at, job.attempts) == (None, None, 0)
    assert job.report_state == "pending"
    assert queue.get(job.id) == job


def test_enqueue_returns_the_job_exactly_as_stored(queue: Queue):
    """enqueue builds the new job from what it inserted rather than reading the row back:
    every field must still be what `get` reads, with the same type (an int clock too)."""
    asked = request(args={"b": "2", "a": "1"}, user_name="Ada", confirmed_by="U2", delay_seconds=5)
    made = queue.enqueue(asked, now=1_700_000_000).job
    stored = queue.get(made.id)
    assert stored is not None
    for field in dataclasses.fields(Job):
        mine, read = getattr(made, field.name), getattr(stored, field.name)
        assert (mine, type(mine)) == (read, type(read)), field.name
    assert list(made.args) == list(stored.args) == ["a", "b"]


def test_claim_start_finish_transitions_and_timestamps(queue: Queue):
    job = queue.enqueue(request(), now=T0).job
    (claimed,) = queue.claim("w1", 5, now=T0 + 1)
    assert claimed.id == job.id
    assert claimed.status is JobStatus.RUNNING
    assert (claimed.started_at, claimed.heartbeat_at) == (T0 + 1, T0 + 1)
    assert claimed.worker_id == "w1"
    assert claimed.attempts == 1
    assert queue.claim("w2", 5, now=T0 + 1) == []

    queue.mark_started(job.id, 4321, "/logs/1")
    started = queue.get(job.id)
    assert started is not None
    assert (started.pid, started.log_dir) == (4321, "/logs/1")

    assert queue.finish(job.id, JobStatus.FAILED, 3, note="boom", now=T0 + 4) is True
    finished = queue.get(job.id)
    assert finished is not None
    assert finished.status is JobStatus.FAILED
    assert (finished.exit_code, finished.finished_at, finished.note) == (3, T0 + 4, "boom")
    assert finished.duration == 3
    assert (finished.pid, finished.log_dir, finished.worker_id) == (4321, "/logs/1", "w1")

    queue.record_report(job.id, ReportState.FAILED, "channel_not_found")
    reported = queue.get(job.id)
    assert reported is not None
    assert (reported.report_state, reported.report_error) == ("failed", "channel_not_found")


def test_finish_of_a_job_no_longer_running_returns_none(queue: Queue):
    job = queue.enqueue(request(), now=T0).job
    assert queue.finish(job.id, JobStatus.SUCCEEDED, 0, now=T0) is False  # still queued
    queue.claim("w1", 1, now=T0)
    assert queue.finish(job.id, JobStatus.SUCCEEDED, 0, now=T0 + 1) is True
    assert queue.finish(job.id, JobStatus.FAILED, 1, now=T0 + 2) is False
    stored = queue.get(job.id)
    assert stored is not None
    assert (stored.status, stored.exit_code) == (JobStatus.SUCCEEDED, 0)
    assert queue.finish(9999, JobStatus.SUCCEEDED, 0) is False


def test_claim_honours_delay(queue: Queue):
    job = queue.enqueue(request(delay_seconds=10), now=T0).job
    assert job.start_after == T0 + 10
    assert queue.next_due() == T0 + 10
    assert queue.claim("w1", 1, now=T0 + 9.99) == []
    assert [j.id for j in queue.claim("w1", 1, now=T0 + 10)] == [job.id]
    assert queue.next_due() is None


def test_next_due_with_now_skips_jobs_already_due(queue: Queue):
    assert queue.next_due(now=T0) is None
    queue.enqueue(request("waiting"), now=T0)
    later = queue.enqueue(request("later", delay_seconds=30), now=T0).job
    assert queue.next_due() == T0
    assert queue.next_due(now=T0 + 1) == later.start_after
    assert queue.next_due(now=T0 + 30) is None


def test_claim_order_is_due_time_then_id(queue: Queue):
    late = queue.enqueue(request("a", delay_seconds=5), now=T0).job
    first = queue.enqueue(request("b"), now=T0).job
    second = queue.enqueue(request("c"), now=T0).job
    early = queue.enqueue(request("d", delay_seconds=-1), now=T0).job
    claimed = queue.claim("w1", 10, now=T0 + 10)
    assert [j.id for j in claimed] == [early.id, first.id, second.id, late.id]


def test_claim_respects_the_limit(queue: Queue):
    for job_type in "abcde":
        queue.enqueue(request(job_type), now=T0)
    assert len(queue.claim("w1", 2, now=T0)) == 2
    assert len(queue.claim("w1", 0, now=T0)) == 0
    assert len(queue.claim("w1", 10, now=T0)) == 3


def test_claim_honours_per_type_concurrency(queue: Queue):
    ids = [queue.enqueue(request(coalesce=False, concurrency=2), now=T0).job.id for _ in range(5)]
    other_type = queue.enqueue(request("other"), now=T0).job
    # One batch never exceeds a type's limit, yet fills up with other types.
    claimed = queue.claim("w1", 10, now=T0)
    assert [j.id for j in claimed] == [ids[0], ids[1], other_type.id]
    assert queue.claim("w1", 10, now=T0) == []
    queue.finish(ids[0], JobStatus.SUCCEEDED, 0, now=T0)
    assert [j.id for j in queue.claim("w1", 10, now=T0)] == [ids[2]]


def test_concurrency_one_runs_jobs_of_a_type_one_at_a_time(queue: Queue):
    first = queue.enqueue(request(coalesce=False), now=T0).job
    second = queue.enqueue(request(coalesce=False), now=T0).job
    assert [j.id for j in queue.claim("w1", 10, now=T0)] == [first.id]
    result = queue.enqueue(request(coalesce=False), now=T0)
    assert [j.id for j in result.running] == [first.id]
    queue.finish(first.id, JobStatus.SUCCEEDED, 0, now=T0)
    assert [j.id for j in queue.claim("w1", 10, now=T0)] == [second.id]


def test_suppression_windows(queue: Queue):
    queue.suppress("ns", "hello", T0 + 100, T0 + 200, "U1")
    job = queue.enqueue(request(), now=T0).job
    # Not yet active: runs.
    assert [j.id for j in queue.claim("w1", 1, now=T0 + 50)] == [job.id]
    queue.finish(job.id, JobStatus.SUCCEEDED, 0, now=T0 + 51)

    held = queue.enqueue(request(), now=T0 + 150)
    assert held.suppressed_until == T0 + 200
    # Active: held back, other types are not.
    unrelated = queue.enqueue(request("other"), now=T0 + 150).job
    assert [j.id for j in queue.claim("w1", 5, now=T0 + 150)] == [unrelated.id]
    assert queue.claim("w1", 5, now=T0 + 199.9) == []
    # Expired: runs.
    assert [j.id for j in queue.claim("w1", 5, now=T0 + 200)] == [held.job.id]


def test_suppressions_are_listed_and_removed(queue: Queue):
    s1 = queue.suppress("ns", "hello", T0, T0 + 10, "U1")
    s2 = queue.suppress("ns", "hello", T0 + 20, T0 + 30)
    assert queue.suppressions() == [s1, s2]
    assert queue.suppressions(active_at=T0 + 15) == [s2]
    assert queue.unsuppress("ns", "hello") == 2
    assert queue.unsuppress("ns", "hello") == 0
    assert queue.suppressions() == []


def test_unsuppress_releases_held_jobs(queue: Queue):
    queue.suppress("ns", "hello", T0, T0 + 1000)
    job = queue.enqueue(request(), now=T0 + 1).job
    assert queue.claim("w1", 1, now=T0 + 2) == []
    queue.unsuppress("ns", "hello")
    assert [j.id for j in queue.claim("w1", 1, now=T0 + 2)] == [job.id]


def test_coalescing_by_type_updates_the_queued_job_and_keeps_both_requesters(queue: Queue):
    first = queue.enqueue(
        request(args={"n": "1"}, channel="C1", delay_seconds=5, coalesce="type"), now=T0
    )
    second = queue.enqueue(
        request(
            args={"n": "2"}, channel="C2", thread_ts="2.5", user="U2", user_name="bob",
            source=Source.SLACK, delay_seconds=5, coalesce="type",
        ),
        now=T0 + 3,
    )  # fmt: skip
    assert second.coalesced is True
    assert second.job.id == first.job.id
    assert second.job.args == {"n": "2"}  # the latest arguments win
    # The job stays with its first requester; the second is kept beside it.
    assert second.job.channel == "C1"
    assert second.job.start_after == T0 + 8
    assert second.job.created_at == T0
    assert [j.id for j in queue.jobs()] == [first.job.id]
    (joined,) = queue.requesters(first.job.id)
    assert (joined.channel, joined.thread_ts, joined.user, joined.user_name) == (
        "C2", "2.5", "U2", "bob",
    )  # fmt: skip
    assert joined.source == "slack"
    assert joined.args == {"n": "2"}
    assert joined.replaced_args is True
    assert joined.created_at == T0 + 3


def test_by_default_only_the_same_arguments_are_merged(queue: Queue):
    five = queue.enqueue(request(args={"n": "5"}, channel="C1", thread_ts="1.0"), now=T0)
    seven = queue.enqueue(request(args={"n": "7"}, channel="C1", thread_ts="2.0"), now=T0 + 1)
    again = queue.enqueue(
        request(args={"n": "5"}, channel="C2", thread_ts="3.0", user="U3", is_im=True), now=T0 + 2
    )
    assert (five.coalesced, seven.coalesced, again.coalesced) == (False, False, True)
    assert seven.job.id != five.job.id
    assert again.job.id == five.job.id
    assert again.job.args == {"n": "5"}
    assert (again.job.channel, again.job.thread_ts) == ("C1", "1.0")
    assert queue.get(seven.job.id).args == {"n": "7"}
    assert queue.requesters(seven.job.id) == []
    (joined,) = queue.requesters(five.job.id)
    assert (joined.channel, joined.thread_ts, joined.user, joined.is_im) == (
        "C2",
        "3.0",
        "U3",
        True,
    )
    assert joined.replaced_args is False


def test_arguments_compare_by_value_not_by_the_order_they_were_given(queue: Queue):
    a = queue.enqueue(request(args={"x": "1", "y": "2"}), now=T0)
    b = queue.enqueue(request(args={"y": "2", "x": "1"}, channel="C9"), now=T0)
    c = queue.enqueue(request(args={"x": "1", "y": "3"}, channel="C9"), now=T0)
    assert b.coalesced
    assert b.job.id == a.job.id
    assert not c.coalesced


def test_every_merged_requester_is_kept_in_order_and_none_twice(queue: Queue):
    job = queue.enqueue(request(channel="C1", thread_ts="1.0"), now=T0).job
    for i in range(2, 6):
        assert queue.enqueue(request(channel="C1", thread_ts=f"{i}.0"), now=T0 + i).coalesced
    # The same place again (the first requester's thread, a later one's) is answered already.
    assert queue.enqueue(request(channel="C1", thread_ts="1.0"), now=T0 + 9).coalesced
    assert queue.enqueue(request(channel="C1", thread_ts="3.0"), now=T0 + 9).coalesced
    assert [r.thread_ts for r in queue.requesters(job.id)] == ["2.0", "3.0", "4.0", "5.0"]


def test_a_schedule_and_a_webhook_merge_and_keep_their_requesters_too(queue: Queue):
    job = queue.enqueue(request(channel="C1", thread_ts="1.0"), now=T0).job
    queue.sync_schedules([ScheduleRow("ns.tick", "ns", "hello", "* * * * *")], now=T0)
    fired = queue.fire_schedule("ns.tick", T0 + 60, request(channel="#ops", source=Source.SCHEDULE))
    accepted = queue.accept_delivery(
        "github", "d-1", [request(channel="#ci", source=Source.WEBHOOK)], now=T0 + 61
    )
    assert fired is not None
    assert fired.coalesced
    assert fired.job.id == job.id
    assert accepted is not None
    assert accepted[0].coalesced
    assert [(r.channel, r.source) for r in queue.requesters(job.id)] == [
        ("#ops", "schedule"),
        ("#ci", "webhook"),
    ]


@pytest.mark.parametrize("coalesce", [True, "type"])
def test_coalescing_leaves_running_jobs_alone(queue: Queue, coalesce):
    running = queue.enqueue(request(args={"n": "1"}, coalesce=coalesce), now=T0).job
    queue.claim("w1", 1, now=T0)
    queued = queue.enqueue(request(args={"n": "1"}, channel="C2", coalesce=coalesce), now=T0)
    assert queued.coalesced is False
    assert queued.job.id != running.id
    assert [j.id for j in queued.running] == [running.id]
    assert queue.requesters(running.id) == []


def test_coalescing_by_arguments_finds_its_twin_among_many_queued_of_its_type(queue: Queue):
    # The lookup is an index search on the arguments (PostgreSQL's index holds their first
    # 500 characters): twins are found among hundreds, and arguments alike up to there
    # but not after are two jobs.
    jobs = [queue.enqueue(request(args={"node": f"n{i}"}), now=T0).job for i in range(300)]
    long = {"nodes": "x" * 600}
    first_long = queue.enqueue(request(args=long), now=T0).job
    other_long = queue.enqueue(request(args={"nodes": "x" * 599 + "y"}), now=T0)
    assert other_long.coalesced is False
    twin = queue.enqueue(request(args={"node": "n150"}, channel="C2"), now=T0 + 1)
    assert twin.coalesced is True
    assert twin.job.id == jobs[150].id
    again = queue.enqueue(request(args=long, channel="C3"), now=T0 + 1)
    assert again.coalesced is True
    assert again.job.id == first_long.id
    assert len(queue.jobs(statuses=[JobStatus.QUEUED], limit=1000)) == 302
    assert [r.channel for r in queue.requesters(jobs[150].id)] == ["C2"]


def test_without_coalescing_every_request_is_a_job(queue: Queue):
    a = queue.enqueue(request(coalesce=False), now=T0).job
    b = queue.enqueue(request(coalesce=False), now=T0).job
    assert a.id != b.id
    assert len(queue.jobs(statuses=[JobStatus.QUEUED])) == 2


def test_cancel_outcomes(queue: Queue):
    assert queue.request_cancel(12345).outcome is CancelOutcome.NOT_FOUND

    queued = queue.enqueue(request("a"), now=T0).job
    result = queue.request_cancel(queued.id, now=T0 + 1)
    assert result.outcome is CancelOutcome.CANCELLED
    assert result.job is not None
    assert result.job.status is JobStatus.CANCELLED
    assert result.job.finished_at == T0 + 1
    assert result.job.report_state == "none"
    assert queue.claim("w1", 5, now=T0 + 2) == []

    running = queue.enqueue(request("b"), now=T0).job
    queue.claim("w1", 1, now=T0)
    assert queue.cancel_requests("w1") == []
    result = queue.request_cancel(running.id)
    assert result.outcome is CancelOutcome.REQUESTED
    stored = queue.get(running.id)
    assert stored is not None
    assert stored.status is JobStatus.RUNNING
    assert stored.cancel_requested is True
    assert queue.cancel_requests("w1") == [running.id]
    assert queue.cancel_requests("w2") == []
    assert queue.heartbeat("w1", now=T0 + 5) == [running.id]

    queue.finish(running.id, JobStatus.CANCELLED, -15)
    assert queue.request_cancel(running.id).outcome is CancelOutcome.ALREADY_FINISHED
    assert queue.cancel_requests("w1") == []


def test_heartbeat_updates_running_jobs_and_worker(queue: Queue):
    queue.register_worker("w1", "host", 99, now=T0)
    job = queue.enqueue(request(), now=T0).job
    queue.claim("w1", 1, now=T0)
    assert queue.heartbeat("w1", now=T0 + 7) == []
    stored = queue.get(job.id)
    assert stored is not None
    assert stored.heartbeat_at == T0 + 7
    (worker,) = queue.workers()
    assert (worker.id, worker.hostname, worker.pid) == ("w1", "host", 99)
    assert (worker.started_at, worker.heartbeat_at) == (T0, T0 + 7)


def test_cancel_queued_of_a_type(queue: Queue):
    a = queue.enqueue(request(coalesce=False), now=T0).job
    b = queue.enqueue(request(coalesce=False), now=T0).job
    keep = queue.enqueue(request("other"), now=T0).job
    cancelled = queue.cancel_queued("ns", "hello", now=T0)
    assert sorted(j.id for j in cancelled) == [a.id, b.id]
    assert all(j.status is JobStatus.CANCELLED for j in cancelled)
    assert [j.id for j in queue.claim("w1", 5, now=T0)] == [keep.id]
    assert queue.cancel_queued("ns", "hello", now=T0) == []


def test_recover_lost_requeues_while_retries_remain_then_marks_lost(queue: Queue):
    queue.register_worker("dead", "host", 1, now=T0)
    queue.register_worker("alive", "host", 2, now=T0)
    job = queue.enqueue(request(retries=1), now=T0).job
    busy = queue.enqueue(request("busy"), now=T0).job
    queue.claim("dead", 1, now=T0)
    queue.mark_started(job.id, 5555, "/logs/1")
    queue.claim("alive", 1, now=T0)

    (recovered,) = queue.recover_lost(lambda w: w.id == "dead", now=T0 + 60)
    assert recovered.requeued is True
    assert recovered.worker is not None
    assert recovered.worker.id == "dead"
    assert recovered.job.id == job.id
    assert recovered.job.status is JobStatus.QUEUED
    assert recovered.job.start_after == T0 + 60
    assert recovered.job.worker_id is None
    assert recovered.job.pid is None
    assert recovered.pid == 5555  # the lost attempt's process group, to clean up after
    assert "attempt 1 of 2" in (recovered.job.note or "")
    assert [w.id for w in queue.workers()] == ["alive"]
    stored_busy = queue.get(busy.id)
    assert stored_busy is not None
    assert stored_busy.status is JobStatus.RUNNING

    queue.register_worker("dead2", "host", 3, now=T0 + 61)
    (again,) = queue.claim("dead2", 1, now=T0 + 61)
    assert again.id == job.id
    assert again.attempts == 2
    (lost,) = queue.recover_lost(lambda w: w.id == "dead2", now=T0 + 120)
    assert lost.requeued is False
    assert lost.job.status is JobStatus.LOST
    assert lost.job.finished_at == T0 + 120
    assert lost.job.report_state == "pending"
    assert "dead2" in (lost.job.note or "")


def test_recover_lost_takes_jobs_of_unregistered_workers(queue: Queue):
    job = queue.enqueue(request(), now=T0).job
    queue.claim("ghost", 1, now=T0)
    (recovered,) = queue.recover_lost(lambda w: False, now=T0 + 1)
    assert recovered.job.id == job.id
    assert recovered.requeued is False
    assert recovered.worker is None


def test_a_late_finish_after_recovery_is_ignored(queue: Queue):
    job = queue.enqueue(request(), now=T0).job
    queue.claim("ghost", 1, now=T0)
    queue.recover_lost(lambda w: True, now=T0 + 1)
    assert queue.finish(job.id, JobStatus.SUCCEEDED, 0) is False
    stored = queue.get(job.id)
    assert stored is not None
    assert stored.status is JobStatus.LOST


def row(key: str = "ns.hourly", **values) -> ScheduleRow:
    fields = {"namespace": "ns", "job_type": "report", "cron": "0 * * * *"}
    fields.update(values)
    return ScheduleRow(key=key, **fields)


def test_fire_schedule_at_most_once_per_due_time(queue: Queue, other: Queue):
    queue.sync_schedules([row(args={"a": "1"}, channel="C1")], now=T0)
    due = T0 + 3600
    req = request("report", args={"a": "1"}, channel="C1", source=Source.SCHEDULE)
    (added,) = queue.schedules()
    assert not added.has_fired  # `status` says "never"
    fired = queue.fire_schedule("ns.hourly", due, req)
    assert fired is not None
    assert queue.schedules()[0].has_fired
    assert fired.job.start_after == due
    assert fired.job.source == "schedule"
    assert other.fire_schedule("ns.hourly", due, req) is None
    assert queue.fire_schedule("ns.hourly", due - 1800, req) is None
    assert queue.fire_schedule("ns.hourly", due + 3600, req) is not None
    (stored,) = queue.schedules()
    assert stored.last_fired_at == due + 3600


def test_a_new_schedule_does_not_fire_for_times_before_it_existed(queue: Queue):
    queue.sync_schedules([row()], now=T0)
    assert queue.fire_schedule("ns.hourly", T0 - 10, request("report")) is None
    assert queue.fire_schedule("ns.hourly", T0, request("report")) is None


def test_disabled_schedule_does_not_fire(queue: Queue):
    queue.sync_schedules([row(enabled=False)], now=T0)
    assert queue.fire_schedule("ns.hourly", T0 + 3600, request("report")) is None
    assert queue.jobs() == []
    queue.sync_schedules([row(enabled=True)], now=T0 + 1)
    assert queue.fire_schedule("ns.hourly", T0 + 3600, request("report")) is not None


def test_unknown_schedule_does_not_fire(queue: Queue):
    assert queue.fire_schedule("ns.nope", T0, request("report")) is None


def test_sync_schedules_keeps_last_fired_and_drops_removed(queue: Queue):
    queue.sync_schedules([row("ns.a"), row("ns.b")], now=T0)
    queue.fire_schedule("ns.a", T0 + 3600, request("report"))
    queue.sync_schedules(
        [row("ns.a", cron="30 * * * *", args={"x": "1"}), row("ns.c")], now=T0 + 4000
    )
    stored = {s.key: s for s in queue.schedules()}
    assert set(stored) == {"ns.a", "ns.c"}
    assert stored["ns.a"].last_fired_at == T0 + 3600
    assert stored["ns.a"].cron == "30 * * * *"
    assert stored["ns.a"].args == {"x": "1"}
    assert stored["ns.c"].last_fired_at == T0 + 4000


def test_prune_deletes_only_old_finished_jobs(queue: Queue):
    old = queue.enqueue(request("old"), now=T0).job
    queue.claim("w1", 1, now=T0)
    queue.finish(old.id, JobStatus.SUCCEEDED, 0, now=T0 + 1)
    recent = queue.enqueue(request("recent"), now=T0).job
    queue.claim("w1", 1, now=T0)
    queue.finish(recent.id, JobStatus.FAILED, 1, now=T0 + 100)
    old_running = queue.enqueue(request("running"), now=T0).job
    queue.claim("w1", 1, now=T0)
    old_queued = queue.enqueue(request("queued", delay_seconds=1000), now=T0).job

    pruned = queue.prune(T0 + 50)
    assert [j.id for j in pruned] == [old.id]
    assert queue.get(old.id) is None
    assert {j.id for j in queue.jobs()} == {recent.id, old_running.id, old_queued.id}


def test_jobs_history_filters(queue: Queue):
    a = queue.enqueue(request("a"), now=T0).job
    b = queue.enqueue(request("b", namespace="other"), now=T0).job
    c = queue.enqueue(request("c"), now=T0).job
    queue.claim("w1", 1, now=T0)
    assert [j.id for j in queue.jobs()] == [c.id, b.id, a.id]
    assert [j.id for j in queue.jobs(limit=2)] == [c.id, b.id]
    assert [j.id for j in queue.jobs(namespace="other")] == [b.id]
    assert [j.id for j in queue.jobs(statuses=[JobStatus.RUNNING])] == [a.id]
    assert [j.id for j in queue.jobs(statuses=[JobStatus.QUEUED, JobStatus.RUNNING])] == [
        c.id,
        b.id,
        a.id,
    ]


def test_instances_on_one_file_see_each_others_writes(queue: Queue, other: Queue):
    job = queue.enqueue(request(), now=T0).job
    (claimed,) = other.claim("w2", 1, now=T0)
    assert claimed.id == job.id
    stored = queue.get(job.id)
    assert stored is not None
    assert stored.status is JobStatus.RUNNING


def settle(listener: Any) -> None:
    """Drain until quiet: a wakeup left over from an earlier test on a reused database (a
    late NOTIFY of its last commit), or a second one for one commit, is not what is tested.
    Quiet within 5 s it must be: a listener that keeps waking by itself fails here."""
    deadline = time.monotonic() + 5
    while readable(listener.fileno(), 0.3):
        listener.drain()
        assert time.monotonic() < deadline, "the listener never went quiet"


def test_listener_wakes_when_another_instance_enqueues(queue: Queue, other: Queue):
    listener = queue.wakeup_listener("dispatcher")
    try:
        settle(listener)
        other.enqueue(request(), now=T0)
        assert readable(listener.fileno(), 5)
        settle(listener)
        other.request_cancel(1)
        assert readable(listener.fileno(), 5)
    finally:
        listener.close()


def test_write_many_is_all_or_nothing_and_refuses_other_methods(queue: Queue):
    a = queue.enqueue(request("a"), now=T0).job
    queue.claim("w", 1, now=T0 + 1)
    with pytest.raises(ValueError, match="enqueue cannot be grouped"):
        queue.write_many([("mark_started", (a.id, 7, "/l"), {}), ("enqueue", (request(),), {})])
    with pytest.raises(TypeError):  # a write that fails half-way through the group
        queue.write_many(
            [("mark_started", (a.id, 7, "/l"), {}), ("finish", (a.id, "succeeded", 0), {"nope": 1})]
        )
    assert queue.get(a.id).pid is None  # the first write was rolled back with the failed one


def test_the_default_write_many_makes_the_writes_one_by_one(queue: Queue):
    from stat_bot.queue.base import Queue

    a = queue.enqueue(request("a"), now=T0).job
    queue.claim("w", 1, now=T0 + 1)
    results = Queue.write_many(queue, [("finish", (a.id, JobStatus.SUCCEEDED, 0), {})])
    assert results == [True]
    assert queue.get(a.id).status is JobStatus.SUCCEEDED
    with pytest.raises(ValueError, match="cannot be grouped"):
        Queue.write_many(queue, [("prune", (T0,), {})])


def test_a_finish_for_a_worker_no_longer_running_the_job_changes_nothing(queue: Queue):
    """Dispatcher A was cut off; its job was re-queued and claimed by B: A's late end is
    not recorded over B's run, which ends as B says."""
    job = queue.enqueue(request(retries=1), now=T0).job
    queue.claim("A", 1, now=T0)
    queue.recover_lost(lambda w: True, now=T0 + 60)  # A judged dead: re-queued
    (again,) = queue.claim("B", 1, now=T0 + 61)
    assert again.id == job.id
    assert queue.finish(job.id, JobStatus.SUCCEEDED, 0, worker_id="A", now=T0 + 62) is False
    assert queue.get(job.id).status is JobStatus.RUNNING
    assert queue.finish(job.id, JobStatus.FAILED, 1, worker_id="B", now=T0 + 63) is True
    done = queue.get(job.id)
    assert (done.status, done.exit_code, done.worker_id) == (JobStatus.FAILED, 1, "B")
