"""The dispatcher: claims due jobs, runs them, reports them, fires schedules.

One asyncio loop. Queue calls that may wait for a lock run on a single helper
thread, so a lock wait never stalls the loop; the short calls made for every
job (claim, mark started, finish, ...) are made on the loop itself when they
need not wait (Queue.call_nowait), which saves two thread hand-overs per call
and is the larger part of a short job's cost. Reports are delivered on another
thread so a slow Slack never delays the next job. The loop wakes when another
process commits a job (see queue/wakeup.py), when a delayed job becomes due,
when a job ends, or at the poll interval as a safety net.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

import structlog

from stat_bot.dispatcher.runner import (
    Runner,
    RunningJob,
    kill_group,
    process_is_job,
    read_tail,
    remove_log_dir,
)
from stat_bot.dispatcher.schedules import config_rows, row_latest_due, row_next_due
from stat_bot.jobs.config import JobConfigs, JobSpec
from stat_bot.jobs.model import Job, JobRequest, JobStatus, ReportState, Source
from stat_bot.queue.base import Queue, QueueBusyError, QueueError, Recovered, Worker
from stat_bot.report.messages import Outcome, Report, build_report, requeued_report, tail
from stat_bot.report.notifiers import Notifier, Progress
from stat_bot.settings import Settings

log = structlog.get_logger(__name__)
T = TypeVar("T")

PRUNE_EVERY = 6 * 3600.0
MAX_SCHEDULE_SLEEP = 30.0  # re-read schedules at least this often (the dashboard may change them)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Dispatcher:
    """Runs queued jobs until told to stop; several may share one queue."""

    def __init__(
        self,
        settings: Settings,
        configs: JobConfigs,
        queue: Queue,
        notifier: Notifier,
        *,
        worker_id: str | None = None,
    ) -> None:
        self.settings = settings
        self.configs = configs
        self.queue = queue
        self.notifier = notifier
        self.hostname = socket.gethostname()
        self.worker_id = worker_id or f"{self.hostname}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.runner = Runner(settings)
        self.running: dict[int, RunningJob] = {}
        self._launching = 0  # claimed jobs whose process is being started
        self._db_pending = 0  # calls handed to the queue thread and not yet back
        self._group: list[tuple[str, tuple[Any, ...], dict[str, Any], Any]] = []  # see _grouped
        self._tasks: set[asyncio.Task[Any]] = set()
        self._db = ThreadPoolExecutor(1, thread_name_prefix="stat-bot-db")
        self._send = ThreadPoolExecutor(4, thread_name_prefix="stat-bot-report")
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        # The notifier's optional extras, looked up once: calling a no-op through the
        # report thread for every job would cost more than some jobs do.
        self._notify_starts = notifier.wants_starts
        self._progress_after = settings.progress_after if notifier.wants_progress else 0.0
        self._progress: dict[int, tuple[asyncio.TimerHandle, Future[None] | None]] = {}
        self.log = log.bind(worker=self.worker_id)

    # plumbing ----------------------------------------------------------------
    async def _q(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """A queue call on the queue thread, where it may wait for another process's lock."""
        loop = asyncio.get_running_loop()
        self._db_pending += 1
        try:
            return await loop.run_in_executor(self._db, lambda: fn(*args, **kwargs))
        finally:
            self._db_pending -= 1

    async def _q_quick(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """A short queue call: on the loop if it need not wait, else as `_q`.

        While any call is still on the queue thread this one follows it there, so
        calls about one job (mark started, then finish) always land in order.
        """
        if not self._db_pending:
            try:
                return self.queue.call_nowait(fn, *args, **kwargs)
            except QueueBusyError:
                pass
        return await self._q(fn, *args, **kwargs)

    async def _grouped(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """A per-job write (`Queue.GROUPED_WRITES`), committed with the others of this moment.

        Writes asked for while the loop handles one batch of events (jobs started, jobs
        ended) go to the queue together at the next turn of the loop, as one transaction
        (`Queue.write_many`): one commit for several jobs instead of one each. Each caller
        still resumes only once its write is committed, and writes keep their order.
        """
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Any] = loop.create_future()
        self._group.append((name, args, kwargs, done))
        if len(self._group) == 1:
            loop.call_soon(self._commit_group)
        return await done

    def _commit_group(self) -> None:
        group, self._group = self._group, []
        self._spawn(self._commit(group))

    async def _commit(self, group: list[tuple[str, tuple[Any, ...], dict[str, Any], Any]]) -> None:
        writes = [(name, args, kwargs) for name, args, kwargs, _ in group]
        try:
            results = await self._q_quick(self.queue.write_many, writes)
        except Exception as error:
            for *_, done in group:
                if not done.done():
                    done.set_exception(error)
            return
        for (*_, done), result in zip(group, results, strict=True):
            if not done.done():
                done.set_result(result)

    async def _q_persist(self, what: str, *args: Any, **kwargs: Any) -> Any:
        """A grouped write that must not be lost (a job's end): retried with backoff until it lands."""
        delay = 0.05
        while True:
            try:
                return await self._grouped(what, *args, **kwargs)
            except QueueError as error:
                self.log.warning(
                    "queue write failed; retrying", what=what, error=str(error), retry_in=delay
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def stop(self) -> None:
        """Stop claiming; running jobs get SHUTDOWN_GRACE seconds to finish."""
        first = not self._stopping.is_set()
        self._stopping.set()  # before logging: nothing may keep a stop from happening
        self._wake.set()
        if first:
            self.log.info("dispatcher stopping", running=len(self.running))

    # life ----------------------------------------------------------------
    async def run(self, *, install_signal_handlers: bool = True) -> None:
        loop = asyncio.get_running_loop()
        if install_signal_handlers:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.stop)
        listener = self.queue.wakeup_listener("dispatcher")

        def on_wakeup() -> None:
            listener.drain()
            self._wake.set()

        loop.add_reader(listener.fileno(), on_wakeup)
        try:
            await self._q(self.queue.register_worker, self.worker_id, self.hostname, os.getpid())
            await self._q(self.queue.sync_schedules, config_rows(self.configs))
            self.log.info(
                "dispatcher started",
                concurrency=self.settings.dispatcher_concurrency,
                database=str(self.settings.database_url),
            )
            await self._recover()
            heartbeat = self._spawn(self._heartbeat_loop())
            background = [self._spawn(self._schedule_loop()), self._spawn(self._prune_loop())]
            await self._main_loop()
            for task in background:
                task.cancel()
            # Heartbeats go on while running jobs drain: peers must not take them for lost,
            # and a cancel request must still reach them.
            await self._shutdown(heartbeat)
        finally:
            loop.remove_reader(listener.fileno())
            listener.close()
            if install_signal_handlers:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)
            with contextlib.suppress(Exception):
                await self._q(self.queue.unregister_worker, self.worker_id)
            self._send.shutdown(wait=True)
            self._db.shutdown(wait=True)
            self.log.info("dispatcher stopped")

    async def _main_loop(self) -> None:
        poll = self.settings.dispatcher_poll_interval
        while not self._stopping.is_set():
            self._wake.clear()
            timeout = poll
            try:
                await self._dispatch_once()
                due = await self._q_quick(self.queue.next_due, now=time.time())
                if due is not None:
                    timeout = min(poll, max(0.0, due - time.time()))
            except Exception:
                self.log.exception("dispatch cycle failed; retrying")
                timeout = max(poll, 1.0)
            if timeout > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout)

    async def _dispatch_once(self) -> None:
        if self.running:
            for job_id in await self._q_quick(self.queue.cancel_requests, self.worker_id):
                if job_id in self.running:
                    self.running[job_id].cancel("cancelled on request")
        free = self.settings.dispatcher_concurrency - len(self.running) - self._launching
        if free <= 0 or self._stopping.is_set():
            return
        for job in await self._q_quick(self.queue.claim, self.worker_id, free):
            # Each claimed job is launched on its own so that one's file-system work
            # (its log folder) overlaps another's spawn.
            self._launching += 1
            self._spawn(self._launch(job))

    async def _launch(self, job: Job) -> None:
        try:
            await self._start(job)
        except Exception as error:
            self.log.exception("job could not start", job_id=job.id)
            note = f"STAT bot could not start it: {error}"
            await self._finish(job, self._spec(job), Outcome(JobStatus.FAILED, note=note))
        finally:
            self._launching -= 1
            if job.id not in self.running:
                self._wake.set()  # it never ran (or has already ended): its slot is free

    async def _start(self, job: Job) -> None:
        jlog = self.log.bind(job_id=job.id, job=job.full_type)
        if not self.configs.has_job(job.namespace, job.job_type):
            note = f"job type {job.full_type!r} is no longer in {self.configs.source}"
            jlog.warning("job not configured", note=note)
            await self._finish(job, None, Outcome(JobStatus.FAILED, note=note))
            return
        spec = self.configs.job(job.namespace, job.job_type)
        namespace = self.configs.namespaces[job.namespace].spec
        try:
            running = await self.runner.start(job, spec, namespace)
        except OSError as error:
            jlog.error("job could not start", error=str(error))
            await self._finish(
                job, spec, Outcome(JobStatus.FAILED, note=f"could not start: {error}")
            )
            return
        self.running[job.id] = running
        jlog.info("job started", pid=running.pid, args=job.args, attempt=job.attempts)
        self._spawn(self._supervise(running))
        if self._notify_starts:
            self._send.submit(self._best_effort, self.notifier.job_started, job)
        if self._progress_after:
            loop = asyncio.get_running_loop()
            timer = loop.call_later(self._progress_after, self._progress_tick, running)
            self._progress[job.id] = (timer, None)

    def _best_effort(self, fn: Callable[..., object], *args: Any) -> None:
        """A notice that may be lost (job started, progress): logged, never raised."""
        try:
            fn(*args)
        except Exception as error:
            self.log.warning("notice not delivered", notice=fn.__name__, error=str(error))

    def _progress_tick(self, running: RunningJob) -> None:
        """Every PROGRESS_INTERVAL: the elapsed time and the end of stdout, to the notifier."""
        job_id = running.job.id
        if job_id not in self.running or job_id not in self._progress:
            return
        _, pending = self._progress[job_id]
        if pending is None or pending.done():  # a slow Slack: skip a beat rather than queue up
            pending = self._send.submit(self._best_effort, self._send_progress, running)
        loop = asyncio.get_running_loop()
        timer = loop.call_later(self.settings.progress_interval, self._progress_tick, running)
        self._progress[job_id] = (timer, pending)

    def _send_progress(self, running: RunningJob) -> None:
        elapsed = time.monotonic() - running.started
        output = tail(read_tail(running.log_dir / "stdout", 4096), lines=10)
        self.notifier.progress(Progress(running.job, elapsed, output))

    async def _supervise(self, running: RunningJob) -> None:
        job = running.job
        try:
            await self._grouped("mark_started", job.id, running.pid, str(running.log_dir))
            outcome = await running.wait()
        except Exception as error:
            self.log.exception("job supervision failed", job_id=job.id)
            outcome = Outcome(JobStatus.FAILED, note=f"STAT bot error while running it: {error}")
        finally:
            self.running.pop(job.id, None)
            self._wake.set()  # a slot is free
        if job.id in self._progress:
            timer, pending = self._progress.pop(job.id)
            timer.cancel()
            if pending is not None and not pending.done():  # a notice in flight: it goes first
                await asyncio.wrap_future(pending)
        await self._finish(job, running.spec, outcome, time.monotonic() - running.started)

    async def _finish(
        self, job: Job, spec: JobSpec | None, outcome: Outcome, duration: float | None = None
    ) -> None:
        report = build_report(job, spec, outcome)
        state = ReportState.PENDING if report else ReportState.NONE
        finished = await self._q_persist(
            "finish",
            job.id,
            outcome.status,
            outcome.exit_code,
            note=outcome.note,
            report_state=state,
        )
        self.log.info(
            "job finished",
            job_id=job.id,
            job=job.full_type,
            status=str(outcome.status),
            exit_code=outcome.exit_code,
            duration=round(duration, 3) if duration is not None else None,
        )
        if finished is None:
            self.log.warning(
                "job was no longer running when it ended (declared lost?)", job_id=job.id
            )
            return
        if report is not None:
            self._spawn(self._deliver(report))

    async def _deliver(self, report: Report) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._send, self.notifier.deliver, report)
        except Exception as error:
            self.log.error("report not delivered", job_id=report.job_id, error=str(error))
            if report.job_id:
                await self._q_persist(
                    "record_report",
                    report.job_id,
                    ReportState.FAILED,
                    str(error)[:500],
                )
            return
        if report.job_id:
            await self._q_persist("record_report", report.job_id, ReportState.DELIVERED)

    def _spec(self, job: Job) -> JobSpec | None:
        if self.configs.has_job(job.namespace, job.job_type):
            return self.configs.job(job.namespace, job.job_type)
        return None

    # lost jobs ---------------------------------------------------------------
    def _is_dead(self, worker: Worker) -> bool:
        if worker.id == self.worker_id:
            return False
        if worker.hostname == self.hostname and not pid_alive(worker.pid):
            return True
        return time.time() - worker.heartbeat_at > self.settings.lost_after

    async def _recover(self) -> None:
        recovered: list[Recovered] = await self._q(self.queue.recover_lost, self._is_dead)
        for item in recovered:
            job = item.job
            local = item.worker is not None and item.worker.hostname == self.hostname
            if local and item.pid and process_is_job(item.pid, job.id):
                # Its dispatcher died (kill -9) but the job's process group may live on.
                kill_group(item.pid, signal.SIGKILL)
            self.log.warning(
                "job re-queued after its dispatcher was lost" if item.requeued else "job lost",
                job_id=job.id,
                job=job.full_type,
                dead_worker=item.worker.id if item.worker else None,
            )
            spec = self._spec(job)
            if item.requeued:
                report: Report | None = requeued_report(job, spec)
            else:
                report = build_report(
                    job, spec, Outcome(JobStatus.LOST, log_dir=job.log_dir, note=job.note)
                )
            if report:
                self._spawn(self._deliver(report))
        if any(r.requeued for r in recovered):
            self._wake.set()

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.heartbeat_interval)
            try:
                cancels = await self._q(self.queue.heartbeat, self.worker_id)
                for job_id in cancels:
                    if job_id in self.running:
                        self.running[job_id].cancel("cancelled on request")
                await self._recover()
            except Exception:
                self.log.exception("heartbeat failed")

    # schedules ---------------------------------------------------------------
    async def _schedule_loop(self) -> None:
        tz = self.settings.tz
        while True:
            now = time.time()
            wake_at = now + MAX_SCHEDULE_SLEEP
            try:
                specs = {s.key: s.spec for s in self.configs.schedules()}
                for row in await self._q(self.queue.schedules):
                    if not row.enabled or not self.configs.has_job(row.namespace, row.job_type):
                        continue
                    spec = specs.get(row.key)
                    if spec is not None and self.runner.missing(spec.requires):
                        continue  # e.g. no TRAC_URL: no report, not even an empty one
                    due = row_latest_due(row, tz, now)
                    if due is not None and (row.last_fired_at is None or due > row.last_fired_at):
                        await self._fire(
                            row.key, row.namespace, row.job_type, row.args, row.channel, due
                        )
                    wake_at = min(wake_at, row_next_due(row, tz, now))
            except Exception:
                self.log.exception("schedule check failed")
            await asyncio.sleep(max(0.0, wake_at - time.time()))

    def _schedule_channel(self, key: str) -> str | None:
        """The active-tickets report goes to the STAT channel when its schedule names none.

        job_configs.py cannot read settings, and the channel is a site's setting
        (STAT_CHANNEL, where ticket notices go too), so it is not written twice.
        """
        return self.settings.stat_channel if key == self.settings.active_tickets_schedule else None

    async def _fire(
        self,
        key: str,
        namespace: str,
        job_type: str,
        args: dict[str, str],
        channel: str | None,
        due: float,
    ) -> None:
        spec = self.configs.job(namespace, job_type)
        request = JobRequest(
            namespace=namespace,
            job_type=job_type,
            args=args,
            channel=channel or spec.report_channel or self._schedule_channel(key),
            source=Source.SCHEDULE,
            user=f"schedule {key}",
            concurrency=spec.concurrency,
            coalesce=spec.coalesce,
            retries=spec.retries,
        )
        result = await self._q(self.queue.fire_schedule, key, due, request)
        if result is not None:
            self.log.info("schedule fired", schedule=key, due=due, job_id=result.job.id)
            self._wake.set()

    # housekeeping ----------------------------------------------------------------
    async def _prune_loop(self) -> None:
        while True:
            try:
                cutoff = time.time() - self.settings.history_days * 86400
                pruned = await self._q(self.queue.prune, cutoff)
                for job in pruned:
                    await asyncio.to_thread(remove_log_dir, job.log_dir)
                if pruned:
                    self.log.info(
                        "pruned old jobs", count=len(pruned), days=self.settings.history_days
                    )
            except Exception:
                self.log.exception("pruning failed")
            await asyncio.sleep(PRUNE_EVERY)

    async def _shutdown(self, heartbeat: asyncio.Task[Any]) -> None:
        """Wait for running jobs up to the grace period, then stop them; let reports go out."""
        supervisors = [t for t in self._tasks if t is not heartbeat]
        if self.running:
            grace = self.settings.shutdown_grace
            self.log.info("waiting for running jobs", count=len(self.running), grace=grace)
            if grace > 0 and supervisors:
                await asyncio.wait(supervisors, timeout=grace)
            for running in list(self.running.values()):
                running.cancel(
                    f"stopped: the dispatcher shut down after waiting {grace:g} s for it"
                )
        while pending := [t for t in self._tasks if not t.done() and t is not heartbeat]:
            await asyncio.wait(pending)
        heartbeat.cancel()
        while pending := [t for t in self._tasks if not t.done()]:
            await asyncio.wait(pending)
