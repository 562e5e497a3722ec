"""Integration fixtures: real dispatchers (as subprocesses or on a thread), a real queue, waiting.

The queue is the test's backend (tests/conftest.py runs each test here on SQLite and
on PostgreSQL): every process a fixture starts gets its DATABASE_URL.

Every process a test starts is stopped by a finalizer even when the test fails,
and so is every job process group a killed dispatcher may have left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from stat_bot.dispatcher.runner import process_is_job
from stat_bot.dispatcher.service import Dispatcher
from stat_bot.jobs.config import JobConfigs, load_config
from stat_bot.jobs.model import Job, JobRequest, JobStatus
from stat_bot.queue import Queue, QueueError, open_queue
from stat_bot.report.notifiers import RecordingNotifier
from stat_bot.settings import Settings
from tests.conftest import STAT_BOT, cpu_seconds

T = TypeVar("T")


# -- waiting -----------------------------------------------------------------------------


def wait_until(
    predicate: Callable[[], T], timeout: float = 15.0, interval: float = 0.05, what: str = ""
) -> T:
    """Poll `predicate` until it returns something truthy; fail the test after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout:g} s waiting for {what or predicate}")
        time.sleep(interval)


def wait_status(
    queue: Queue,
    job_id: int,
    statuses: JobStatus | Iterable[JobStatus],
    timeout: float = 15.0,
) -> Job:
    """The job once it has one of `statuses`; fails with its last state after `timeout` s."""
    wanted = {statuses} if isinstance(statuses, JobStatus) else set(statuses)
    last: list[Job | None] = [None]

    def check() -> Job | None:
        job = queue.get(job_id)
        last[0] = job
        return job if job is not None and job.status in wanted else None

    try:
        return wait_until(check, timeout, what=f"job #{job_id} to be {sorted(wanted)}")
    except AssertionError as error:
        raise AssertionError(f"{error}; last seen: {last[0]}") from None


def wait_pid(queue: Queue, job_id: int, timeout: float = 15.0) -> int:
    """The process group id the dispatcher recorded for a running job."""
    job = wait_until(
        lambda: (j := queue.get(job_id)) is not None and j.pid is not None and j,
        timeout,
        what=f"job #{job_id} to record its pid",
    )
    assert job.status is JobStatus.RUNNING, job
    return job.pid  # type: ignore[return-value]


def process_gone(pid: int) -> bool:
    """Whether a process has ended (a zombie nobody reaped yet counts as ended)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def read_pid_file(path: Path, timeout: float = 15.0) -> int:
    """A pid a job wrote into a file (waits until the file holds a whole number)."""
    return int(
        wait_until(
            lambda: path.is_file() and path.read_text().strip().isdigit() and path.read_text(),
            timeout,
            what=f"{path} to hold a pid",
        ).strip()
    )


# -- configs and requests ----------------------------------------------------------------


def request_for(configs: JobConfigs, namespace: str, job_type: str, **overrides: Any) -> JobRequest:
    """A JobRequest as the bot would build it from the job's config."""
    spec = configs.job(namespace, job_type)
    values: dict[str, Any] = {
        "namespace": namespace,
        "job_type": job_type,
        "concurrency": spec.concurrency,
        "coalesce": spec.coalesce,
        "retries": spec.retries,
    }
    values.update(overrides)
    return JobRequest(**values)


def overlap(intervals: Iterable[tuple[float, float]]) -> int:
    """The largest number of (start, end) intervals open at one instant."""
    events = sorted(
        [(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals],
        key=lambda e: (e[0], e[1]),  # an end before a start at the same instant
    )
    best = current = 0
    for _, step in events:
        current += step
        best = max(best, current)
    return best


def read_intervals(path: Path) -> dict[str, list[tuple[float, float]]]:
    """Intervals from lines `start|end <label> <id> <epoch>` that jobs append to a file."""
    starts: dict[tuple[str, str], float] = {}
    result: dict[str, list[tuple[float, float]]] = {}
    for line in path.read_text().splitlines():
        kind, label, job_id, stamp = line.split()
        if kind == "start":
            starts[(label, job_id)] = float(stamp)
        else:
            result.setdefault(label, []).append((starts.pop((label, job_id)), float(stamp)))
    assert not starts, f"jobs that started but never recorded an end: {starts}"
    return result


@pytest.fixture
def kill_at_end() -> Iterator[Callable[[int, int], None]]:
    """Register (process group, job id) pairs to SIGKILL after the test if they still run that job."""
    groups: list[tuple[int, int]] = []
    yield lambda pgid, job_id: groups.append((pgid, job_id))
    for pgid, job_id in groups:
        if process_is_job(pgid, job_id):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)


# -- dispatcher as a subprocess ----------------------------------------------------------


@dataclass
class DispatcherProcess:
    """`stat-bot dispatcher` in its own process; stdout holds reports, stderr the JSON log."""

    proc: subprocess.Popen[bytes]
    stdout_path: Path
    stderr_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def events(self) -> list[dict[str, Any]]:
        """The dispatcher's log lines (LOG_FORMAT=json), parsed."""
        events = []
        for line in self.stderr().splitlines():
            line = line.strip()
            if line.startswith("{"):
                with contextlib.suppress(json.JSONDecodeError):  # a line being written
                    events.append(json.loads(line))
        return events

    def wait_ready(self, timeout: float = 20.0) -> None:
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"dispatcher exited with {self.proc.returncode}:\n{self.stderr()}"
                )
            return '"dispatcher started"' in self.stderr()

        wait_until(ready, timeout, what="the dispatcher to start")

    def terminate(self, timeout: float = 20.0) -> int:
        """SIGTERM and wait; the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        """SIGKILL and reap, as a crash or the OOM killer would."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)

    def cpu_seconds(self) -> float:
        """User + system CPU time the process has used so far."""
        return cpu_seconds(self.pid)


def kill_leftover_jobs(settings: Settings) -> None:
    """SIGKILL the process group of every job row whose process still runs that job."""
    try:
        q = open_queue(settings, migrate=False, create=False)
    except QueueError:  # no database (never made, or a test deleted it): no jobs
        return
    try:
        for job in q.jobs(limit=100000):
            if job.pid and process_is_job(job.pid, job.id):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(job.pid, signal.SIGKILL)
    except QueueError:  # not a queue database (a test broke it): nothing to look at
        pass
    finally:
        q.close()


@pytest.fixture
def start_dispatcher(
    cli_env: dict[str, str], home: Path, tmp_path: Path, settings: Settings
) -> Iterator[Callable[..., DispatcherProcess]]:
    """Start `stat-bot dispatcher` subprocesses (env overrides as keywords); all stopped at the end."""
    started: list[DispatcherProcess] = []

    def start(wait: bool = True, **env_overrides: str) -> DispatcherProcess:
        env = {**cli_env, **{k: str(v) for k, v in env_overrides.items()}}
        n = len(started)
        out, err = tmp_path / f"dispatcher-{n}.out", tmp_path / f"dispatcher-{n}.err"
        with out.open("wb") as stdout, err.open("wb") as stderr:
            proc = subprocess.Popen(
                [STAT_BOT, "dispatcher"],
                cwd=home,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
            )
        dispatcher = DispatcherProcess(proc, out, err)
        started.append(dispatcher)
        if wait:
            dispatcher.wait_ready()
        return dispatcher

    yield start
    kill_leftover_jobs(settings)  # so no dispatcher waits SHUTDOWN_GRACE for them
    for dispatcher in started:
        if dispatcher.proc.poll() is None:
            dispatcher.proc.send_signal(signal.SIGTERM)
    for dispatcher in started:
        try:
            dispatcher.proc.wait(15)
        except subprocess.TimeoutExpired:
            dispatcher.proc.kill()
            dispatcher.proc.wait(10)
    kill_leftover_jobs(settings)


# -- dispatcher on a thread of the test process --------------------------------------------


@dataclass
class ThreadDispatcher:
    """A real Dispatcher on its own asyncio loop in a background thread, reporting to a recorder."""

    dispatcher: Dispatcher
    notifier: RecordingNotifier
    thread: threading.Thread | None = None
    loop: asyncio.AbstractEventLoop | None = None
    error: BaseException | None = None
    _ready: threading.Event = field(default_factory=threading.Event)

    def start(self) -> ThreadDispatcher:
        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self.loop = loop
            self._ready.set()
            try:
                loop.run_until_complete(self.dispatcher.run(install_signal_handlers=False))
            except BaseException as error:
                self.error = error
            finally:
                loop.close()

        self.thread = threading.Thread(target=run, name="test-dispatcher", daemon=True)
        self.thread.start()
        self._ready.wait(10)
        queue = self.dispatcher.queue
        wait_until(
            lambda: any(w.id == self.dispatcher.worker_id for w in queue.workers()),
            what="the in-process dispatcher to register",
        )
        return self

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def stop(self, timeout: float = 30.0) -> None:
        if not self.running:
            return
        assert self.loop is not None
        with contextlib.suppress(RuntimeError):  # the loop already closed
            self.loop.call_soon_threadsafe(self.dispatcher.stop)
        assert self.thread is not None
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the in-process dispatcher did not stop"
        if self.error is not None:
            raise AssertionError(f"the dispatcher failed: {self.error!r}") from self.error


@pytest.fixture
def thread_dispatcher(
    settings: Settings,
) -> Iterator[Callable[..., ThreadDispatcher]]:
    """Start in-process Dispatchers: `thread_dispatcher(configs, settings=None)`."""
    started: list[ThreadDispatcher] = []

    def start(
        configs: JobConfigs | None = None, settings_: Settings | None = None
    ) -> ThreadDispatcher:
        s = settings_ or settings
        configs = configs or load_config(s.job_configs)
        queue = open_queue(s)
        notifier = RecordingNotifier()
        td = ThreadDispatcher(Dispatcher(s, configs, queue, notifier), notifier)
        started.append(td)
        return td.start()

    yield start
    kill_leftover_jobs(settings)
    errors = []
    for td in started:
        try:
            td.stop()
        except AssertionError as error:
            errors.append(error)
        if not td.running:
            td.dispatcher.queue.close()  # its connections end with the test, not at exit
    kill_leftover_jobs(settings)
    if errors:
        raise errors[0]


# -- the CLI ------------------------------------------------------------------------------


@pytest.fixture
def cli(cli_env: dict[str, str], home: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run `stat-bot ARGS...` against the test home; returns the completed process."""

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 30.0) -> Any:
        return subprocess.run(
            [STAT_BOT, *args],
            cwd=home,
            env={**cli_env, **(env or {})},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run
