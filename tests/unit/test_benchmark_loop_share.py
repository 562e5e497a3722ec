"""The spawn benchmark's account of each side's event-loop thread (benchmarks/common.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from benchmarks.common import LoopShare, thread_schedule


def test_a_loop_share_is_per_job_in_milliseconds_and_the_rest_is_what_is_left():
    share = LoopShare.between((1.0, 2.0), (1.5, 2.2), seconds=1.0, jobs=500)
    assert share.on_cpu == pytest.approx(1.0)  # 0.5 s over 500 jobs
    assert share.waiting == pytest.approx(0.4)
    assert share.wall == pytest.approx(2.0)
    assert share.rest == pytest.approx(0.6)
    assert share.shown() == "on a CPU 1.00, waiting for one 0.40, the rest 0.60 ms"
    # Clock steps between the reads can make the parts exceed the wall: never a negative rest.
    assert LoopShare(1.0, 0.5, 1.2).rest == 0.0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads Linux /proc")
def test_a_threads_schedule_counts_its_cpu_time_and_is_none_for_a_process_gone():
    before = thread_schedule(os.getpid())
    assert before is not None
    end = time.thread_time() + 0.05
    while time.thread_time() < end:  # 50 ms on a CPU
        pass
    after = thread_schedule(os.getpid())
    assert after is not None
    assert after[0] - before[0] >= 0.04
    assert after[1] >= before[1] >= 0
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert thread_schedule(child.pid) is None
