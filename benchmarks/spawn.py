"""(c) Spawn throughput: 1,000 `true` jobs through the dispatcher vs bare asyncio spawns.

Service side: a generated job_configs.py with one job type per job (so the
per-type concurrency of 1 never limits), each `true` with report_success False;
the jobs are enqueued first, then the real `stat-bot dispatcher` console script
starts with DISPATCHER_CONCURRENCY=8 and otherwise default settings (JSON logs
at INFO to a file). Jobs/s = jobs / (last `finished_at` - first `started_at`),
both read from the queue: from the first claim to the last finish.

Reference, same run: a fresh Python process runs the same number of
`await asyncio.create_subprocess_exec("bash", "-c", "true")` + `wait()` at
concurrency 8, in an event loop set up as the dispatcher's is (`asyncio.run`
through stat_bot's `run_loop`), timed from the first spawn to the last wait. It
runs before and after the dispatcher; the faster of the two is used, so a
disturbance cannot flatter the ratio.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import (
    BenchmarkError,
    DispatcherProcess,
    Figure,
    read_only,
    wait_until,
    write_job_configs,
)
from stat_bot.jobs.model import JobRequest, Source
from stat_bot.queue.sqlite import SQLiteQueue

TARGET_RATIO = 0.7
ROOT = Path(__file__).resolve().parents[1]


def bare_main() -> None:
    """In a fresh process: time `jobs` bare `bash -c true` spawns at `concurrency`; print JSON."""
    import asyncio

    jobs, concurrency = int(sys.argv[1]), int(sys.argv[2])

    async def main() -> dict[str, float]:
        remaining = jobs
        failures = 0

        async def worker() -> None:
            nonlocal remaining, failures
            while remaining > 0:
                remaining -= 1
                process = await asyncio.create_subprocess_exec("bash", "-c", "true")
                if await process.wait() != 0:
                    failures += 1

        start = time.time()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return {"seconds": time.time() - start, "failures": failures}

    print(json.dumps(asyncio.run(main())))


def bare(jobs: int, concurrency: int, timeout: float) -> float:
    """Bare spawns per second, measured in a fresh process."""
    code = f"import sys; sys.path.insert(0, {str(ROOT)!r}); from benchmarks.spawn import bare_main; bare_main()"
    result = subprocess.run(
        [sys.executable, "-c", code, str(jobs), str(concurrency)],
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
    return jobs / data["seconds"]


def dispatched(home: Path, jobs: int, concurrency: int, timeout: float) -> float:
    """Jobs per second through the real dispatcher, from its first claim to its last finish."""
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

        def finished() -> bool:
            if dispatcher.process is not None and dispatcher.process.poll() is not None:
                raise BenchmarkError(f"the dispatcher exited:\n{dispatcher.log_tail()}")
            (count,) = db.execute(
                "SELECT count(*) FROM jobs WHERE finished_at IS NOT NULL"
            ).fetchone()
            return count >= jobs

        wait_until(finished, timeout, f"{jobs} jobs to finish", interval=0.1)
        first, last, ok = db.execute(
            "SELECT min(started_at), max(finished_at), sum(status = 'succeeded') FROM jobs"
        ).fetchone()
    if ok != jobs:
        raise BenchmarkError(f"only {ok} of {jobs} jobs succeeded:\n{dispatcher.log_tail()}")
    return jobs / (last - first)


def run(
    home: Path, *, jobs: int = 1000, concurrency: int = 8, timeout: float = 120.0
) -> tuple[str, list[Figure]]:
    before = bare(jobs, concurrency, timeout)
    service = dispatched(home, jobs, concurrency, timeout)
    after = bare(jobs, concurrency, timeout)
    reference = max(before, after)
    title = (
        f"spawn throughput: {jobs:,} `true` jobs of distinct types at concurrency {concurrency} "
        f"(real `stat-bot dispatcher`) vs bare asyncio `bash -c true` spawns, same run"
    )
    return title, [
        Figure("dispatcher jobs/s", service, "/s"),
        Figure(
            "bare asyncio spawns/s",
            reference,
            "/s",
            note=f"best of before {before:,.0f}/s and after {after:,.0f}/s",
        ),
        Figure("ratio dispatcher / bare", service / reference, "", TARGET_RATIO, digits=2),
    ]
