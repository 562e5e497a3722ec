"""Suppression windows, coalescing, and the per-type and global concurrency limits."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timedelta

import pytest

from stat_bot.actions import Requester, perform
from stat_bot.jobs.matching import match_command
from stat_bot.jobs.model import JobStatus, Source
from tests.integration.conftest import (
    overlap,
    read_intervals,
    request_for,
    wait_status,
)

SUPPRESS_CONFIG = {
    "t": {
        "jobs": {
            "quiet": {"run_args_template": "echo quiet", "report_stdout": True},
            "other": {"run_args_template": "echo other", "report_stdout": True},
        },
        "slack": [
            {"command": "quiet", "job_type": "quiet"},
            {"command": "other", "job_type": "other"},
            {
                "command": "suppress quiet [start_at] [end_at]",
                "action": "schedule_suppression",
                "job_type": "quiet",
            },
            {"command": "unsuppress quiet", "action": "cancel_suppression", "job_type": "quiet"},
        ],
    }
}


def _do(configs, queue, settings, text, now=None):
    return perform(
        match_command(configs, text),
        configs,
        queue,
        Requester(user="tester"),
        settings.tz,
        now=time.time() if now is None else now,
    )


def test_a_suppressed_type_waits_until_the_suppression_is_cancelled(
    configure, queue, settings, thread_dispatcher
):
    configs = configure(SUPPRESS_CONFIG)
    td = thread_dispatcher(configs)
    now = time.time()
    here = datetime.fromtimestamp(now, settings.tz)
    start, end = here.strftime("%H:%M"), (here + timedelta(hours=2)).strftime("%H:%M")
    suppressed = _do(configs, queue, settings, f"t suppress quiet {start} {end}", now)
    assert suppressed.data["start_at"] <= now < suppressed.data["end_at"]
    assert [s.job_type for s in queue.suppressions(active_at=time.time())] == ["quiet"]

    quiet = _do(configs, queue, settings, "t quiet")
    assert quiet.enqueued.suppressed_until == suppressed.data["end_at"]
    assert "is suppressed until" in quiet.text
    # Queued after the suppressed job, so it could only run first if the suppression holds.
    other = _do(configs, queue, settings, "t other")
    assert other.enqueued.suppressed_until is None
    wait_status(queue, other.job.id, JobStatus.SUCCEEDED)
    time.sleep(5 * settings.dispatcher_poll_interval)  # several dispatch cycles
    assert queue.get(quiet.job.id).status is JobStatus.QUEUED

    removed = _do(configs, queue, settings, "t unsuppress quiet")
    assert removed.data == {"removed": 1}
    job = wait_status(queue, quiet.job.id, JobStatus.SUCCEEDED)
    assert job.started_at > queue.get(other.job.id).finished_at
    texts = [r.messages[0].text for r in td.notifier.wait_for(2)]
    assert texts == ["other", "quiet"]

    again = _do(configs, queue, settings, "t unsuppress quiet")
    assert again.data == {"removed": 0}


def test_a_suppressed_job_runs_once_the_window_ends(configure, queue, thread_dispatcher):
    configs = configure(SUPPRESS_CONFIG)
    thread_dispatcher(configs)
    now = time.time()
    queue.suppress("t", "quiet", now - 60, now + 1.5)
    result = queue.enqueue(request_for(configs, "t", "quiet"))
    assert result.suppressed_until == now + 1.5
    job = wait_status(queue, result.job.id, JobStatus.SUCCEEDED)
    assert job.started_at >= now + 1.5


@pytest.mark.parametrize("start_at", ["9am", "25:00", "12:60", "noon"])
def test_a_malformed_time_is_refused_and_nothing_is_stored(configure, queue, cli, start_at):
    configure(SUPPRESS_CONFIG)
    result = cli("enqueue", f"t suppress quiet {start_at} 10:00")
    assert result.returncode == 2
    assert "[start_at]" in result.stderr
    assert "HH:MM" in result.stderr
    assert "Traceback" not in result.stderr
    assert queue.suppressions() == []
    assert queue.jobs() == []


def test_the_dispatcher_idles_while_due_jobs_wait(configure, queue, settings, start_dispatcher):
    """Due jobs it may not start yet (type at its limit, type suppressed) must not make it spin."""
    configs = configure(
        {
            "t": {
                "jobs": {
                    "busy": {"run_args_template": "sleep 30", "coalesce": False},
                    "quiet": {"run_args_template": "true"},
                }
            }
        }
    )
    dispatcher = start_dispatcher()
    now = time.time()
    queue.suppress("t", "quiet", now - 60, now + 3600)
    first = queue.enqueue(request_for(configs, "t", "busy")).job.id
    blocked = queue.enqueue(request_for(configs, "t", "busy")).job.id
    quiet = queue.enqueue(request_for(configs, "t", "quiet")).job.id
    wait_status(queue, first, JobStatus.RUNNING)

    before, t0 = dispatcher.cpu_seconds(), time.monotonic()
    time.sleep(2)
    used, elapsed = dispatcher.cpu_seconds() - before, time.monotonic() - t0
    assert queue.get(blocked).status is JobStatus.QUEUED
    assert queue.get(quiet).status is JobStatus.QUEUED
    # Polling every 0.2 s costs little; a loop that never sleeps costs a whole core.
    assert used < 0.5 * elapsed, f"dispatcher used {used:.2f} s of CPU in {elapsed:.2f} s"


# -- coalescing --------------------------------------------------------------------------

COALESCE_CONFIG = {
    "t": {
        "jobs": {
            "merge": {"run_args_template": "echo {text}", "coalesce": "type"},
            "same": {"run_args_template": "echo {text}"},
            "each": {"run_args_template": "echo {text}", "coalesce": False},
            "hold": {"run_args_template": "sleep 30"},
        },
        "slack": [
            {"command": "merge [text]", "job_type": "merge", "delay_seconds": 60},
            {"command": "same [text]", "job_type": "same", "delay_seconds": 60},
            {"command": "each [text]", "job_type": "each", "delay_seconds": 60},
            {"command": "hold", "job_type": "hold"},
        ],
    }
}


def test_a_second_enqueue_of_a_coalescing_type_updates_the_queued_job(configure, queue, cli):
    # `"coalesce": "type"`: ebmbot's rule, the latest arguments win.
    configure(COALESCE_CONFIG)
    first = json.loads(cli("--json", "enqueue", "t merge one").stdout)
    second = json.loads(cli("--json", "enqueue", "t merge two").stdout)
    assert first["coalesced"] is False
    assert second["coalesced"] is True
    assert second["job"]["id"] == first["job"]["id"]
    assert "already queued" in second["message"]
    assert "it now runs with the latest arguments asked for (text=two)" in second["message"]
    (job,) = queue.jobs()
    assert job.args == {"text": "two"}
    assert job.status is JobStatus.QUEUED


def test_by_default_only_a_request_with_the_same_arguments_joins(configure, queue, cli):
    configure(COALESCE_CONFIG)
    five = json.loads(cli("--json", "enqueue", "t same five").stdout)
    seven = json.loads(cli("--json", "enqueue", "t same seven").stdout)
    again = json.loads(cli("--json", "enqueue", "t same five").stdout)
    assert [five["coalesced"], seven["coalesced"], again["coalesced"]] == [False, False, True]
    assert seven["job"]["id"] != five["job"]["id"]
    assert again["job"]["id"] == five["job"]["id"]
    assert again["message"].startswith(f"Joined job #{five['job']['id']} `t same`, already queued")
    assert sorted(j.args["text"] for j in queue.jobs()) == ["five", "seven"]


def test_without_coalescing_each_enqueue_is_a_job(configure, queue):
    configs = configure(COALESCE_CONFIG)
    a = queue.enqueue(request_for(configs, "t", "each", args={"text": "one"}, delay_seconds=60))
    b = queue.enqueue(request_for(configs, "t", "each", args={"text": "two"}, delay_seconds=60))
    assert not a.coalesced
    assert not b.coalesced
    assert a.job.id != b.job.id
    assert sorted(j.args["text"] for j in queue.jobs()) == ["one", "two"]


def test_enqueue_reports_the_running_job_of_its_type(configure, queue, cli, start_dispatcher):
    configs = configure(COALESCE_CONFIG)
    start_dispatcher()
    running = queue.enqueue(request_for(configs, "t", "hold"))
    assert running.running == ()
    wait_status(queue, running.job.id, JobStatus.RUNNING)

    behind = queue.enqueue(request_for(configs, "t", "hold"))
    assert not behind.coalesced  # the running job is not merged into
    assert [j.id for j in behind.running] == [running.job.id]
    assert behind.running[0].status is JobStatus.RUNNING
    # The CLI says so too.
    said = cli("enqueue", "t hold")
    assert said.returncode == 0, said.stderr
    assert f"#{running.job.id} of that type is running, so this one waits behind it" in said.stdout
    assert f"Joined job #{behind.job.id} `t hold`, already queued" in said.stdout
    assert queue.get(behind.job.id).status is JobStatus.QUEUED
    assert len(queue.jobs()) == 2


REPORTING_CONFIG = {
    "r": {
        "jobs": {
            "echo": {"run_args_template": "echo said {text}", "report_stdout": True},
            "ticket": {
                "run_args_template": "echo ticket {number}",
                "report_stdout": True,
                "coalesce": "type",
            },
        },
    }
}


def _ask(configs, job_type: str, i: int, **args: str):
    return request_for(
        configs, "r", job_type, args=args, channel="C0GENERAL", thread_ts=f"{i}.0",
        user=f"U0{i}", user_name=f"user{i}", source=Source.SLACK,
    )  # fmt: skip


def test_every_merged_requester_gets_the_report_in_their_own_thread(
    configure, queue, thread_dispatcher
):
    configs = configure(REPORTING_CONFIG)
    queue.suppress("r", "echo", time.time() - 1, time.time() + 600)  # hold them all in the queue
    merged = [queue.enqueue(_ask(configs, "echo", i, text="hi")) for i in range(5)]
    other = queue.enqueue(_ask(configs, "echo", 9, text="bye"))
    assert [r.coalesced for r in merged] == [False, True, True, True, True]
    assert {r.job.id for r in merged} == {merged[0].job.id}
    assert other.job.id != merged[0].job.id
    dispatcher = thread_dispatcher(configs)
    queue.unsuppress("r", "echo")
    reports = dispatcher.notifier.wait_for(6, timeout=30)
    seen = sorted((r.thread_ts, [m.text for m in r.messages]) for r in reports)
    assert seen == [(f"{i}.0", ["said hi"]) for i in range(5)] + [("9.0", ["said bye"])]
    assert {r.job_id for r in reports if r.thread_ts != "9.0"} == {merged[0].job.id}
    wait_status(queue, merged[0].job.id, JobStatus.SUCCEEDED)


def test_by_type_the_latest_arguments_win_and_every_requester_is_told(
    configure, queue, thread_dispatcher
):
    configs = configure(REPORTING_CONFIG)
    queue.suppress("r", "ticket", time.time() - 1, time.time() + 600)
    five = queue.enqueue(_ask(configs, "ticket", 1, number="5"))
    seven = queue.enqueue(_ask(configs, "ticket", 2, number="7"))
    assert seven.coalesced
    assert seven.job.id == five.job.id
    assert seven.job.args == {"number": "7"}
    assert seven.job.thread_ts == "1.0"  # still the first requester's job
    dispatcher = thread_dispatcher(configs)
    queue.unsuppress("r", "ticket")
    reports = dispatcher.notifier.wait_for(2, timeout=30)
    note = (
        f"Job #{five.job.id} `r ticket` answers 2 requests merged into it, and ran with the "
        "arguments asked for last: number=7."
    )
    assert sorted((r.thread_ts, [m.text for m in r.messages]) for r in reports) == [
        ("1.0", [note, "ticket 7"]),
        ("2.0", [note, "ticket 7"]),
    ]


MERGING_ENQUEUER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from stat_bot.jobs.model import JobRequest, Source
    from stat_bot.queue import open_queue
    from stat_bot.settings import load_settings

    url, go, count, label = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    queue = open_queue(load_settings(database_url=url, _env_file=None))
    while not go.exists():  # start all enqueuers at once
        time.sleep(0.005)
    for i in range(count):
        queue.enqueue(JobRequest(namespace="t", job_type="same", args={"text": f"n{i % 5}"},
                                 channel="C0GENERAL", thread_ts=f"{label}.{i}", user=label,
                                 source=Source.SLACK))
    queue.close()
    """
)


def test_concurrent_enqueues_from_processes_merge_by_args_and_keep_every_requester(
    configure, settings, queue, tmp_path, home
):
    """Four processes ask for five argument sets at once: five jobs, nobody lost or kept twice."""
    configure(COALESCE_CONFIG)
    processes, per_process = 4, 60
    go = tmp_path / "go"
    enqueuers = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                MERGING_ENQUEUER,
                settings.database_url,
                str(go),
                str(per_process),
                f"p{p}",
            ],
            cwd=home,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for p in range(processes)
    ]
    try:
        go.touch()
        for proc in enqueuers:
            _, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err.decode(errors="replace")
    finally:
        for proc in enqueuers:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    jobs = queue.jobs(limit=100)
    assert sorted(j.args["text"] for j in jobs) == [f"n{k}" for k in range(5)]
    asked: list[tuple[str, str | None]] = []
    for job in jobs:
        requesters = queue.requesters(job.id)
        # Every requester of a job asked for its arguments, and none moved the job.
        assert {r.args["text"] for r in requesters} == {job.args["text"]}
        assert all(not r.replaced_args for r in requesters)
        assert len(requesters) == processes * per_process // 5 - 1
        asked += [(job.args["text"], job.thread_ts)]
        asked += [(r.args["text"], r.thread_ts) for r in requesters]
    expected = [(f"n{i % 5}", f"p{p}.{i}") for p in range(processes) for i in range(per_process)]
    assert sorted(asked) == sorted(expected)


# -- concurrency -------------------------------------------------------------------------

STAMP = (
    'echo "start {label} $STAT_BOT_JOB_ID $(date +%s.%N)" >> "$WRITEABLE_DIR/stamps"; sleep 0.6; '
    'echo "end {label} $STAT_BOT_JOB_ID $(date +%s.%N)" >> "$WRITEABLE_DIR/stamps"'
)


def _stamp_job(label: str, concurrency: int) -> dict:
    return {
        "run_args_template": STAMP.replace("{label}", label),
        "concurrency": concurrency,
        "coalesce": False,
        "report_success": False,
    }


def test_per_type_concurrency_holds_across_two_dispatchers(
    configure, queue, settings, start_dispatcher
):
    configs = configure(
        {"t": {"jobs": {"trio": _stamp_job("trio", 3), "solo": _stamp_job("solo", 1)}}}
    )
    # Two slots each: three `trio` jobs at once needs both dispatchers, and no more may run.
    start_dispatcher(DISPATCHER_CONCURRENCY="2")
    start_dispatcher(DISPATCHER_CONCURRENCY="2")
    ids = [queue.enqueue(request_for(configs, "t", "trio")).job.id for _ in range(9)]
    ids += [queue.enqueue(request_for(configs, "t", "solo")).job.id for _ in range(3)]
    for job_id in ids:
        wait_status(queue, job_id, JobStatus.SUCCEEDED, timeout=30)
    intervals = read_intervals(settings.writeable_dir / "stamps")
    assert len(intervals["trio"]) == 9
    assert len(intervals["solo"]) == 3
    assert overlap(intervals["trio"]) == 3
    assert overlap(intervals["solo"]) == 1
    assert overlap(intervals["trio"] + intervals["solo"]) <= 4


def test_dispatcher_concurrency_caps_all_types_together(
    configure, queue, settings, start_dispatcher
):
    configs = configure({"t": {"jobs": {"a": _stamp_job("a", 4), "b": _stamp_job("b", 4)}}})
    ids = [queue.enqueue(request_for(configs, "t", t)).job.id for t in "abababab"]
    start_dispatcher(DISPATCHER_CONCURRENCY="3")
    for job_id in ids:
        wait_status(queue, job_id, JobStatus.SUCCEEDED, timeout=30)
    intervals = read_intervals(settings.writeable_dir / "stamps")
    assert overlap(intervals["a"] + intervals["b"]) == 3
