"""Dispatchers as `status` and the dashboard show them: host, pid, heartbeat age, stale or not,
judged by the queue's clock rather than this host's."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from stat_bot.jobs.model import JobRequest, JobStatus
from stat_bot.queue.base import Worker
from stat_bot.queue.sqlite import SQLiteQueue
from stat_bot.views import StatusView, dispatcher_views, dispatchers_summary
from tests.unit.helpers import make_job

UTC = ZoneInfo("UTC")


class AheadQueue(SQLiteQueue):
    """A queue whose database server's clock runs `ahead` seconds before this host's."""

    ahead = 100.0

    def now(self) -> float:
        return time.time() + self.ahead


@pytest.fixture
def ahead(tmp_path: Path) -> Iterator[AheadQueue]:
    q = AheadQueue(tmp_path / "q.sqlite3")
    q.migrate()
    yield q
    q.close()


def test_views_count_running_jobs_per_dispatcher_and_sort_by_host():
    workers = [
        Worker("b:2:x", "b", 2, 0.0, 95.0),
        Worker("a:1:y", "a", 1, 0.0, 70.0),  # 30 s: not older than LOST_AFTER
        Worker("a:3:z", "a", 3, 0.0, 69.0),  # 31 s: stale
    ]
    running = [
        make_job(id=1, status=JobStatus.RUNNING, worker_id="b:2:x"),
        make_job(id=2, status=JobStatus.RUNNING, worker_id="b:2:x"),
        make_job(id=3, status=JobStatus.RUNNING, worker_id="a:3:z"),
        make_job(id=4, status=JobStatus.RUNNING, worker_id="gone:9:q"),  # its worker is gone
    ]
    views = dispatcher_views(workers, running, now=100.0, lost_after=30.0)
    assert [(v.worker.id, v.running, v.stale, v.heartbeat_age) for v in views] == [
        ("a:1:y", 0, False, 30.0),
        ("a:3:z", 1, True, 31.0),
        ("b:2:x", 2, False, 5.0),
    ]
    assert views[1].data()["state"] == "stale"
    summary = dispatchers_summary(views, 30.0)
    assert summary.startswith("2 alive on a, b; 1 stale (a:3): no heartbeat for longer than")
    assert dispatchers_summary([], 30.0).startswith("no dispatcher has registered")


def test_status_judges_heartbeats_by_the_queues_clock_not_this_hosts(ahead: AheadQueue):
    """A heartbeat written 'now' by this host's clock is 100 s old by the database's."""
    ahead.register_worker("h:1:a", "h", 1, now=time.time())
    view = StatusView.read(ahead, UTC, lost_after=30.0)
    (d,) = view.dispatchers
    assert d.stale
    assert 99 <= d.heartbeat_age < 160
    assert "STALE" in view.text(UTC)
    assert StatusView.read(ahead, UTC, lost_after=300.0).dispatchers[0].stale is False


def test_status_counts_what_each_dispatcher_runs(tmp_path: Path):
    q = SQLiteQueue(tmp_path / "q.sqlite3")
    q.migrate()
    try:
        q.register_worker("h:1:a", "h", 1)
        for _ in range(2):
            q.enqueue(JobRequest(namespace="ns", job_type="t", concurrency=5, coalesce=False))
        assert len(q.claim("h:1:a", 5)) == 2
        (d,) = StatusView.read(q, UTC, lost_after=30.0).dispatchers
        assert (d.running, d.stale) == (2, False)
        assert "h:1:a" in StatusView.read(q, UTC, lost_after=30.0).text(UTC)
    finally:
        q.close()


def test_a_missing_log_of_a_job_run_on_another_host_says_where_it_is():
    from stat_bot.views import missing_log, ran_on

    here = socket.gethostname()
    elsewhere = make_job(id=7, worker_id="hostb.example.org:123:abcdef")
    assert ran_on(elsewhere) == "hostb.example.org"
    text = missing_log(elsewhere, "stderr")
    assert text.startswith("the stderr of job #7 is on hostb.example.org, whose dispatcher ran it")
    assert f"not on {here}" in text
    assert "LOGS_DIR" in text
    mine = make_job(id=8, worker_id=f"{here}:1:abcdef")
    assert "pruned after HISTORY_DAYS" in missing_log(mine, "stdout")
    assert ran_on(make_job(worker_id="test-worker")) is None  # not host:pid:suffix
    assert "pruned" in missing_log(make_job(worker_id=None), "stdout")
