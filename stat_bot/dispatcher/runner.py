"""Running one job: `bash -c` in its workspace folder, in its own process group.

Used by the dispatcher and by `stat-bot exec`, so trying a job from the command
line exercises exactly what production runs. The job gets its arguments
shell-quoted into the template, context in `STAT_BOT_*` variables, stdout and
stderr in files of its own log folder, and is stopped as a whole process group
(SIGTERM, then SIGKILL after a grace period) on timeout or cancel.

On Linux the event loop learns that a job ended from a pidfd, a descriptor it
watches like a socket. Python 3.11's asyncio subprocess support instead starts a
thread per child to wait for it (ThreadedChildWatcher); with many short jobs
those threads and their GIL hand-overs cost more than the spawn itself.
Elsewhere (no pidfd_open) jobs are spawned through asyncio as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Protocol

import structlog

from stat_bot.dispatcher.spares import SpareFolders
from stat_bot.jobs.config import JobSpec, NamespaceSpec, missing_variables, render_template
from stat_bot.jobs.model import Job, JobStatus
from stat_bot.report.messages import Outcome, tail
from stat_bot.settings import Settings

log = structlog.get_logger(__name__)

MAX_REPORTED_STDOUT = 10 * 1024 * 1024  # read at most this much stdout into a report
DISK_FULL_BELOW = 64 * 1024  # free bytes under which a failed job's log folder counts as full
LOG_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC


def kill_group(pid: int, sig: int) -> bool:
    """Signal a job's whole process group; False if it is already gone."""
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
    return True


def process_is_job(pid: int, job_id: int) -> bool:
    """Whether `pid` is still the process that ran `job_id` (guards against pid reuse)."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    return f"STAT_BOT_JOB_ID={job_id}".encode() in environ.split(b"\0")


def job_groups(job_id: int, attempt: int, log_dir: Path) -> set[int]:
    """The process groups of this host's processes started for one attempt of one job.

    For a job whose dispatcher died between starting it and recording its pid: its
    processes are found by the variables every job process inherits (the job's id, the
    attempt and the log folder, which only this installation's job of that id has), so a
    peer can stop them before the job runs again. Linux (/proc); elsewhere, none.
    """
    wanted = {
        f"STAT_BOT_JOB_ID={job_id}".encode(),
        f"STAT_BOT_ATTEMPT={attempt}".encode(),
        f"STAT_BOT_LOG_DIR={log_dir}".encode(),
    }
    groups: set[int] = set()
    try:
        entries = os.listdir("/proc")
    except OSError:
        return groups
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes()
            if wanted <= set(environ.split(b"\0")):
                groups.add(os.getpgid(int(entry)))
        except OSError:  # gone meanwhile, or another user's
            continue
    groups.discard(os.getpgrp())  # never our own group (a job is always in its own)
    return groups


class JobProcess(Protocol):
    """What a job's process offers: asyncio.subprocess.Process and ChildProcess both do."""

    @property
    def pid(self) -> int: ...

    @property
    def returncode(self) -> int | None: ...

    async def wait(self) -> int: ...


class ChildProcess:
    """A spawned child whose exit the event loop sees through a pidfd (Linux 5.3+)."""

    def __init__(self, popen: subprocess.Popen[bytes], loop: asyncio.AbstractEventLoop) -> None:
        self._popen = popen
        self._loop = loop
        self._exited: asyncio.Future[int] = loop.create_future()
        try:
            self._pidfd = os.pidfd_open(popen.pid)
        except OSError:  # out of descriptors, say: wait for this one on a thread instead
            waiter = loop.run_in_executor(None, popen.wait)
            waiter.add_done_callback(lambda done: self._exit(done.result()))
        else:
            loop.add_reader(self._pidfd, self._reap)

    @property
    def pid(self) -> int:
        return self._popen.pid

    @property
    def returncode(self) -> int | None:
        return self._popen.returncode

    def _reap(self) -> None:
        self._loop.remove_reader(self._pidfd)
        os.close(self._pidfd)
        # The pidfd is readable once the child has exited, so this wait returns at once.
        self._exit(self._popen.wait())

    def _exit(self, code: int) -> None:
        if not self._exited.done():
            self._exited.set_result(code)

    @property
    def exited(self) -> asyncio.Future[int]:
        """Done with the exit status once the child has ended (await it only through a shield)."""
        return self._exited

    async def wait(self) -> int:
        """The exit status (negative: killed by that signal), as asyncio's Process.wait."""
        return await asyncio.shield(self._exited)


def _wake(future: asyncio.Future[None] | None) -> None:
    """Complete a job's wait, if one is waiting and nothing has completed it yet."""
    if future is not None and not future.done():
        future.set_result(None)


@cache
def devnull() -> int:
    """One descriptor on /dev/null for every job's stdin (not inherited: Popen dup2s it to 0).

    With subprocess.DEVNULL, Popen opens and closes /dev/null for every spawn.
    """
    return os.open(os.devnull, os.O_RDWR)


@cache
def pidfd_usable() -> bool:
    """Whether this kernel and Python offer pidfd_open (Linux 5.3+, Python 3.9+)."""
    try:
        os.close(os.pidfd_open(os.getpid()))
    except (AttributeError, OSError):
        return False
    return True


@dataclass
class RunningJob:
    """A spawned job; `wait` returns once it has ended for any reason."""

    job: Job
    spec: JobSpec
    process: JobProcess
    log_dir: Path
    timeout: float | None
    kill_grace: float
    started: float = field(default_factory=time.monotonic)
    _cancel: asyncio.Event = field(default_factory=asyncio.Event)
    _reason: str | None = None
    _woken: asyncio.Future[None] | None = None  # what `wait` waits on: exit, cancel or timeout

    @property
    def pid(self) -> int:
        return self.process.pid

    def cancel(self, reason: str = "cancelled") -> None:
        """Ask the job to stop; `wait` then reports it cancelled."""
        self._reason = reason
        self._cancel.set()
        _wake(self._woken)

    async def _stop(self) -> None:
        """SIGTERM the process group, then SIGKILL whatever is left after the grace period."""
        kill_group(self.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), self.kill_grace)
        except TimeoutError:
            kill_group(self.pid, signal.SIGKILL)
            await self.process.wait()
        # Children that ignored SIGTERM but whose leader exited still hold the group.
        kill_group(self.pid, signal.SIGKILL)

    async def wait(self) -> Outcome:
        # One future that the exit, a cancel or the timeout completes, rather than
        # asyncio.wait over several (its sets, callbacks and waiter cost more than the
        # rest of this, and it runs once per job).
        loop = asyncio.get_running_loop()
        woken: asyncio.Future[None] = loop.create_future()
        self._woken = woken
        process = self.process
        if isinstance(process, ChildProcess):
            waiter: asyncio.Future[int] = process.exited
        else:
            waiter = loop.create_task(process.wait())
        if self._cancel.is_set():
            # Asked before this wait began. Woken at the loop's next turn, not now: a job
            # that has already exited is seen to have (its pidfd polled, its task run) and
            # reported as it ended, as with any cancel that comes too late.
            loop.call_soon(_wake, woken)

        def exited(_: asyncio.Future[int]) -> None:
            _wake(woken)

        waiter.add_done_callback(exited)
        timer = loop.call_later(self.timeout, _wake, woken) if self.timeout is not None else None
        try:
            await woken
        finally:
            waiter.remove_done_callback(exited)
            if timer is not None:
                timer.cancel()
        status: JobStatus
        note = None
        if waiter.done():
            code = waiter.result()
            status = JobStatus.SUCCEEDED if code == 0 else JobStatus.FAILED
            kill_group(self.pid, signal.SIGKILL)  # stray background children of a finished job
        else:
            await self._stop()
            code = self.process.returncode
            if self._cancel.is_set():
                status, note = JobStatus.CANCELLED, self._reason
            else:
                status = JobStatus.TIMED_OUT
        return self.outcome(status, code, note)

    def outcome(self, status: JobStatus, code: int | None, note: str | None = None) -> Outcome:
        stdout = ""
        if status is JobStatus.SUCCEEDED and self.spec.report_stdout:
            stdout = read_text(self.log_dir / "stdout", MAX_REPORTED_STDOUT)
        stderr = read_tail(self.log_dir / "stderr")
        note = note if note != "cancelled" else None
        if status is not JobStatus.SUCCEEDED and (full := disk_full_note(self.log_dir)):
            note = f"{note}; {full}" if note else full
        return Outcome(
            status=status,
            exit_code=code,
            stdout=stdout,
            stderr_tail=tail(stderr),
            log_dir=str(self.log_dir),
            timeout=self.timeout,
            note=note,
        )


def disk_full_note(log_dir: Path) -> str | None:
    """ "disk full: ..." when the file system holding a job's logs has (almost) no space left.

    A job writes straight into its stdout and stderr files, so when they hit ENOSPC the
    job sees the error, not STAT bot - and its complaint cannot be written to stderr
    either: it ends "failed" with empty output. Looking at the free space when a job
    fails is how its report can say why.
    """
    try:
        st = os.statvfs(log_dir)
    except OSError:
        return None
    if st.f_bavail * st.f_frsize >= DISK_FULL_BELOW:
        return None
    return (
        f"disk full: no space left on the file system holding {log_dir}, so the job's "
        "output could not be written (free some space, then run it again)"
    )


def read_text(path: Path, limit: int) -> str:
    try:
        with path.open("rb") as f:
            return f.read(limit).decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""


def read_tail(path: Path, limit: int = 16384) -> str:
    try:
        if os.stat(path).st_size == 0:
            return ""  # the usual stderr: no need to open it
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - limit))
            return f.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""


def open_logs(log_dir: Path) -> tuple[int, int]:
    """Make a job's log folder and open its stdout and stderr files (as open("wb") would)."""
    folder = str(log_dir)
    try:
        os.mkdir(folder)  # its type's folder is usually there (and pathlib's calls cost more)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(folder), exist_ok=True)
        with contextlib.suppress(FileExistsError):
            os.mkdir(folder)
    except FileExistsError:
        if not os.path.isdir(folder):  # a file in its place: say so, as Path.mkdir did
            raise
        # else a job run again: it keeps its folder, and its files start empty
    return open_log_files(folder)


def open_log_files(folder: str) -> tuple[int, int]:
    """Open (or make) the stdout and stderr files of a log folder that is there."""
    out = os.open(os.path.join(folder, "stdout"), LOG_FLAGS, 0o666)
    try:
        err = os.open(os.path.join(folder, "stderr"), LOG_FLAGS, 0o666)
    except BaseException:
        os.close(out)
        raise
    return out, err


SLOW_FILES = 0.0005  # seconds per job's log files beyond which threads create them


def timed_open_logs(log_dir: Path) -> tuple[int, int, float]:
    """open_logs, and how long it took."""
    started = time.perf_counter()
    out, err = open_logs(log_dir)
    return out, err, time.perf_counter() - started


class Runner:
    """Spawns jobs; holds what every spawn shares (the base environment) computed once."""

    def __init__(self, settings: Settings, *, spares: SpareFolders | None = None) -> None:
        self.settings = settings
        # Log folders made ahead of time by the dispatcher (spares.py); None: each job's
        # folder is made as it starts (`stat-bot exec`, LOG_SPARES=0).
        self.spares = spares
        self._base_env = settings.job_environment()
        # bash as the jobs' PATH finds it, looked up once rather than tried dir by dir per spawn.
        self._bash = shutil.which("bash", path=self._base_env.get("PATH", os.defpath))
        self._made: set[Path] = set()  # workspace folders known to exist
        # Creating a job's log folder and files (three new inodes) usually takes tens of
        # microseconds, less than handing it to a thread and back, so the loop does it
        # itself. On a disk that has turned slow (milliseconds per file: see BENCHMARKS.md,
        # "The file system") these threads do it instead, overlapping the loop's spawning
        # and reaping of other jobs, until it is fast again.
        self._files = ThreadPoolExecutor(2, thread_name_prefix="stat-bot-logs")
        self._file_seconds = 0.0  # a moving average of what open_logs takes
        # The one place jobs may write (WRITEABLE_DIR): there from the first job on.
        if settings.writeable_dir is not None:
            settings.writeable_dir.mkdir(parents=True, exist_ok=True)

    def log_dir_for(self, job: Job) -> Path:
        assert self.settings.logs_dir is not None
        return self.settings.logs_dir / job.namespace / job.job_type / str(job.id)

    def environment(self, job: Job, log_dir: Path) -> dict[str, str]:
        env = dict(self._base_env)
        env.update(
            STAT_BOT_JOB_ID=str(job.id),
            STAT_BOT_NAMESPACE=job.namespace,
            STAT_BOT_JOB_TYPE=job.job_type,
            STAT_BOT_ARGS=json.dumps(job.args, ensure_ascii=False),
            STAT_BOT_USER=job.user or "",
            STAT_BOT_USER_NAME=job.user_name or "",
            STAT_BOT_CHANNEL=job.channel or "",
            STAT_BOT_THREAD_TS=job.thread_ts or "",
            STAT_BOT_SOURCE=str(job.source),
            STAT_BOT_ATTEMPT=str(job.attempts),
            STAT_BOT_LOG_DIR=str(log_dir),
            # A guarded job's confirmer (job_configs.py's `confirm`), for its own records.
            STAT_BOT_CONFIRMED_BY=job.confirmed_by or "",
        )
        for name, value in job.args.items():
            env[f"STAT_BOT_ARG_{name.upper()}"] = str(value)
        return env

    def missing(self, names: list[str]) -> list[str]:
        """Which of these variables jobs would start without (unset or empty)."""
        return missing_variables(names, self._base_env)

    async def start(
        self,
        job: Job,
        spec: JobSpec,
        namespace: NamespaceSpec,
        *,
        log_dir: Path | None = None,
    ) -> RunningJob:
        """Spawn the job's command; raises OSError if it cannot be started at all."""
        log_dir = log_dir or self.log_dir_for(job)
        cwd = self.settings.workspace_dir / job.namespace
        if cwd not in self._made:
            cwd.mkdir(parents=True, exist_ok=True)
            self._made.add(cwd)
        if namespace.fabfile:
            await asyncio.to_thread(refresh_fabfile, namespace.fabfile, cwd)
        command = render_template(spec.run_args_template, job.args)
        timeout = spec.timeout if spec.timeout is not None else (self.settings.job_timeout or None)
        env = self.environment(job, log_dir)
        try:
            out, err = await self._open_logs(log_dir)
        except OSError as error:
            if error.errno == errno.ENOSPC:
                raise OSError(
                    error.errno, f"disk full: no space left to create its logs in {log_dir}"
                ) from error
            raise
        try:
            try:
                try:
                    process = await self._spawn(command, cwd, env, out, err)
                except FileNotFoundError:
                    if cwd.is_dir():
                        raise
                    cwd.mkdir(parents=True, exist_ok=True)  # removed since the last job: again
                    process = await self._spawn(command, cwd, env, out, err)
            finally:
                os.close(err)
        finally:
            os.close(out)
        return RunningJob(job, spec, process, log_dir, timeout, self.settings.kill_grace)

    async def _open_logs(self, log_dir: Path) -> tuple[int, int]:
        if self.spares is not None and self.spares.take(str(log_dir)):
            return open_log_files(str(log_dir))  # two files that are there: no new inode
        if self._file_seconds > SLOW_FILES:
            loop = asyncio.get_running_loop()
            out, err, took = await loop.run_in_executor(self._files, timed_open_logs, log_dir)
        else:
            out, err, took = timed_open_logs(log_dir)
        self._file_seconds += (took - self._file_seconds) * 0.2
        return out, err

    async def _spawn(
        self, command: str, cwd: Path, env: dict[str, str], out: int, err: int
    ) -> JobProcess:
        """`bash -c command` as a session (process group) leader, stdin from /dev/null."""
        options = {
            "executable": self._bash,  # None: search PATH
            "cwd": cwd,
            "env": env,
            "stdin": devnull(),
            "stdout": out,
            "stderr": err,
            "start_new_session": True,
        }
        process: JobProcess
        if pidfd_usable():
            popen = subprocess.Popen(["bash", "-c", command], **options)
            process = ChildProcess(popen, asyncio.get_running_loop())
        else:
            process = await asyncio.create_subprocess_exec("bash", "-c", command, **options)
        # The new process is queued to run on this CPU, and this process, woken when the
        # child's exec went through, runs there first: its bookkeeping for the start (the
        # log line, the start record, the next claim) held bash's start-up back until the
        # scheduler moved one of them. Yielding lets the job run first (Popen -> the job's
        # first command, p50: 2.25 -> 1.75 ms; BENCHMARKS.md).
        os.sched_yield()
        return process


def refresh_fabfile(url: str, cwd: Path) -> None:
    """Fetch a namespace's fabfile (ebmbot's fabric jobs); keep the old copy if the fetch fails."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            body = response.read()
    except Exception as error:
        log.warning("fabfile refresh failed; using the copy on disk", url=url, error=str(error))
        return
    target = cwd / "fabfile.py"
    tmp = target.with_suffix(".py.tmp")
    tmp.write_bytes(body)
    tmp.replace(target)


def remove_log_dir(path: str | None) -> None:
    """Delete a pruned job's log folder (only the stdout/stderr files we wrote, then the folder)."""
    if not path:
        return
    folder = Path(path)
    for name in ("stdout", "stderr"):
        with contextlib.suppress(FileNotFoundError):
            (folder / name).unlink()
    with contextlib.suppress(OSError):
        folder.rmdir()
