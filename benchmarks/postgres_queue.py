"""(e) PostgreSQL (issue 12): the queue, dispatch latency and scale-out, beside procrastinate.

Needs a PostgreSQL server: TEST_DATABASE_URL's (default
postgresql://postgres@127.0.0.1:5432/test, as for the tests). It makes its own
databases there and drops them at the end; with no server answering, it says so in
one line and is skipped. STAT bot's side always goes through `open_queue` with a
postgresql:// URL (PostgresQueue) or the real `stat-bot dispatcher` with that
DATABASE_URL; the server's settings are its own (synchronous_commit as it is, so
every commit waits for its WAL flush, on both sides).

1. Queue cycle: for each of N jobs, `enqueue` one, `claim` one, `finish` it: the three
   write transactions a job costs, one thread, with a wake-up listener open as a
   dispatcher's is (so every enqueue's NOTIFY is delivered). References in the same
   run, in alternating slices: bare psycopg running the same three statements by hand
   (insert; claim the oldest queued row with FOR UPDATE SKIP LOCKED; mark it finished),
   one transaction each, on a database with the same schema; and procrastinate's own
   three calls for a job (`defer_async`, `job_manager.fetch_job`, `job_manager.finish_job`).

2. Dispatch latency while idle, exactly as `latency.py` measures it on SQLite (shared
   code): the real dispatcher, default settings, idle; jobs enqueued 20 ms apart; the
   job's bash stamps $EPOCHREALTIME as it starts; latency = that - enqueue's return.
   Wake-ups are PostgreSQL's LISTEN/NOTIFY. The same measurement on SQLite runs in the
   same run as the reference, with bash's own start-up.

3. Scale-out: N `true` jobs, one job type each (so per-type limits never bind),
   enqueued first, then 1, 2 or 4 real dispatchers (DISPATCHER_CONCURRENCY each) on the
   one database; jobs/s = N / (last finish - first claim), from the jobs table. The
   same jobs through one dispatcher on SQLite, and bare asyncio `bash -c true` spawns at
   the same concurrency (spawn.py's reference), run beside them.

4. Beside procrastinate 3 on the same server, in its own database (its schema applied
   by its own SchemaManager, its own PsycopgConnector, a pool of concurrency + 2
   connections so that it never waits for one), doing the same work at the same
   concurrency C (DISPATCHER_CONCURRENCY's default, 8):
   - defer / enqueue N jobs, one transaction each, from this process;
   - process them: procrastinate's worker (a process of its own, `wait=False`, LISTEN
     on, its INFO logs not written anywhere) running a no-op async task, against
     "STAT bot, queue only": a process of its own that claims up to C jobs, then
     finishes them (claim + finish: the dispatcher's queue calls for a job, without
     the spawn and the log files no-op work has no use for; the ends of one batch in
     one transaction, as the dispatcher commits the ends that come in one turn of its
     loop), woken by the queue's LISTEN. Rate = N / (last finish - first start), from
     each one's own tables (procrastinate_events; jobs). This ratio carries the 3x
     target. Alternating rounds, the median ratio counts. Once more with one
     transaction per job's end, for information;
   - "full": STAT bot's real dispatcher running `true` as a subprocess per job (part 3,
     one dispatcher), against procrastinate's worker running a task that spawns
     `bash -c true` with asyncio and waits for it; and against its no-op task. For
     information: both full sides are bound by fork/exec on two cores;
   - latency while idle, p50: defer -> the task function's first line (procrastinate);
     enqueue -> claim returned in the queue-only process; enqueue -> the job's bash
     started (part 2, the full path). The lower-p50 target is held by both STAT bot
     figures against procrastinate's, measured in the same run.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from benchmarks import latency, spawn
from benchmarks.common import (
    BenchmarkError,
    BenchmarkSkipError,
    DispatcherProcess,
    Figure,
    file_cost,
    file_figure,
    percentile,
    wait_until,
    write_job_configs,
)
from benchmarks.queue_cycle import ServiceCycle
from stat_bot.jobs.model import JobRequest, JobStatus, ReportState, Source
from stat_bot.lifeline import stop_process
from stat_bot.log import configure as configure_logging
from stat_bot.queue import Queue, open_queue
from stat_bot.queue.sqlite import SQLiteQueue
from stat_bot.settings import Settings

TARGET_VS_PROCRASTINATE = 3.0  # STAT bot's jobs/s over procrastinate's, same concurrency
PROCRASTINATE_EARLIER = "earlier here: 130-356 tasks/s, p50 7 ms"
ROOT = Path(__file__).resolve().parents[1]
BASH = shutil.which("bash") or "/bin/bash"
POLL_INTERVAL = 0.5  # the queue-only worker's fallback poll, as the dispatcher's default
SLICES = 5  # alternating slices of the queue cycle


@dataclass(frozen=True)
class Plan:
    """How much each part does (`quick`: a smoke run for CI, figures too small to trust)."""

    cycle_jobs: int = 600
    jobs: int = 600
    latency_jobs: int = 200
    gap: float = 0.02
    concurrency: int = 8
    dispatchers: tuple[int, ...] = (1, 2, 4)
    rounds: int = 3
    timeout: float = 120.0
    quick: bool = False


QUICK = Plan(cycle_jobs=100, jobs=100, latency_jobs=20, dispatchers=(1, 2), rounds=1, quick=True)


# -- the server and its databases ------------------------------------------------------


def server_problem() -> str | None:
    from tests.postgres_fixtures import server_problem as problem

    return problem()


@contextlib.contextmanager
def databases() -> Iterator[Callable[[str], str]]:
    """A maker of fresh databases on the test server, all dropped when the block ends."""
    from tests.postgres_fixtures import create_database, drop_database

    made: list[str] = []

    def make(what: str) -> str:
        made.append(create_database(f"statbot_bench_{what}"))
        return made[-1]

    try:
        yield make
    finally:
        for url in made:
            with contextlib.suppress(Exception):
                drop_database(url)


def server_facts(url: str) -> str:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        version = conn.execute("SHOW server_version").fetchone()
        sync = conn.execute("SHOW synchronous_commit").fetchone()
        fsync = conn.execute("SHOW fsync").fetchone()
    return (
        f"PostgreSQL {version[0] if version else '?'} (synchronous_commit "
        f"{sync[0] if sync else '?'}, fsync {fsync[0] if fsync else '?'})"
    )


def settings(url: str, home: Path) -> Settings:
    """STAT bot's settings for a queue at `url`; no `environment` file of the checkout read."""
    return Settings(_env_file=None, database_url=url, state_dir=home / "var")  # type: ignore[call-arg]


def statbot_queue(url: str, home: Path) -> Queue:
    """PostgresQueue at `url`, its schema brought up to date (open_queue, as the service)."""
    return open_queue(settings(url, home))


def distinct_types(count: int, offset: int = 0) -> list[str]:
    """Job type names, one per job, so per-type concurrency never limits a run."""
    return [f"t{offset + n:05d}" for n in range(count)]


def type_request(name: str) -> JobRequest:
    return JobRequest(namespace="bench", job_type=name, source=Source.CLI, coalesce=False)


# -- procrastinate ---------------------------------------------------------------------

_STAMPS: list[str] = []  # the stamp file of a serving procrastinate worker (set in its process)


def procrastinate_app(url: str, concurrency: int) -> Any:
    """A procrastinate App on its own PsycopgConnector, with the benchmark's three tasks."""
    import procrastinate

    size = concurrency + 2  # each running job may hold one; plus fetching and the heartbeat
    app = procrastinate.App(
        connector=procrastinate.PsycopgConnector(conninfo=url, min_size=size, max_size=size)
    )

    @app.task(name="noop")
    async def noop() -> None:
        """No work: what is measured is procrastinate itself."""

    @app.task(name="bash_true")
    async def bash_true() -> None:
        """The work a STAT bot `true` job does: spawn bash, wait for it."""
        process = await asyncio.create_subprocess_exec(BASH, "-c", "true")
        if await process.wait() != 0:
            raise RuntimeError("bash -c true failed")

    @app.task(name="stamp", pass_context=True)
    async def stamp(context: Any) -> None:
        """Note when the task started, as the latency jobs' bash does."""
        now = time.time()
        with open(_STAMPS[0], "a") as out:
            out.write(f"{context.job.id} {now}\n")

    return app


class ProcrastinateSide:
    """procrastinate in its own database, driven from this process on one event loop."""

    def __init__(self, url: str, concurrency: int) -> None:
        self.url = url
        self.concurrency = concurrency
        self.loop = asyncio.new_event_loop()
        self.app = procrastinate_app(url, concurrency)
        self.worker_id = self.loop.run_until_complete(self._open())

    async def _open(self) -> int:
        await self.app.open_async()
        await self.app.schema_manager.apply_schema_async()
        worker_id: int = await self.app.job_manager.register_worker()
        return worker_id

    def defer(self, task: str, count: int) -> float:
        """Seconds to defer `count` jobs of `task`, one transaction each."""

        async def go() -> float:
            deferrer = self.app.tasks[task]
            start = time.perf_counter()
            for _ in range(count):
                await deferrer.defer_async()
            return time.perf_counter() - start

        return self.loop.run_until_complete(go())

    def defer_one(self, task: str) -> int:
        job_id: int = self.loop.run_until_complete(self.app.tasks[task].defer_async())
        return job_id

    def cycle(self, jobs: int) -> float:
        """Seconds for `jobs` x (defer, fetch, finish): procrastinate's three writes a job."""
        from procrastinate.jobs import Status

        async def go() -> float:
            task, manager = self.app.tasks["noop"], self.app.job_manager
            start = time.perf_counter()
            for _ in range(jobs):
                await task.defer_async()
                job = await manager.fetch_job(queues=None, worker_id=self.worker_id)
                await manager.finish_job(job=job, status=Status.SUCCEEDED, delete_job=False)
            return time.perf_counter() - start

        return self.loop.run_until_complete(go())

    def last_job_id(self) -> int:
        return int(self._one("SELECT coalesce(max(id), 0) FROM procrastinate_jobs")[0])

    def _one(self, sql: str, *params: object) -> tuple[Any, ...]:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            row = conn.execute(sql, params).fetchone()
        assert row is not None
        return tuple(row)

    def processed(self, after_id: int) -> tuple[int, float]:
        """Jobs succeeded with id > after_id, and seconds from the first start to the last end."""
        count, first, last = self._one(
            "SELECT count(*) FILTER (WHERE type = 'succeeded'), "
            "extract(epoch FROM min(at) FILTER (WHERE type = 'started')), "
            "extract(epoch FROM max(at) FILTER (WHERE type = 'succeeded')) "
            "FROM procrastinate_events WHERE job_id > %s",
            after_id,
        )
        return int(count), float(last - first) if count else 0.0

    def close(self) -> None:
        self.loop.run_until_complete(self.app.close_async())
        self.loop.close()


async def procrastinate_worker(url: str, concurrency: int, wait: bool) -> None:
    app = procrastinate_app(url, concurrency)
    async with app.open_async():
        await app.run_worker_async(
            concurrency=concurrency,
            wait=wait,
            listen_notify=True,
            delete_jobs="never",
            install_signal_handlers=True,  # SIGTERM: a graceful stop
        )


# -- STAT bot, queue only --------------------------------------------------------------


def statbot_worker(
    url: str, concurrency: int, *, drain: bool, grouped: bool, stamps: str | None
) -> None:
    """Claim up to `concurrency` jobs, then finish them; woken by the queue's listener.

    What the dispatcher does with the queue for a job (claim, finish), without the
    process, log files and reports: the queue's share of a job, for a like-for-like
    comparison with a no-op task. `grouped`: the claimed jobs' ends in one transaction
    (`write_many`), as the dispatcher commits the ends that come in one turn of its loop
    (all of them, for jobs that do nothing); else one transaction each. `drain`: stop
    when nothing is left to claim.
    """
    configure_logging("WARNING")
    home = Path.cwd()
    queue = open_queue(settings(url, home), migrate=False)
    worker_id = f"bench-{socket.gethostname()}-{os.getpid()}"
    listener = queue.wakeup_listener("bench-worker")
    out = open(stamps, "a") if stamps else None  # noqa: SIM115 (closed below)

    def stop(*_: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    try:
        while True:
            listener.drain()
            jobs = queue.claim(worker_id, concurrency)
            if jobs:
                if out is not None:
                    now = time.time()
                    out.write("".join(f"{job.id} {now}\n" for job in jobs))
                    out.flush()
                end = {
                    "report_state": ReportState.NONE,
                    "worker_id": worker_id,
                }  # as the dispatcher
                ends = [("finish", (job.id, JobStatus.SUCCEEDED, 0), end) for job in jobs]
                if grouped:
                    queue.write_many(ends)
                else:
                    for name, args, kwargs in ends:
                        getattr(queue, name)(*args, **kwargs)
            elif drain:
                return
            else:
                select.select([listener], [], [], POLL_INTERVAL)
    finally:
        if out is not None:
            out.close()
        listener.close()
        queue.close()


def worker_main() -> None:
    """In a fresh process: argv = kind url concurrency [stamps]; see WorkerProcess."""
    kind, url, concurrency = sys.argv[1], sys.argv[2], int(sys.argv[3])
    stamps = sys.argv[4] if len(sys.argv) > 4 else None
    if kind.startswith("procrastinate"):
        if stamps:
            _STAMPS.append(stamps)
        asyncio.run(procrastinate_worker(url, concurrency, wait=kind == "procrastinate-serve"))
    else:
        statbot_worker(
            url,
            concurrency,
            drain=kind.startswith("statbot-drain"),
            grouped=kind != "statbot-drain-each",
            stamps=stamps,
        )


class WorkerProcess:
    """A worker of either side in a process of its own, as a deployment would run it.

    kind: procrastinate-drain / procrastinate-serve (its worker, `wait` False or True),
    statbot-drain / statbot-drain-each / statbot-serve (the queue-only loop; `each`: one
    transaction per job's end). `serve` ones stamp the start of each job into `stamps`
    and run until stopped.
    """

    def __init__(
        self, home: Path, kind: str, url: str, concurrency: int, stamps: Path | None = None
    ) -> None:
        home.mkdir(parents=True, exist_ok=True)
        self.log = home / f"{kind}.log"
        code = (
            f"import sys; sys.path.insert(0, {str(ROOT)!r}); "
            "from benchmarks.postgres_queue import worker_main; worker_main()"
        )
        argv = [sys.executable, "-c", code, kind, url, str(concurrency)]
        if stamps is not None:
            argv.append(str(stamps))
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                argv,
                cwd=home,  # no `environment` file of the checkout is read
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        self.kind = kind

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise BenchmarkError(f"the {self.kind} worker exited:\n{self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else "(no output)"
        return "\n".join(text.splitlines()[-lines:])

    def wait(self, timeout: float) -> None:
        """Wait for a drain worker to exit; BenchmarkError if it failed or took too long."""
        try:
            status = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise BenchmarkError(
                f"the {self.kind} worker took over {timeout:g} s:\n{self.log_tail()}"
            ) from None
        if status != 0:
            raise BenchmarkError(f"the {self.kind} worker failed ({status}):\n{self.log_tail()}")

    def stop(self) -> None:
        stop_process(self.process, 10.0)

    def __enter__(self) -> WorkerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- 1. the queue cycle ----------------------------------------------------------------


class BarePostgresCycle:
    """The cycle's three steps written by hand on one psycopg connection, same schema."""

    INSERT = (
        "INSERT INTO jobs (namespace, job_type, args, channel, source, status, created_at, "
        "start_after) VALUES ('bench', 'cycle', '{\"n\": \"1\"}', 'C0BENCH', 'cli', 'queued', "
        "%(now)s, %(now)s)"
    )
    CLAIM = (
        "UPDATE jobs SET status = 'running', started_at = %(now)s, worker_id = 'bench-worker', "
        "attempts = attempts + 1 WHERE id = (SELECT id FROM jobs WHERE status = 'queued' "
        "AND start_after <= %(now)s ORDER BY start_after, id LIMIT 1 FOR UPDATE SKIP LOCKED) "
        "RETURNING id"
    )
    FINISH = (
        "UPDATE jobs SET status = 'succeeded', exit_code = 0, finished_at = %(now)s "
        "WHERE id = %(id)s AND status = 'running'"
    )

    def __init__(self, url: str, home: Path) -> None:
        import psycopg

        statbot_queue(url, home).close()  # the same tables, indexes and triggers
        self.conn = psycopg.connect(url, autocommit=True)
        self.done = 0

    def run(self, jobs: int) -> float:
        conn = self.conn
        start = time.perf_counter()
        for _ in range(jobs):
            now = time.time()
            conn.execute(self.INSERT, {"now": now})
            row = conn.execute(self.CLAIM, {"now": now}).fetchone()
            assert row is not None
            conn.execute(self.FINISH, {"now": time.time(), "id": row[0]})
        elapsed = time.perf_counter() - start
        self.done += jobs
        return elapsed

    def close(self) -> None:
        row = self.conn.execute("SELECT count(*) FROM jobs WHERE status = 'succeeded'").fetchone()
        self.conn.close()
        if row is None or row[0] != self.done:
            raise BenchmarkError(f"expected {self.done} finished rows, found {row}")


def queue_cycle(make: Callable[[str], str], home: Path, plan: Plan) -> list[Figure]:
    queue = statbot_queue(make("cycle"), home / "cycle")
    service = ServiceCycle(queue)
    bare = BarePostgresCycle(make("bare"), home / "bare")
    reference = ProcrastinateSide(make("proc_cycle"), plan.concurrency)
    service_s = bare_s = proc_s = 0.0
    jobs = plan.cycle_jobs
    slices = max(1, min(SLICES, jobs // 50))
    try:
        for n in range(slices):
            size = jobs // slices + (1 if n < jobs % slices else 0)
            service_s += service.run(size)
            bare_s += bare.run(size)
            proc_s += reference.cycle(size)
    finally:
        service.close()
        bare.close()
        reference.close()
    rate, bare_rate, proc_rate = jobs / service_s, jobs / bare_s, jobs / proc_s
    return [
        Figure("1 cycle: PostgresQueue jobs/s", rate, "/s", note="3 transactions a job"),
        Figure(
            "1 cycle: bare psycopg, same 3 statements",
            bare_rate,
            "/s",
            note=f"reference: PostgresQueue is {rate / bare_rate:.2f} of it",
        ),
        Figure(
            "1 cycle: procrastinate defer+fetch+finish",
            proc_rate,
            "/s",
            note=f"reference: PostgresQueue is {rate / proc_rate:.2f}x it",
        ),
        Figure(
            "1 cycle: PostgresQueue time per job",
            service_s / jobs * 1e6,
            " \u00b5s",
            higher_is_better=False,
            note=f"bare {bare_s / jobs * 1e6:,.0f} \u00b5s",
        ),
    ]


# -- 2. dispatch latency ---------------------------------------------------------------


def dispatched_latency(home: Path, url: str | None, plan: Plan) -> latency.Measured:
    """latency.py's measurement against the real dispatcher on `url` (None: SQLite)."""
    starts = latency.stamp_job(home)
    extra = {"DATABASE_URL": url} if url else {}
    with DispatcherProcess(home, **extra) as dispatcher:
        if url:
            queue = statbot_queue(url, home)  # migrated before the dispatcher opens it
        else:
            queue = SQLiteQueue(dispatcher.database)
            queue.migrate()
        try:
            dispatcher.start()
            request = JobRequest(namespace="bench", job_type="latency", source=Source.CLI)

            def enqueue() -> int | None:
                result = queue.enqueue(request)
                return None if result.coalesced else result.job.id

            measured = latency.measure(
                enqueue, starts, jobs=plan.latency_jobs, gap=plan.gap, alive=dispatcher.check_alive
            )
        finally:
            queue.close()
        dispatcher.check_alive()
    return measured


def latency_figures(
    pg: latency.Measured, lite: latency.Measured, bare: list[float]
) -> list[Figure]:
    ms = pg.latencies
    figures = [
        Figure("2 latency: p50", percentile(ms, 50), " ms", None, False, 2),
        Figure("2 latency: p90", percentile(ms, 90), " ms", None, False, 2),
        Figure("2 latency: p99", percentile(ms, 99), " ms", None, False, 2),
        Figure("2 latency: max", max(ms), " ms", None, False, 2),
        Figure(
            "2 latency: enqueue call itself, p50",
            percentile(pg.enqueue_ms, 50),
            " ms",
            None,
            False,
            2,
            note="not part of the latency",
        ),
        Figure(
            "2 latency: SQLite, same run, p50",
            percentile(lite.latencies, 50),
            " ms",
            None,
            False,
            2,
            note=f"reference: p99 {percentile(lite.latencies, 99):.2f} ms",
        ),
        Figure(
            "2 latency: bare Popen -> child started, p50",
            percentile(bare, 50),
            " ms",
            None,
            False,
            2,
            note="reference: bash's own start-up, no queue",
        ),
    ]
    coalesced = pg.coalesced + lite.coalesced
    if coalesced:
        figures.append(
            Figure(
                "2 latency: jobs coalesced (not measured)",
                coalesced,
                "",
                None,
                False,
                note=f"PostgreSQL {pg.coalesced}, SQLite {lite.coalesced}: merged into a job "
                "still queued 20 ms later",
            )
        )
    return figures


# -- 3. scale-out ----------------------------------------------------------------------


@dataclass
class Throughput:
    rate: float  # jobs/s, first claim to last finish
    enqueue_rate: float  # jobs/s enqueued, one transaction each
    per_worker: list[int]  # jobs each process ran


def count_finished(url: str) -> int:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM jobs WHERE finished_at IS NOT NULL").fetchone()
    return int(row[0]) if row else 0


def enqueue_types(queue: Queue, names: Sequence[str]) -> float:
    """Enqueue one job of each type, one transaction each; jobs/s."""
    start = time.perf_counter()
    for name in names:
        queue.enqueue(type_request(name))
    return len(names) / (time.perf_counter() - start)


def finished_rate(queue: Queue, ids_above: int, jobs: int) -> Throughput:
    done = [j for j in queue.jobs(limit=jobs * 4 + 10) if j.id > ids_above]
    ok = [j for j in done if j.status == JobStatus.SUCCEEDED]
    if len(ok) != jobs:
        raise BenchmarkError(f"only {len(ok)} of {jobs} jobs succeeded")
    first = min(j.started_at for j in ok if j.started_at is not None)
    last = max(j.finished_at for j in ok if j.finished_at is not None)
    workers: dict[str, int] = {}
    for job in ok:
        workers[job.worker_id or "?"] = workers.get(job.worker_id or "?", 0) + 1
    return Throughput(jobs / (last - first), 0.0, sorted(workers.values(), reverse=True))


def scale_out(home: Path, url: str, plan: Plan, processes: int) -> Throughput:
    """`plan.jobs` `true` jobs through `processes` real dispatchers on one database."""
    (home / "workspace" / "bench").mkdir(parents=True)
    types = distinct_types(plan.jobs)
    configs = home / "job_configs.py"
    write_job_configs(
        configs, {name: {"run_args_template": "true", "report_success": False} for name in types}
    )
    queue = statbot_queue(url, home)
    try:
        enqueue_rate = enqueue_types(queue, types)
        dispatchers = [
            DispatcherProcess(
                home / f"d{k}",
                DATABASE_URL=url,
                STATE_DIR=str(home / f"d{k}" / "var"),
                WORKSPACE_DIR=str(home / "workspace"),
                JOB_CONFIGS=str(configs),
                DISPATCHER_CONCURRENCY=str(plan.concurrency),
            )
            for k in range(processes)
        ]
        try:
            for dispatcher in dispatchers:
                dispatcher.home.mkdir()
                dispatcher.start(wait_ready=False)

            def finished() -> bool:
                for dispatcher in dispatchers:
                    dispatcher.check_alive()
                return count_finished(url) >= plan.jobs

            wait_until(finished, plan.timeout, f"{plan.jobs} jobs to finish", interval=0.1)
        finally:
            for dispatcher in dispatchers:
                dispatcher.stop()
        result = finished_rate(queue, 0, plan.jobs)
    finally:
        queue.close()
    return replace(result, enqueue_rate=enqueue_rate)


def scale_figures(
    pg: dict[int, Throughput], lite: float, bares: list[float], concurrency: int
) -> list[Figure]:
    one = pg[min(pg)].rate
    bare = statistics.mean(bares)
    figures = []
    for processes, result in sorted(pg.items()):
        shares = "/".join(str(n) for n in result.per_worker)
        figures.append(
            Figure(
                f"3 scale: {processes} dispatcher{'s' if processes > 1 else ''} jobs/s",
                result.rate,
                "/s",
                note=f"{result.rate / one:.2f}x one; {result.rate / bare:.2f} of bare; "
                f"jobs per process {shares}",
            )
        )
    figures += [
        Figure(
            "3 scale: SQLite, 1 dispatcher, same jobs",
            lite,
            "/s",
            note=f"reference: PostgreSQL 1 dispatcher is {one / lite:.2f} of it",
        ),
        Figure(
            f"3 scale: bare asyncio bash -c true, c={concurrency}",
            bare,
            "/s",
            note="reference: " + ", ".join(f"{b:,.0f}" for b in bares),
        ),
    ]
    return figures


# -- 4. beside procrastinate -----------------------------------------------------------


@dataclass
class Round:
    statbot_enqueue: float
    statbot_rate: float
    proc_defer: float
    proc_rate: float


def statbot_queue_only(
    home: Path, queue: Queue, url: str, plan: Plan, offset: int, kind: str = "statbot-drain"
) -> tuple[float, float]:
    """Enqueue `plan.jobs`, then drain them in a queue-only worker: (enqueue/s, jobs/s)."""
    last = max((j.id for j in queue.jobs(limit=1)), default=0)
    enqueue_rate = enqueue_types(queue, distinct_types(plan.jobs, offset))
    worker = WorkerProcess(home, kind, url, plan.concurrency)
    with worker:
        worker.wait(plan.timeout)
    return enqueue_rate, finished_rate(queue, last, plan.jobs).rate


def procrastinate_drain(
    home: Path, side: ProcrastinateSide, task: str, plan: Plan
) -> tuple[float, float]:
    """Defer `plan.jobs` of `task`, then run procrastinate's worker until none is left."""
    last = side.last_job_id()
    defer_rate = plan.jobs / side.defer(task, plan.jobs)
    with WorkerProcess(home, "procrastinate-drain", side.url, plan.concurrency) as worker:
        worker.wait(plan.timeout)
    count, seconds = side.processed(last)
    if count != plan.jobs:
        raise BenchmarkError(f"procrastinate: {count} of {plan.jobs} {task} jobs succeeded")
    return defer_rate, plan.jobs / seconds


def served_latency(
    home: Path, kind: str, url: str, plan: Plan, enqueue: Callable[[], int | None]
) -> latency.Measured:
    """latency.measure against an idle worker process of `kind` (a `serve` one)."""
    stamps = home / f"{kind}.stamps"
    with WorkerProcess(home, kind, url, plan.concurrency, stamps) as worker:
        # Up when it has run a first job; then the usual warm-up and the measured jobs.
        first = enqueue()
        wait_until(
            lambda: worker.check_alive() or first in latency.read_stamps(stamps),
            30,
            f"the {kind} worker to start",
        )
        return latency.measure(
            enqueue, stamps, jobs=plan.latency_jobs, gap=plan.gap, alive=worker.check_alive
        )


def versus_figures(
    rounds: list[Round],
    each_rate: float,
    full: Throughput,
    proc_full: float,
    lat: dict[str, latency.Measured],
    concurrency: int,
) -> list[Figure]:
    c = concurrency
    ratios = [r.statbot_rate / r.proc_rate for r in rounds]
    sb_rate = statistics.median(r.statbot_rate for r in rounds)
    proc_rate = statistics.median(r.proc_rate for r in rounds)
    proc_p50 = percentile(lat["procrastinate"].latencies, 50)
    shown = ", ".join(f"{r:.2f}" for r in ratios)
    return [
        Figure(
            "4 enqueue, 1 txn each: PostgresQueue",
            statistics.median(r.statbot_enqueue for r in rounds),
            "/s",
            note="information",
        ),
        Figure(
            "4 defer, 1 txn each: procrastinate",
            statistics.median(r.proc_defer for r in rounds),
            "/s",
            note="information",
        ),
        Figure(
            f"4 queue only, c={c}: STAT bot claim+finish",
            sb_rate,
            "/s",
            note=", ".join(f"{r.statbot_rate:,.0f}" for r in rounds)
            + "; claim up to c, their ends in 1 txn (the dispatcher's group commit)",
        ),
        Figure(
            f"4 queue only, c={c}: the same, 1 txn per end",
            each_rate,
            "/s",
            note=f"information: {each_rate / proc_rate:.2f}x procrastinate (one run)",
        ),
        Figure(
            f"4 queue only, c={c}: procrastinate no-op task",
            proc_rate,
            "/s",
            note=", ".join(f"{r.proc_rate:,.0f}" for r in rounds) + f"; {PROCRASTINATE_EARLIER}",
        ),
        Figure(
            "4 queue only: STAT bot / procrastinate",
            statistics.median(ratios),
            "x",
            TARGET_VS_PROCRASTINATE,
            digits=2,
            note=f"THE throughput target (same work: no process); rounds {shown}",
        ),
        Figure(
            f"4 full, c={c}: STAT bot dispatcher, `true` in bash",
            full.rate,
            "/s",
            note="part 3, one dispatcher: a process, log files and 2 log lines a job",
        ),
        Figure(
            f"4 full, c={c}: procrastinate task spawning bash",
            proc_full,
            "/s",
            note=f"information: STAT bot full is {full.rate / proc_full:.2f}x it",
        ),
        Figure(
            "4 full STAT bot / procrastinate no-op",
            full.rate / proc_rate,
            "x",
            digits=2,
            note="information: a real process per job against none",
        ),
        Figure(
            "4 latency p50: procrastinate defer -> task",
            proc_p50,
            " ms",
            None,
            False,
            2,
            note=f"p99 {percentile(lat['procrastinate'].latencies, 99):.2f} ms; reference",
        ),
        Figure(
            "4 latency p50: STAT bot enqueue -> claimed",
            percentile(lat["queue only"].latencies, 50),
            " ms",
            proc_p50,
            False,
            2,
            note=f"queue only; p99 {percentile(lat['queue only'].latencies, 99):.2f} ms",
        ),
        Figure(
            "4 latency p50: STAT bot enqueue -> bash up",
            percentile(lat["full"].latencies, 50),
            " ms",
            proc_p50,
            False,
            2,
            note="full: part 2's p50, bash started",
        ),
    ]


# -- the whole run ---------------------------------------------------------------------


def run(home: Path, *, plan: Plan | None = None, quick: bool = False) -> tuple[str, list[Figure]]:
    plan = plan or (QUICK if quick else Plan())
    configure_logging("WARNING")  # not the queue's "migrated" lines for every database
    problem = server_problem()
    if problem:
        raise BenchmarkSkipError(f"{problem} (set TEST_DATABASE_URL)")
    files_us = file_cost(home / "files", 100)
    with databases() as make:
        facts = server_facts(make("facts"))
        figures = queue_cycle(make, home / "cycle", plan)

        # 2. latency on PostgreSQL, then the same on SQLite, then bash alone.
        full_latency = dispatched_latency(home / "latency-pg", make("latency"), plan)
        lite_latency = dispatched_latency(home / "latency-sqlite", None, plan)
        bare_popen = latency.bare_starts(home / "latency-sqlite", gap=plan.gap)
        figures += latency_figures(full_latency, lite_latency, bare_popen)

        # 3. scale-out, between two bare spawn runs; SQLite's one dispatcher beside it.
        bares = [spawn.bare(plan.jobs, plan.concurrency, "default", plan.timeout)[0]]
        scaled = {
            n: scale_out(home / f"scale{n}", make(f"scale{n}"), plan, n) for n in plan.dispatchers
        }
        lite = spawn.dispatched(home / "scale-sqlite", plan.jobs, plan.concurrency, plan.timeout)[0]
        bares.append(spawn.bare(plan.jobs, plan.concurrency, "default", plan.timeout)[0])
        figures += scale_figures(scaled, lite, bares, plan.concurrency)

        # 4. beside procrastinate: alternating rounds of the same work.
        proc = ProcrastinateSide(make("procrastinate"), plan.concurrency)
        queue_url = make("queue_only")
        queue = statbot_queue(queue_url, home / "queue-only")
        try:
            rounds = []
            for n in range(plan.rounds):
                defer_rate, proc_rate = procrastinate_drain(home / "proc", proc, "noop", plan)
                enqueue_rate, sb_rate = statbot_queue_only(
                    home / "queue-only", queue, queue_url, plan, n * plan.jobs
                )
                rounds.append(Round(enqueue_rate, sb_rate, defer_rate, proc_rate))
            _, each_rate = statbot_queue_only(
                home / "queue-only",
                queue,
                queue_url,
                plan,
                plan.rounds * plan.jobs,
                "statbot-drain-each",
            )
            _, proc_full = procrastinate_drain(home / "proc", proc, "bash_true", plan)
            lat = {
                "procrastinate": served_latency(
                    home / "proc",
                    "procrastinate-serve",
                    proc.url,
                    plan,
                    lambda: proc.defer_one("stamp"),
                ),
                "queue only": served_latency(
                    home / "queue-only",
                    "statbot-serve",
                    queue_url,
                    plan,
                    lambda: queue.enqueue(type_request("latency")).job.id,
                ),
                "full": full_latency,
            }
        finally:
            queue.close()
            proc.close()
        figures += versus_figures(
            rounds, each_rate, scaled[min(scaled)], proc_full, lat, plan.concurrency
        )
    figures.append(file_figure(files_us))
    title = (
        f"PostgreSQL (issue 12) on {facts}: 1 queue cycle ({plan.cycle_jobs:,} jobs); "
        f"2 dispatch latency ({plan.latency_jobs} jobs {plan.gap * 1000:g} ms apart, idle, "
        f"LISTEN/NOTIFY); 3 {plan.jobs:,} `true` jobs through "
        f"{'/'.join(map(str, plan.dispatchers))} dispatchers at concurrency {plan.concurrency}; "
        f"4 beside procrastinate 3, {plan.jobs:,} jobs a round, {plan.rounds} round(s)"
        + (" [QUICK: smoke run, figures not to be trusted]" if plan.quick else "")
    )
    return title, figures
