"""The embedded queue: one SQLite file in WAL mode shared by every process.

This module opens and guards the file; the statements are in sqlite_sql.py and the
logic, shared with PostgreSQL, in relational.py. Writes run in
`BEGIN IMMEDIATE` transactions so concurrent writers queue on SQLite's lock
(bounded by the busy timeout) instead of failing half-way. A process writes
through one connection, its threads taking turns at it (`_writer_gate`); each
thread reads through a connection of its own, so a read never waits for a write.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Protocol, TypeVar

import structlog

from stat_bot.queue import sqlite_sql
from stat_bot.queue.base import QueueBusyError, QueueError, QueueMissingError, WakeupListener
from stat_bot.queue.process import current as this_process
from stat_bot.queue.relational import RelationalQueue
from stat_bot.queue.sqlite_sql import MIGRATIONS, SQL_BEAT
from stat_bot.queue.wakeup import WakeupDirectory

T = TypeVar("T")
log = structlog.get_logger(__name__)

WAL_AUTOCHECKPOINT_PAGES = 16000
BUSY_FIRST_SLEEP = 0.0001
BUSY_MAX_SLEEP = 0.002
BUSY_CODES = frozenset(
    {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, 517, 261}
)  # + _SNAPSHOT, _RECOVERY
# Connections a forked child found open in its parent's name (see `SQLiteQueue._conn`).
_INHERITED: list[sqlite3.Connection] = []
FILE_CHECK_EVERY = 1.0  # seconds between checks that the database file is still the one open
# What a failed statement means, in words a person can act on (by primary result code).
PROBLEMS = {
    sqlite3.SQLITE_FULL: "the disk is full",
    sqlite3.SQLITE_READONLY: "it is read-only",
    sqlite3.SQLITE_CORRUPT: "it is corrupt (not a valid SQLite database)",
    sqlite3.SQLITE_NOTADB: "it is not an SQLite database (corrupt, or another kind of file)",
    sqlite3.SQLITE_CANTOPEN: "it cannot be opened",
    sqlite3.SQLITE_IOERR: "the disk answered with an I/O error",
    sqlite3.SQLITE_PERM: "permission denied",
}
READONLY_DBMOVED = 1032  # SQLITE_READONLY_DBMOVED: the file was deleted or moved while open


def is_fault(error: sqlite3.Error) -> bool:
    """Whether an error comes from the database's file or disk rather than from the SQL.

    Faults (full, read-only, corrupt, unreadable) are the world's doing and are raised as
    QueueError for callers to retry or report; a mistake in a statement stays itself.
    """
    code = getattr(error, "sqlite_errorcode", None) or 0
    return (code & 0xFF) in PROBLEMS or (isinstance(error, sqlite3.DatabaseError) and not code)


def describe(error: sqlite3.Error) -> str:
    """An SQLite error as a reason: what it means first, SQLite's own words after."""
    code = getattr(error, "sqlite_errorcode", None) or 0
    if code == READONLY_DBMOVED:
        return f"the file was deleted or moved while it was open ({error})"
    meaning = PROBLEMS.get(code & 0xFF)
    return f"{meaning} ({error})" if meaning else str(error)


class SQLiteQueue(RelationalQueue):
    """The Queue on one SQLite file; safe for many threads and processes at once."""

    sql = sqlite_sql

    def __init__(
        self,
        path: Path,
        *,
        busy_timeout: float = 30.0,
        synchronous: str = "NORMAL",
        outbox_expiry: float = 86400.0,
        create: bool = True,
    ) -> None:
        """`create`: whether `migrate` may create a missing database (the service's start,
        `stat-bot db migrate`). Nothing else ever creates one: a database deleted under a
        running service, or missing when a CLI command asks, is an error that says so."""
        self.path = Path(path).absolute()
        self.outbox_expiry = outbox_expiry
        self._busy_ms = int(busy_timeout * 1000)
        self._synchronous = synchronous
        self._create = create
        self._creating = False
        self._local = _ThreadState()  # each thread's connection for reads, and its flags
        self._writer = _Opened()  # the process's connection for writes, used under the gate
        self._wakeup = WakeupDirectory(self.path)
        self._gate = threading.RLock()
        self._gate_pid = this_process.pid

    # connections -----------------------------------------------------------
    def _missing(self) -> QueueMissingError:
        return QueueMissingError(
            f"no database at {self.path} (deleted, or never created): start the service "
            "(`stat-bot run`) or run `stat-bot db migrate` to create one"
        )

    def _file_id(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return st.st_dev, st.st_ino

    def _wal_id(self) -> tuple[int, int] | None:
        try:
            st = os.stat(f"{self.path}-wal")
        except FileNotFoundError:
            return None
        return st.st_dev, st.st_ino

    @contextmanager
    def _folder_locked(self) -> Iterator[None]:
        """An exclusive lock on the database's folder, between every process that uses it."""
        fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _set_aside(self) -> None:
        """Rename the -wal and -shm at the path (the caller holds `_folder_locked`).

        SQLite would read a write-ahead log left by a deleted or replaced database into
        the file now at the path (a WAL does not say which database it belongs to), and
        a database whose file was moved does not delete its WAL when closed. Renamed,
        not deleted: it may hold the last changes of the database that was removed.
        """
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for suffix in ("-wal", "-shm"):
            orphan = Path(f"{self.path}{suffix}")
            aside = Path(f"{self.path}{suffix}.orphaned-{stamp}-{os.getpid()}")
            try:
                orphan.rename(aside)
            except FileNotFoundError:
                continue
            log.warning(
                "set aside the write-ahead file of a database that is gone",
                path=str(self.path),
                kept_as=str(aside),
            )

    def _set_aside_stale(self, stale: tuple[int, int]) -> None:
        """Set aside the -wal/-shm if the -wal is still `stale` (the old database's).

        A -wal with another inode was made for the new file (by `db migrate`, or another
        process that got here first) and is left alone.
        """
        with self._folder_locked():
            if self._wal_id() == stale:
                self._set_aside()

    def _drop(self, opened: Held | None = None) -> None:
        """Forget a connection (this thread's, or `opened`'s): the next call opens a fresh one.

        After an error that may have left it unusable (opened read-only while the file
        was, the file deleted or replaced, an I/O error), reopening is what lets the
        service recover by itself once the cause is gone.
        """
        with suppress(sqlite3.Error):
            _forget(self._local if opened is None else opened)

    def _drop_after(self, error: QueueError, opened: Held | None = None) -> None:
        """`_drop` after a fault; a lock held by another writer leaves the connection be."""
        cause = error.__cause__
        if isinstance(cause, sqlite3.Error) and is_fault(cause):
            self._drop(opened)

    def file_problem(self) -> str | None:
        """What is wrong with the database file this process uses, or None.

        Compares the file at DATABASE_URL's path with the one the process's writing
        connection has open (device and inode), so a database deleted or replaced under
        a running service is named rather than silently written into a ghost. That
        connection serves every write and most reads; a thread's own reading connection,
        used while another thread writes, compares the file itself when next used.
        """
        now = self._file_id()
        if now is None:
            return f"the database {self.path} was deleted: restore it, or run `stat-bot db migrate`"
        opened = self._writer.ident
        if self._writer.conn is not None and opened and opened != now:
            return f"the database {self.path} was replaced by another file while in use"
        return None

    def _conn(self, opened: Held | None = None) -> sqlite3.Connection:
        """This thread's connection for reads, or `opened`'s (the writer's), opened if need be."""
        held = self._local if opened is None else opened
        conn = held.conn
        if conn is not None and held.pid == this_process.pid:
            if time.monotonic() < held.checked:
                return conn
            held.checked = time.monotonic() + FILE_CHECK_EVERY
            now = self._file_id()
            if now == held.ident:
                held.wal = self._wal_id()  # ours while this connection is open
                return conn
            # The write-ahead log at the path is still the old database's: it must not be
            # read into whatever file is there now (see `_set_aside_stale`).
            held.stale_wal = held.wal
            self._drop(held)
            conn = None
            if now is None:
                log.error("queue database deleted while in use", path=str(self.path))
                raise self._missing()
            log.warning(
                "queue database replaced while in use; opening the new file", path=str(self.path)
            )
        if conn is not None:
            _forget(held)  # a forked child's copy of its parent's connection
        stale = held.stale_wal
        if stale is not None:
            self._set_aside_stale(stale)
            held.stale_wal = None
        mode = "rwc" if self._creating else "rw"
        uri = f"file:{urllib.parse.quote(str(self.path))}?mode={mode}"
        try:
            # Not checked for the thread: the writer's connection serves every thread of the
            # process in turn (under the gate), a reader's only the thread that opened it.
            conn = sqlite3.connect(
                uri, uri=True, isolation_level=None, timeout=0, check_same_thread=False
            )
        except sqlite3.Error as error:
            if not self.path.exists():
                raise self._missing() from error
            raise QueueError(
                f"could not open the queue database {self.path}: {describe(error)}"
            ) from error
        # No SQLite busy handler: `_when_free` waits for locks instead (see there).
        conn.execute("PRAGMA busy_timeout = 0")

        def setup() -> None:
            # These read the file's header: they meet the lock of a process that is
            # creating the database or switching it to WAL at this moment, and wait.
            conn.execute(f"PRAGMA synchronous = {self._synchronous}")
            conn.execute("PRAGMA foreign_keys = ON")
            # Checkpoint every ~64 MiB of WAL instead of SQLite's 4: a hot page (index
            # roots, the queued-jobs index, the counters) is copied back once per
            # checkpoint however often it changed, and each checkpoint waits for two
            # fsyncs (BENCHMARKS.md, "What was changed", 2026-12-04: 1,000, 4,000 and
            # 16,000 pages measured against each other).
            conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES}")
            # Reading the schema finds a file that is not a database (garbage bytes) now,
            # with a clear message, rather than at the first real statement.
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()

        try:
            self._when_free(setup, "open")
        except BaseException:
            conn.close()
            raise
        held.conn = conn
        held.pid = this_process.pid
        held.ident = self._file_id()
        held.wal = self._wal_id()
        held.checked = time.monotonic() + FILE_CHECK_EVERY
        return conn

    def call_nowait(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        # With `nowait` set, `_when_free` gives up at the first busy answer.
        self._local.nowait = True
        try:
            return fn(*args, **kwargs)
        finally:
            self._local.nowait = False

    def _when_free(self, attempt: Callable[[], T], what: str, *, since: float | None = None) -> T:
        """`attempt` (a statement that may find the database locked), retried until it is free.

        SQLite's own busy handler sleeps 1, 2, 5, 10, 15, 20, 25 ms... between tries, so a
        writer that just misses a lock held for a fraction of a millisecond (the usual
        here: bot, dispatcher and CLI each commit in ~0.1 ms) waits tens of milliseconds.
        Retrying after 0.1 ms, doubling to 2 ms, keeps such waits near the time the lock
        is really held, up to the same overall timeout, counted from `since` (a
        `time.monotonic()`) when the caller had already waited for its turn.
        """
        delay = BUSY_FIRST_SLEEP
        deadline: float | None = None if since is None else since + self._busy_ms / 1000
        while True:
            try:
                return attempt()
            except sqlite3.Error as error:
                busy = (
                    isinstance(error, sqlite3.OperationalError)
                    and ((getattr(error, "sqlite_errorcode", 0) or 0) & 0xFF) in BUSY_CODES
                )
                if not busy:
                    raise QueueError(
                        f"could not {what} the queue database {self.path}: {describe(error)}"
                    ) from error
                if self._local.nowait:
                    raise QueueBusyError(f"{self.path} is locked by another writer") from error
                now = time.monotonic()
                if deadline is None:
                    deadline = now + self._busy_ms / 1000
                elif now >= deadline:
                    raise QueueError(
                        f"could not {what} the queue database {self.path}: {error} "
                        f"(waited {self._busy_ms / 1000:g} s)"
                    ) from error
                time.sleep(delay)
                delay = min(delay * 2, BUSY_MAX_SLEEP)

    def _write(self) -> _Transaction:
        """One IMMEDIATE transaction: the write lock up front, so no upgrade can deadlock.

        Any SQLite failure - in a statement or in the COMMIT (a full disk, a read-only
        file) - rolls back, so the connection is never left inside a transaction, and is
        raised as a QueueError that says what it means. After such a failure the
        connection is reopened for the next call (see `_drop`).
        """
        return _Transaction(self)

    def _writer_gate(self) -> threading.RLock:
        """This process's turn at writing: its threads wait here, not in `_when_free`.

        SQLite lets one writer in at a time anyway. Threads of one process (a web
        worker's request threads) that all try `BEGIN IMMEDIATE` would each fail, sleep
        and retry while one of them holds the lock, which costs CPU and oversleeps the
        moment it is free; waiting on a lock in the process wakes the next one at once.
        Re-entrant, so a nested transaction fails in SQLite as before rather than
        waiting for itself; a forked child starts with its own, unheld.
        """
        if self._gate_pid != this_process.pid:
            self._gate = threading.RLock()
            self._gate_pid = this_process.pid
        return self._gate

    def _begin(self) -> sqlite3.Connection:
        """This thread's connection, inside a new IMMEDIATE transaction (see `_write`)."""
        gate = self._writer_gate()
        waited_from = None  # the busy timeout covers both waits: the turn, then SQLite's lock
        if not gate.acquire(blocking=False):
            if self._local.nowait:
                raise QueueBusyError(f"{self.path} is being written by another thread")
            waited_from = time.monotonic()
            if not gate.acquire(timeout=self._busy_ms / 1000):
                raise QueueError(
                    f"could not lock the queue database {self.path}: another thread of this "
                    f"process held it for {self._busy_ms / 1000:g} s"
                )
        try:
            conn = self._conn(self._writer)
            try:
                conn.execute("BEGIN IMMEDIATE")  # the usual case: the lock is free
            except sqlite3.Error:
                try:
                    self._when_free(
                        lambda: conn.execute("BEGIN IMMEDIATE"), "lock", since=waited_from
                    )
                except QueueError as error:
                    self._drop_after(error, self._writer)
                    raise
        except BaseException:
            gate.release()
            raise
        self._local.wake = False
        return conn

    def _end(self, conn: sqlite3.Connection, error: BaseException | None) -> None:
        """Commit the transaction `_begin` opened and wake the listeners, or, after `error`
        in the block, roll it back (the caller lets `error` go on, unless `_abandon` raised
        what it means)."""
        try:
            if error is not None:
                self._abandon(conn, error)
                return
            try:
                conn.execute("COMMIT")
            except BaseException as failed:
                self._abandon(conn, failed)
                raise
        finally:
            self._gate.release()
        if self._local.wake:
            self._wakeup.notify()

    def _abandon(self, conn: sqlite3.Connection, error: BaseException) -> None:
        """Roll back after `error`; a fault of the file or disk is raised as a QueueError."""
        if conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                self._drop(self._writer)
        if isinstance(error, sqlite3.Error) and is_fault(error):
            self._drop(self._writer)
            raise QueueError(
                f"could not write to the queue database {self.path}: {describe(error)}"
            ) from error

    def _wake(self, conn: sqlite3.Connection) -> None:
        self._local.wake = True  # sent by `_write` once the COMMIT went through

    def _read(self, sql: str, params: Sequence[object] | dict[str, object] = ()) -> list[tuple]:
        """The rows of `sql`: through the writer's connection when no other thread is
        writing, else through this thread's own, so a read never waits for a write.

        The writer's is preferred because its page cache is the warm one: a connection's
        cache is emptied whenever another connection wrote since its last transaction, so
        a thread that reads after this process's writes (the dispatcher, after each claim)
        would read its pages again from the file on a connection of its own. A write of
        another thread that comes meanwhile waits for the read (one statement) as it would
        for another write; on the dispatcher's loop it goes to the queue thread.
        """
        gate = self._writer_gate()
        if not gate.acquire(blocking=False):
            return self._read_on(None, sql, params)
        try:
            return self._read_on(self._writer, sql, params)
        finally:
            gate.release()

    def _read_on(
        self, opened: Held | None, sql: str, params: Sequence[object] | dict[str, object]
    ) -> list[tuple]:
        conn = self._conn(opened)
        try:
            return self._when_free(lambda: conn.execute(sql, params).fetchall(), "read")
        except QueueError as error:
            self._drop_after(error, opened)
            raise

    def probe_write(self) -> None:
        """A real write, committed (for /readyz): fails while the disk is full or read-only.

        It rewrites one row of `beats`, so every probe dirties a page and appends to the
        WAL: a write that changed nothing would commit without touching the disk.
        """
        now = time.time()
        with self._write() as conn:
            conn.execute(SQL_BEAT, ("readyz-probe", "", os.getpid(), "probe", "", now))

    # lifecycle -------------------------------------------------------------
    def migrate(self) -> int:
        if self._create and not self.path.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._folder_locked():
                if not self.path.exists():
                    self._set_aside()  # a WAL without its database belongs to no new one
            self._creating = True
        try:
            first = self._conn()
        finally:
            self._creating = False
        if self._schema_version(first) == len(MIGRATIONS):
            return len(MIGRATIONS)  # up to date: nothing to write (works on a read-only file)
        mode = self._when_free(
            lambda: first.execute("PRAGMA journal_mode = WAL").fetchone()[0], "open"
        )
        if mode.lower() != "wal":
            raise QueueError(f"{self.path}: could not switch to WAL journal mode (got {mode})")
        with self._write() as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
            current = row[0] or 0
            if current > len(MIGRATIONS):
                raise QueueError(
                    f"{self.path} has schema version {current}, newer than this STAT bot "
                    f"understands ({len(MIGRATIONS)}); upgrade STAT bot"
                )
            for version in range(current + 1, len(MIGRATIONS) + 1):
                for statement in statements(MIGRATIONS[version - 1]):
                    conn.execute(statement)
                conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
        self._local.wal = self._writer.wal = self._wal_id()  # the first write in WAL mode made it
        return len(MIGRATIONS)

    def schema_version(self) -> int | None:
        return self._schema_version(self._conn())

    def _schema_version(self, conn: sqlite3.Connection) -> int | None:
        """The schema version in force, or None for a database not yet set up (a read)."""

        def read() -> int | None:
            found = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
            ).fetchone()
            if not found:
                return None
            return conn.execute("SELECT max(version) FROM schema_version").fetchone()[0]

        mode = self._when_free(lambda: conn.execute("PRAGMA journal_mode").fetchone()[0], "read")
        return self._when_free(read, "read") if str(mode).lower() == "wal" else None

    def close(self) -> None:
        """Close this thread's connection and, between writes, the process's writer."""
        _forget(self._local)
        with self._writer_gate():
            _forget(self._writer)
        self._wakeup.close()

    def _many(self, conn: sqlite3.Connection, sql: str, rows: Sequence[Sequence[object]]) -> int:
        return conn.executemany(sql, rows).rowcount

    def _insert_id(self, conn: sqlite3.Connection, sql: str, params: Sequence[object]) -> int:
        cursor = conn.execute(sql, params)  # no RETURNING (see RelationalQueue._insert_id)
        return cursor.lastrowid  # type: ignore[return-value]  # set by the one-row INSERT

    # waking ----------------------------------------------------------------
    def wakeup_listener(self, name: str) -> WakeupListener:
        return self._wakeup.listen(name)

    def notify(self) -> None:
        self._wakeup.notify()


def statements(script: str) -> Iterator[str]:
    """A migration's statements one by one: split at each ";" that ends a whole statement
    (sqlite3.complete_statement), so a trigger's BEGIN ... END body stays in one piece."""
    pending = ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;"):
                yield pending
            pending = ""
    if pending.strip(" \n;"):
        yield pending


class Held(Protocol):
    """A connection with what it was opened on: a thread's (`_ThreadState`) or the
    process's writer (`_Opened`)."""

    conn: sqlite3.Connection | None
    pid: int
    ident: tuple[int, int] | None
    wal: tuple[int, int] | None
    checked: float
    stale_wal: tuple[int, int] | None


def _forget(held: Held) -> None:
    """Let go of `held`'s connection: closed if this process opened it, else kept open.

    A forked child's copy of its parent's connection is never closed, nor collected
    (which closes it): SQLite's documentation forbids using a connection across a fork,
    and closing it is a use that would end the parent's (a last connection's close
    checkpoints and deletes the write-ahead log).
    """
    conn = held.conn
    held.conn = None
    if conn is not None:
        if held.pid == this_process.pid:
            conn.close()
        else:
            _INHERITED.append(conn)


def _not_opened(held: Held) -> None:
    """`held` with no connection yet: the next `_conn` opens one."""
    held.conn = None
    held.pid = 0
    held.ident = None
    held.wal = None
    held.checked = 0.0
    held.stale_wal = None


class _Opened:
    """What one connection was opened on: the writer's, kept for the whole process.

    The same fields a thread's reading connection keeps in `SQLiteQueue._local`. One
    connection for every write of the process, because SQLite empties a connection's
    page cache whenever another connection wrote since its last transaction: with one
    connection per thread, the threads of one process (a web worker's, the
    dispatcher's loop and queue thread) emptied each other's at every write, and every
    write read its pages again (14.8 reads of the WAL or file per webhook, against 6.3
    for the bare endpoint).
    """

    __slots__ = ("checked", "conn", "ident", "pid", "stale_wal", "wal")  # `Held`'s fields

    def __init__(self) -> None:
        _not_opened(self)


class _ThreadState(threading.local):
    """A thread's own reading connection (the fields of `_Opened`) and its flags."""

    def __init__(self) -> None:
        _not_opened(self)
        self.nowait = False  # `call_nowait`: give up at the first busy answer
        self.wake = False  # a committed write wakes the listeners


class _Transaction:
    """`SQLiteQueue._write`'s context manager, as a class: a generator-based one cost
    more than the statements of a short transaction (it is entered three times a job)."""

    __slots__ = ("_conn", "_queue")

    def __init__(self, queue: SQLiteQueue) -> None:
        self._queue = queue

    def __enter__(self) -> sqlite3.Connection:
        self._conn = self._queue._begin()
        return self._conn

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: Any
    ) -> None:
        self._queue._end(self._conn, error)  # returns None: an error in the block goes on
