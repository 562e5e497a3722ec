"""SIGTERM: the dispatcher lets running jobs finish within SHUTDOWN_GRACE, then stops them."""

from __future__ import annotations

import signal
import time

from stat_bot.jobs.model import JobStatus
from tests.integration.conftest import process_gone, request_for, wait_pid, wait_status

CONFIG = {
    "t": {
        "jobs": {
            "short": {"run_args_template": "sleep 1; echo done", "report_stdout": True},
            "long": {"run_args_template": "sleep 30"},
            "next": {"run_args_template": "true"},
        }
    }
}


def test_a_short_job_finishes_before_the_dispatcher_exits(configure, queue, start_dispatcher):
    configs = configure(CONFIG)
    dispatcher = start_dispatcher(SHUTDOWN_GRACE="10")
    job_id = queue.enqueue(request_for(configs, "t", "short")).job.id
    wait_pid(queue, job_id)
    # A job queued behind it must not be started once the dispatcher is stopping.
    waiting = queue.enqueue(request_for(configs, "t", "next", delay_seconds=0.5)).job.id

    assert dispatcher.terminate() == 0
    job = queue.get(job_id)
    assert job.status is JobStatus.SUCCEEDED
    assert job.exit_code == 0
    assert "done" in dispatcher.stdout()  # its report went out before the exit
    assert queue.get(waiting).status is JobStatus.QUEUED
    assert queue.workers() == []  # it unregistered


def test_a_long_job_is_stopped_after_shutdown_grace_and_recorded(
    configure, queue, start_dispatcher
):
    configs = configure(CONFIG)
    dispatcher = start_dispatcher(SHUTDOWN_GRACE="1")
    job_id = queue.enqueue(request_for(configs, "t", "long")).job.id
    pid = wait_pid(queue, job_id)

    signalled = time.monotonic()
    assert dispatcher.terminate(timeout=20) == 0
    took = time.monotonic() - signalled
    job = queue.get(job_id)
    assert job.status is JobStatus.CANCELLED
    assert "shut down" in job.note
    assert process_gone(pid)
    assert f"Job #{job_id} `t long` was cancelled" in dispatcher.stdout()
    # Grace (1 s) plus the kill; nowhere near the job's 30 s.
    assert took < 15, took


def test_a_job_stopped_at_shutdown_is_not_run_again_by_the_next_dispatcher(
    configure, queue, start_dispatcher
):
    configs = configure(CONFIG)
    first = start_dispatcher(SHUTDOWN_GRACE="0")
    job_id = queue.enqueue(request_for(configs, "t", "long")).job.id
    wait_pid(queue, job_id)
    assert first.terminate() == 0
    assert queue.get(job_id).status is JobStatus.CANCELLED

    start_dispatcher()
    marker = queue.enqueue(request_for(configs, "t", "next")).job.id
    wait_status(queue, marker, JobStatus.SUCCEEDED)
    job = queue.get(job_id)
    assert job.status is JobStatus.CANCELLED
    assert job.attempts == 1


def test_a_draining_dispatcher_keeps_its_jobs_alive_and_cancellable(
    configure, queue, cli, start_dispatcher, tmp_path
):
    """While it waits SHUTDOWN_GRACE, it still heartbeats (so no peer takes its jobs as lost)
    and still honours cancel requests."""
    # `drain` ends when the test says so, not after a time a busy machine may overrun.
    drain_job = "while [ ! -e {gate} ]; do sleep 0.05; done; echo drained"
    configs = configure(
        {
            "t": {
                "jobs": {
                    "drain": {"run_args_template": drain_job, "report_stdout": True},
                    "hold": {"run_args_template": "sleep 30"},
                }
            }
        }
    )
    env = {"SHUTDOWN_GRACE": "20", "LOST_AFTER": "1", "HEARTBEAT_INTERVAL": "0.2"}
    draining = start_dispatcher(**env)
    gate = tmp_path / "drain-may-end"
    drain = queue.enqueue(request_for(configs, "t", "drain", args={"gate": str(gate)})).job.id
    hold = queue.enqueue(request_for(configs, "t", "hold")).job.id
    wait_pid(queue, drain)
    wait_pid(queue, hold)
    start_dispatcher(**env)  # a peer, as in a rolling restart

    draining.proc.send_signal(signal.SIGTERM)
    time.sleep(1.5)  # longer than LOST_AFTER
    assert queue.get(drain).status is JobStatus.RUNNING
    result = cli("cancel", str(hold))
    assert result.returncode == 0, result.stderr
    wait_status(queue, hold, JobStatus.CANCELLED, timeout=10)
    assert draining.proc.poll() is None  # still waiting for `drain`
    assert queue.get(drain).status is JobStatus.RUNNING  # and no peer took it for lost

    gate.touch()
    assert draining.proc.wait(20) == 0
    job = queue.get(drain)
    assert job.status is JobStatus.SUCCEEDED
    assert job.attempts == 1
    assert "drained" in draining.stdout()


def test_repeated_sigterms_end_in_a_clean_exit(configure, queue, start_dispatcher):
    """A second SIGTERM (an impatient operator, a supervisor repeating itself) while the
    dispatcher is already stopping changes nothing: it still exits 0, unregistered."""
    configs = configure(CONFIG)
    dispatcher = start_dispatcher(SHUTDOWN_GRACE="0")
    job_id = queue.enqueue(request_for(configs, "t", "next")).job.id
    wait_status(queue, job_id, JobStatus.SUCCEEDED)
    deadline = time.monotonic() + 20
    while dispatcher.proc.poll() is None and time.monotonic() < deadline:
        dispatcher.proc.send_signal(signal.SIGTERM)
        time.sleep(0.002)
    assert dispatcher.proc.wait(5) == 0, dispatcher.stderr()
    assert queue.workers() == []
