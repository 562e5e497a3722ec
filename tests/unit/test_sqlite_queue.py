"""The SQLite queue on a real file: state transitions, claiming rules, schedules, wake-ups."""

from __future__ import annotations

import dataclasses
import os
import select
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stat_bot.jobs.model import Job, JobRequest, JobStatus, ReportState
from stat_bot.queue import postgres_sql, sqlite_sql
from stat_bot.queue.base import QueueBusyError, QueueError
from stat_bot.queue.sqlite import FILE_CHECK_EVERY, MIGRATIONS, SQLiteQueue

T0 = 1_700_000_000.0


def request(job_type: str = "hello", namespace: str = "ns", **values) -> JobRequest:
    return JobRequest(namespace=namespace, job_type=job_type, **values)


@pytest.fixture
def other(queue: SQLiteQueue) -> Iterator[SQLiteQueue]:
    """A second queue object on the same file, as another process would have."""
    q = SQLiteQueue(queue.path)
    yield q
    q.close()


# --- schema --------------------------------------------------------------------------------


def test_migrate_is_idempotent_and_records_the_version(tmp_path: Path):
    q = SQLiteQueue(tmp_path / "q.sqlite3")
    try:
        assert q.migrate() == len(MIGRATIONS)
        assert q.migrate() == len(MIGRATIONS)
        job = q.enqueue(request(), now=T0).job
        assert q.migrate() == len(MIGRATIONS)
        assert q.get(job.id) == job
    finally:
        q.close()
    with sqlite3.connect(tmp_path / "q.sqlite3") as conn:
        versions = [v for (v,) in conn.execute("SELECT version FROM schema_version")]
        (mode,) = conn.execute("PRAGMA journal_mode").fetchone()
    assert versions == list(range(1, len(MIGRATIONS) + 1))
    assert mode == "wal"


def test_the_coalescing_lookup_searches_the_index_by_type_and_arguments(queue: SQLiteQueue):
    with sqlite3.connect(queue.path) as db:
        plan = db.execute(
            "EXPLAIN QUERY PLAN " + sqlite_sql.SQL_FIND_QUEUED_SAME_ARGS,
            {"ns": "ns", "jt": "hello", "args": "{}"},
        ).fetchall()
    assert [row[-1] for row in plan] == [
        "SEARCH jobs USING INDEX jobs_queued_args (namespace=? AND job_type=? AND args=?)"
    ]


@pytest.mark.parametrize(
    ("statement", "params", "outbox_step"),
    [
        (
            sqlite_sql.SQL_OUTBOX_DUE,
            {"now": T0, "limit": 20},
            "SEARCH outbox USING INDEX outbox_pending (next_attempt_at<?)",
        ),
        (sqlite_sql.SQL_OUTBOX_LAST_ERROR, (), "SCAN outbox USING INDEX outbox_pending"),
    ],
    ids=["due", "last-error"],
)
def test_the_outbox_is_read_through_its_pending_messages_only(
    queue: SQLiteQueue, statement: str, params, outbox_step: str
):
    # The messages sent stay for the history's 90 days; a walk of the table in id order
    # would read them all to find the few pending.
    with sqlite3.connect(queue.path) as db:
        plan = [row[-1] for row in db.execute("EXPLAIN QUERY PLAN " + statement, params)]
    assert [step for step in plan if step.startswith(("SCAN outbox", "SEARCH outbox"))] == [
        outbox_step
    ], plan


def test_an_upgrade_to_the_coalescing_index_keeps_the_queued_jobs_and_finds_their_twins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    path = tmp_path / "queue.sqlite3"
    with monkeypatch.context() as before:
        before.setattr("stat_bot.queue.sqlite.MIGRATIONS", MIGRATIONS[:16])
        old = SQLiteQueue(path)
        assert old.migrate() == 16
        queued = [old.enqueue(request(args={"n": str(i)}), now=T0).job for i in range(3)]
        old.close()
    queue = SQLiteQueue(path)
    try:
        assert queue.migrate() == len(MIGRATIONS)
        twin = queue.enqueue(request(args={"n": "1"}, channel="C2"), now=T0 + 1)
        assert (twin.coalesced, twin.job.id) == (True, queued[1].id)
    finally:
        queue.close()
    with sqlite3.connect(path) as db:
        indexes = {n for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert "jobs_queued_args" in indexes
    assert "jobs_queued_type" not in indexes


def test_newer_schema_is_refused(tmp_path: Path):
    path = tmp_path / "q.sqlite3"
    q = SQLiteQueue(path)
    q.migrate()
    q.close()
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO schema_version (version) VALUES (?)", (len(MIGRATIONS) + 5,))
    q = SQLiteQueue(path)
    try:
        with pytest.raises(QueueError) as caught:
            q.migrate()
    finally:
        q.close()
    message = str(caught.value)
    assert str(path) in message
    assert f"schema version {len(MIGRATIONS) + 5}" in message
    assert "upgrade STAT bot" in message


def test_creates_the_database_folder(tmp_path: Path):
    q = SQLiteQueue(tmp_path / "deep" / "er" / "q.sqlite3")
    try:
        q.migrate()
    finally:
        q.close()
    assert (tmp_path / "deep" / "er" / "q.sqlite3").is_file()


# --- enqueue, claim, finish ------------------------------------------------------------


# --- cancelling ------------------------------------------------------------------------


# --- lost workers ------------------------------------------------------------------------


# --- schedules ---------------------------------------------------------------------------


# --- history ------------------------------------------------------------------------------


def test_a_failed_write_leaves_nothing_half_written(queue: SQLiteQueue):
    def write_then_fail() -> None:
        with queue._write() as conn:
            conn.execute(
                "INSERT INTO suppressions (namespace, job_type, start_at, end_at, created_at) "
                "VALUES ('ns', 'x', 0, 1, 0)"
            )
            conn.execute("INSERT INTO no_such_table VALUES (1)")

    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        write_then_fail()
    assert queue.suppressions() == []
    # The connection is usable afterwards: no transaction was left open.
    assert queue.enqueue(request(), now=T0).job.id == 1


# --- wake-ups ---------------------------------------------------------------------------


def readable(fd: int, timeout: float) -> bool:
    ready, _, _ = select.select([fd], [], [], timeout)
    return bool(ready)


def test_closed_listener_removes_its_marker(queue: SQLiteQueue):
    listener = queue.wakeup_listener("dispatcher")
    directory = Path(f"{queue.path}.wake")
    assert len(os.listdir(directory)) == 1
    listener.close()
    assert os.listdir(directory) == []


def test_stale_marker_is_removed_on_notify(queue: SQLiteQueue, other: SQLiteQueue):
    live = queue.wakeup_listener("live")
    directory = Path(f"{queue.path}.wake")
    # A dispatcher that died without cleaning up leaves its marker but no socket.
    stale = directory / "crashed-0000abcd"
    stale.touch()
    try:
        other.enqueue(request(), now=T0)
        assert not stale.exists()
        assert readable(live.fileno(), 5)
        assert len(os.listdir(directory)) == 1
    finally:
        live.close()


def test_a_listener_that_comes_after_a_reused_listing_is_woken(queue: SQLiteQueue):
    # The marker folder's listing is reused while its mtime stays the same, once settled:
    first = queue.wakeup_listener("first")
    directory = Path(f"{queue.path}.wake")
    settled = time.time() - 10
    os.utime(directory, (settled, settled))
    queue.notify()  # lists the folder and keeps the listing
    queue.notify()  # reuses it
    assert readable(first.fileno(), 5)
    second = queue.wakeup_listener("second")  # a new marker: a new mtime
    try:
        queue.notify()
        assert readable(second.fileno(), 5)
    finally:
        first.close()
        second.close()


def test_a_listener_in_a_marker_folder_made_again_is_woken(queue: SQLiteQueue):
    """The sender reuses its listing of the folder; one deleted and made again (by a
    listener starting after a cleanup) is listed afresh."""
    first = queue.wakeup_listener("first")
    directory = Path(f"{queue.path}.wake")
    settled = time.time() - 10
    os.utime(directory, (settled, settled))
    queue.notify()
    queue.notify()  # the listing kept
    assert readable(first.fileno(), 5)
    first.close()
    shutil.rmtree(directory)
    second = queue.wakeup_listener("second")
    try:
        queue.notify()
        assert readable(second.fileno(), 5)
    finally:
        second.close()


def test_notify_without_listeners_is_harmless(queue: SQLiteQueue):
    queue.notify()
    queue.enqueue(request(), now=T0)
    assert not Path(f"{queue.path}.wake").exists()


# --- calls that must not wait ------------------------------------------------------------


@pytest.fixture
def write_lock(queue: SQLiteQueue) -> Iterator[sqlite3.Connection]:
    """Another connection, ready to hold the database's write lock as a busy CLI or bot would."""
    holder = sqlite3.connect(queue.path, isolation_level=None)
    yield holder
    if holder.in_transaction:
        holder.execute("ROLLBACK")
    holder.close()


def test_call_nowait_gives_up_at_once_while_another_writer_holds_the_lock(
    queue: SQLiteQueue, other: SQLiteQueue, write_lock: sqlite3.Connection
):
    job = queue.enqueue(request(), now=T0).job
    write_lock.execute("BEGIN IMMEDIATE")

    started = time.monotonic()
    with pytest.raises(QueueBusyError, match="locked by another writer"):
        other.call_nowait(other.claim, "w1", 1, now=T0 + 1)
    assert time.monotonic() - started < 0.5
    # Nothing was done, and reads never wait for a writer in WAL mode.
    stored = other.call_nowait(other.get, job.id)
    assert stored is not None
    assert stored.status is JobStatus.QUEUED

    write_lock.execute("ROLLBACK")
    assert [j.id for j in other.call_nowait(other.claim, "w1", 1, now=T0 + 1)] == [job.id]


def test_after_call_nowait_other_calls_wait_for_the_lock_again(tmp_path: Path):
    q = SQLiteQueue(tmp_path / "q.sqlite3", busy_timeout=0.6)
    q.migrate()
    holder = sqlite3.connect(q.path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        with pytest.raises(QueueBusyError):
            q.call_nowait(q.enqueue, request())
        started = time.monotonic()
        with pytest.raises(QueueError) as raised:
            q.enqueue(request())
        assert not isinstance(raised.value, QueueBusyError)
        assert time.monotonic() - started >= 0.5  # it waited out its busy timeout
        holder.execute("ROLLBACK")
        assert q.enqueue(request()).job.id == 1
    finally:
        holder.close()
        q.close()


# --- threads of one process take turns ----------------------------------------------------


class HeldWrite:
    """A delivery whose transaction stays open (its notices are asked for inside it) until
    `release`: another thread of the process, mid-write, as in a web worker."""

    def __init__(self, queue: SQLiteQueue) -> None:
        self.holding = threading.Event()
        self.release = threading.Event()

        def notices(results: list) -> list:
            self.holding.set()
            assert self.release.wait(10)
            return []

        self.thread = threading.Thread(
            target=queue.accept_delivery, args=("github", "held", [request("held")]),
            kwargs={"notices": notices},
        )  # fmt: skip
        self.thread.start()
        assert self.holding.wait(10)

    def done(self) -> None:
        self.release.set()
        self.thread.join(10)
        assert not self.thread.is_alive()


def test_a_thread_waits_its_turn_behind_another_threads_write(tmp_path: Path):
    q = SQLiteQueue(tmp_path / "q.sqlite3", busy_timeout=10)
    q.migrate()
    held = HeldWrite(q)
    with pytest.raises(QueueBusyError, match="being written by another thread"):
        q.call_nowait(q.enqueue, request("nowait"))
    finished: list[float] = []
    waiter = threading.Thread(target=lambda: finished.append(q.enqueue(request("after")).job.id))
    waiter.start()
    time.sleep(0.3)
    assert waiter.is_alive()  # waiting, not refused
    assert not finished
    held.done()
    waiter.join(10)
    assert finished, "the waiting write never went through"
    assert sorted(j.job_type for j in q.jobs()) == ["after", "held"]
    q.close()


def test_a_thread_that_waits_longer_than_the_busy_timeout_is_told_why(tmp_path: Path):
    q = SQLiteQueue(tmp_path / "q.sqlite3", busy_timeout=0.3)
    q.migrate()
    held = HeldWrite(q)
    try:
        started = time.monotonic()
        with pytest.raises(QueueError, match=r"another thread of this process held it for 0\.3 s"):
            q.enqueue(request("late"))
        assert time.monotonic() - started >= 0.25
    finally:
        held.done()
    assert q.enqueue(request("later")).job.id  # the turn is free again
    q.close()


def test_the_busy_timeout_covers_the_wait_for_the_turn_and_for_sqlites_lock_together(
    tmp_path: Path,
):
    q = SQLiteQueue(tmp_path / "q.sqlite3", busy_timeout=1.0)
    q.migrate()
    holder = sqlite3.connect(q.path, isolation_level=None)  # another process's write, throughout
    holder.execute("BEGIN IMMEDIATE")
    released = threading.Event()

    def hold_the_turn() -> None:
        with q._writer_gate():
            time.sleep(0.8)
        released.set()

    turn = threading.Thread(target=hold_the_turn)
    turn.start()
    try:
        time.sleep(0.1)  # the turn is taken
        started = time.monotonic()
        with pytest.raises(QueueError) as raised:
            q.enqueue(request("late"))
        waited = time.monotonic() - started
        assert not isinstance(raised.value, QueueBusyError)
        assert released.is_set()  # it did wait for the turn, then for SQLite's lock
        assert 0.9 <= waited < 1.6  # one busy timeout in all, not one for each wait
    finally:
        turn.join(10)
        holder.execute("ROLLBACK")
        holder.close()
        q.close()


def test_a_processs_threads_write_through_one_connection(tmp_path: Path):
    # SQLite empties a connection's page cache when another wrote since: one writing
    # connection per process keeps it, however many threads take turns at it.
    q = SQLiteQueue(tmp_path / "q.sqlite3")
    q.migrate()
    used = []

    def write(n: int) -> None:
        q.enqueue(request(f"t{n}"))
        used.append(q._writer.conn)

    for n in range(4):
        thread = threading.Thread(target=write, args=(n,))
        thread.start()
        thread.join(10)
    assert len(used) == 4
    assert all(conn is used[0] for conn in used)
    assert len(q.jobs()) == 4
    q.close()


def test_a_read_takes_the_writers_connection_when_free_and_never_waits_for_a_write(
    tmp_path: Path,
):
    q = SQLiteQueue(tmp_path / "q.sqlite3", busy_timeout=10)
    q.migrate()
    q.enqueue(request("first"))
    got: list = []
    thread = threading.Thread(target=lambda: got.append((q.jobs(), q._local.conn)))
    thread.start()
    thread.join(10)
    ((jobs, own),) = got
    assert len(jobs) == 1
    assert own is None  # read on the writer's connection: no connection of its own opened
    held = HeldWrite(q)  # another thread mid-write, its delivery not yet committed
    try:
        got.clear()
        started = time.monotonic()
        thread = threading.Thread(target=lambda: got.append(q.jobs()))
        thread.start()
        thread.join(5)
        assert time.monotonic() - started < 2  # not held up by the write
        assert [job.job_type for job in got[0]] == ["first"]  # and it sees only what committed
    finally:
        held.done()
    assert {job.job_type for job in q.jobs()} == {"first", "held"}
    q.close()


def test_a_replaced_file_is_named_until_the_writer_moves_to_it(tmp_path: Path):
    q = SQLiteQueue(tmp_path / "q.sqlite3")
    q.migrate()
    q.enqueue(request("old"))
    held = HeldWrite(q)  # meanwhile this thread reads on a connection of its own
    try:
        assert [job.job_type for job in q.jobs()] == ["old"]
    finally:
        held.done()
    assert q._local.conn is not None
    new = SQLiteQueue(tmp_path / "new.sqlite3")
    new.migrate()
    new.close()
    os.replace(tmp_path / "new.sqlite3", q.path)
    assert q.file_problem() == f"the database {q.path} was replaced by another file while in use"
    time.sleep(FILE_CHECK_EVERY)  # the file is compared with the open one at most this often
    q.enqueue(request("new"))  # the writer finds the new file and moves to it
    # Named no longer, though this thread's own reading connection is still the old
    # file's: it compares the file itself when next used.
    assert q.file_problem() is None
    assert q._read_on(None, "SELECT job_type FROM jobs", ()) == [("new",)]
    assert [job.job_type for job in q.jobs()] == ["new"]
    q.close()


def test_a_forked_child_does_not_inherit_a_turn_held_by_a_parents_thread(tmp_path: Path):
    # Only the turn: an SQLite connection must not cross a fork mid-transaction (SQLite's
    # rule), and the service forks (gunicorn's workers) before any is opened.
    q = SQLiteQueue(tmp_path / "q.sqlite3")
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with q._writer_gate():
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    assert held.wait(10)
    try:
        pid = os.fork()
        if pid == 0:  # the child: the holding thread is not here, and never lets go
            os._exit(0 if q._writer_gate().acquire(timeout=2) else 1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        release.set()
        holder.join(10)


# --- group commit ------------------------------------------------------------------------


def test_write_many_commits_all_writes_in_one_transaction(queue: SQLiteQueue):
    jobs = [queue.enqueue(request(t), now=T0).job for t in ("a", "b", "c", "d")]
    queue.claim("w", 4, now=T0 + 1)
    wal = queue.path.with_name(queue.path.name + "-wal")

    def writes(first, second):
        return [
            ("mark_started", (first.id, 101, "/logs/a"), {}),
            ("finish", (second.id, JobStatus.FAILED, 2), {"note": "boom", "now": T0 + 2}),
            ("record_report", (second.id, ReportState.DELIVERED), {}),
        ]

    before = wal.stat().st_size
    results = queue.write_many(writes(jobs[0], jobs[1]))
    grouped = wal.stat().st_size - before
    before = wal.stat().st_size
    for name, args, kwargs in writes(jobs[2], jobs[3]):
        getattr(queue, name)(*args, **kwargs)
    separate = wal.stat().st_size - before
    # One commit writes each changed page once; three commits write the jobs page thrice.
    assert 0 < grouped < separate

    assert results == [None, True, None]
    started = queue.get(jobs[0].id)
    assert (started.pid, started.log_dir) == (101, "/logs/a")
    finished = queue.get(jobs[1].id)
    assert (finished.status, finished.note, finished.report_state) == (
        JobStatus.FAILED,
        "boom",
        ReportState.DELIVERED,
    )


def test_a_merge_and_its_requester_are_one_transaction(queue: SQLiteQueue, other: SQLiteQueue):
    job = queue.enqueue(request(args={"n": "1"}, delay_seconds=5, coalesce="type"), now=T0).job
    with sqlite3.connect(queue.path) as db:
        db.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON job_requesters "
            "BEGIN SELECT RAISE(ABORT, 'requesters table refused'); END"
        )
    with pytest.raises(sqlite3.DatabaseError, match="requesters table refused"):
        other.enqueue(
            request(args={"n": "2"}, channel="C2", delay_seconds=5, coalesce="type"), now=T0 + 3
        )
    # Nothing of the merge stayed: the job still has its own arguments and start.
    kept = queue.get(job.id)
    assert kept.args == {"n": "1"}
    assert kept.start_after == T0 + 5
    assert queue.requesters(job.id) == []


def test_requesters_go_when_their_job_is_pruned(queue: SQLiteQueue):
    job = queue.enqueue(request(channel="C1"), now=T0).job
    queue.enqueue(request(channel="C2"), now=T0)
    (claimed,) = queue.claim("w1", 1, now=T0)
    queue.finish(claimed.id, JobStatus.SUCCEEDED, 0, now=T0 + 1)
    assert len(queue.requesters(job.id)) == 1
    assert [j.id for j in queue.prune(T0 + 2)] == [job.id]
    with sqlite3.connect(queue.path) as db:
        assert db.execute("SELECT count(*) FROM job_requesters").fetchone() == (0,)


@pytest.mark.parametrize("module", [sqlite_sql, postgres_sql], ids=["sqlite", "postgres"])
def test_job_columns_are_the_job_fields_in_order(module):
    # relational._job builds a Job from a row positionally.
    columns = [name.strip().strip('"') for name in module.JOB_COLUMNS.split(",")]
    assert columns == [field.name for field in dataclasses.fields(Job)]
