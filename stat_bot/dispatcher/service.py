"""The dispatcher: claims due jobs, runs them, reports them, fires schedules.

One asyncio loop. Queue calls that may wait for a lock run on a single helper
thread, so a lock wait never stalls the loop; the short calls made for every
job (claim, mark started, finish, ...) are made on the loop itself when they
need not wait (Queue.call_nowait), which saves two thread hand-overs per call
and is the larger part of a short job's cost. Reports, start notices and
progress notes are stored in the queue's outbox in the same transaction as the
change they report, and a sender thread (report/outbox.py) delivers them, so a
slow or absent Slack never delays the next job and never loses a report. The loop wakes when another
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
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import structlog

from stat_bot.dispatcher.runner import (
    Runner,
    RunningJob,
    job_groups,
    kill_group,
    process_is_job,
    read_tail,
    remove_log_dir,
)
from stat_bot.dispatcher.schedules import config_rows
from stat_bot.dispatcher.spares import SpareFolders
from stat_bot.jobs.config import JobConfigs, JobSpec
from stat_bot.jobs.config_file import ConfigFile
from stat_bot.jobs.model import Job, JobRequester, JobStatus, ReportState, Source
from stat_bot.jobs.requests import build_request
from stat_bot.jobs.schedules import row_latest_due, row_next_due
from stat_bot.queue.base import (
    Confirmation,
    OutboxMessage,
    Queue,
    QueueBusyError,
    QueueError,
    Recovered,
    Worker,
)
from stat_bot.report.confirmations import decided_report
from stat_bot.report.messages import (
    Outcome,
    build_report,
    build_reports,
    progress_report,
    requeued_report,
    start_notice,
    tail,
    to_requesters,
)
from stat_bot.report.notifiers import Notifier
from stat_bot.report.outbox import OutboxSender, outgoing
from stat_bot.settings import Settings

log = structlog.get_logger(__name__)
T = TypeVar("T")

PRUNE_EVERY = 6 * 3600.0
PERSIST_FIRST_DELAY = 0.05  # seconds before retrying a write that must not be lost; doubles
PERSIST_MAX_DELAY = 5.0

MAX_SCHEDULE_SLEEP = 30.0  # re-read schedules at least this often (the dashboard may change them)

PERSON_SOURCES = frozenset({Source.SLACK, Source.CLI})


class WriteAbandonedError(Exception):
    """A write that must not be lost could not be made before the dispatcher had to stop."""


def expired_offer_messages(offer: Confirmation, job: Job | None) -> list[OutboxMessage]:
    """An expired offer's message, edited to say so (report/confirmations.py)."""
    return [outgoing(decided_report(offer, job), "confirm")]


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
        configs: JobConfigs | ConfigFile,
        queue: Queue,
        notifier: Notifier,
        *,
        worker_id: str | None = None,
    ) -> None:
        self.settings = settings
        # job_configs.py as it is now (jobs/config_file.py): a job type another process
        # queued after an edit is known here without a restart.
        self.config_file = configs if isinstance(configs, ConfigFile) else ConfigFile.fixed(configs)
        self._synced_version: int | None = None  # the config version the stored schedules match
        self.queue = queue
        self.notifier = notifier
        self.hostname = socket.gethostname()
        self._recover_now = 0.0  # the queue's clock when a recovery began (see `_is_dead`)
        # Since when (monotonic) this dispatcher has been able to write its heartbeat without
        # a break; None while it cannot (see `_is_dead`).
        self._in_touch_since: float | None = None
        self.worker_id = worker_id or f"{self.hostname}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        assert settings.logs_dir is not None
        self.spares = SpareFolders(settings.logs_dir, settings.log_spares)
        self.runner = Runner(settings, spares=self.spares if settings.log_spares else None)
        self.running: dict[int, RunningJob] = {}
        # Jobs this dispatcher claimed whose end is not yet recorded: any other job the
        # database says this worker runs is a stray (see `_end_strays`).
        self._mine: set[int] = set()
        self._ending: set[int] = set()  # strays being ended by `_end_strays`
        self._launching = 0  # claimed jobs whose process is being started
        self._launched = asyncio.Event()  # set while no claimed job is being started
        self._launched.set()
        self._db_pending = 0  # calls handed to the queue thread and not yet back
        self._group: list[tuple[str, tuple[Any, ...], dict[str, Any], Any]] = []  # see _grouped
        self._tasks: set[asyncio.Task[Any]] = set()
        self._db = ThreadPoolExecutor(1, thread_name_prefix="stat-bot-db")
        self.sender = OutboxSender(queue, notifier, settings, owner=self.worker_id)
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        # The notifier's optional extras, looked up once: a start notice nobody reads
        # would cost a stored message for every job.
        self._logs_channel = settings.slack_logs_channel if notifier.wants_starts else None
        self._progress_after = settings.progress_after if notifier.wants_progress else 0.0
        self._progress: dict[int, tuple[asyncio.TimerHandle, asyncio.Task[None] | None]] = {}
        self._had_progress: set[int] = set()  # jobs whose report replaces a progress message
        # Jobs a progress note was ever written for (stored or not: a failed write may have
        # landed), whose end drops any unsent one; the other jobs' ends skip that statement.
        self._progress_tried: set[int] = set()
        self.log = log.bind(worker=self.worker_id)

    @property
    def configs(self) -> JobConfigs:
        return self.config_file.current()

    async def _sync_schedules(self) -> None:
        """Store the schedules of the configuration in force, once per version of it."""
        configs = self.configs  # on the loop thread only: nothing reloads in between
        version = self.config_file.version
        if version != self._synced_version:
            await self._q(self.queue.sync_schedules, config_rows(configs))
            self._synced_version = version

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
        """A grouped write that must not be lost (a job's end): retried with backoff until it lands.

        While the dispatcher runs it keeps trying (a full disk or a read-only database
        recovers by itself once space or write access returns). Once it is stopping, it
        tries for STOP_WRITE_TIMEOUT seconds more, then raises WriteAbandonedError after
        logging what was not written: the job is still `running` in the database, and
        the next dispatcher start recovers it (re-queued or marked lost).
        """
        delay = PERSIST_FIRST_DELAY
        give_up_at: float | None = None
        failures = 0
        while True:
            try:
                return await self._grouped(what, *args, **kwargs)
            except QueueError as error:
                failures += 1
                if self._stopping.is_set():
                    now = time.monotonic()
                    if give_up_at is None:
                        give_up_at = now + self.settings.stop_write_timeout
                    if now >= give_up_at:
                        self.log.error(
                            "queue write abandoned at shutdown; the next start recovers the job",
                            what=what,
                            job_id=args[0] if args else None,
                            error=str(error),
                            attempts=failures,
                        )
                        raise WriteAbandonedError(str(error)) from error
                    delay = min(delay, max(0.0, give_up_at - now))
                self.log.warning(
                    "queue write failed; retrying",
                    what=what,
                    job_id=args[0] if args else None,
                    error=str(error),
                    retry_in=round(delay, 3),
                    attempts=failures,
                )
                # The stop event cuts a long backoff short, so shutdown starts its clock at once.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
                delay = min(delay * 2, PERSIST_MAX_DELAY)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        # A coroutine, always: create_task skips ensure_future's "is it a future?" probe,
        # which raises and swallows an AttributeError on every call.
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        """Forget a finished task; an exception it ended with goes to our log, not asyncio's."""
        self._tasks.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            self.log.error(
                "dispatcher task failed",
                task=task.get_coro().__qualname__,  # type: ignore[union-attr]
                error=f"{type(error).__name__}: {error}",
            )

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
            # Plain handlers, not loop.add_signal_handler: the loop resets its handlers to
            # SIG_DFL when removed or closed, and a SIGTERM landing in that gap killed a
            # stopping dispatcher (status -15). Ours are replaced by SIG_IGN in one step.
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: loop.call_soon_threadsafe(self.stop))
        listener = self.queue.wakeup_listener("dispatcher")

        def on_wakeup() -> None:
            listener.drain()
            self._wake.set()

        loop.add_reader(listener.fileno(), on_wakeup)
        try:
            self.sender.start()
            await self._q(self.queue.register_worker, self.worker_id, self.hostname, os.getpid())
            self._in_touch_since = time.monotonic()
            await self._sync_schedules()
            self.log.info(
                "dispatcher started",
                concurrency=self.settings.dispatcher_concurrency,
                database=self.settings.database_shown,
            )
            await self._recover()
            self.spares.start()
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
            with contextlib.suppress(Exception):
                await self._q(self.queue.unregister_worker, self.worker_id)
            # Messages not yet accepted stay in the outbox for the next sender.
            await asyncio.to_thread(self.sender.stop)
            await asyncio.to_thread(self.spares.close)
            self._db.shutdown(wait=True)
            self.log.info("dispatcher stopped")
            if install_signal_handlers:
                # From here on it is exiting anyway: a repeated SIGTERM is ignored (one
                # sigaction, so there is no moment with the default, fatal action).
                for sig in (signal.SIGTERM, signal.SIGINT):
                    signal.signal(sig, signal.SIG_IGN)

    async def _main_loop(self) -> None:
        poll = self.settings.dispatcher_poll_interval
        while not self._stopping.is_set():
            self._wake.clear()
            timeout = poll
            try:
                now = self.queue.now()
                due = await self._dispatch_once(now)
                if due is not None and due <= now:
                    # Due jobs not claimed wait for a slot (a job's end wakes the loop) or
                    # for their type's limit, lock or suppression: only a later start counts.
                    due = await self._q_quick(self.queue.next_due, now=now)
                if due is not None:
                    timeout = min(poll, max(0.0, due - now))
            except QueueError as error:  # the database's fault, said in words: no traceback
                self.log.warning("dispatch cycle failed; retrying", error=str(error))
                timeout = max(poll, 1.0)
            except Exception:
                self.log.exception("dispatch cycle failed; retrying")
                timeout = max(poll, 1.0)
            if timeout > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout)

    async def _dispatch_once(self, now: float) -> float | None:
        """Cancel what was asked, claim what is due; when a queued job is (next) due.

        A claim is a write transaction (on PostgreSQL also a lock), which waits for and
        holds up every other writer, the bot's and the web server's enqueues among them.
        Most wake-ups find nothing to claim (a job ended and freed a slot; the idle
        poll), so a read of the earliest queued job comes first and the claim is made
        only when one is due. Nothing is missed by it: a job queued after the read wakes
        the loop again (its commit's wake-up, or the next poll). With no slot free, the
        first start after `now` is returned instead: nothing due can be claimed anyway.
        """
        if self.running:
            for job_id in await self._q_quick(self.queue.cancel_requests, self.worker_id):
                if job_id in self.running:
                    self.running[job_id].cancel("cancelled on request")
        free = self.settings.dispatcher_concurrency - len(self.running) - self._launching
        if free <= 0 or self._stopping.is_set():
            return await self._q_quick(self.queue.next_due, now=now)
        earliest = await self._q_quick(self.queue.next_due)
        if earliest is None or earliest > now:
            return earliest
        for job in await self._q_quick(self.queue.claim, self.worker_id, free):
            # Each claimed job is launched on its own so that one's file-system work
            # (its log folder) overlaps another's spawn.
            self._mine.add(job.id)
            self._launching += 1
            self._launched.clear()
            self._spawn(self._launch(job))
        return earliest

    async def _launch(self, job: Job) -> None:
        try:
            await self._start(job)
        except Exception as error:
            self.log.exception("job could not start", job_id=job.id)
            note = f"STAT bot could not start it: {error}"
            await self._finish(job, self._spec(job), Outcome(JobStatus.FAILED, note=note))
        finally:
            self._launching -= 1
            if not self._launching:
                self._launched.set()
            if job.id not in self.running:
                self._wake.set()  # it never ran (or has already ended): its slot is free

    async def _start(self, job: Job) -> None:
        # The job's fields right after the dispatcher's own in each line, where a logger
        # bound per job would put them (binding one costs a logger and a context copy).
        ids = {"job_id": job.id, "job": job.full_type}
        configs = self.configs  # job_configs.py as it is now, once for this job
        if not configs.has_job(job.namespace, job.job_type):
            note = f"job type {job.full_type!r} is not in {configs.source}"
            self.log.warning("job not configured", **ids, note=note)
            await self._finish(job, None, Outcome(JobStatus.FAILED, note=note))
            return
        spec = configs.job(job.namespace, job.job_type)
        namespace = configs.namespaces[job.namespace].spec
        try:
            running = await self.runner.start(job, spec, namespace)
        except OSError as error:
            self.log.error("job could not start", **ids, error=str(error))
            await self._finish(
                job, spec, Outcome(JobStatus.FAILED, note=f"could not start: {error}")
            )
            return
        self.running[job.id] = running
        self.log.info("job started", **ids, pid=running.pid, args=job.args, attempt=job.attempts)
        self._spawn(self._supervise(running))
        # Progress notes are for a person waiting on an answer. A schedule's or webhook's job
        # has nobody waiting, and its report may be silent on purpose (a quiet sweep, an
        # empty active-tickets report): a note would break that silence.
        if self._progress_after and job.source in PERSON_SOURCES:
            loop = asyncio.get_running_loop()
            timer = loop.call_later(self._progress_after, self._progress_tick, running)
            self._progress[job.id] = (timer, None)

    def _progress_tick(self, running: RunningJob) -> None:
        """Every PROGRESS_INTERVAL: the elapsed time and the end of stdout, to the outbox."""
        job_id = running.job.id
        if job_id not in self.running or job_id not in self._progress:
            return
        _, pending = self._progress[job_id]
        if pending is None or pending.done():  # a slow disk: skip a beat rather than queue up
            pending = self._spawn(self._store_progress(running))
        loop = asyncio.get_running_loop()
        timer = loop.call_later(self.settings.progress_interval, self._progress_tick, running)
        self._progress[job_id] = (timer, pending)

    async def _store_progress(self, running: RunningJob) -> None:
        job = running.job
        if not job.channel:
            return
        elapsed = time.monotonic() - running.started
        output = tail(
            await asyncio.to_thread(read_tail, running.log_dir / "stdout", 4096), lines=10
        )
        message = outgoing(progress_report(job, elapsed, output), "progress")
        self._progress_tried.add(job.id)
        try:
            await self._q(self.queue.post_progress, job.id, message)
        except QueueError as error:  # the next tick tries again
            self.log.warning("progress note not stored", job_id=job.id, error=str(error))
            return
        self._had_progress.add(job.id)
        self.sender.wake()

    async def _supervise(self, running: RunningJob) -> None:
        job = running.job
        try:
            notices = (
                [outgoing(start_notice(job, self._logs_channel), "start")]
                if self._logs_channel
                else []
            )
            try:
                await self._grouped(
                    "mark_started", job.id, running.pid, str(running.log_dir), outbox=notices
                )
            except QueueError as error:
                # Only recovery after a crash reads these; the job itself runs on (its
                # start notice, written with them, is lost with them: it is only a notice).
                self.log.warning(
                    "could not record the job's process", job_id=job.id, error=str(error)
                )
            else:
                if notices:
                    self.sender.wake()
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
            if pending is not None and not pending.done():  # a note being stored: it goes first
                await pending
        await self._finish(job, running.spec, outcome, time.monotonic() - running.started)

    async def _finish(
        self,
        job: Job,
        spec: JobSpec | None,
        outcome: Outcome,
        duration: float | None = None,
        *,
        ask_progress: bool = False,
    ) -> None:
        """Record a job's end with its reports. `ask_progress`: the job ran elsewhere (a
        stray), so whether it has a progress message to replace is read from the queue."""
        # Requests merged into the job (fixed once it left the queue) each get a copy;
        # read only when there is something to send.
        report = build_report(job, spec, outcome)
        reports = []
        if report is not None:
            had_progress = job.id in self._had_progress or (
                ask_progress and await self._q(self.queue.progress_posted, job.id) is not None
            )
            requesters = await self._requesters(job)
            reports = to_requesters(report, job, spec, requesters, replaces_progress=had_progress)
        self._had_progress.discard(job.id)
        progress = ask_progress or job.id in self._progress_tried
        self._progress_tried.discard(job.id)
        outbox = [outgoing(each, "report") for each in reports]
        state = ReportState.PENDING if reports else ReportState.NONE
        try:
            finished = await self._q_persist(
                "finish",
                job.id,
                outcome.status,
                outcome.exit_code,
                note=outcome.note,
                report_state=state,
                outbox=outbox,
                # A stray (another's job) is ended whoever runs it; our own only if it is
                # still ours, not re-queued and claimed by another while we were cut off.
                worker_id=None if ask_progress else self.worker_id,
                progress=progress,
            )
        except WriteAbandonedError:
            return  # logged with the job id; the next start recovers it
        except Exception:
            # Not a database fault (those are retried): a bug. The safety net in the
            # heartbeat (`_end_strays`) ends the job once it is no longer ours.
            self.log.exception("job's end could not be recorded", job_id=job.id)
            return
        finally:
            self._mine.discard(job.id)
        self.log.info(
            "job finished",
            job_id=job.id,
            job=job.full_type,
            status=str(outcome.status),
            exit_code=outcome.exit_code,
            duration=round(duration, 3) if duration is not None else None,
        )
        if not finished:
            self.log.warning(
                "job was no longer running when it ended (declared lost?)", job_id=job.id
            )
            return
        if outbox:
            self.sender.wake()

    async def _requesters(self, job: Job) -> list[JobRequester]:
        """Who else asked for this job; none if that cannot be read (its own report still goes)."""
        try:
            return await self._q_quick(self.queue.requesters, job.id)
        except QueueError as error:
            self.log.error("merged requesters not read", job_id=job.id, error=str(error))
            return []

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
        # After a database outage every peer's heartbeat is old, because nobody could write
        # one: a peer is judged by its heartbeat only once this dispatcher has itself been in
        # touch with the database for LOST_AFTER, time enough for every live peer to beat.
        if (
            self._in_touch_since is None
            or time.monotonic() - self._in_touch_since < self.settings.lost_after
        ):
            return False
        # Both times are the queue's clock (the database server's on PostgreSQL): a host
        # whose own clock is minutes off neither looks dead nor judges others dead.
        return self._recover_now - worker.heartbeat_at > self.settings.lost_after

    def _recovery_notices(self, item: Recovered) -> list[OutboxMessage]:
        """What the asker of a job recovered from a dead dispatcher is told (in its transaction)."""
        job = item.job
        spec = self._spec(job)
        if item.requeued:
            return [outgoing(requeued_report(job, spec), "notice")]
        # On the queue's thread, inside the recovery's transaction: read with it.
        outcome = Outcome(JobStatus.LOST, log_dir=job.log_dir, note=job.note)
        reports = build_reports(
            job,
            spec,
            outcome,
            self.queue.requesters(job.id),
            replaces_progress=self.queue.progress_posted(job.id) is not None,
        )
        return [outgoing(report, "report") for report in reports]

    async def _recover(self) -> None:
        self._recover_now = await self._q(self.queue.now)
        # What is left on this host of a dead peer's jobs is stopped before the recovery
        # gives their slots back: once that commits, a job of the same type (or the job
        # itself, re-queued) may start at once, and must not run beside the remains.
        stopped = await self._stop_remains_of_dead_peers()
        recovered: list[Recovered] = await self._q(
            self.queue.recover_lost, self._is_dead, notices=self._recovery_notices
        )
        late = [(r.job, r.worker, r.pid) for r in recovered if r.job.id not in stopped]
        if late:  # its dispatcher died after the look above: stopped as soon as can be
            await asyncio.to_thread(self._stop_lost_attempts, late)
        for item in recovered:
            job = item.job
            self.log.warning(
                "job re-queued after its dispatcher was lost" if item.requeued else "job lost",
                job_id=job.id,
                job=job.full_type,
                dead_worker=item.worker.id if item.worker else None,
            )
        if recovered:
            self.sender.wake()
        if any(r.requeued for r in recovered):
            self._wake.set()
        await self._end_strays()

    async def _stop_remains_of_dead_peers(self) -> set[int]:
        """Kill what is left of the running jobs of this host's dead dispatchers; their ids.

        Done outside the recovery's transaction: reading /proc can wait on a process
        stuck in the kernel, and no other writer should wait with it. Only a recovery
        gives a dead dispatcher's slots back, so the jobs stay `running` meanwhile.
        """
        dead = {
            w.id: w
            for w in await self._q(self.queue.workers)
            if w.hostname == self.hostname and self._is_dead(w)
        }
        if not dead:
            return set()
        remains = [
            (job, dead[job.worker_id], job.pid)
            for job in await self._q(self.queue.running_jobs)
            if job.worker_id in dead
        ]
        await asyncio.to_thread(self._stop_lost_attempts, remains)
        return {job.id for job, _, _ in remains}

    def _stop_lost_attempts(self, attempts: list[tuple[Job, Worker | None, int | None]]) -> None:
        """Kill the process groups of lost attempts run on this host (their dispatcher died,
        by kill -9, but a job's process group lives on): (job, its dead worker, its pid)."""
        for job, worker, pid in attempts:
            if worker is None or worker.hostname != self.hostname:
                continue
            if pid:
                if process_is_job(pid, job.id):
                    kill_group(pid, signal.SIGKILL)
                continue
            # It died after starting the job but before recording its pid: found by its
            # environment, or it would run on beside its next attempt.
            for group in job_groups(job.id, job.attempts, self.runner.log_dir_for(job)):
                kill_group(group, signal.SIGKILL)

    def _timeout_of(self, job: Job) -> float | None:
        spec = self._spec(job)
        timeout = spec.timeout if spec is not None and spec.timeout is not None else None
        return timeout if timeout is not None else (self.settings.job_timeout or None)

    async def _end_strays(self) -> None:
        """The safety net: no job stays `running` in the database when nothing runs it.

        Ends, as lost, (1) jobs the database says this dispatcher runs that it does not
        (their end was never recorded: a write failed and was given up, or a bug), and
        (2) any dispatcher's job running longer than its timeout + KILL_GRACE +
        LOST_AFTER, which its runner would have stopped long ago. Each end goes through
        `_finish`, whose write only changes a job still running, so a job that ends
        normally at the same moment keeps its real outcome.
        """
        now = await self._q(self.queue.now)
        settle = self.settings.heartbeat_interval + self.settings.kill_grace
        for job in await self._q(self.queue.running_jobs):
            started = job.started_at or job.created_at
            timeout = self._timeout_of(job)
            overdue = timeout is not None and (
                now - started > timeout + self.settings.kill_grace + self.settings.lost_after
            )
            note: str | None = None
            ours = job.worker_id == self.worker_id
            if ours and job.id in self.running:
                if overdue:
                    self.running[job.id].cancel(
                        f"stopped: still running {now - started:.0f} s after it started, "
                        f"past its timeout of {timeout:g} s"
                    )
                continue
            if ours and job.id in self._mine:
                continue  # being launched, or its end is being written (and retried)
            if ours:
                if now - started < settle:
                    continue  # claimed a moment ago: let its launch catch up
                note = "lost: its dispatcher was no longer running it and never recorded its end"
            elif overdue:
                note = (
                    f"lost: still `running` {now - started:.0f} s after it started, past its "
                    f"timeout of {timeout:g} s + KILL_GRACE + LOST_AFTER; its end was never recorded"
                )
            if note is None or job.id in self._ending:
                continue
            self.log.warning("ending a stray running job", job_id=job.id, note=note)
            self._ending.add(job.id)
            self._spawn(self._end_stray(job, note))

    async def _end_stray(self, job: Job, note: str) -> None:
        try:
            outcome = Outcome(JobStatus.LOST, log_dir=job.log_dir, note=note)
            await self._finish(job, self._spec(job), outcome, ask_progress=True)
        finally:
            self._ending.discard(job.id)

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.heartbeat_interval)
            try:
                try:
                    cancels = await self._q(self.queue.heartbeat, self.worker_id)
                except QueueError:
                    self._in_touch_since = None
                    raise
                if self._in_touch_since is None:
                    self._in_touch_since = time.monotonic()
                for job_id in cancels:
                    if job_id in self.running:
                        self.running[job_id].cancel("cancelled on request")
                await self._recover()
                # Offers of guarded jobs nobody answered in time: their buttons go.
                expired = await self._q(
                    self.queue.expire_confirmations, outbox=expired_offer_messages
                )
                if expired:
                    self.sender.wake()
            except QueueError as error:
                self.log.warning("heartbeat failed", error=str(error))
            except Exception:
                self.log.exception("heartbeat failed")

    # schedules ---------------------------------------------------------------
    async def _schedule_loop(self) -> None:
        tz = self.settings.tz
        while True:
            try:
                now = await self._q(self.queue.now)  # due times by the database's clock
            except QueueError as error:
                self.log.warning("schedule check failed", error=str(error))
                await asyncio.sleep(1.0)
                continue
            wake_at = now + MAX_SCHEDULE_SLEEP
            try:
                await self._sync_schedules()  # job_configs.py may have changed
                specs = {s.key: s.spec for s in self.configs.schedules()}
                for row in await self._q(self.queue.schedules):
                    if self._stopping.is_set():
                        return  # a stopping dispatcher fires nothing more
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
            await asyncio.sleep(max(0.0, wake_at - now))

    def _schedule_channel(self, key: str) -> str | None:
        """The site's channel for a schedule (step 4 of jobs/requests.py's rule): the
        active-tickets report goes to the STAT channel when nothing else names one.

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
        request = build_request(
            self.configs.namespaces[namespace],
            job_type,
            source=Source.SCHEDULE,
            args=args,
            channel=channel,
            site_channel=self._schedule_channel(key),
            user=f"schedule {key}",
        )
        result = await self._q(self.queue.fire_schedule, key, due, request)
        if result is not None:
            self.log.info("schedule fired", schedule=key, due=due, job_id=result.job.id)
            self._wake.set()

    # housekeeping ----------------------------------------------------------------
    async def _prune_loop(self) -> None:
        while True:
            try:
                cutoff = self.queue.now() - self.settings.history_days * 86400
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
        # Jobs claimed just before the stop are started first: a job that started after the
        # running ones were stopped would be left to run its whole time.
        await self._launched.wait()
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
