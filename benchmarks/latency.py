"""(b) Dispatch latency: a job enqueued in one process -> its child started by the dispatcher.

The real `stat-bot dispatcher` console script runs idle as a subprocess with the
production settings (concurrency 8, poll interval 0.5 s, JSON logs at INFO to a
file). This process enqueues jobs one at a time through SQLiteQueue, as the bot,
the web server and `stat-bot enqueue` do, and records `time.time()` as soon as
`enqueue` returns (after its commit and its wake-up datagram). Jobs are spaced
apart so each is measured alone. The job is an ordinary configured job whose
command is `t=$EPOCHREALTIME; echo "$STAT_BOT_JOB_ID $t" >> FILE`: bash 5 reads
the wall clock as soon as the child runs, so latency = the child's
$EPOCHREALTIME - the enqueue's return, which covers the wake-up, the claim
transaction, the log folder, the environment and the spawn of bash itself. The
first jobs warm the dispatcher up and are not counted. Each job's log folder and
files are made on its way to starting, so the file system's speed at creating
files is measured and shown too (see spawn.py).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import (
    DispatcherProcess,
    Figure,
    file_cost,
    file_figure,
    percentile,
    spare_cost,
    wait_until,
)
from benchmarks.common import write_job_configs as write_configs
from stat_bot.jobs.model import JobRequest, Source
from stat_bot.queue.sqlite import SQLiteQueue

TARGET_OVER_BARE_MS = 1.0  # p50 over bare Popen's p50, same run
WARMUP = 10


def bare_starts(home: Path, count: int = 100, gap: float = 0.02) -> list[float]:
    """The reference: ms from `subprocess.Popen` of the same command to its $EPOCHREALTIME.

    The same child as a job's: bash by its full path, in a session of its own (so that a
    timeout or a cancel can stop everything it started), with an environment of the same
    size as a job gets (this process's variables and a dozen job variables). Any runner
    has to do both for a job, so the reference pays for them too (the environment's
    conversion alone is about 0.15 ms for ~80 variables); what is left over is what STAT
    bot adds.

    Spaced `gap` seconds apart, as the measured jobs are: a spawn that follows another at
    once finds both cores awake and warm, one after 20 ms of idling does not (on this
    machine bash started ~0.4 ms later that way), and the jobs are timed one at a time.
    """
    stamps = home / "bare-starts.txt"
    command = f't=$EPOCHREALTIME; echo "0 $t" >> {shlex.quote(str(stamps))}'
    bash = shutil.which("bash") or "/bin/bash"
    job = {f"STAT_BOT_BARE_{n}": f"value {n}" for n in range(12)}
    before: list[float] = []
    for _ in range(count):
        time.sleep(gap)
        before.append(time.time())
        subprocess.run(
            [bash, "-c", command], check=True, env={**os.environ, **job}, start_new_session=True
        )
    started = [float(line.split()[1]) for line in stamps.read_text().splitlines()]
    return [(s - b) * 1000 for s, b in zip(started, before, strict=True)]


@dataclass
class Measured:
    """What `measure` found: ms from enqueue's return to the child's start, per job."""

    latencies: list[float]
    enqueue_ms: list[float]
    coalesced: int  # merged into a job still queued: not measured alone


def stamp_job(home: Path, namespace: str = "bench") -> Path:
    """Configure the job `<namespace> latency` that stamps its start; the stamp file's path."""
    starts = home / "starts.txt"
    (home / "workspace" / namespace).mkdir(parents=True)
    command = f't=$EPOCHREALTIME; echo "$STAT_BOT_JOB_ID $t" >> {shlex.quote(str(starts))}'
    write_configs(home / "job_configs.py", {"latency": {"run_args_template": command}}, namespace)
    return starts


def read_stamps(starts: Path) -> dict[int, float]:
    """Job id -> the epoch time its start was stamped, from `id time` lines."""
    started: dict[int, float] = {}
    if starts.exists():
        for line in starts.read_text().splitlines():
            job_id, stamp = line.split()
            started[int(job_id)] = float(stamp)
    return started


def measure(
    enqueue: Callable[[], int | None],
    starts: Path,
    *,
    jobs: int,
    gap: float,
    alive: Callable[[], None],
    warmup: int = WARMUP,
    timeout: float = 30.0,
) -> Measured:
    """Enqueue `warmup + jobs` jobs `gap` s apart; wait until each measured one stamped its start.

    `enqueue` queues one job and returns its id (None: merged into a queued job); whatever
    runs it appends `id epoch-seconds` to `starts` when it starts. `alive` raises if the
    process running the jobs died. Shared by the SQLite and the PostgreSQL benchmarks (and
    the reference they are held against), so every side is timed the same way.
    """
    enqueued: dict[int, tuple[float, float]] = {}  # job id -> (before enqueue, after enqueue)
    coalesced = 0
    for n in range(warmup + jobs):
        before = time.time()
        job_id = enqueue()
        after = time.time()
        if job_id is None:
            coalesced += 1
        elif n >= warmup:
            enqueued[job_id] = (before, after)
        time.sleep(gap)

    def all_started() -> dict[int, float] | None:
        alive()
        started = read_stamps(starts)
        return started if enqueued.keys() <= started.keys() else None

    started = wait_until(all_started, timeout, f"{jobs} jobs to start")
    return Measured(
        latencies=[(started[i] - after) * 1000 for i, (_, after) in enqueued.items()],
        enqueue_ms=[(after - before) * 1000 for before, after in enqueued.values()],
        coalesced=coalesced,
    )


def run(home: Path, *, jobs: int = 300, gap: float = 0.02) -> tuple[str, list[Figure]]:
    files_us = file_cost(home / "files", 100)
    spare_us = spare_cost(home / "spare-files", 100)
    starts = stamp_job(home)
    with DispatcherProcess(home) as dispatcher:
        dispatcher.start()
        queue = SQLiteQueue(dispatcher.database)
        request = JobRequest(namespace="bench", job_type="latency", source=Source.CLI)

        def enqueue() -> int | None:
            result = queue.enqueue(request)
            return None if result.coalesced else result.job.id

        try:
            measured = measure(enqueue, starts, jobs=jobs, gap=gap, alive=dispatcher.check_alive)
        finally:
            queue.close()
        dispatcher.check_alive()
    latencies, enqueue_ms, coalesced = (
        measured.latencies,
        measured.enqueue_ms,
        measured.coalesced,
    )
    title = (
        f"dispatch latency: {len(latencies)} jobs enqueued one at a time {gap * 1000:g} ms apart "
        f"-> child started (real `stat-bot dispatcher`, idle, default settings)"
    )
    figures = [
        Figure("p50", percentile(latencies, 50), " ms", None, False, 2),
        Figure("p90", percentile(latencies, 90), " ms", None, False, 2),
        Figure("p99", percentile(latencies, 99), " ms", None, False, 2),
        Figure("max", max(latencies), " ms", None, False, 2),
        Figure(
            "enqueue call itself, p50",
            percentile(enqueue_ms, 50),
            " ms",
            None,
            False,
            2,
            note="not part of the latency",
        ),
    ]
    bare = percentile(bare_starts(home, gap=gap), 50)
    figures += [
        Figure(
            "bare Popen -> same child started, p50",
            bare,
            " ms",
            None,
            False,
            2,
            note=f"reference, same run, also {gap * 1000:g} ms apart: bash's own start-up",
        ),
        Figure(
            "p50 over bare Popen's p50",
            percentile(latencies, 50) - bare,
            " ms",
            TARGET_OVER_BARE_MS,
            False,
            2,
            note="what STAT bot adds: wake-up, claim, log files, spawn",
        ),
    ]
    figures.append(file_figure(files_us))
    figures.append(
        Figure(
            "file system: a job's folder from a spare",
            spare_us,
            " \u00b5s",
            higher_is_better=False,
            note="information: a rename + 2 opens, as a job's start after a quiet moment",
        )
    )
    if coalesced:
        figures.append(
            Figure("jobs coalesced (not measured)", coalesced, "", None, False, note="raise --gap")
        )
    return title, figures
