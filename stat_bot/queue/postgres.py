"""The shared queue: PostgreSQL, for sites with several hosts or many dispatchers.

Connections come from a psycopg_pool pool per process (made at first use, so a
forked child never shares its parent's sockets) in autocommit mode: a read is one
round trip, a write is an explicit transaction. Decisions that read and then write
(claiming, leasing outbox messages, recovering lost jobs, merging requests) take
turns through transaction-scoped advisory locks (`_serialize`), so per-type limits,
locks and coalescing hold across any number of dispatchers.

Time is the database server's (`now()`), kept per process as an offset from the
monotonic clock: hosts whose clocks disagree, or jump, agree on due times and on
who is late. Wake-ups are LISTEN/NOTIFY; the dispatcher's short poll covers a
pooler that does not pass them (PgBouncer in transaction mode).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from urllib.parse import urlsplit

import psycopg
import structlog
from psycopg_pool import ConnectionPool, PoolTimeout

from stat_bot.queue import postgres_sql
from stat_bot.queue.base import QueueError, WakeupListener
from stat_bot.queue.process import current as this_process
from stat_bot.queue.relational import RelationalQueue
from stat_bot.settings import scrubbed

log = structlog.get_logger(__name__)
# The pool logs every failed connection attempt while the server is away; callers get a
# QueueError with the reason instead, and the dispatcher logs that once per cycle.
logging.getLogger("psycopg.pool").setLevel(logging.ERROR)

CHANNEL = "stat_bot_wakeup"
SQL_NOTIFY = f"NOTIFY {CHANNEL}"
CLOCK_RESYNC = 30.0  # seconds between readings of the server's clock
CHECK_IDLE_AFTER = 1.0  # a pooled connection idle this long is checked before use
SUSPECT_FOR = 30.0  # after a connection failure, every connection is checked this long
LISTEN_RETRY_MAX = 5.0


def where(url: str) -> str:
    """host:port/database of a URL: how messages name the server, never with credentials."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "localhost"
        port = parts.port or 5432
    except ValueError:
        return "the server DATABASE_URL names (it does not parse as a URL)"
    return f"{host}:{port}{parts.path or '/'}"


def one_line(error: BaseException) -> str:
    """The first line of a driver error, without its DETAIL/HINT/CONTEXT block."""
    text = str(error).strip()
    return text.splitlines()[0].strip() if text else type(error).__name__


def lock_id(name: str) -> int:
    """A stable signed 64-bit advisory-lock key for `name` (the same in every process)."""
    digest = hashlib.blake2b(f"stat-bot:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


MIGRATE_LOCK = lock_id("migrate")
_INHERITED: list[ConnectionPool] = []


class PostgresQueue(RelationalQueue):
    """The Queue on one PostgreSQL database, shared by any number of processes and hosts."""

    sql = postgres_sql

    def __init__(
        self,
        url: str,
        *,
        outbox_expiry: float = 86400.0,
        pool_size: int = 10,
        connect_timeout: float = 10.0,
    ) -> None:
        """`connect_timeout`: how long one call waits for a connection (one attempt, or the
        pool's retries while the server restarts) before it fails with QueueError."""
        # libpq understands postgresql:// and postgres:// alike.
        self.url = url
        self.outbox_expiry = outbox_expiry
        self._pool_size = max(1, pool_size)
        self._connect_timeout = connect_timeout
        self._wait_timeout = connect_timeout
        self._pool: ConnectionPool | None = None
        self._pid = 0
        self._pool_lock = threading.Lock()
        self._suspect_until = 0.0
        self._clock: tuple[float, float] | None = None  # (server epoch, monotonic) at a reading
        self._clock_lock = threading.Lock()
        self._listeners: list[PostgresListener] = []

    def __repr__(self) -> str:
        return f"PostgresQueue({where(self.url)!r})"

    # connections -----------------------------------------------------------
    def _get_pool(self) -> ConnectionPool:
        pool = self._pool
        if pool is not None and self._pid == this_process.pid:
            return pool
        with self._pool_lock:
            if self._pool is None or self._pid != this_process.pid:
                if self._pool is not None:
                    # A forked child's copy of its parent's pool: never closed or collected
                    # here, which would end the parent's sessions on the sockets they share.
                    _INHERITED.append(self._pool)
                self._pool = ConnectionPool(
                    self.url,
                    min_size=1,
                    max_size=self._pool_size,
                    kwargs={"autocommit": True, "connect_timeout": int(self._connect_timeout)},
                    check=self._check,
                    reset=_mark_used,
                    timeout=self._wait_timeout,
                    name="stat-bot",
                    open=False,
                )
                self._pool.open(wait=False)
                self._pid = this_process.pid
            return self._pool

    def _failure(self, what: str, error: BaseException) -> QueueError:
        reason = self._why_no_connection() if isinstance(error, PoolTimeout) else one_line(error)
        reason = scrubbed(reason, self.url)  # libpq quotes a malformed URL's parts back
        return QueueError(f"could not {what} the queue database at {where(self.url)}: {reason}")

    def _why_no_connection(self) -> str:
        """The server's or the network's own words for why the pool has no connection."""
        try:
            psycopg.connect(self.url, connect_timeout=max(1, int(self._connect_timeout))).close()
        except psycopg.Error as error:
            return one_line(error)
        return f"no connection free within {self._wait_timeout:g} s (DATABASE_POOL_SIZE)"

    @contextmanager
    def _connection(self, what: str) -> Iterator[psycopg.Connection]:
        try:
            with self._get_pool().connection() as conn:
                yield conn
        except (psycopg.Error, PoolTimeout) as error:
            if isinstance(error, psycopg.OperationalError | PoolTimeout):
                # The server may have restarted: every pooled connection may be broken.
                self._suspect_until = time.monotonic() + SUSPECT_FOR
            raise self._failure(what, error) from error

    def _check(self, conn: psycopg.Connection) -> None:
        """Check a pooled connection before use (a round trip) if it sat idle, or while a
        recent connection failure says the server may have restarted: the pool then drops
        a broken one and gives another, so a restart fails one call, not one per connection.

        Checking every time would add a round trip to every call."""
        used = getattr(conn, "_stat_bot_used", 0.0)
        now = time.monotonic()
        if now - used > CHECK_IDLE_AFTER or now < self._suspect_until:
            conn.execute("")
        conn._stat_bot_used = time.monotonic()  # type: ignore[attr-defined]

    @contextmanager
    def _write(self) -> Iterator[psycopg.Connection]:
        """One transaction: committed when the block ends, rolled back if it raises.

        A driver error (the server gone, a deadlock, a full disk) becomes a QueueError with
        a one-line reason; the pool drops a broken connection and makes a new one.
        """
        with self._connection("write to") as conn, conn.transaction():
            yield conn

    def _read(self, sql: str, params: Sequence[object] | dict[str, object] = ()) -> list[tuple]:
        with self._connection("read") as conn:
            return conn.execute(sql, params).fetchall()

    def _many(self, conn: psycopg.Connection, sql: str, rows: Sequence[Sequence[object]]) -> int:
        if not rows:
            return 0
        with conn.cursor() as cur:
            cur.executemany(sql, rows)
            return cur.rowcount

    def _wake(self, conn: psycopg.Connection) -> None:
        conn.execute(SQL_NOTIFY)  # delivered by the server when the transaction commits

    def _serialize(self, conn: psycopg.Connection, name: str) -> None:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock_id(name),))

    # time --------------------------------------------------------------------
    def now(self) -> float:
        """The server's clock: read every CLOCK_RESYNC s, advanced by this host's monotonic
        clock in between, so neither a skewed nor a stepped host clock moves it.

        Only the first call waits for the server; later readings are taken on a thread
        of their own (an event loop may call this), and while the server cannot be
        read the last reading goes on."""
        reading = self._clock
        if reading is None:
            reading = self._read_clock()
        elif time.monotonic() - reading[1] > CLOCK_RESYNC and not self._clock_lock.locked():
            threading.Thread(target=self._refresh_clock, name="db-clock", daemon=True).start()
        return reading[0] + (time.monotonic() - reading[1])

    def _refresh_clock(self) -> None:
        with contextlib.suppress(QueueError):
            self._read_clock()

    def _read_clock(self) -> tuple[float, float]:
        with self._clock_lock, self._connection("read") as conn:
            # Only the query is timed (not waiting for a connection), so the reading is
            # off by at most half a round trip.
            before = time.monotonic()
            ((server,),) = conn.execute(
                "SELECT extract(epoch FROM clock_timestamp())::float8"
            ).fetchall()
            after = time.monotonic()
            self._clock = (float(server), (before + after) / 2)
            return self._clock

    # lifecycle -------------------------------------------------------------
    def migrate(self) -> int:
        """Bring the schema up to date: every pending step in one transaction, which holds
        an advisory lock (transaction-scoped, so it is released with the transaction even
        through a pooler) while it reads the version, so processes starting together take
        turns and a failed step leaves the database as it was."""
        migrations = postgres_sql.MIGRATIONS
        with self._write() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATE_LOCK,))
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            (current,) = conn.execute("SELECT max(version) FROM schema_version").fetchone()
            current = current or 0
            if current > len(migrations):
                raise QueueError(
                    f"the queue database at {where(self.url)} has schema version {current}, "
                    f"newer than this STAT bot understands ({len(migrations)}); upgrade STAT bot"
                )
            for version in range(current + 1, len(migrations) + 1):
                conn.execute(migrations[version - 1])
                conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (version,))
                log.debug("migrated the queue database", version=version)
        return len(migrations)

    def schema_version(self) -> int | None:
        """The version the database is at, or None before its first migration."""
        rows = self._read(
            "SELECT CASE WHEN to_regclass('schema_version') IS NULL THEN NULL ELSE (SELECT 0) END"
        )
        if rows[0][0] is None:
            return None
        return self._read("SELECT coalesce(max(version), 0) FROM schema_version")[0][0]

    def close(self) -> None:
        for listener in self._listeners:
            listener.close()
        self._listeners.clear()
        if self._pool is not None and self._pid == this_process.pid:
            self._pool.close()
        self._pool = None

    # waking ----------------------------------------------------------------
    def wakeup_listener(self, name: str) -> WakeupListener:
        listener = PostgresListener(self.url, name, self._connect_timeout)
        self._listeners.append(listener)
        return listener

    def notify(self) -> None:
        """NOTIFY every listening dispatcher; never raises: a missed wake-up costs one poll."""
        try:
            with self._get_pool().connection(timeout=1.0) as conn:
                conn.execute(SQL_NOTIFY)
        except (psycopg.Error, PoolTimeout) as error:
            log.debug("could not notify", error=one_line(error))


def _mark_used(conn: psycopg.Connection) -> None:
    conn._stat_bot_used = time.monotonic()  # type: ignore[attr-defined]


class PostgresListener(WakeupListener):
    """LISTEN on a connection of its own, in a thread that turns notifications into pipe bytes.

    The pipe's read end is what the dispatcher's event loop watches: it stays the same
    descriptor when the connection is lost and made again (a server restart), which
    the thread does by itself, waking the dispatcher once it listens again so that
    nothing committed meanwhile waits for the next poll.
    """

    def __init__(self, url: str, name: str, connect_timeout: float) -> None:
        self._url = url
        self._connect_timeout = connect_timeout
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._read_fd, False)
        os.set_blocking(self._write_fd, False)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"listen-{name}", daemon=True)
        self._thread.start()

    def fileno(self) -> int:
        return self._read_fd

    def drain(self) -> None:
        with contextlib.suppress(OSError):
            while os.read(self._read_fd, 4096):
                pass

    def close(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join(timeout=2.0)
        with contextlib.suppress(OSError):
            os.close(self._read_fd)
        if not self._thread.is_alive():
            with contextlib.suppress(OSError):
                os.close(self._write_fd)

    def _poke(self) -> None:
        with contextlib.suppress(OSError):  # full (already poked) or closed
            os.write(self._write_fd, b"!")

    def _run(self) -> None:
        delay = 0.2
        while not self._stop.is_set():
            try:
                with psycopg.connect(
                    self._url, autocommit=True, connect_timeout=int(self._connect_timeout)
                ) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self._poke()  # whatever was committed while we were not listening
                    delay = 0.2
                    while not self._stop.is_set():
                        for _ in conn.notifies(timeout=0.5):
                            self._poke()
            except psycopg.Error as error:
                log.debug("wake-up listener reconnecting", error=one_line(error))
                self._stop.wait(delay)
                delay = min(delay * 2, LISTEN_RETRY_MAX)
