"""Scale-out and faults: several dispatchers and enqueuers on one database, killed and skewed.

What these tests hold the queue to, with real processes on a real database:

- 3 dispatchers and 4 enqueuing processes, 5,000 jobs of a few types, one dispatcher
  killed with SIGKILL mid-run: without retries every job ends exactly once (succeeded,
  or lost with a note, never run twice); with retries every job succeeds at least once;
  no type ever runs more jobs at once than its concurrency; nothing is left `running`.
- Over-admission: dispatchers and bare `claim` callers racing on a type with
  concurrency 1 (and 2) never exceed it.
- A PostgreSQL server restarted (fast) and crashed (immediate stop + start) under a
  running dispatcher and enqueuer: both reconnect by themselves and every job whose
  enqueue returned ends succeeded.
- Two dispatchers whose host clocks are 5 minutes fast and 5 minutes slow: neither
  takes the other for dead, a per-second schedule fires once per second of the
  database's clock, and `stat-bot status` shows fresh heartbeats.

Jobs record themselves: each appends `start|end <type> <job id> <time>` to one file
(bash's `>>` opens it O_APPEND, so lines from concurrent jobs never interleave), the
time being bash's $EPOCHREALTIME: one clock (this machine's), read without a fork.
The record is inline in each job's template rather than a workspace script so a job
costs one bash, not two: 5,000 of them must run on a busy 2-core machine.

Where a test means the same on both backends it runs on SQLite and PostgreSQL (the
shared test server), as every integration test does (tests/conftest.py, `database_url`);
the restart and clock tests are PostgreSQL's alone (its own cluster, tests/pg_cluster.py;
one database clock for every host).
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from stat_bot.dispatcher.runner import process_is_job
from stat_bot.jobs.model import Job, JobStatus
from stat_bot.queue import Queue, QueueError, open_queue
from stat_bot.settings import Settings
from tests.conftest import STAT_BOT
from tests.integration.conftest import DispatcherProcess, overlap, wait_until
from tests.pg_cluster import PgCluster, pg_cluster  # noqa: F401

pytestmark = [pytest.mark.scale, pytest.mark.slow]

TIMES = "times"  # the file in WRITEABLE_DIR jobs record themselves in


def recording(sleep: float = 0.0) -> str:
    """A job template that records its start and end (and sleeps `sleep` s between)."""
    line = '"{kind} $STAT_BOT_JOB_TYPE $STAT_BOT_JOB_ID $EPOCHREALTIME" >> "$WRITEABLE_DIR/times"'
    middle = f"sleep {sleep}; " if sleep else ""
    start, end = (line.replace("{kind}", kind) for kind in ("start", "end"))
    return f"echo {start}; {middle}echo {end}"


def job_type(sleep: float, concurrency: int, retries: int) -> dict[str, Any]:
    return {
        "run_args_template": recording(sleep),
        "concurrency": concurrency,
        "coalesce": False,
        "retries": retries,
        "report_success": False,
        "report_stdout": False,
    }


# -- what the jobs recorded ------------------------------------------------------------------


@dataclass
class Times:
    """The start and end lines jobs wrote, by job id."""

    starts: dict[int, list[float]] = field(default_factory=lambda: collections.defaultdict(list))
    ends: dict[int, list[float]] = field(default_factory=lambda: collections.defaultdict(list))
    types: dict[int, str] = field(default_factory=dict)

    @classmethod
    def read(cls, path: Path) -> Times:
        times = cls()
        if not path.exists():
            return times
        for line in path.read_text().splitlines():
            kind, type_, job_id, stamp = line.split()
            times.types[int(job_id)] = type_
            (times.starts if kind == "start" else times.ends)[int(job_id)].append(float(stamp))
        return times

    def intervals(self) -> tuple[dict[str, list[tuple[float, float]]], list[int]]:
        """Each attempt's (start, end) by type, and the ids of attempts killed before their end.

        An attempt is a start and the first end after it; a start followed by another
        start (or by nothing) never ended by itself: its process was killed.
        """
        by_type: dict[str, list[tuple[float, float]]] = collections.defaultdict(list)
        killed: list[int] = []
        for job_id, starts in self.starts.items():
            events = sorted([(t, 1) for t in starts] + [(t, -1) for t in self.ends.get(job_id, [])])
            opened: float | None = None
            for stamp, step in events:
                if step == 1:
                    if opened is not None:
                        killed.append(job_id)
                    opened = stamp
                else:
                    assert opened is not None, f"job #{job_id} ended without a start: {events}"
                    by_type[self.types[job_id]].append((opened, stamp))
                    opened = None
            if opened is not None:
                killed.append(job_id)
        return by_type, killed


def assert_within_limits(times: Times, limits: dict[str, int]) -> dict[str, int]:
    """No type ran more jobs at once than its concurrency; the largest overlap by type."""
    intervals, _ = times.intervals()
    seen = {type_: overlap(spans) for type_, spans in intervals.items()}
    over = {t: (seen[t], limit) for t, limit in limits.items() if seen.get(t, 0) > limit}
    assert not over, f"types that ran more jobs at once than their concurrency: {over}"
    return seen


# -- a database on either backend -------------------------------------------------------------


def safely(fn: Callable[[], Any]) -> Any:
    """`fn()`, or None while the database is away (a test's own look must not fail it)."""
    try:
        return fn()
    except QueueError:
        return None


def unfinished(queue: Queue) -> int | None:
    """How many jobs are queued or running (None: the database could not be asked)."""
    counts = safely(queue.job_counts)
    if counts is None:
        return None
    return sum(c.count for c in counts if not c.status.finished)


def finished_count(queue: Queue, status: JobStatus = JobStatus.SUCCEEDED) -> int:
    counts = safely(queue.job_counts) or []
    return sum(c.count for c in counts if c.status is status)


def all_jobs(queue: Queue) -> list[Job]:
    return queue.jobs(limit=1_000_000)


# -- dispatchers and enqueuers as processes ----------------------------------------------------


class Fleet:
    """`stat-bot dispatcher` and enqueuer processes on one database; all stopped at the end."""

    def __init__(self, env: dict[str, str], home: Path, tmp_path: Path, queue: Queue) -> None:
        self.env = env
        self.home = home
        self.tmp_path = tmp_path
        self.queue = queue
        self.dispatchers: list[DispatcherProcess] = []
        self.enqueuers: list[Enqueuer] = []

    def dispatcher(self, wait: bool = True, **env: str) -> DispatcherProcess:
        n = len(self.dispatchers)
        out, err = self.tmp_path / f"dispatcher-{n}.out", self.tmp_path / f"dispatcher-{n}.err"
        with out.open("wb") as stdout, err.open("wb") as stderr:
            proc = subprocess.Popen(
                [STAT_BOT, "dispatcher"],
                cwd=self.home,
                env={**self.env, **env},
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
            )
        dispatcher = DispatcherProcess(proc, out, err)
        self.dispatchers.append(dispatcher)
        if wait:
            self.wait_ready(dispatcher)
        return dispatcher

    def wait_ready(self, dispatcher: DispatcherProcess, timeout: float = 60.0) -> None:
        """Until the dispatcher has registered in the queue (seen there, whatever its
        LOG_LEVEL); fails at once if it exited."""

        def registered() -> bool:
            if dispatcher.proc.poll() is not None:
                raise AssertionError(
                    f"dispatcher exited with {dispatcher.proc.returncode}:\n{dispatcher.stderr()}"
                )
            return any(w.pid == dispatcher.pid for w in safely(self.queue.workers) or [])

        wait_until(registered, timeout, interval=0.1, what="the dispatcher to register")

    def enqueuer(self, **options: Any) -> Enqueuer:
        n = len(self.enqueuers)
        enqueuer = Enqueuer.start(self, n, options)
        self.enqueuers.append(enqueuer)
        return enqueuer

    def kill_leftover_jobs(self) -> None:
        """SIGKILL what still runs of any job the database says is running."""
        for job in safely(self.queue.running_jobs) or []:
            if job.pid and process_is_job(job.pid, job.id):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(job.pid, signal.SIGKILL)

    def stop(self) -> None:
        for enqueuer in self.enqueuers:
            enqueuer.kill()
        self.kill_leftover_jobs()
        for dispatcher in self.dispatchers:
            if dispatcher.proc.poll() is None:
                dispatcher.proc.send_signal(signal.SIGTERM)
        for dispatcher in self.dispatchers:
            try:
                dispatcher.proc.wait(20)
            except subprocess.TimeoutExpired:
                dispatcher.proc.kill()
                dispatcher.proc.wait(10)
        self.kill_leftover_jobs()


ENQUEUER = textwrap.dedent(
    """
    import json, sys, time, traceback
    from pathlib import Path
    from stat_bot.jobs.config import load_config
    from stat_bot.jobs.model import Source
    from stat_bot.jobs.requests import build_request
    from stat_bot.queue import QueueError, open_queue
    from stat_bot.settings import load_settings

    options = json.loads(sys.argv[1])
    settings = load_settings()  # DATABASE_URL, JOB_CONFIGS, ... from the environment
    configs = load_config(settings.job_configs)
    namespace = configs.namespaces["t"]
    queue = open_queue(settings)
    go, stop = Path(options["go"]), Path(options["stop"])
    while not go.exists():  # every enqueuer starts at once
        time.sleep(0.005)

    def plan():
        if options["plan"] is not None:
            yield from options["plan"]
            return
        n = 0
        while not stop.exists():
            yield options["types"][n % len(options["types"])], f"{options['name']}-{n}"
            n += 1
            time.sleep(options["interval"])

    stats = {"enqueued": 0, "queue_errors": 0, "other_errors": [], "gave_up": []}
    with open(options["out"], "a", buffering=1) as out:
        for job_type, label in plan():
            request = build_request(namespace, job_type, source=Source.CLI, args={"n": label},
                                    user="enqueuer")
            deadline = time.monotonic() + options["retry_for"]
            while True:
                try:
                    job = queue.enqueue(request).job
                except QueueError:
                    stats["queue_errors"] += 1
                except Exception:  # the interface promises QueueError for database faults
                    stats["other_errors"].append(traceback.format_exc(limit=3))
                else:
                    out.write(f"{label} {job.id}\\n")
                    stats["enqueued"] += 1
                    break
                if time.monotonic() > deadline:
                    stats["gave_up"].append(label)
                    break
                time.sleep(0.05)
    queue.close()
    print(json.dumps(stats))
    """
)


@dataclass
class Enqueuer:
    """An enqueuing process: a plan of (type, label) jobs, or a steady stream until told to stop.

    Each enqueue that returned is a line `label job_id` in `out`; an enqueue that raised
    QueueError is retried (for `retry_for` s) and counted.
    """

    proc: subprocess.Popen[bytes]
    out: Path
    stdout_path: Path
    stderr_path: Path
    go: Path
    stop_file: Path

    @classmethod
    def start(cls, fleet: Fleet, n: int, options: dict[str, Any]) -> Enqueuer:
        tmp = fleet.tmp_path
        values = {
            "plan": None,
            "types": [],
            "interval": 0.02,
            "retry_for": 60.0,
            "name": f"e{n}",
            "go": str(tmp / "go"),
            "stop": str(tmp / f"stop-{n}"),
            "out": str(tmp / f"enqueued-{n}"),
            **options,
        }
        stdout, stderr = tmp / f"enqueuer-{n}.out", tmp / f"enqueuer-{n}.err"
        with stdout.open("wb") as out, stderr.open("wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-c", ENQUEUER, json.dumps(values)],
                cwd=fleet.home,
                env=fleet.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
            )
        return cls(
            proc, Path(values["out"]), stdout, stderr, Path(values["go"]), Path(values["stop"])
        )

    def enqueued(self) -> dict[str, list[int]]:
        """Job ids by label of the enqueues that returned so far."""
        ids: dict[str, list[int]] = collections.defaultdict(list)
        if self.out.exists():
            for line in self.out.read_text().splitlines():
                if line.count(" ") == 1 and line.endswith(tuple("0123456789")):
                    label, job_id = line.split()
                    ids[label].append(int(job_id))
        return ids

    def finish(self, timeout: float = 120.0) -> dict[str, Any]:
        """Tell a streaming enqueuer to stop; wait; its statistics."""
        self.stop_file.touch()
        code = self.proc.wait(timeout)
        assert code == 0, f"enqueuer exited with {code}:\n{self.stderr_path.read_text()}"
        # The last line: the queue's log (a failed NOTIFY, say) may print before it.
        stats: dict[str, Any] = json.loads(self.stdout_path.read_text().splitlines()[-1])
        return stats

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def make_fleet(
    cli_env: dict[str, str], home: Path, tmp_path: Path, make_settings: Callable[..., Settings]
) -> Iterator[Callable[..., tuple[Fleet, Queue]]]:
    """`make_fleet(url, **env)`: a Fleet on the database `url` and the test's own queue on it."""
    made: list[tuple[Fleet, Queue]] = []

    def make(url: str, **env: str) -> tuple[Fleet, Queue]:
        settings = make_settings(database_url=url)
        queue = open_queue(settings)
        fleet = Fleet({**cli_env, "DATABASE_URL": url, **env}, home, tmp_path, queue)
        made.append((fleet, queue))
        return fleet, queue

    yield make
    for fleet, queue in made:
        fleet.stop()
        queue.close()


def no_tracebacks(dispatcher: DispatcherProcess) -> None:
    """The dispatcher logged no exception: database faults are QueueErrors, said in words."""
    failures = [e for e in dispatcher.events() if "exception" in e]
    assert not failures, json.dumps(failures[:3], indent=1)
    assert "Traceback" not in dispatcher.stderr()


# -- a. three dispatchers, four enqueuers, 5,000 jobs, one dispatcher killed ------------------

DISPATCHERS = 3
ENQUEUERS = 4
PER_DISPATCHER = 8
# type: (count, sleep, concurrency)
MIX = {
    "bulk": (4640, 0.0, 64),
    "one": (150, 0.02, 1),
    "two": (150, 0.02, 2),
    "slow": (60, 0.5, 3),
}
TOTAL = sum(count for count, _, _ in MIX.values())


@pytest.mark.timeout(420)  # 60-140 s here; a slower day must not cut it short
# PostgreSQL, the backend for scale-out, only: each run is ~15,000 processes (about a
# minute here); SQLite's lost and re-queued jobs are tested in test_lost_jobs.py.
@pytest.mark.parametrize(
    ("database_url", "retries"),
    [("postgres", 0), ("postgres", 2)],
    ids=["postgres-no-retries", "postgres-retries"],
    indirect=["database_url"],
)
def test_three_dispatchers_four_enqueuers_one_killed(
    database_url: str, retries: int, configure, make_fleet, settings: Settings, tmp_path: Path
) -> None:
    assert TOTAL == 5000
    configure(
        {
            "t": {
                "jobs": {
                    name: job_type(sleep, concurrency, retries)
                    for name, (_, sleep, concurrency) in MIX.items()
                }
            }
        }
    )
    fleet, queue = make_fleet(
        # WARNING: 10,000 "job started/finished" lines cost CPU this test needs for its jobs.
        database_url,
        DISPATCHER_CONCURRENCY=str(PER_DISPATCHER),
        LOG_LEVEL="WARNING",
    )
    dispatchers = [fleet.dispatcher(wait=False) for _ in range(DISPATCHERS)]
    for dispatcher in dispatchers:
        fleet.wait_ready(dispatcher)

    plan = [[name, f"{name}-{i}"] for name, (count, _, _) in MIX.items() for i in range(count)]
    random.Random(12).shuffle(plan)
    enqueuers = [fleet.enqueuer(plan=plan[p::ENQUEUERS]) for p in range(ENQUEUERS)]
    started = time.monotonic()
    (tmp_path / "go").touch()

    # Kill one dispatcher while it runs jobs (with thousands queued it always has some;
    # without retries they must end lost, not run twice), preferably a slow one, whose
    # process outlives it and must be killed by the peer that recovers it.
    victim = dispatchers[0]
    prefer_slow_until = time.monotonic() + 30

    def victim_busy() -> bool:
        if finished_count(queue) < 300:
            return False
        pid = str(victim.pid)
        running = [
            j
            for j in safely(queue.running_jobs) or []
            if j.worker_id is not None and j.worker_id.split(":")[1] == pid
        ]
        slow = any(j.job_type == "slow" for j in running)
        return bool(running) and (slow or time.monotonic() > prefer_slow_until)

    wait_until(victim_busy, timeout=150, interval=0.05, what="the victim to run jobs")
    (victim_id,) = [w.id for w in queue.workers() if w.pid == victim.pid]
    victim.kill()
    killed_at = time.monotonic() - started
    killed_wall = time.time()  # the clock jobs record with ($EPOCHREALTIME)

    for enqueuer in enqueuers:
        stats = enqueuer.finish()
        assert stats["queue_errors"] == 0, stats
        assert not stats["other_errors"], stats
    enqueued_in = time.monotonic() - started
    wait_until(lambda: unfinished(queue) == 0, timeout=240, interval=0.5, what="every job to end")
    elapsed = time.monotonic() - started
    for dispatcher in dispatchers[1:]:
        assert dispatcher.terminate() == 0, dispatcher.stderr()
        no_tracebacks(dispatcher)

    jobs = all_jobs(queue)
    assert len(jobs) == TOTAL
    assert len({j.args["n"] for j in jobs}) == TOTAL  # every enqueue arrived once
    enqueued = {}
    for enqueuer in enqueuers:
        for label, ids in enqueuer.enqueued().items():
            assert len(ids) == 1
            enqueued[label] = ids[0]
    assert len(enqueued) == TOTAL

    statuses = collections.Counter(j.status for j in jobs)
    times = Times.read(settings.writeable_dir / TIMES)
    victims = [j for j in jobs if j.attempts > 1 or j.status is JobStatus.LOST]
    if retries == 0:
        assert set(statuses) <= {JobStatus.SUCCEEDED, JobStatus.LOST}, statuses
        lost = [j for j in jobs if j.status is JobStatus.LOST]
        # Only what the killed dispatcher ran when it died: its running jobs, and any it
        # had ended but not yet recorded (a slot is free before its end is committed, so
        # these may be more than its DISPATCHER_CONCURRENCY).
        assert lost
        assert all(f"lost: dispatcher {victim_id} " in (j.note or "") for j in lost), lost
        assert {j.attempts for j in jobs} == {1}
        for j in jobs:
            runs = len(times.starts.get(j.id, []))
            if j.status is JobStatus.SUCCEEDED:
                assert (runs, len(times.ends.get(j.id, []))) == (1, 1), j
            else:
                assert runs <= 1, f"a lost job ran {runs} times: {j}"
    else:
        assert statuses == {JobStatus.SUCCEEDED: TOTAL}, statuses
        assert victims
        assert all(j.attempts == 2 for j in victims), victims
        for j in victims:  # run again only after its dispatcher died
            assert max(times.starts[j.id]) > killed_wall, (j, times.starts[j.id], killed_wall)
        for j in jobs:
            assert 1 <= len(times.starts.get(j.id, [])) <= j.attempts, j
            assert len(times.ends.get(j.id, [])) >= 1, j

    limits = {name: concurrency for name, (_, _, concurrency) in MIX.items()}
    seen = assert_within_limits(times, limits)
    _, killed = times.intervals()
    # Only attempts of the killed dispatcher's jobs can have been cut short.
    assert set(killed) <= {j.id for j in victims}, (killed, victims)
    assert not safely(queue.running_jobs)
    print(
        f"\n{database_url.split(':')[0]} retries={retries}: {TOTAL} jobs in {elapsed:.1f} s "
        f"(all enqueued after {enqueued_in:.1f} s), "
        f"dispatcher killed at {killed_at:.1f} s; statuses {dict(statuses)}; "
        f"recovered {len(victims)}; cut short {len(killed)}; largest overlap by type {seen}"
    )


# -- b. over-admission: racing dispatchers and racing claims ---------------------------------


def test_two_dispatchers_claiming_at_once_never_exceed_a_types_concurrency(
    database_url: str, configure, make_fleet, settings: Settings
) -> None:
    configure(
        {
            "t": {
                "jobs": {
                    "one": job_type(0.05, 1, 0),
                    "two": job_type(0.05, 2, 0),
                    "many": job_type(0.05, 6, 0),
                }
            }
        }
    )
    fleet, queue = make_fleet(database_url, DISPATCHER_CONCURRENCY="8")
    first, second = fleet.dispatcher(wait=False), fleet.dispatcher(wait=False)
    fleet.wait_ready(first)
    fleet.wait_ready(second)
    # Both are idle and listening: each burst wakes both at the same instant.
    enqueuer = fleet.enqueuer(
        plan=[[name, f"{name}-{i}"] for i in range(40) for name in ("one", "two", "many")]
    )
    (fleet.tmp_path / "go").touch()
    stats = enqueuer.finish()
    assert stats["enqueued"] == 120, stats
    wait_until(lambda: unfinished(queue) == 0, timeout=90, interval=0.2, what="every job to end")

    jobs = all_jobs(queue)
    assert collections.Counter(j.status for j in jobs) == {JobStatus.SUCCEEDED: 120}
    times = Times.read(settings.writeable_dir / TIMES)
    seen = assert_within_limits(times, {"one": 1, "two": 2, "many": 6})
    # The limits were reached, not avoided.
    assert seen["two"] == 2, seen
    assert seen["many"] >= 3, seen
    workers = collections.Counter(j.worker_id.split(":")[1] for j in jobs if j.worker_id)
    assert set(workers) == {str(first.pid), str(second.pid)}, workers  # both took part
    for dispatcher in (first, second):
        assert dispatcher.terminate() == 0
        no_tracebacks(dispatcher)


CLAIMER = textwrap.dedent(
    """
    import collections, json, os, random, socket, sys, time
    from pathlib import Path
    from stat_bot.jobs.model import JobStatus
    from stat_bot.queue import open_queue
    from stat_bot.settings import load_settings

    go, limits = Path(sys.argv[1]), json.loads(sys.argv[2])
    queue = open_queue(load_settings())
    worker = f"claimer:{os.getpid()}"
    queue.register_worker(worker, socket.gethostname(), os.getpid())
    while not go.exists():
        time.sleep(0.002)
    held, violations, claims = [], [], 0
    while True:
        jobs = queue.claim(worker, 3)
        claims += 1
        if not jobs:
            counts = queue.job_counts()
            if not any(c.status is JobStatus.QUEUED for c in counts):
                break
            time.sleep(0.001)
            continue
        claimed = time.monotonic()
        # What the database says runs now, by type: never more than the type's limit.
        running = collections.Counter(j.job_type for j in queue.running_jobs())
        violations += [[t, n] for t, n in running.items() if n > limits[t]]
        time.sleep(0.002)
        released = time.monotonic()
        for job in jobs:
            queue.finish(job.id, JobStatus.SUCCEEDED, 0)
            held.append([job.job_type, job.id, claimed, released])
        # A pause between rounds: SQLite's busy wait backs off, so a claimer looping
        # without one could take every job while the others sleep, and nothing would race.
        time.sleep(random.random() * 0.005)
    queue.unregister_worker(worker)
    queue.close()
    print(json.dumps({"held": held, "violations": violations, "claims": claims}))
    """
)


def test_concurrent_claims_never_exceed_a_types_concurrency(
    database_url: str, make_fleet, configure, tmp_path: Path
) -> None:
    configure({"t": {"jobs": {"one": job_type(0, 1, 0), "two": job_type(0, 2, 0)}}})
    fleet, queue = make_fleet(database_url)
    limits = {"one": 1, "two": 2}
    enqueuer = fleet.enqueuer(
        plan=[[name, f"{name}-{i}"] for i in range(150) for name in ("one", "two")]
    )
    (tmp_path / "go").touch()
    assert enqueuer.finish()["enqueued"] == 300

    go = tmp_path / "go-claim"
    claimers = [
        subprocess.Popen(
            [sys.executable, "-c", CLAIMER, str(go), json.dumps(limits)],
            cwd=fleet.home,
            env=fleet.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(4)
    ]
    time.sleep(1.0)  # let every claimer open its connection before the start
    go.touch()
    results = []
    for claimer in claimers:
        out, err = claimer.communicate(timeout=120)
        assert claimer.returncode == 0, err.decode()
        results.append(json.loads(out.splitlines()[-1]))

    assert [v for r in results for v in r["violations"]] == []
    held = [h for r in results for h in r["held"]]
    assert sorted(h[1] for h in held) == sorted(j.id for j in all_jobs(queue))  # each once
    assert sum(1 for r in results if r["held"]) >= 2, "the claimers did not race"
    # (claim returned, finish called) lies inside each real hold: these may not overlap more.
    for name, limit in limits.items():
        spans = [(h[2], h[3]) for h in held if h[0] == name]
        assert overlap(spans) <= limit, name
    assert collections.Counter(j.status for j in all_jobs(queue)) == {JobStatus.SUCCEEDED: 300}


# -- c. the PostgreSQL server restarted and crashed under a dispatcher and an enqueuer ---------


# Its database is on its own cluster: the shared fixture's (SQLite) URL goes unused.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True, ids=["own-cluster"])
def test_dispatcher_and_enqueuer_ride_out_a_restart_and_a_crash_of_postgresql(
    pg_cluster: PgCluster,  # noqa: F811
    configure,
    make_fleet,
    settings: Settings,
) -> None:
    configure({"t": {"jobs": {"work": job_type(0.05, 4, 2)}}})
    url = pg_cluster.create_database()
    fleet, queue = make_fleet(url, DISPATCHER_CONCURRENCY="4", LOG_LEVEL="INFO")
    dispatcher = fleet.dispatcher()
    enqueuer = fleet.enqueuer(types=["work"], interval=0.02)
    (fleet.tmp_path / "go").touch()

    def progress(after: int, what: str) -> int:
        """Wait until 20 more jobs succeeded and were enqueued than `after`; the count."""

        def moved() -> int | None:
            done = finished_count(queue)
            returned = sum(len(ids) for ids in enqueuer.enqueued().values())
            return done if done >= after + 20 and returned >= after + 20 else None

        return int(wait_until(moved, timeout=60, interval=0.1, what=what))

    done = progress(0, "jobs to run before the restart")
    pg_cluster.restart()
    done = progress(done, "jobs to run after a fast restart")
    pg_cluster.crash()
    done = progress(done, "jobs to run after a crash")
    pg_cluster.crash(down_for=2.0)  # down for longer than a poll or a heartbeat
    progress(done, "jobs to run after a crash with 2 s of downtime")

    stats = enqueuer.finish()
    assert not stats["other_errors"], stats["other_errors"][0]
    assert not stats["gave_up"], stats
    wait_until(lambda: unfinished(queue) == 0, timeout=90, interval=0.2, what="every job to end")
    assert dispatcher.proc.poll() is None, "the dispatcher exited on its own"

    jobs = {j.id: j for j in all_jobs(queue)}
    returned = [ids[0] for ids in enqueuer.enqueued().values()]
    times = Times.read(settings.writeable_dir / TIMES)
    not_succeeded = [
        jobs.get(i) or i for i in returned if i not in jobs or jobs[i].status != "succeeded"
    ]
    assert not not_succeeded, not_succeeded
    for job_id in returned:
        assert times.starts.get(job_id), jobs[job_id]
        assert times.ends.get(job_id), jobs[job_id]
    # An enqueue whose commit was lost with its connection may have committed anyway: such
    # a job (retried under the same label) ran too, once more.
    extra = [j for j in jobs.values() if j.id not in set(returned)]
    assert all(j.status is JobStatus.SUCCEEDED for j in extra), extra
    assert dispatcher.terminate() == 0, dispatcher.stderr()[-3000:]
    assert not safely(queue.running_jobs)
    no_tracebacks(dispatcher)
    print(
        f"\n{len(returned)} jobs enqueued across a restart and two crashes; "
        f"{stats['queue_errors']} enqueues raised QueueError and were retried; "
        f"{len(extra)} extra jobs from enqueues that raised but committed; "
        f"attempts {dict(collections.Counter(j.attempts for j in jobs.values()))}"
    )


# -- d. two dispatchers with host clocks 5 minutes fast and 5 minutes slow ---------------------

SKEWED_CLOCK = textwrap.dedent(
    '''
    """Test only: this process's wall clock (time.time, time.time_ns) off by FAKE_CLOCK_SKEW s,
    and its host name FAKE_HOSTNAME, as if it ran on another machine whose clock is wrong."""
    import os
    import socket
    import time

    _skew = float(os.environ.get("FAKE_CLOCK_SKEW") or 0)
    if _skew:
        _time, _time_ns = time.time, time.time_ns
        time.time = lambda: _time() + _skew
        time.time_ns = lambda: _time_ns() + int(_skew * 1e9)
    if os.environ.get("FAKE_HOSTNAME"):
        socket.gethostname = lambda: os.environ["FAKE_HOSTNAME"]
    '''
)
SKEW = 300.0


@pytest.fixture
def skewed_clock(tmp_path: Path) -> Callable[[float, str], dict[str, str]]:
    """The environment of a process whose clock is off by `skew` s on host `hostname`."""
    folder = tmp_path / "skewed"
    folder.mkdir()
    (folder / "sitecustomize.py").write_text(SKEWED_CLOCK)

    def env(skew: float, hostname: str) -> dict[str, str]:
        return {"PYTHONPATH": str(folder), "FAKE_CLOCK_SKEW": str(skew), "FAKE_HOSTNAME": hostname}

    return env


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # no database involved
def test_the_skewed_clock_is_faked(skewed_clock, cli_env) -> None:
    """The fake itself: a process started with it is SKEW s ahead and on another host."""
    code = "import socket, time; print(time.time(), time.time_ns() / 1e9, socket.gethostname())"
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**cli_env, **skewed_clock(SKEW, "fast-host")},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert abs(float(out[0]) - time.time() - SKEW) < 5
    assert abs(float(out[1]) - time.time() - SKEW) < 5
    assert out[2] == "fast-host"


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)  # one clock for all hosts
def test_dispatchers_with_skewed_clocks_agree_on_the_databases_clock(
    database_url: str, configure, make_fleet, skewed_clock, settings: Settings, cli_env
) -> None:
    configure(
        {
            "t": {
                "jobs": {
                    "long": job_type(3.0, 8, 0),
                    "tick": {
                        "run_args_template": "true",
                        "coalesce": False,
                        "report_success": False,
                    },
                },
                "schedules": [{"cron": "* * * * * *", "job_type": "tick", "name": "every-second"}],
            }
        }
    )
    fleet, queue = make_fleet(database_url, DISPATCHER_CONCURRENCY="4", LOG_LEVEL="INFO")
    fast = fleet.dispatcher(wait=False, **skewed_clock(+SKEW, "host-fast"))
    slow = fleet.dispatcher(wait=False, **skewed_clock(-SKEW, "host-slow"))
    fleet.wait_ready(fast)
    fleet.wait_ready(slow)
    up_from = time.time()
    (fleet.tmp_path / "go").touch()
    enqueuer = fleet.enqueuer(plan=[["long", f"long-{i}"] for i in range(8)])
    assert enqueuer.finish()["enqueued"] == 8
    # Both run long jobs (4 each at most): each sees the other's jobs running for seconds.
    wait_until(
        lambda: len({j.worker_id for j in queue.running_jobs() if j.job_type == "long"}) == 2,
        timeout=30,
        what="both dispatchers to run long jobs",
    )

    # `stat-bot status` (on a host with the right time) shows both heartbeats fresh.
    def status(json_output: bool = True, **env: str) -> str:
        result = subprocess.run(
            [STAT_BOT, *(["--json"] if json_output else []), "status"],
            cwd=fleet.home,
            env={**fleet.env, **env},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    data = json.loads(status())
    beats = {d["hostname"]: time.time() - d["heartbeat_at"] for d in data["dispatchers"]}
    assert set(beats) == {"host-fast", "host-slow"}, data["dispatchers"]
    assert all(-2 < age < 5 for age in beats.values()), beats
    assert [d["state"] for d in data["dispatchers"]] == ["alive", "alive"], data["dispatchers"]
    # And on the skewed hosts themselves: ages by the database's clock, not theirs.
    for skew in (+SKEW, -SKEW):
        text = status(json_output=False, **skewed_clock(skew, "host-other"))
        rows = [r for r in text.splitlines() if "host-fast:" in r or "host-slow:" in r]
        assert len(rows) == 2, text
        for row in rows:
            # The last age in the row is the heartbeat's: seconds, not minutes.
            *_, (age, unit) = re.findall(r"(\d+) (s|min|h)\b", row)  # "0 s ago", "in 0 s"
            assert unit == "s", f"skew {skew:+g} s:\n{text}"
            assert int(age) < 5, f"skew {skew:+g} s:\n{text}"
            assert "stale" not in row, f"skew {skew:+g} s:\n{text}"
            assert "lost" not in row, f"skew {skew:+g} s:\n{text}"

    def long_jobs_ended() -> bool:
        jobs = [j for j in queue.jobs(limit=1000) if j.job_type == "long"]
        return all(j.status.finished for j in jobs)

    wait_until(long_jobs_ended, timeout=60, interval=0.2, what="the long jobs to end")
    up_to = time.time()
    for d in (fast, slow):
        d.proc.send_signal(signal.SIGTERM)
    for d in (fast, slow):
        assert d.proc.wait(30) == 0, d.stderr()[-3000:]
        no_tracebacks(d)
        events = [e.get("event") for e in d.events()]
        assert "job lost" not in events
        assert "job re-queued after its dispatcher was lost" not in events

    long_jobs = [j for j in queue.jobs(limit=1000) if j.job_type == "long"]
    assert {(j.status, j.attempts) for j in long_jobs} == {(JobStatus.SUCCEEDED, 1)}, long_jobs
    hosts = collections.Counter(j.worker_id.split(":")[0] for j in long_jobs if j.worker_id)
    assert hosts == {"host-fast": 4, "host-slow": 4}, hosts

    # The schedule fired once per second of the database's clock, while they ran: not five
    # minutes early (the fast host's clock) and not only once the slow host's clock got there.
    ticks = sorted(j.created_at for j in queue.jobs(limit=10000) if j.job_type == "tick")
    duplicates = [t for t, n in collections.Counter(ticks).items() if n > 1]
    assert duplicates == []
    assert ticks
    assert up_from - 2 <= ticks[0], (up_from, ticks)
    assert ticks[-1] <= up_to + 2, (ticks, up_to)
    expected = set(range(int(up_from) + 1, int(up_to)))
    assert expected <= set(ticks), sorted(expected - set(ticks))
    (row,) = queue.schedules()
    assert row.last_fired_at == ticks[-1]
