"""What the benchmarks share: figures with targets, a real dispatcher process, machine facts."""

from __future__ import annotations

import contextlib
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from stat_bot.dispatcher.runner import open_log_files
from stat_bot.lifeline import stop_process

VENV_BIN = Path(sys.executable).parent
STAT_BOT = VENV_BIN / "stat-bot"


class BenchmarkError(Exception):
    """A benchmark could not run (as opposed to running and missing its target)."""


class BenchmarkSkipError(Exception):
    """A benchmark's peer is not there (no PostgreSQL server, say): one line, not a failure."""


@dataclass(frozen=True)
class Figure:
    """One measured number, with the target it is held against (if any).

    Targets are ratios to (or differences from) a reference measured in the same run,
    never absolute rates: this machine's speed varies 2-3x from day to day, and a bare
    reference slows down with it. Counts that must be exact (nothing lost) are the other
    kind of target. `worst` says how `bench --repeat` judges the figure: by the worst of
    the runs (a floor every run must clear) rather than by their median.
    """

    label: str
    value: float
    unit: str
    target: float | None = None
    higher_is_better: bool = True
    digits: int = 0
    note: str = ""
    worst: bool = False

    @property
    def passed(self) -> bool | None:
        if self.target is None:
            return None
        if self.higher_is_better:
            return self.value >= self.target
        return self.value <= self.target

    def _number(self, value: float) -> str:
        return f"{value:,.{self.digits}f}{self.unit}"

    @property
    def shown(self) -> str:
        return self._number(self.value)

    @property
    def target_shown(self) -> str:
        if self.target is None:
            return ""
        return ("\u2265 " if self.higher_is_better else "\u2264 ") + self._number(self.target)

    @property
    def verdict(self) -> str:
        return {True: "PASS", False: "MISS", None: ""}[self.passed]


def print_figures(figures: Sequence[Figure]) -> None:
    label = max(len(f.label) for f in figures)
    shown = max([len(f.shown) for f in figures] + [8])
    target = max([len(f.target_shown) for f in figures] + [6])
    print(f"  {'figure':<{label}}  {'measured':>{shown}}  {'target':<{target}}  result")
    for f in figures:
        line = (
            f"  {f.label:<{label}}  {f.shown:>{shown}}  {f.target_shown:<{target}}  {f.verdict:<6}"
        )
        if f.note:
            line += f"  {f.note}"
        print(line.rstrip())
    print(flush=True)


@dataclass
class Repeats:
    """Every figure of `bench --repeat N`, by benchmark and label, for the median and spread."""

    runs: int = 0
    seen: dict[tuple[str, str], list[Figure]] = field(default_factory=dict)

    def add(self, name: str, figures: Sequence[Figure]) -> None:
        for f in figures:
            self.seen.setdefault((name, f.label), []).append(f)

    def summary(self) -> list[tuple[str, Figure, str]]:
        """(benchmark, the figure judged over the runs, its spread) for each judged figure.

        The judged value is the median of the runs, or the worst run for a `worst` figure.
        """
        out: list[tuple[str, Figure, str]] = []
        for (name, _), figures in self.seen.items():
            first = figures[0]
            if first.target is None:
                continue
            values = [f.value for f in figures]
            if first.worst:
                judged = min(values) if first.higher_is_better else max(values)
                how = "worst"
            else:
                judged = statistics.median(values)
                how = "median"
            spread = (
                f"{how} of {len(values)}: "
                + ", ".join(first._number(v) for v in sorted(values))
                + f" (spread {first._number(max(values) - min(values))})"
            )
            out.append((name, replace(first, value=judged, note=spread), how))
        return out


def file_cost(folder: Path, count: int = 200) -> float:
    """Microseconds to make what a job of a new type gets: 2 folders and 2 empty files."""
    start = time.perf_counter()
    for n in range(count):
        job = folder / f"type{n}" / "1"
        job.mkdir(parents=True)
        (job / "stdout").open("wb").close()
        (job / "stderr").open("wb").close()
    return (time.perf_counter() - start) / count * 1e6


def spare_cost(folder: Path, count: int = 100) -> float:
    """Microseconds to put a job's log folder in place from a spare made beforehand
    (stat_bot/dispatcher/spares.py): a rename and two opens of files that are there."""
    spares, jobs = folder / "spares", folder / "jobs"
    jobs.mkdir(parents=True)
    for n in range(count):
        (spares / str(n)).mkdir(parents=True)
        (spares / str(n) / "stdout").open("wb").close()
        (spares / str(n) / "stderr").open("wb").close()
    start = time.perf_counter()
    for n in range(count):
        target = str(jobs / str(n))
        os.rename(spares / str(n), target)
        for fd in open_log_files(target):
            os.close(fd)
    return (time.perf_counter() - start) / count * 1e6


SLOW_FILES_US = 500.0  # a job's folders + 2 files taking longer than this: the fs is disturbed


def file_figure(files_us: float) -> Figure:
    """The file system's cost for one job's log folder, flagged when it is abnormally slow."""
    return Figure(
        "file system: a job's folders + files",
        files_us,
        " \u00b5s",
        higher_is_better=False,
        note=(
            "SLOW right now, figures above disturbed (see BENCHMARKS.md): rerun in a few minutes"
            if files_us > SLOW_FILES_US
            else "normal"
        ),
    )


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0-100) by linear interpolation between closest ranks."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    rank = (len(ordered) - 1) * p / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def cpu_seconds(pid: int, *, children: bool = False) -> float:
    """User + system CPU time a process has used so far (Linux /proc); with `children`,
    that of its children it has waited for instead (a dispatcher's finished jobs)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    first = 13 if children else 11  # cutime, cstime; utime, stime
    return (int(fields[first]) + int(fields[first + 1])) / os.sysconf("SC_CLK_TCK")


def thread_schedule(pid: int, tid: int | None = None) -> tuple[float, float] | None:
    """Seconds a thread has spent on a CPU and waiting in a run queue for one (Linux
    /proc/<pid>/task/<tid>/schedstat; the main thread by default); None where not offered
    (a kernel without scheduler statistics shows zeros there)."""
    try:
        fields = Path(f"/proc/{pid}/task/{tid or pid}/schedstat").read_text().split()
        on_cpu, waiting = int(fields[0]), int(fields[1])
    except (OSError, ValueError, IndexError):
        return None
    if on_cpu == 0 and waiting == 0:  # no thread that ever ran has both at zero
        return None
    return on_cpu / 1e9, waiting / 1e9


@dataclass(frozen=True)
class LoopShare:
    """Where one thread's wall time went per job: on a CPU, waiting for one, and the rest
    (blocked: in vfork until a child has exec'd, in a system call, or idle)."""

    on_cpu: float  # ms per job
    waiting: float
    wall: float

    @property
    def rest(self) -> float:
        return max(0.0, self.wall - self.on_cpu - self.waiting)

    @classmethod
    def between(
        cls,
        first: tuple[float, float],
        last: tuple[float, float],
        seconds: float,
        jobs: int,
    ) -> LoopShare:
        per_job = 1000 / max(1, jobs)
        return cls(
            (last[0] - first[0]) * per_job, (last[1] - first[1]) * per_job, seconds * per_job
        )

    def shown(self) -> str:
        return (
            f"on a CPU {self.on_cpu:.2f}, waiting for one {self.waiting:.2f}, "
            f"the rest {self.rest:.2f} ms"
        )


def wait_until(
    check: Callable[[], Any], timeout: float, what: str, *, interval: float = 0.05
) -> Any:
    """Poll `check` until it returns something true; BenchmarkError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise BenchmarkError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def write_job_configs(
    path: Path, jobs: dict[str, dict[str, Any]], namespace: str = "bench"
) -> None:
    """A job_configs.py with one namespace holding `jobs` (name -> job config)."""
    path.write_text(
        '"""Generated by the benchmarks."""\n\n'
        f"raw_config = {{{namespace!r}: {{'description': 'benchmark jobs', 'jobs': {jobs!r}}}}}\n"
    )


def dispatcher_env(home: Path, **settings: str) -> dict[str, str]:
    """The environment of a dispatcher working in `home`: production defaults unless given."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("STAT_BOT", "SLACK_"))
        and k
        not in (
            "STATE_DIR",
            "DATABASE_URL",
            "LOGS_DIR",
            "WRITEABLE_DIR",
            "WORKSPACE_DIR",
            "JOB_CONFIGS",
            "DISPATCHER_CONCURRENCY",
            "DISPATCHER_POLL_INTERVAL",
            "SQLITE_SYNCHRONOUS",
            "LOG_LEVEL",
            "LOG_FORMAT",
        )
    }
    env.update(
        STATE_DIR=str(home / "var"),
        WORKSPACE_DIR=str(home / "workspace"),
        JOB_CONFIGS=str(home / "job_configs.py"),
        LOG_FORMAT="json",  # as under systemd: one JSON line per event, at the default INFO level
        SHUTDOWN_GRACE="5",
        KILL_GRACE="1",
    )
    env.update(settings)
    return env


class DispatcherProcess:
    """`stat-bot dispatcher` (the real console script) running in `home` as a subprocess."""

    def __init__(self, home: Path, **settings: str) -> None:
        self.home = home
        self.env = dispatcher_env(home, **settings)
        self.database = home / "var" / "stat-bot.sqlite3"
        self.process: subprocess.Popen[bytes] | None = None
        self.stderr_path = home / "dispatcher.stderr"
        self.stdout_path = home / "dispatcher.stdout"

    def start(self, *, wait_ready: bool = True, timeout: float = 30.0) -> None:
        with self.stdout_path.open("ab") as out, self.stderr_path.open("ab") as err:
            self.process = subprocess.Popen(
                [str(STAT_BOT), "dispatcher"],
                cwd=self.home,  # no `environment` file of the checkout is read
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        if wait_ready:
            wait_until(self.ready, timeout, "the dispatcher to start")

    def ready(self) -> bool:
        """Started and listening: it logged `dispatcher started` (after its wake-up socket)."""
        if self.process is not None and self.process.poll() is not None:
            raise BenchmarkError(
                f"the dispatcher exited with status {self.process.returncode}:\n{self.log_tail()}"
            )
        try:
            return b'"dispatcher started"' in self.stderr_path.read_bytes()
        except FileNotFoundError:
            return False

    def check_alive(self) -> None:
        """BenchmarkError, with the end of its log, if the dispatcher was started and died."""
        if self.process is not None and self.process.poll() is not None:
            raise BenchmarkError(
                f"the dispatcher died (status {self.process.returncode}):\n{self.log_tail()}"
            )

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no output)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL to its whole process group if it has not stopped in time."""
        if self.process is not None:
            stop_process(self.process, timeout)
        self.process = None

    def __enter__(self) -> DispatcherProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def read_only(database: Path) -> Iterator[sqlite3.Connection]:
    """A plain connection for the benchmark's own polling (reads only, no locks held)."""
    conn = sqlite3.connect(database, isolation_level=None, timeout=30)
    try:
        yield conn
    finally:
        conn.close()


def file_system(path: Path) -> str:
    """The type of the file system holding `path` (from /proc/mounts), e.g. ext4 or tmpfs."""
    best, kind = "", "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/mounts").read_text().splitlines():
            fields = line.split()
            mount = fields[1]
            inside = str(path).startswith(mount.rstrip("/") + "/") or str(path) == mount
            if inside and len(mount) >= len(best):
                best, kind = mount, fields[2]
    return kind


def interpreter() -> str:
    """Which Python runs the benchmarks: STAT bot's figures move with its build, bash's do not.

    Its path, and whether libpython is a shared library: a hint at the build, not proof
    of it. pyenv's builds (`--enable-shared`) load it as one, compiled without PGO or LTO
    unless asked; Debian's python3 is one executable built with both (BENCHMARKS.md,
    "The interpreter").
    """
    executable = os.path.realpath(sys.executable)
    try:
        maps = Path("/proc/self/maps").read_text().splitlines()
    except OSError:
        return f"{executable}, libpython unknown"
    for line in maps:
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and "/libpython" in fields[5]:
            return f"{executable}, libpython shared: {fields[5]}"
    return f"{executable}, libpython built in"


def machine() -> dict[str, str]:
    """The facts BENCHMARKS.md records about where figures were measured."""
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = "unknown"
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    load = "unknown"
    with contextlib.suppress(OSError):
        load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return {
        "cpus": str(os.cpu_count()),
        "cpu": model,
        "memory": memory,
        "kernel": platform.release(),
        "python": f"{platform.python_version()} ({interpreter()})",
        "sqlite": sqlite3.sqlite_version,
        "load": load,
    }
