"""The SQLite queue on a real file: state transitions, claiming rules, schedules, wake-ups."""

from __future__ import annotations

import os
import select
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stat_bot.jobs.model import JobRequest, JobStatus, ReportState, Source
from stat_bot.queue.base import CancelOutcome, QueueBusyError, QueueError, ScheduleRow
from stat_bot.queue.sqlite import MIGRATIONS, SQLiteQueue

T0 = 1_700_000_000.0


def request(job_type: str = "hello", namespace: str = "ns", **values) -> JobRequest:
    return JobRequest(namespace=namespace, job_type=job_type, **values)


@pytest.fixture
def other(queue: SQLiteQueue) -> Iterator[SQLiteQueue]:
    """A second queue object on the same file, as another process would have."""
    q = SQLiteQueue(queue.path)
    yield q
    q.close()


# --- schema --------------------------------------------------------------------------------


def test_migrate_is_idempotent_and_records_the_version(tmp_path: Path):
    q = SQLiteQueue(tmp_path / "q.sqlite3")
    try:
        assert q.migrate() == len(MIGRATIONS)
        assert q.migrate() == len(MIGRATIONS)
        job = q.enqueue(request(), now=T0).job
        assert q.migrate() == len(MIGRATIONS)
        assert q.get(job.id) == job
    finally:
        q.close()
    with sqlite3.connect(tmp_path / "q.sqlite3") as conn:
        versions = [v for (v,) in conn.execute("SELECT version FROM schema_version")]
        (mode,) = conn.execute("PRAGMA journal_mode").fetchone()
    assert versions == list(range(1, len(MIGRATIONS) + 1))
    assert mode == "wal"


def test_newer_schema_is_refused(tmp_path: Path):
    path = tmp_path / "q.sqlite3"
    q = SQLiteQueue(path)
    q.migrate()
    q.close()
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO schema_version (version) VALUES (?)", (len(MIGRATIONS) + 5,))
    q = SQLiteQueue(path)
    try:
        with pytest.raises(QueueError) as caught:
            q.migrate()
    finally:
        q.close()
    message = str(caught.value)
    assert str(path) in message
    assert f"schema version {len(MIGRATIONS) + 5}" in message
    assert "upgrade STAT bot" in message


def test_creates_the_database_folder(tmp_path: Path):
    q = SQLiteQueue(tmp_path / "deep" / "er" / "q.sqlite3")
    try:
        q.migrate()
    finally:
        q.close()
    assert (tmp_path / "deep" / "er" / "q.sqlite3").is_file()


# --- enqueue, claim, finish ------------------------------------------------------------


def test_enqueue_stores_the_request(queue: SQLiteQueue):
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


def test_claim_start_finish_transitions_and_timestamps(queue: SQLiteQueue):
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

    finished = queue.finish(job.id, JobStatus.FAILED, 3, note="boom", now=T0 + 4)
    assert finished is not None
    assert finished.status is JobStatus.FAILED
    assert (finished.exit_code, finished.finished_at, finished.note) == (3, T0 + 4, "boom")
    assert finished.duration == 3
    assert queue.get(job.id) == finished

    queue.record_report(job.id, ReportState.FAILED, "channel_not_found")
    reported = queue.get(job.id)
    assert reported is not None
    assert (reported.report_state, reported.report_error) == ("failed", "channel_not_found")


def test_finish_of_a_job_no_longer_running_returns_none(queue: SQLiteQueue):
    job = queue.enqueue(request(), now=T0).job
    assert queue.finish(job.id, JobStatus.SUCCEEDED, 0, now=T0) is None  # still queued
    queue.claim("w1", 1, now=T0)
    assert queue.finish(job.id, JobStatus.SUCCEEDED, 0, now=T0 + 1) is not None
    assert queue.finish(job.id, JobStatus.FAILED, 1, now=T0 + 2) is None
    stored = queue.get(job.id)
    assert stored is not None
    assert (stored.status, stored.exit_code) == (JobStatus.SUCCEEDED, 0)
    assert queue.finish(9999, JobStatus.SUCCEEDED, 0) is None


def test_claim_honours_delay(queue: SQLiteQueue):
    job = queue.enqueue(request(delay_seconds=10), now=T0).job
    assert job.start_after == T0 + 10
    assert queue.next_due() == T0 + 10
    assert queue.claim("w1", 1, now=T0 + 9.99) == []
    assert [j.id for j in queue.claim("w1", 1, now=T0 + 10)] == [job.id]
    assert queue.next_due() is None


def test_next_due_with_now_skips_jobs_already_due(queue: SQLiteQueue):
    assert queue.next_due(now=T0) is None
    queue.enqueue(request("waiting"), now=T0)
    later = queue.enqueue(request("later", delay_seconds=30), now=T0).job
    assert queue.next_due() == T0
    assert queue.next_due(now=T0 + 1) == later.start_after
    assert queue.next_due(now=T0 + 30) is None


def test_claim_order_is_due_time_then_id(queue: SQLiteQueue):
    late = queue.enqueue(request("a", delay_seconds=5), now=T0).job
    first = queue.enqueue(request("b"), now=T0).job
    second = queue.enqueue(request("c"), now=T0).job
    early = queue.enqueue(request("d", delay_seconds=-1), now=T0).job
    claimed = queue.claim("w1", 10, now=T0 + 10)
    assert [j.id for j in claimed] == [early.id, first.id, second.id, late.id]


def test_claim_respects_the_limit(queue: SQLiteQueue):
    for job_type in "abcde":
        queue.enqueue(request(job_type), now=T0)
    assert len(queue.claim("w1", 2, now=T0)) == 2
    assert len(queue.claim("w1", 0, now=T0)) == 0
    assert len(queue.claim("w1", 10, now=T0)) == 3


def test_claim_honours_per_type_concurrency(queue: SQLiteQueue):
    ids = [queue.enqueue(request(coalesce=False, concurrency=2), now=T0).job.id for _ in range(5)]
    other_type = queue.enqueue(request("other"), now=T0).job
    # One batch never exceeds a type's limit, yet fills up with other types.
    claimed = queue.claim("w1", 10, now=T0)
    assert [j.id for j in claimed] == [ids[0], ids[1], other_type.id]
    assert queue.claim("w1", 10, now=T0) == []
    queue.finish(ids[0], JobStatus.SUCCEEDED, 0, now=T0)
    assert [j.id for j in queue.claim("w1", 10, now=T0)] == [ids[2]]


def test_concurrency_one_runs_jobs_of_a_type_one_at_a_time(queue: SQLiteQueue):
    first = queue.enqueue(request(coalesce=False), now=T0).job
    second = queue.enqueue(request(coalesce=False), now=T0).job
    assert [j.id for j in queue.claim("w1", 10, now=T0)] == [first.id]
    result = queue.enqueue(request(coalesce=False), now=T0)
    assert [j.id for j in result.running] == [first.id]
    queue.finish(first.id, JobStatus.SUCCEEDED, 0, now=T0)
    assert [j.id for j in queue.claim("w1", 10, now=T0)] == [second.id]


def test_suppression_windows(queue: SQLiteQueue):
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


def test_suppressions_are_listed_and_removed(queue: SQLiteQueue):
    s1 = queue.suppress("ns", "hello", T0, T0 + 10, "U1")
    s2 = queue.suppress("ns", "hello", T0 + 20, T0 + 30)
    assert queue.suppressions() == [s1, s2]
    assert queue.suppressions(active_at=T0 + 15) == [s2]
    assert queue.unsuppress("ns", "hello") == 2
    assert queue.unsuppress("ns", "hello") == 0
    assert queue.suppressions() == []


def test_unsuppress_releases_held_jobs(queue: SQLiteQueue):
    queue.suppress("ns", "hello", T0, T0 + 1000)
    job = queue.enqueue(request(), now=T0 + 1).job
    assert queue.claim("w1", 1, now=T0 + 2) == []
    queue.unsuppress("ns", "hello")
    assert [j.id for j in queue.claim("w1", 1, now=T0 + 2)] == [job.id]


def test_coalescing_updates_the_queued_job(queue: SQLiteQueue):
    first = queue.enqueue(request(args={"n": "1"}, channel="C1", delay_seconds=5), now=T0)
    second = queue.enqueue(request(args={"n": "2"}, channel="C2", delay_seconds=5), now=T0 + 3)
    assert second.coalesced is True
    assert second.job.id == first.job.id
    assert second.job.args == {"n": "2"}
    assert second.job.channel == "C2"
    assert second.job.start_after == T0 + 8
    assert second.job.created_at == T0
    assert [j.id for j in queue.jobs()] == [first.job.id]


def test_coalescing_leaves_running_jobs_alone(queue: SQLiteQueue):
    running = queue.enqueue(request(args={"n": "1"}), now=T0).job
    queue.claim("w1", 1, now=T0)
    queued = queue.enqueue(request(args={"n": "2"}), now=T0)
    assert queued.coalesced is False
    assert queued.job.id != running.id
    assert [j.id for j in queued.running] == [running.id]


def test_without_coalescing_every_request_is_a_job(queue: SQLiteQueue):
    a = queue.enqueue(request(coalesce=False), now=T0).job
    b = queue.enqueue(request(coalesce=False), now=T0).job
    assert a.id != b.id
    assert len(queue.jobs(statuses=[JobStatus.QUEUED])) == 2


# --- cancelling ------------------------------------------------------------------------


def test_cancel_outcomes(queue: SQLiteQueue):
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


def test_heartbeat_updates_running_jobs_and_worker(queue: SQLiteQueue):
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


def test_cancel_queued_of_a_type(queue: SQLiteQueue):
    a = queue.enqueue(request(coalesce=False), now=T0).job
    b = queue.enqueue(request(coalesce=False), now=T0).job
    keep = queue.enqueue(request("other"), now=T0).job
    cancelled = queue.cancel_queued("ns", "hello", now=T0)
    assert sorted(j.id for j in cancelled) == [a.id, b.id]
    assert all(j.status is JobStatus.CANCELLED for j in cancelled)
    assert [j.id for j in queue.claim("w1", 5, now=T0)] == [keep.id]
    assert queue.cancel_queued("ns", "hello", now=T0) == []


# --- lost workers ------------------------------------------------------------------------


def test_recover_lost_requeues_while_retries_remain_then_marks_lost(queue: SQLiteQueue):
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


def test_recover_lost_takes_jobs_of_unregistered_workers(queue: SQLiteQueue):
    job = queue.enqueue(request(), now=T0).job
    queue.claim("ghost", 1, now=T0)
    (recovered,) = queue.recover_lost(lambda w: False, now=T0 + 1)
    assert recovered.job.id == job.id
    assert recovered.requeued is False
    assert recovered.worker is None


def test_a_late_finish_after_recovery_is_ignored(queue: SQLiteQueue):
    job = queue.enqueue(request(), now=T0).job
    queue.claim("ghost", 1, now=T0)
    queue.recover_lost(lambda w: True, now=T0 + 1)
    assert queue.finish(job.id, JobStatus.SUCCEEDED, 0) is None
    stored = queue.get(job.id)
    assert stored is not None
    assert stored.status is JobStatus.LOST


# --- schedules ---------------------------------------------------------------------------


def row(key: str = "ns.hourly", **values) -> ScheduleRow:
    fields = {"namespace": "ns", "job_type": "report", "cron": "0 * * * *"}
    fields.update(values)
    return ScheduleRow(key=key, **fields)


def test_fire_schedule_at_most_once_per_due_time(queue: SQLiteQueue, other: SQLiteQueue):
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


def test_a_new_schedule_does_not_fire_for_times_before_it_existed(queue: SQLiteQueue):
    queue.sync_schedules([row()], now=T0)
    assert queue.fire_schedule("ns.hourly", T0 - 10, request("report")) is None
    assert queue.fire_schedule("ns.hourly", T0, request("report")) is None


def test_disabled_schedule_does_not_fire(queue: SQLiteQueue):
    queue.sync_schedules([row(enabled=False)], now=T0)
    assert queue.fire_schedule("ns.hourly", T0 + 3600, request("report")) is None
    assert queue.jobs() == []
    queue.sync_schedules([row(enabled=True)], now=T0 + 1)
    assert queue.fire_schedule("ns.hourly", T0 + 3600, request("report")) is not None


def test_unknown_schedule_does_not_fire(queue: SQLiteQueue):
    assert queue.fire_schedule("ns.nope", T0, request("report")) is None


def test_sync_schedules_keeps_last_fired_and_drops_removed(queue: SQLiteQueue):
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


# --- history ------------------------------------------------------------------------------


def test_prune_deletes_only_old_finished_jobs(queue: SQLiteQueue):
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


def test_jobs_history_filters(queue: SQLiteQueue):
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


def test_instances_on_one_file_see_each_others_writes(queue: SQLiteQueue, other: SQLiteQueue):
    job = queue.enqueue(request(), now=T0).job
    (claimed,) = other.claim("w2", 1, now=T0)
    assert claimed.id == job.id
    stored = queue.get(job.id)
    assert stored is not None
    assert stored.status is JobStatus.RUNNING


def test_a_failed_write_leaves_nothing_half_written(queue: SQLiteQueue):
    def write_then_fail() -> None:
        with queue._write() as conn:
            conn.execute(
                "INSERT INTO suppressions (namespace, job_type, start_at, end_at, created_at) "
                "VALUES ('ns', 'x', 0, 1, 0)"
            )
            conn.execute("INSERT INTO no_such_table VALUES (1)")

    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        write_then_fail()
    assert queue.suppressions() == []
    # The connection is usable afterwards: no transaction was left open.
    assert queue.enqueue(request(), now=T0).job.id == 1


# --- wake-ups ---------------------------------------------------------------------------


def readable(fd: int, timeout: float) -> bool:
    ready, _, _ = select.select([fd], [], [], timeout)
    return bool(ready)


def test_listener_wakes_when_another_instance_enqueues(queue: SQLiteQueue, other: SQLiteQueue):
    listener = queue.wakeup_listener("dispatcher")
    try:
        assert not readable(listener.fileno(), 0)
        other.enqueue(request(), now=T0)
        assert readable(listener.fileno(), 5)
        listener.drain()
        assert not readable(listener.fileno(), 0)
        other.request_cancel(1)
        assert readable(listener.fileno(), 5)
    finally:
        listener.close()


def test_closed_listener_removes_its_marker(queue: SQLiteQueue):
    listener = queue.wakeup_listener("dispatcher")
    directory = Path(f"{queue.path}.wake")
    assert len(os.listdir(directory)) == 1
    listener.close()
    assert os.listdir(directory) == []


def test_stale_marker_is_removed_on_notify(queue: SQLiteQueue, other: SQLiteQueue):
    live = queue.wakeup_listener("live")
    directory = Path(f"{queue.path}.wake")
    # A dispatcher that died without cleaning up leaves its marker but no socket.
    stale = directory / "crashed-0000abcd"
    stale.touch()
    try:
        other.enqueue(request(), now=T0)
        assert not stale.exists()
        assert readable(live.fileno(), 5)
        assert len(os.listdir(directory)) == 1
    finally:
        live.close()


def test_notify_without_listeners_is_harmless(queue: SQLiteQueue):
    queue.notify()
    queue.enqueue(request(), now=T0)
    assert not Path(f"{queue.path}.wake").exists()


# --- calls that must not wait ------------------------------------------------------------


@pytest.fixture
def write_lock(queue: SQLiteQueue) -> Iterator[sqlite3.Connection]:
    """Another connection, ready to hold the database's write lock as a busy CLI or bot would."""
    holder = sqlite3.connect(queue.path, isolation_level=None)
    yield holder
    if holder.in_transaction:
        holder.execute("ROLLBACK")
    holder.close()


def test_call_nowait_gives_up_at_once_while_another_writer_holds_the_lock(
    queue: SQLiteQueue, other: SQLiteQueue, write_lock: sqlite3.Connection
):
    job = queue.enqueue(request(), now=T0).job
    write_lock.execute("BEGIN IMMEDIATE")

    started = time.monotonic()
    with pytest.raises(QueueBusyError, match="locked by another writer"):
        other.call_nowait(other.claim, "w1", 1, now=T0 + 1)
    assert time.monotonic() - started < 0.5
    # Nothing was done, and reads never wait for a writer in WAL mode.
    stored = other.call_nowait(other.get, job.id)
    assert stored is not None
    assert stored.status is JobStatus.QUEUED

    write_lock.execute("ROLLBACK")
    assert [j.id for j in other.call_nowait(other.claim, "w1", 1, now=T0 + 1)] == [job.id]


def test_after_call_nowait_other_calls_wait_for_the_lock_again(tmp_path: Path):
    q = SQLiteQueue(tmp_path / "q.sqlite3", busy_timeout=0.6)
    q.migrate()
    holder = sqlite3.connect(q.path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        with pytest.raises(QueueBusyError):
            q.call_nowait(q.enqueue, request())
        started = time.monotonic()
        with pytest.raises(QueueError) as raised:
            q.enqueue(request())
        assert not isinstance(raised.value, QueueBusyError)
        assert time.monotonic() - started >= 0.5  # it waited out its busy timeout
        holder.execute("ROLLBACK")
        assert q.enqueue(request()).job.id == 1
    finally:
        holder.close()
        q.close()


# --- group commit ------------------------------------------------------------------------


def test_write_many_commits_all_writes_in_one_transaction(queue: SQLiteQueue):
    jobs = [queue.enqueue(request(t), now=T0).job for t in ("a", "b", "c", "d")]
    queue.claim("w", 4, now=T0 + 1)
    wal = queue.path.with_name(queue.path.name + "-wal")

    def writes(first, second):
        return [
            ("mark_started", (first.id, 101, "/logs/a"), {}),
            ("finish", (second.id, JobStatus.FAILED, 2), {"note": "boom", "now": T0 + 2}),
            ("record_report", (second.id, ReportState.DELIVERED), {}),
        ]

    before = wal.stat().st_size
    results = queue.write_many(writes(jobs[0], jobs[1]))
    grouped = wal.stat().st_size - before
    before = wal.stat().st_size
    for name, args, kwargs in writes(jobs[2], jobs[3]):
        getattr(queue, name)(*args, **kwargs)
    separate = wal.stat().st_size - before
    # One commit writes each changed page once; three commits write the jobs page thrice.
    assert 0 < grouped < separate

    assert results[0] is None
    assert results[1] is not None
    assert results[1].status is JobStatus.FAILED
    assert results[2] is None
    started = queue.get(jobs[0].id)
    assert (started.pid, started.log_dir) == (101, "/logs/a")
    finished = queue.get(jobs[1].id)
    assert (finished.status, finished.note, finished.report_state) == (
        JobStatus.FAILED,
        "boom",
        ReportState.DELIVERED,
    )


def test_write_many_is_all_or_nothing_and_refuses_other_methods(queue: SQLiteQueue):
    a = queue.enqueue(request("a"), now=T0).job
    queue.claim("w", 1, now=T0 + 1)
    with pytest.raises(ValueError, match="enqueue cannot be grouped"):
        queue.write_many([("mark_started", (a.id, 7, "/l"), {}), ("enqueue", (request(),), {})])
    with pytest.raises(TypeError):  # a write that fails half-way through the group
        queue.write_many(
            [("mark_started", (a.id, 7, "/l"), {}), ("finish", (a.id, "succeeded", 0), {"nope": 1})]
        )
    assert queue.get(a.id).pid is None  # the first write was rolled back with the failed one


def test_the_default_write_many_makes_the_writes_one_by_one(queue: SQLiteQueue):
    from stat_bot.queue.base import Queue

    a = queue.enqueue(request("a"), now=T0).job
    queue.claim("w", 1, now=T0 + 1)
    results = Queue.write_many(queue, [("finish", (a.id, JobStatus.SUCCEEDED, 0), {})])
    assert results[0].status is JobStatus.SUCCEEDED
    with pytest.raises(ValueError, match="cannot be grouped"):
        Queue.write_many(queue, [("prune", (T0,), {})])
