"""A per-second schedule fires once per due time: across a restart and with two dispatchers."""

from __future__ import annotations

import collections
import itertools
import math
import signal
import time
from dataclasses import dataclass

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


@dataclass(frozen=True)
class Phase:
    """When a phase's dispatchers were launched, all ready, signalled to stop, and all gone."""

    launched: float
    ready: float
    signalled: float
    exited: float


def _run_phase(start_dispatcher, count: int) -> Phase:
    """Run `count` dispatchers at once for RUN_FOR s, then stop them all at once.

    All are sent SIGTERM together, then waited for: stopping them one after another
    would leave the others running (and rightly firing) while the first shuts down.
    """
    launched = time.time()
    dispatchers = [start_dispatcher(wait=False) for _ in range(count)]
    for d in dispatchers:
        d.wait_ready()
    ready = time.time()
    time.sleep(RUN_FOR)
    signalled = time.time()
    for d in dispatchers:
        d.proc.send_signal(signal.SIGTERM)
    for d in dispatchers:
        assert d.proc.wait(20) == 0, d.stderr()  # not terminate(): no second SIGTERM
    return Phase(launched, ready, signalled, time.time())


@pytest.mark.slow
def test_a_per_second_schedule_fires_once_per_due_time(configure, queue, start_dispatcher):
    configure(CONFIG)
    phases = [_run_phase(start_dispatcher, 1)]
    time.sleep(DOWN_FOR)  # the restart fires once, for the latest missed second only
    phases.append(_run_phase(start_dispatcher, 1))
    phases.append(_run_phase(start_dispatcher, 2))  # two dispatchers race for every due time

    jobs = [j for j in queue.jobs(limit=10000) if j.job_type == "tick"]
    assert all(j.source == "schedule" and j.user == "schedule t.every-second" for j in jobs)
    due_times = [j.created_at for j in jobs]
    # Each job is for one due time, a whole second, and no due time has two jobs.
    assert all(t == math.floor(t) for t in due_times), due_times
    duplicates = [t for t, n in collections.Counter(due_times).items() if n > 1]
    assert duplicates == []

    fired = set(due_times)
    for phase in phases:
        # Every second a dispatcher was up for fired (allowing it 0.5 s to do so before the
        # stop signal).
        expected = set(range(math.ceil(phase.ready), math.floor(phase.signalled - 0.5) + 1))
        assert len(expected) >= 2, phase
        assert expected <= fired, f"missing {sorted(expected - fired)} in {phase}"
    for before, after in itertools.pairwise(phases):
        # Seconds missed while nothing ran give at most one catch-up job, not one per second.
        missed = [t for t in fired if before.exited < t < after.launched]
        assert len(missed) <= 1, (missed, before, after)
    assert max(fired) <= phases[-1].exited

    # The schedule's last fire time is the latest job's due time.
    (row,) = queue.schedules()
    assert row.key == "t.every-second"
    assert row.last_fired_at == max(fired)

    # Nothing else went wrong: every job that was claimed succeeded.
    statuses = collections.Counter(j.status for j in jobs)
    assert set(statuses) <= {JobStatus.SUCCEEDED, JobStatus.QUEUED}, statuses
