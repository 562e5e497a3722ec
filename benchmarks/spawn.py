"""(c) Spawn throughput: 1,000 `true` jobs through the dispatcher vs bare asyncio spawns.

Service side: a generated job_configs.py with one job type per job (so the
per-type concurrency of 1 never limits), each `true` with report_success False;
the jobs are enqueued first, then the real `stat-bot dispatcher` console script
starts with DISPATCHER_CONCURRENCY=8 and otherwise default settings (JSON logs
at INFO to a file, a log folder with stdout and stderr files per job, in the
benchmark's temporary folder). Jobs/s = jobs / (last `finished_at` - first
`started_at`), both read from the queue: from the first claim to the last finish.

Reference, same run: a fresh Python process runs the same number of
`await asyncio.create_subprocess_exec("bash", "-c", "true")` + `wait()` at the
same concurrency in `asyncio.run`, the event loop set-up the dispatcher runs in,
timed from the first spawn to the last wait. For information it also runs with
asyncio's PidfdChildWatcher (Python 3.12's default on Linux; 3.11 starts a
thread per child), the faster bare variant on this Python.

The machine is shared and its figures wander by tens of percent from one second
to the next (the bare runs with the default child watcher come out either near
800/s or near 1,100/s), so the runs alternate (bare, dispatcher, bare, ...,
bare) and each dispatcher run is compared with the mean of the bare runs just
before and after it; the ratio reported is the median of these. Creating files
is part of every job, so the benchmark also times it on the file system it uses:
on a journal-less ext4 (as on the test VMs), creating an inode right after many
were deleted (by this benchmark's previous run, or by other processes' test
folders) scans past every recently deleted one, and one job's folder and two
files can take milliseconds instead of tens of microseconds.

For information it prints, for each side, where its event loop's thread spent each job
(/proc's schedstat): on a CPU, waiting in a run queue for one, and the rest (blocked in
vfork until a child has exec'd or in another system call, or idle). Each side starts
every job from that one thread, and neither keeps both cores busy: the dispatcher's
thread is on a CPU two to three times as long per job as the bare spawner's.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.common import (
    BenchmarkError,
    DispatcherProcess,
    Figure,
    LoopShare,
    file_cost,
    file_figure,
    read_only,
    thread_schedule,
    wait_until,
    write_job_configs,
)
from stat_bot.jobs.model import JobRequest, Source
from stat_bot.queue.sqlite import SQLiteQueue

TARGET_RATIO = 0.85  # median of the rounds' dispatcher / bare ratios
TARGET_EVERY_ROUND = 0.75  # and the lowest round's
ROOT = Path(__file__).resolve().parents[1]


def bare_main() -> None:
    """In a fresh process: time bare `bash -c true` spawns; argv: jobs concurrency watcher."""
    import asyncio
    import os

    jobs, concurrency, watcher = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]

    async def main() -> dict[str, Any]:
        if watcher == "pidfd" and sys.version_info < (3, 12):
            pidfd = asyncio.PidfdChildWatcher()
            pidfd.attach_loop(asyncio.get_running_loop())
            asyncio.set_child_watcher(pidfd)
        remaining = jobs
        failures = 0

        async def worker() -> None:
            nonlocal remaining, failures
            while remaining > 0:
                remaining -= 1
                process = await asyncio.create_subprocess_exec("bash", "-c", "true")
                if await process.wait() != 0:
                    failures += 1

        start, first = time.time(), thread_schedule(os.getpid())
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds, last = time.time() - start, thread_schedule(os.getpid())
        loop = LoopShare.between(first, last, seconds, jobs) if first and last else None
        return {"seconds": seconds, "failures": failures, "loop": loop and vars(loop)}

    print(json.dumps(asyncio.run(main())))


def bare(
    jobs: int, concurrency: int, watcher: str, timeout: float
) -> tuple[float, LoopShare | None]:
    """Bare spawns per second, measured in a fresh process, and its event loop's thread."""
    code = f"import sys; sys.path.insert(0, {str(ROOT)!r}); from benchmarks.spawn import bare_main; bare_main()"
    result = subprocess.run(
        [sys.executable, "-c", code, str(jobs), str(concurrency), watcher],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise BenchmarkError(f"the bare spawn run failed:\n{result.stderr}")
    data = json.loads(result.stdout)
    if data["failures"]:
        raise BenchmarkError(f"{data['failures']} bare `bash -c true` spawns failed")
    return jobs / data["seconds"], LoopShare(**data["loop"]) if data["loop"] else None


def dispatched(
    home: Path, jobs: int, concurrency: int, timeout: float
) -> tuple[float, LoopShare | None]:
    """Jobs per second through the real dispatcher, from its first claim to its last finish;
    and its event loop's thread, from a few jobs in (its start-up left out) to the end."""
    (home / "workspace" / "bench").mkdir(parents=True)
    types = [f"t{i:04d}" for i in range(jobs)]
    write_job_configs(
        home / "job_configs.py",
        {name: {"run_args_template": "true", "report_success": False} for name in types},
    )
    dispatcher = DispatcherProcess(home, DISPATCHER_CONCURRENCY=str(concurrency))
    queue = SQLiteQueue(dispatcher.database)
    queue.migrate()
    try:
        for name in types:
            queue.enqueue(JobRequest(namespace="bench", job_type=name, source=Source.CLI))
    finally:
        queue.close()
    with dispatcher, read_only(dispatcher.database) as db:
        dispatcher.start(wait_ready=False)

        def finished() -> int:
            if dispatcher.process is not None and dispatcher.process.poll() is not None:
                raise BenchmarkError(f"the dispatcher exited:\n{dispatcher.log_tail()}")
            (count,) = db.execute(
                "SELECT count(*) FROM jobs WHERE finished_at IS NOT NULL"
            ).fetchone()
            return int(count)

        # Polled no more often than before these figures were added: the polling is load
        # on the machine the judged throughput is measured on.
        pid = dispatcher.process.pid if dispatcher.process is not None else 0
        some = max(1, jobs // 20)
        wait_until(lambda: finished() >= some, timeout, f"{some} jobs to finish", interval=0.1)
        done_then = finished()
        since, loop_first = time.time(), thread_schedule(pid)
        wait_until(lambda: finished() >= jobs, timeout, f"{jobs} jobs to finish", interval=0.1)
        loop_last = thread_schedule(pid)  # the loop has been idle since the last finish
        first, last, ok = db.execute(
            "SELECT min(started_at), max(finished_at), sum(status = 'succeeded') FROM jobs"
        ).fetchone()
    if ok != jobs:
        raise BenchmarkError(f"only {ok} of {jobs} jobs succeeded:\n{dispatcher.log_tail()}")
    loop = None
    if loop_first and loop_last and last > since and done_then < jobs:
        loop = LoopShare.between(loop_first, loop_last, last - since, jobs - done_then)
    return jobs / (last - first), loop


def run(
    home: Path,
    *,
    jobs: int = 1000,
    concurrency: int = 8,
    rounds: int = 5,
    timeout: float = 120.0,
) -> tuple[str, list[Figure]]:
    files_us = file_cost(home / "files")
    bare_runs = [bare(jobs, concurrency, "default", timeout)]
    pidfd: list[float] = []
    service_runs: list[tuple[float, LoopShare | None]] = []
    for n in range(rounds):
        pidfd.append(bare(jobs, concurrency, "pidfd", timeout)[0])
        service_runs.append(dispatched(home / f"round{n}", jobs, concurrency, timeout))
        bare_runs.append(bare(jobs, concurrency, "default", timeout))
    bares = [rate for rate, _ in bare_runs]
    services = [rate for rate, _ in service_runs]
    ratios = [s / ((bares[n] + bares[n + 1]) / 2) for n, s in enumerate(services)]
    pidfd_ratios = [s / p for s, p in zip(services, pidfd, strict=True)]
    title = (
        f"spawn throughput: {jobs:,} `true` jobs of distinct types at concurrency {concurrency} "
        f"(real `stat-bot dispatcher`) vs bare asyncio `bash -c true` spawns, "
        f"{rounds} alternating rounds"
    )
    shown = ", ".join(f"{r:.2f}" for r in ratios)
    return title, [
        Figure(
            "dispatcher jobs/s, median",
            statistics.median(services),
            "/s",
            note=", ".join(f"{s:,.0f}" for s in services),
        ),
        Figure(
            "bare asyncio spawns/s, median",
            statistics.median(bares),
            "/s",
            note=", ".join(f"{b:,.0f}" for b in bares),
        ),
        Figure(
            "ratio dispatcher / bare, median",
            statistics.median(ratios),
            "",
            TARGET_RATIO,
            digits=2,
            note=f"rounds: {shown}",
        ),
        Figure(
            "ratio dispatcher / bare, lowest round",
            min(ratios),
            "",
            TARGET_EVERY_ROUND,
            digits=2,
            worst=True,
        ),
        Figure(
            "bare with PidfdChildWatcher, median",
            statistics.median(pidfd),
            "/s",
            note=f"information; dispatcher / it: {statistics.median(pidfd_ratios):.2f}",
        ),
        *loop_figures(
            [loop for _, loop in service_runs if loop], [loop for _, loop in bare_runs if loop]
        ),
        file_figure(files_us),
    ]


def loop_figures(service: list[LoopShare], reference: list[LoopShare]) -> list[Figure]:
    """Each side's event-loop thread per job, in its round of median wall time (information).

    Both sides start every job from one thread: per job it runs, waits for a CPU while
    the jobs' bash processes have them, and is blocked (in vfork until the child has
    exec'd, or another system call) or idle. A job costs STAT bot more of the first.
    """
    if not service or not reference:
        return []

    def median(shares: list[LoopShare]) -> LoopShare:
        """The round of median wall time, whole (its parts add up, as medians of each would not)."""
        return sorted(shares, key=lambda share: share.wall)[(len(shares) - 1) // 2]

    sides = (("dispatcher's", median(service)), ("bare spawner's", median(reference)))
    return [
        Figure(
            f"{side} loop thread per job, median",
            share.wall,
            " ms",
            higher_is_better=False,
            digits=2,
            note=f"information: {share.shown()}",
        )
        for side, share in sides
    ]
