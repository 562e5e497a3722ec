"""A per-second schedule fires once per due time: across a restart and with two dispatchers."""

from __future__ import annotations

import collections
import itertools
import math
import time

import pytest

from stat_bot.jobs.model import JobStatus

CONFIG = {
    "t": {
        "jobs": {"tick": {"run_args_template": "true", "coalesce": False, "report_success": False}},
        "schedules": [{"cron": "* * * * * *", "job_type": "tick", "name": "every-second"}],
    }
}
RUN_FOR = 3.0  # seconds each phase runs
DOWN_FOR = 2.0  # seconds between a stop and the restart


def _run_phase(start_dispatcher, count: int) -> tuple[float, float, float]:
    """Run `count` dispatchers at once for RUN_FOR s: when the first was launched, and the
    window in which all of them ran."""
    launched = time.time()
    dispatchers = [start_dispatcher(wait=False) for _ in range(count)]
    for d in dispatchers:
        d.wait_ready()
    ready = time.time()
    time.sleep(RUN_FOR)
    stop = time.time()
    for d in dispatchers:
        assert d.terminate() == 0, d.stderr()
    return launched, ready, stop


@pytest.mark.slow
def test_a_per_second_schedule_fires_once_per_due_time(configure, queue, start_dispatcher):
    configure(CONFIG)
    windows = [_run_phase(start_dispatcher, 1)]
    time.sleep(DOWN_FOR)  # the restart fires once, for the latest missed second only
    windows.append(_run_phase(start_dispatcher, 1))
    windows.append(_run_phase(start_dispatcher, 2))  # two dispatchers race for every due time

    jobs = [j for j in queue.jobs(limit=10000) if j.job_type == "tick"]
    assert all(j.source == "schedule" and j.user == "schedule t.every-second" for j in jobs)
    due_times = [j.created_at for j in jobs]
    # Each job is for one due time, a whole second, and no due time has two jobs.
    assert all(t == math.floor(t) for t in due_times), due_times
    duplicates = [t for t, n in collections.Counter(due_times).items() if n > 1]
    assert duplicates == []

    fired = set(due_times)
    for _, ready, stop in windows:
        # Every second a dispatcher was up for fired (allowing it 0.5 s to do so before the stop).
        expected = set(range(math.ceil(ready), math.floor(stop - 0.5) + 1))
        assert len(expected) >= 2, (ready, stop)
        assert expected <= fired, f"missing {sorted(expected - fired)} in {ready}..{stop}"
    for (_, _, stopped), (relaunched, _, _) in itertools.pairwise(windows):
        # Seconds missed while nothing ran give at most one catch-up job, not one per second.
        missed = [t for t in fired if stopped < t < relaunched]
        assert len(missed) <= 1, (missed, stopped, relaunched)
    assert max(fired) <= windows[-1][2]

    # The schedule's last fire time is the latest job's due time.
    (row,) = queue.schedules()
    assert row.key == "t.every-second"
    assert row.last_fired_at == max(fired)

    # Nothing else went wrong: every job that was claimed succeeded.
    statuses = collections.Counter(j.status for j in jobs)
    assert set(statuses) <= {JobStatus.SUCCEEDED, JobStatus.QUEUED}, statuses
