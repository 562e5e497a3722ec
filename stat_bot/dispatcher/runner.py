"""Running one job: `bash -c` in its workspace folder, in its own process group.

Used by the dispatcher and by `stat-bot exec`, so trying a job from the command
line exercises exactly what production runs. The job gets its arguments
shell-quoted into the template, context in `STAT_BOT_*` variables, stdout and
stderr in files of its own log folder, and is stopped as a whole process group
(SIGTERM, then SIGKILL after a grace period) on timeout or cancel.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from stat_bot.jobs.config import JobSpec, NamespaceSpec, render_template
from stat_bot.jobs.model import Job, JobStatus
from stat_bot.report.messages import Outcome, tail
from stat_bot.settings import Settings

log = structlog.get_logger(__name__)

MAX_REPORTED_STDOUT = 10 * 1024 * 1024  # read at most this much stdout into a report


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


@dataclass
class RunningJob:
    """A spawned job; `wait` returns once it has ended for any reason."""

    job: Job
    spec: JobSpec
    process: asyncio.subprocess.Process
    log_dir: Path
    timeout: float | None
    kill_grace: float
    started: float = field(default_factory=time.monotonic)
    _cancel: asyncio.Event = field(default_factory=asyncio.Event)
    _reason: str | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def cancel(self, reason: str = "cancelled") -> None:
        """Ask the job to stop; `wait` then reports it cancelled."""
        self._reason = reason
        self._cancel.set()

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
        waiter = asyncio.ensure_future(self.process.wait())
        canceller = asyncio.ensure_future(self._cancel.wait())
        try:
            done, _ = await asyncio.wait(
                {waiter, canceller}, timeout=self.timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            canceller.cancel()
        status: JobStatus
        note = None
        if waiter in done:
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
        return Outcome(
            status=status,
            exit_code=code,
            stdout=stdout,
            stderr_tail=tail(stderr),
            log_dir=str(self.log_dir),
            timeout=self.timeout,
            note=note if note != "cancelled" else None,
        )


def read_text(path: Path, limit: int) -> str:
    try:
        with path.open("rb") as f:
            return f.read(limit).decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""


def read_tail(path: Path, limit: int = 16384) -> str:
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - limit))
            return f.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""


class Runner:
    """Spawns jobs; holds what every spawn shares (the base environment) computed once."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._base_env = settings.job_environment()
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
            STAT_BOT_CHANNEL=job.channel or "",
            STAT_BOT_THREAD_TS=job.thread_ts or "",
            STAT_BOT_SOURCE=str(job.source),
            STAT_BOT_ATTEMPT=str(job.attempts),
            STAT_BOT_LOG_DIR=str(log_dir),
        )
        for name, value in job.args.items():
            env[f"STAT_BOT_ARG_{name.upper()}"] = str(value)
        return env

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
        log_dir.mkdir(parents=True, exist_ok=True)
        cwd = self.settings.workspace_dir / job.namespace
        cwd.mkdir(parents=True, exist_ok=True)
        if namespace.fabfile:
            await asyncio.to_thread(refresh_fabfile, namespace.fabfile, cwd)
        command = render_template(spec.run_args_template, job.args)
        timeout = spec.timeout if spec.timeout is not None else (self.settings.job_timeout or None)
        with (log_dir / "stdout").open("wb") as out, (log_dir / "stderr").open("wb") as err:
            process = await asyncio.create_subprocess_exec(
                "bash",
                "-c",
                command,
                cwd=cwd,
                env=self.environment(job, log_dir),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        return RunningJob(job, spec, process, log_dir, timeout, self.settings.kill_grace)


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
