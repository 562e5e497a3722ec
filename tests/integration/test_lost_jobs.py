"""A dispatcher killed with SIGKILL: the next one declares its job lost or runs it again."""

from __future__ import annotations

import os
import subprocess
import sys

from stat_bot.dispatcher.runner import job_groups
from stat_bot.jobs.model import JobStatus, ReportState
from tests.integration.conftest import (
    process_gone,
    read_pid_file,
    request_for,
    wait_pid,
    wait_status,
    wait_until,
)

# The first attempt leaves a grandchild in its process group and sleeps; later attempts end at once.
FIRST_ATTEMPT_HANGS = (
    'if [ "$STAT_BOT_ATTEMPT" = 1 ]; then '
    'sleep 30 & echo $! > "$WRITEABLE_DIR/child-$STAT_BOT_JOB_ID"; sleep 30; '
    "else echo attempt $STAT_BOT_ATTEMPT; fi"
)


def _configs(configure, retries: int):
    return configure(
        {
            "t": {
                "jobs": {
                    "hang": {
                        "run_args_template": FIRST_ATTEMPT_HANGS,
                        "retries": retries,
                        "report_stdout": True,
                    }
                }
            }
        }
    )


def _start_and_kill(start_dispatcher, queue, configs, settings, kill_at_end, job=None):
    """Run the job (`job`, else a new one) under a dispatcher, kill -9 that dispatcher;
    the job's pids and id."""
    first = start_dispatcher()
    job = job or queue.enqueue(request_for(configs, "t", "hang")).job
    wait_status(queue, job.id, JobStatus.RUNNING)
    leader = wait_pid(queue, job.id)
    kill_at_end(leader, job.id)
    child = read_pid_file(settings.writeable_dir / f"child-{job.id}")
    first.kill()
    # The job's processes outlive their dispatcher: they are in a session of their own.
    assert not process_gone(leader)
    assert not process_gone(child)
    assert queue.get(job.id).status is JobStatus.RUNNING
    return job.id, leader, child


def test_without_retries_the_job_is_lost_reported_and_its_processes_killed(
    configure, queue, settings, start_dispatcher, kill_at_end
):
    configs = _configs(configure, retries=0)
    job_id, leader, child = _start_and_kill(start_dispatcher, queue, configs, settings, kill_at_end)

    second = start_dispatcher()
    job = wait_status(queue, job_id, JobStatus.LOST)
    assert job.attempts == 1
    assert "lost" in (job.note or "")
    wait_until(lambda: process_gone(leader) and process_gone(child), 10, what="orphans to die")

    # The failure report goes out (the console notifier prints to the dispatcher's stdout).
    wait_until(lambda: f"Job #{job_id} `t hang` was lost" in second.stdout(), 10, what="report")
    assert f"--- #{job_id} t hang [failure]" in second.stdout()
    wait_until(
        lambda: queue.get(job_id).report_state == ReportState.DELIVERED, 10, what="delivered"
    )
    # Lost is final: it is not run again.
    assert queue.get(job_id).attempts == 1


def test_with_a_retry_the_job_is_requeued_and_runs_again(
    configure, queue, settings, start_dispatcher, kill_at_end
):
    configs = _configs(configure, retries=1)
    job_id, leader, child = _start_and_kill(start_dispatcher, queue, configs, settings, kill_at_end)

    second = start_dispatcher()
    job = wait_status(queue, job_id, JobStatus.SUCCEEDED)
    assert job.attempts == 2
    assert job.worker_id is not None
    assert job.worker_id.split(":")[1] == str(second.pid)
    assert "re-queued" in (job.note or "")
    # The first attempt's process group must not keep running beside the second attempt.
    wait_until(lambda: process_gone(leader) and process_gone(child), 10, what="orphans to die")
    wait_until(lambda: "attempt 2" in second.stdout(), 10, what="the second attempt's report")
    assert "its dispatcher stopped while it ran" in second.stdout()


def test_lost_job_report_reaches_an_in_process_notifier(
    configure, queue, settings, start_dispatcher, thread_dispatcher, kill_at_end
):
    configs = _configs(configure, retries=0)
    job_id, leader, child = _start_and_kill(start_dispatcher, queue, configs, settings, kill_at_end)

    second = thread_dispatcher(configs)
    reports = second.notifier.wait_for(1)
    assert len(reports) == 1
    (report,) = reports
    assert report.kind == "failure"
    assert report.job_id == job_id
    assert f"Job #{job_id}" in report.messages[0].text
    assert "was lost" in report.messages[0].text
    assert queue.get(job_id).status is JobStatus.LOST
    wait_until(lambda: process_gone(leader) and process_gone(child), 10, what="orphans to die")


def test_a_running_peer_recovers_the_job_without_a_restart(
    configure, queue, settings, start_dispatcher, kill_at_end
):
    configs = _configs(configure, retries=1)
    first = start_dispatcher()
    job_id = queue.enqueue(request_for(configs, "t", "hang")).job.id
    leader = wait_pid(queue, job_id)
    kill_at_end(leader, job_id)
    child = read_pid_file(settings.writeable_dir / f"child-{job_id}")
    peer = start_dispatcher()  # started after the claim, so the job is the first one's

    first.kill()
    # The peer notices at a heartbeat (not only at start-up), kills the orphans, runs it again.
    job = wait_status(queue, job_id, JobStatus.SUCCEEDED)
    assert job.attempts == 2
    assert job.worker_id.split(":")[1] == str(peer.pid)
    wait_until(lambda: process_gone(leader) and process_gone(child), 10, what="orphans to die")
    assert [w.pid for w in queue.workers()] == [peer.pid]


def test_a_lost_job_is_reported_to_every_requester_merged_into_it(
    configure, queue, settings, start_dispatcher, thread_dispatcher, kill_at_end
):
    configs = _configs(configure, retries=0)
    asked = [
        queue.enqueue(request_for(configs, "t", "hang", channel="C1", thread_ts=f"{i}.0"))
        for i in range(3)
    ]
    assert [a.coalesced for a in asked] == [False, True, True]
    job = asked[0].job
    job_id, leader, child = _start_and_kill(
        start_dispatcher, queue, configs, settings, kill_at_end, job
    )

    second = thread_dispatcher(configs)
    reports = second.notifier.wait_for(3)
    assert sorted(r.thread_ts for r in reports) == ["0.0", "1.0", "2.0"]
    for report in reports:
        assert report.kind == "failure"
        assert report.job_id == job_id
        assert f"Job #{job_id} `t hang` was lost" in report.messages[0].text
    wait_until(lambda: process_gone(leader) and process_gone(child), 10, what="orphans to die")


def test_orphans_of_a_job_whose_pid_was_never_recorded_are_found_and_killed(
    configure, queue, settings, start_dispatcher, kill_at_end
):
    """The dispatcher died after starting the job but before its pid was committed: the
    peer finds the orphans by their environment (job, attempt, log folder) and kills them
    before the job runs again, so the two attempts never run side by side."""
    configs = _configs(configure, retries=1)
    job_id, leader, child = _start_and_kill(start_dispatcher, queue, configs, settings, kill_at_end)
    queue.mark_started(job_id, None, None)  # type: ignore[arg-type]  # as if never recorded
    assert queue.get(job_id).pid is None

    second = start_dispatcher()
    job = wait_status(queue, job_id, JobStatus.SUCCEEDED)
    assert job.attempts == 2
    wait_until(lambda: process_gone(leader) and process_gone(child), 10, what="orphans to die")
    wait_until(lambda: "attempt 2" in second.stdout(), 10, what="the second attempt's report")


def test_orphans_are_matched_by_attempt_and_log_folder(tmp_path):
    """A process of another attempt, or of another installation's job with the same id,
    is never taken for the lost one."""
    log_dir = tmp_path / "logs" / "t" / "hang" / "7"

    def start(attempt: int, folder: object) -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            "STAT_BOT_JOB_ID": "7",
            "STAT_BOT_ATTEMPT": str(attempt),
            "STAT_BOT_LOG_DIR": str(folder),
        }
        return subprocess.Popen(
            [sys.executable, "-c", "import time; time.sleep(60)"], env=env, start_new_session=True
        )

    mine, later, elsewhere = start(1, log_dir), start(2, log_dir), start(1, tmp_path / "other")
    try:
        wait_until(lambda: mine.pid in job_groups(7, 1, log_dir), 10, what="the process seen")
        assert job_groups(7, 1, log_dir) == {mine.pid}
        assert job_groups(7, 2, log_dir) == {later.pid}
        assert job_groups(8, 1, log_dir) == set()
    finally:
        for process in (mine, later, elsewhere):
            process.kill()
            process.wait()
