"""Four processes enqueue 5,000 jobs while a dispatcher runs them: each runs exactly once."""

from __future__ import annotations

import collections
import subprocess
import sys
import textwrap

import pytest

from stat_bot.jobs.model import JobStatus
from tests.integration.conftest import wait_until

PROCESSES = 4
PER_PROCESS = 1250
TOTAL = PROCESSES * PER_PROCESS

ENQUEUER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from stat_bot.jobs.model import JobRequest
    from stat_bot.queue import open_queue
    from stat_bot.settings import load_settings

    url, go, count, label = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    queue = open_queue(load_settings(database_url=url, _env_file=None))
    while not go.exists():  # start all enqueuers at once
        time.sleep(0.005)
    for i in range(count):
        queue.enqueue(JobRequest(namespace="t", job_type="true", args={"n": f"{label}-{i}"},
                                 concurrency=8, coalesce=False))
    queue.close()
    """
)


@pytest.mark.slow
def test_four_enqueuers_and_a_dispatcher_run_every_job_exactly_once(
    configure, settings, queue, start_dispatcher, tmp_path, home
):
    configure(
        {
            "t": {
                "jobs": {
                    "true": {
                        "run_args_template": "true",
                        "concurrency": 8,
                        "coalesce": False,
                        "report_success": False,
                    }
                }
            }
        }
    )
    dispatcher = start_dispatcher(DISPATCHER_CONCURRENCY="8", LOG_LEVEL="INFO")
    go = tmp_path / "go"
    err_paths = [tmp_path / f"enqueuer-{p}.err" for p in range(PROCESSES)]
    enqueuers = []
    try:
        for p, err_path in enumerate(err_paths):
            with err_path.open("wb") as err:
                command = [sys.executable, "-c", ENQUEUER, settings.database_url, str(go)]
                enqueuers.append(
                    subprocess.Popen(
                        [*command, str(PER_PROCESS), f"p{p}"],
                        cwd=home,
                        stdout=subprocess.DEVNULL,
                        stderr=err,
                    )
                )
        go.touch()
        for proc, err_path in zip(enqueuers, err_paths, strict=True):
            assert proc.wait(120) == 0, err_path.read_text()
    finally:
        for proc in enqueuers:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    def finished() -> bool:
        waiting = (JobStatus.QUEUED, JobStatus.RUNNING)
        return not queue.jobs(statuses=waiting, limit=1)

    wait_until(finished, timeout=180, interval=0.5, what="every job to finish")
    assert dispatcher.terminate() == 0

    jobs = queue.jobs(limit=TOTAL + 1)
    assert len(jobs) == TOTAL
    assert collections.Counter(j.status for j in jobs) == {JobStatus.SUCCEEDED: TOTAL}
    assert {j.attempts for j in jobs} == {1}
    assert {j.exit_code for j in jobs} == {0}
    # Every enqueue arrived once: all 5,000 distinct argument sets are there.
    assert len({j.args["n"] for j in jobs}) == TOTAL

    # The dispatcher started and finished each job exactly once.
    events = dispatcher.events()
    started = collections.Counter(e["job_id"] for e in events if e.get("event") == "job started")
    ended = collections.Counter(e["job_id"] for e in events if e.get("event") == "job finished")
    ids = {j.id for j in jobs}
    assert set(started) == ids
    assert set(started.values()) == {1}
    assert set(ended) == ids
    assert set(ended.values()) == {1}

    outputs = [dispatcher.stderr(), dispatcher.stdout()] + [p.read_text() for p in err_paths]
    for text in outputs:
        assert "database is locked" not in text
        assert "Traceback" not in text
