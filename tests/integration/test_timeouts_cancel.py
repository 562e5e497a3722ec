"""Timeouts and cancels stop a job's whole process group; cancel answers for every state."""

from __future__ import annotations

import json
import signal

from stat_bot.jobs.model import JobStatus
from tests.integration.conftest import (
    process_gone,
    read_pid_file,
    request_for,
    wait_pid,
    wait_status,
    wait_until,
)

# Leaves a grandchild in the job's process group and records its pid.
CHILD = 'sleep 30 & echo $! > "$WRITEABLE_DIR/child-$STAT_BOT_JOB_ID"; '

CONFIG = {
    "t": {
        "jobs": {
            "slow": {"run_args_template": "sleep 30", "timeout": 1},
            "stubborn": {
                "run_args_template": "trap '' TERM; " + CHILD + "sleep 30",
                "timeout": 1,
            },
            "family": {"run_args_template": CHILD + "sleep 30"},
            "later": {"run_args_template": 'echo ran > "$WRITEABLE_DIR/later-ran"'},
            "quick": {"run_args_template": "true"},
        },
        "slack": [
            {"command": "later", "job_type": "later", "delay_seconds": 60},
            {"command": "family", "job_type": "family"},
            {"command": "quick", "job_type": "quick"},
        ],
    }
}


def test_a_job_past_its_timeout_is_stopped_and_reported(configure, queue, thread_dispatcher):
    configs = configure(CONFIG)
    td = thread_dispatcher(configs)
    job_id = queue.enqueue(request_for(configs, "t", "slow")).job.id
    wait_status(queue, job_id, JobStatus.RUNNING)
    leader = wait_pid(queue, job_id)

    job = wait_status(queue, job_id, JobStatus.TIMED_OUT, timeout=15)
    assert job.exit_code == -signal.SIGTERM  # SIGTERM was enough for `sleep`
    assert process_gone(leader)
    (report,) = td.notifier.wait_for(1)
    assert report.kind == "failure"
    assert report.job_id == job_id
    text = report.messages[0].text
    assert f"Job #{job_id} `t slow` timed out after 1 s" in text
    assert f"stat-bot logs {job_id} stderr" in text


def test_a_job_ignoring_sigterm_is_killed_after_kill_grace_with_its_children(
    configure, queue, settings, thread_dispatcher
):
    assert settings.kill_grace == 1
    configs = configure(CONFIG)
    td = thread_dispatcher(configs)
    job_id = queue.enqueue(request_for(configs, "t", "stubborn")).job.id
    leader = wait_pid(queue, job_id)
    child = read_pid_file(settings.writeable_dir / f"child-{job_id}")

    job = wait_status(queue, job_id, JobStatus.TIMED_OUT, timeout=15)
    # The leader ignored SIGTERM, so only SIGKILL (sent after KILL_GRACE) could end it.
    assert job.exit_code == -signal.SIGKILL
    assert job.finished_at - job.started_at >= 1 + settings.kill_grace - 0.1
    assert process_gone(leader)
    # The child ignored SIGTERM too: it died with the group's SIGKILL.
    wait_until(lambda: process_gone(child), 5, what="the child to die")
    (report,) = td.notifier.wait_for(1)
    assert "timed out after 1 s" in report.messages[0].text


def test_cancel_a_queued_job_it_never_starts(configure, queue, settings, cli, start_dispatcher):
    configure(CONFIG)
    dispatcher = start_dispatcher()
    enqueued = cli("--json", "enqueue", "t later")
    assert enqueued.returncode == 0, enqueued.stderr
    job_id = json.loads(enqueued.stdout)["job"]["id"]
    assert queue.get(job_id).start_after > queue.get(job_id).created_at + 50

    result = cli("cancel", str(job_id))
    assert result.returncode == 0, result.stderr
    assert f"Job #{job_id} was queued and is now cancelled" in result.stdout
    job = queue.get(job_id)
    assert job.status is JobStatus.CANCELLED
    assert job.started_at is None
    assert job.attempts == 0
    assert job.pid is None

    # A later job runs, so the dispatcher is working, and the cancelled one stays cancelled.
    quick = json.loads(cli("--json", "enqueue", "t quick").stdout)["job"]["id"]
    wait_status(queue, quick, JobStatus.SUCCEEDED)
    assert queue.get(job_id).status is JobStatus.CANCELLED
    assert not (settings.writeable_dir / "later-ran").exists()
    started = [e for e in dispatcher.events() if e.get("event") == "job started"]
    assert [e["job_id"] for e in started] == [quick]


def test_cancel_a_running_job_kills_its_process_group(
    configure, queue, settings, cli, start_dispatcher
):
    configure(CONFIG)
    dispatcher = start_dispatcher()
    job_id = json.loads(cli("--json", "enqueue", "t family").stdout)["job"]["id"]
    leader = wait_pid(queue, job_id)
    child = read_pid_file(settings.writeable_dir / f"child-{job_id}")

    result = cli("--json", "cancel", str(job_id))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"job_id": job_id, "outcome": "requested"}

    job = wait_status(queue, job_id, JobStatus.CANCELLED)
    assert job.note == "cancelled on request"
    assert job.attempts == 1
    wait_until(lambda: process_gone(leader) and process_gone(child), 5, what="the group to die")
    wait_until(lambda: f"Job #{job_id} `t family` was cancelled" in dispatcher.stdout(), 10)

    # Cancelling it again: it has already ended.
    again = cli("cancel", str(job_id))
    assert again.returncode == 1
    assert f"Job #{job_id} already ended (cancelled)" in again.stdout


def test_cancel_a_finished_or_unknown_job_exits_1(configure, queue, cli, start_dispatcher):
    configure(CONFIG)
    start_dispatcher()
    job_id = json.loads(cli("--json", "enqueue", "t quick").stdout)["job"]["id"]
    wait_status(queue, job_id, JobStatus.SUCCEEDED)

    finished = cli("cancel", str(job_id))
    assert finished.returncode == 1
    assert "already ended (succeeded)" in finished.stdout
    assert queue.get(job_id).status is JobStatus.SUCCEEDED

    unknown = cli("--json", "cancel", "9999")
    assert unknown.returncode == 1
    assert json.loads(unknown.stdout) == {"job_id": 9999, "outcome": "not_found"}
