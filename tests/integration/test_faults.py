"""Faults a job queue meets on a real host: a full disk, a read-only, deleted or corrupt database.

Most are faults of SQLite's file, which is on this host (`sqlite_only`): a PostgreSQL
server keeps its files on its own host. What a dispatcher does about jobs it does not
run, and about a full disk for job logs, runs on both backends.

The disk is a real 2 MiB tmpfs mounted over the test home's `var/` (root only: the
tests say so and skip elsewhere); a read-only database is made with `chattr +i`,
which binds root too; a corrupt one is garbage bytes. The dispatcher runs as
`stat-bot dispatcher` or in-process on the real queue; the CLI as a subprocess.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from stat_bot.dispatcher.service import Dispatcher
from stat_bot.jobs.config import JobConfigs
from stat_bot.jobs.model import JobRequest, JobStatus
from stat_bot.queue import Queue, open_queue
from stat_bot.queue.base import QueueError, QueueMissingError
from stat_bot.queue.sqlite import FILE_CHECK_EVERY, SQLiteQueue
from stat_bot.report.notifiers import RecordingNotifier
from stat_bot.settings import Settings
from tests.integration.conftest import ThreadDispatcher, wait_status, wait_until

CONFIG = {
    "t": {
        "jobs": {
            # Waits for the test's go-ahead, then writes its output (to a full disk, maybe).
            "gated": {"run_args_template": "while [ ! -e {gate} ]; do sleep 0.05; done; echo done"},
            "ok": {"run_args_template": "echo fine", "report_stdout": True},
            "short": {"run_args_template": "sleep 60", "timeout": 1},
        },
        "slack": [{"command": "ok", "job_type": "ok"}],
    }
}


def request(job_type: str = "ok", **args: str) -> JobRequest:
    return JobRequest(
        namespace="t", job_type=job_type, args=args, source="cli", user="ada", coalesce=False
    )


# -- real faults -------------------------------------------------------------------------------


@pytest.fixture
def small_var(home: Path) -> Iterator[Path]:
    """The test home's var/ (STATE_DIR: database and job logs) on a 2 MiB tmpfs."""
    var = home / "var"
    var.mkdir(exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("a full file system is a 2 MiB tmpfs mount, which needs root")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(var)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here: {mounted.stderr.strip()}")
    try:
        yield var
    finally:
        subprocess.run(["umount", "-l", str(var)], check=False)


def fill(directory: Path) -> Path:
    """Fill the file system holding `directory` to the last byte; returns the filler file."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        chunk = 1 << 16
        while chunk:
            try:
                os.write(fd, b"\0" * chunk)
            except OSError as error:
                if error.errno != errno.ENOSPC:
                    raise
                chunk //= 2
    finally:
        os.close(fd)
    return filler


@pytest.fixture
def immutable() -> Iterator[Callable[[Path], None]]:
    """`chattr +i` a file (read-only even for root); undone at the end."""
    made: list[Path] = []

    def make(path: Path) -> None:
        done = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"chattr +i is not available here: {done.stderr.strip()}")
        made.append(path)

    yield make
    for path in made:
        subprocess.run(["chattr", "-i", str(path)], check=False)


def writable(path: Path) -> None:
    subprocess.run(["chattr", "-i", str(path)], check=True)


# -- the queue -----------------------------------------------------------------------------------


@pytest.mark.sqlite_only("a full disk under the SQLite file and its WAL")
def test_a_full_disk_fails_writes_with_a_reason_and_they_resume_when_space_returns(small_var):
    queue = SQLiteQueue(small_var / "stat-bot.sqlite3")
    queue.migrate()
    queue.enqueue(request())
    filler = fill(small_var)
    with pytest.raises(QueueError, match="disk is full") as failed:
        queue.enqueue(request())  # its commit must grow the WAL: no byte is left
    assert str(small_var / "stat-bot.sqlite3") in str(failed.value)
    before = len(queue.jobs(limit=10_000))  # reads still work, and see nothing half-written
    filler.unlink()
    job = queue.enqueue(request()).job  # the same queue object: no restart needed
    assert queue.jobs(limit=1)[0].id == job.id
    assert len(queue.jobs(limit=10_000)) == before + 1
    queue.close()


@pytest.mark.sqlite_only("the SQLite file made read-only (chattr +i)")
def test_a_database_opened_read_only_recovers_once_writable_and_readyz_says_so(
    queue, immutable, make_web_app, configure
):
    configure(CONFIG)
    immutable(queue.path)
    # A new process (a web worker started now) opens the file while it is read-only.
    later = SQLiteQueue(queue.path)
    later.migrate()  # up to date: nothing to write, so this works on a read-only file
    with pytest.raises(QueueError, match="read-only"):
        later.enqueue(request())
    client = make_web_app(queue=later).test_client()
    body = client.get("/readyz").get_json()
    assert body["checks"]["database"]["ready"] is False
    assert "cannot be written" in body["checks"]["database"]["detail"]
    assert "read-only" in body["checks"]["database"]["detail"]

    writable(queue.path)
    assert later.enqueue(request()).job.id  # recovered without a restart
    body = client.get("/readyz").get_json()
    assert body["checks"]["database"] == {
        "ready": True,
        "detail": "the queue database answers reads and writes",
    }
    later.close()


@pytest.mark.sqlite_only("the SQLite file deleted while in use")
def test_a_deleted_database_is_named_never_recreated_and_a_new_one_is_picked_up(
    queue, make_web_app, configure, cli, start_dispatcher
):
    configure(CONFIG)
    path = queue.path
    dispatcher = start_dispatcher()
    assert wait_status(queue, queue.enqueue(request()).job.id, JobStatus.SUCCEEDED)
    client = make_web_app().test_client()
    assert client.get("/readyz").get_json()["checks"]["database"]["ready"] is True
    path.unlink()
    time.sleep(FILE_CHECK_EVERY)  # the file is compared with the open one at most this often
    with pytest.raises(QueueMissingError, match=f"no database at {path}"):
        queue.enqueue(request())
    database = client.get("/readyz").get_json()["checks"]["database"]
    assert database["ready"] is False
    assert str(path) in database["detail"]
    assert not path.exists()  # neither the service nor the check made a new empty one

    enqueue = cli("enqueue", "t ok")
    assert enqueue.returncode == 1
    assert enqueue.stderr.splitlines() == [
        f"stat-bot: no database at {path} (deleted, or never created): start the service "
        "(`stat-bot run`) or run `stat-bot db migrate` to create one"
    ]
    assert not path.exists()

    # The running dispatcher noticed too, and said which file.
    wait_until(
        lambda: [e for e in events(dispatcher, "queue database deleted while in use")
                 if e["path"] == str(path)],
        what="the dispatcher to log the deleted database",
    )  # fmt: skip

    migrated = cli("db", "migrate")
    assert migrated.returncode == 0, migrated.stderr
    assert path.exists()
    job = queue.enqueue(request()).job  # the running service uses the new file by itself
    assert job.id == 1
    assert wait_status(queue, job.id, JobStatus.SUCCEEDED, timeout=30).exit_code == 0
    body = wait_until(
        lambda: (b := client.get("/readyz").get_json())["ready"] and b,
        timeout=30,
        what="/readyz ready with the new database (the dispatcher registered again)",
    )
    assert body["checks"]["database"]["ready"] is True


# -- the CLI ----------------------------------------------------------------------------------


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("stat-bot: ")
    return lines[0]


@pytest.mark.sqlite_only("a read-only, then a corrupt SQLite file")
def test_cli_errors_for_a_corrupt_read_only_or_full_database_are_one_line(
    configure, cli, queue, immutable, settings
):
    configure(CONFIG)
    path = queue.path
    queue.enqueue(request())
    immutable(path)
    line = one_line_error(cli("enqueue", "t ok"))
    assert str(path) in line
    assert "read-only" in line
    status = cli("status")  # reading a read-only database works
    assert status.returncode == 0, status.stderr
    writable(path)
    queue.close()

    path.write_bytes(os.urandom(8192))
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    for args in (["status"], ["jobs"], ["enqueue", "t ok"], ["cancel", "1"], ["logs", "1"]):
        line = one_line_error(cli(*args))
        assert str(path) in line, args
        assert "not an SQLite database" in line, args


@pytest.mark.sqlite_only("a full disk under the SQLite file")
def test_cli_errors_for_a_full_disk_and_a_missing_config_are_one_line(
    small_var, configure, cli, home
):
    configure(CONFIG)
    migrated = cli("db", "migrate")
    assert migrated.returncode == 0, migrated.stderr
    keep = SQLiteQueue(small_var / "stat-bot.sqlite3")  # keeps -wal and -shm in place
    keep.migrate()
    filler = fill(small_var)
    line = one_line_error(cli("enqueue", "t ok"))
    assert "stat-bot.sqlite3" in line
    filler.unlink()
    assert cli("enqueue", "t ok").returncode == 0
    keep.close()

    line = one_line_error(cli("enqueue", "t ok", env={"JOB_CONFIGS": str(home / "nowhere.py")}))
    assert "nowhere.py" in line


# -- the dispatcher ----------------------------------------------------------------------------


def events(dispatcher: Any, name: str) -> list[dict[str, Any]]:
    return [e for e in dispatcher.events() if e.get("event") == name]


@pytest.mark.sqlite_only("a full disk under the SQLite file and the job logs")
def test_a_job_ending_on_a_full_disk_is_recorded_once_space_returns_and_says_disk_full(
    small_var, configure, start_dispatcher, tmp_path
):
    configure(CONFIG)
    dispatcher = start_dispatcher()
    queue = SQLiteQueue(small_var / "stat-bot.sqlite3", create=False)
    queue.migrate()
    gate = tmp_path / "go"
    job = queue.enqueue(request("gated", gate=str(gate))).job
    wait_status(queue, job.id, JobStatus.RUNNING)
    filler = fill(small_var)
    gate.touch()  # the job now writes "done" to a stdout file on the full disk
    retried = wait_until(
        lambda: [e for e in events(dispatcher, "queue write failed; retrying")
                 if e.get("job_id") == job.id and e.get("what") == "finish"],
        timeout=30,
        what="the dispatcher to retry the job's end",
    )  # fmt: skip
    assert "disk is full" in retried[0]["error"]
    assert queue.get(job.id).status is JobStatus.RUNNING  # not yet recorded, not lost either

    filler.unlink()
    ended = wait_status(queue, job.id, JobStatus.FAILED, timeout=30)
    assert ended.note is not None
    assert "disk full" in ended.note
    assert str(small_var / "logs" / "t" / "gated" / str(job.id)) in ended.note
    # Everything else resumed without a restart: the next job runs and is recorded.
    after = queue.enqueue(request()).job
    assert wait_status(queue, after.id, JobStatus.SUCCEEDED, timeout=30).exit_code == 0
    assert dispatcher.proc.poll() is None
    assert "Task exception was never retrieved" not in dispatcher.stderr()
    queue.close()


@pytest.mark.sqlite_only("a full disk under the SQLite file")
def test_shutdown_gives_up_an_unwritable_end_in_bounded_time_and_the_next_start_recovers_it(
    small_var, configure, start_dispatcher, tmp_path
):
    configure(CONFIG)
    dispatcher = start_dispatcher(STOP_WRITE_TIMEOUT="2")
    queue = SQLiteQueue(small_var / "stat-bot.sqlite3", create=False)
    queue.migrate()
    gate = tmp_path / "go"
    job = queue.enqueue(request("gated", gate=str(gate))).job
    wait_status(queue, job.id, JobStatus.RUNNING)
    filler = fill(small_var)
    gate.touch()
    wait_until(
        lambda: events(dispatcher, "queue write failed; retrying"),
        timeout=30,
        what="a failed write",
    )
    stopped_at = time.monotonic()
    dispatcher.proc.send_signal(signal.SIGTERM)
    dispatcher.proc.wait(30)
    # STOP_WRITE_TIMEOUT (2 s) plus the time to stop; without a bound it never exits.
    assert time.monotonic() - stopped_at < 20
    abandoned = events(
        dispatcher, "queue write abandoned at shutdown; the next start recovers the job"
    )
    assert [e["job_id"] for e in abandoned] == [job.id]
    assert queue.get(job.id).status is JobStatus.RUNNING

    filler.unlink()
    start_dispatcher()
    recovered = wait_status(queue, job.id, JobStatus.LOST, timeout=30)
    assert "stopped while it ran" in (recovered.note or "")
    queue.close()


@pytest.fixture
def own_dispatcher(
    settings: Settings, queue: Queue
) -> Iterator[Callable[[JobConfigs, str], ThreadDispatcher]]:
    """An in-process dispatcher with a worker id chosen by the test."""
    started: list[ThreadDispatcher] = []

    def start(configs: JobConfigs, worker_id: str) -> ThreadDispatcher:
        own = open_queue(settings)
        notifier = RecordingNotifier()
        td = ThreadDispatcher(
            Dispatcher(settings, configs, own, notifier, worker_id=worker_id), notifier
        )
        started.append(td)
        return td.start()

    yield start
    for td in started:
        td.stop()
        td.dispatcher.queue.close()


def test_a_running_job_its_own_dispatcher_does_not_run_is_ended(configure, queue, own_dispatcher):
    configs = configure(CONFIG)
    job = queue.enqueue(request()).job
    # The database says worker "w-stray" runs it, but that dispatcher never launched it
    # (as after a finish write it gave up on, or a bug).
    [claimed] = queue.claim("w-stray", 1)
    assert claimed.id == job.id
    own_dispatcher(configs, "w-stray")
    ended = wait_status(queue, job.id, JobStatus.LOST, timeout=20)
    assert ended.note == "lost: its dispatcher was no longer running it and never recorded its end"


def test_a_job_running_past_its_timeout_and_grace_is_ended_whoever_runs_it(
    configure, queue, own_dispatcher, settings
):
    configs = configure(CONFIG)
    now = time.time()
    # Another dispatcher, alive (fresh heartbeat, a live process on this host), whose
    # job never ended in the database: 1 s timeout, started long ago.
    queue.register_worker("w-other", "elsewhere", os.getpid(), now=now + 3600)
    job = queue.enqueue(request("short"), now=now - 100).job
    [claimed] = queue.claim("w-other", 1, now=now - 100)
    assert claimed.id == job.id
    own_dispatcher(configs, "w-me")
    ended = wait_status(queue, job.id, JobStatus.LOST, timeout=20)
    assert "past its timeout of 1 s + KILL_GRACE + LOST_AFTER" in (ended.note or "")
    # A job of that live dispatcher still within its time is left alone (claimed for a
    # time ahead, so this dispatcher cannot take it first).
    ahead = now + 3600
    young = queue.enqueue(request("short"), now=ahead).job
    [claimed] = queue.claim("w-other", 1, now=ahead)
    assert claimed.id == young.id
    time.sleep(settings.heartbeat_interval * 4)  # several rounds of the safety net
    assert queue.get(young.id).status is JobStatus.RUNNING


@pytest.mark.sqlite_only("a full disk under the SQLite file")
def test_readyz_names_a_full_disk(small_var, configure, make_web_app):
    configure(CONFIG)
    queue = SQLiteQueue(small_var / "stat-bot.sqlite3")
    queue.migrate()
    client = make_web_app(queue=queue).test_client()
    assert client.get("/readyz").get_json()["checks"]["database"]["ready"] is True
    filler = fill(small_var)
    database = wait_until(
        lambda: (
            (d := client.get("/readyz").get_json()["checks"]["database"])["ready"] is False and d
        ),
        what="/readyz to see the full disk",
    )
    assert "disk is full" in database["detail"]
    filler.unlink()
    wait_until(
        lambda: client.get("/readyz").get_json()["checks"]["database"]["ready"],
        what="/readyz to be ready again",
    )
    queue.close()


def test_a_job_on_a_full_log_disk_says_disk_full_with_the_path(
    small_var, home, make_settings, configure, thread_dispatcher
):
    configure(CONFIG)
    # The database on the ordinary disk, the job logs (LOGS_DIR) on the full one.
    settings = make_settings(state_dir=home / "state", logs_dir=small_var / "logs")
    queue = open_queue(settings)
    thread_dispatcher(None, settings)
    filler = fill(small_var)
    job = queue.enqueue(request()).job  # `echo fine` into a stdout file with no room
    ended = wait_status(queue, job.id, JobStatus.FAILED)
    assert ended.note is not None
    assert "disk full" in ended.note
    assert str(small_var / "logs" / "t" / "ok" / str(job.id)) in ended.note
    filler.unlink()
    again = queue.enqueue(request()).job
    assert wait_status(queue, again.id, JobStatus.SUCCEEDED).note is None
    queue.close()


@pytest.mark.sqlite_only("the SQLite file replaced while in use")
def test_a_replaced_database_is_named_in_the_log_and_the_new_file_used(queue, tmp_path):
    from structlog.testing import capture_logs

    queue.enqueue(request())
    other = SQLiteQueue(tmp_path / "restored.sqlite3")
    other.migrate()
    for _ in range(3):
        other.enqueue(request())
    other.close()  # its last connection: the WAL is folded in and removed
    os.replace(other.path, queue.path)
    time.sleep(FILE_CHECK_EVERY)
    with capture_logs() as logs:
        assert len(queue.jobs()) == 3  # the new file's jobs, not the old one's
    assert [e["path"] for e in logs if "replaced while in use" in e["event"]] == [str(queue.path)]
    # The old database's write-ahead log was kept aside, not read into the new file.
    assert len(list(queue.path.parent.glob(f"{queue.path.name}-wal.orphaned-*"))) == 1
