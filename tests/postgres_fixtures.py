"""PostgreSQL for tests: a fresh database per test on the server TEST_DATABASE_URL names.

TEST_DATABASE_URL (default postgresql://postgres@127.0.0.1:5432/test) names a server
and a database to connect to for `CREATE DATABASE`; each test gets its own database,
dropped afterwards, so tests on two xdist workers never meet. Where no server answers
the tests that need one are skipped with one loud line, except under CI (the CI
variable, which `.ci/run` sets), where a missing server is a failure.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import os
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.peers import require

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"


def server_url() -> str:
    return os.environ.get("TEST_DATABASE_URL") or DEFAULT_URL


def with_database(url: str, name: str) -> str:
    """`url` with its database replaced by `name`."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


_reason: list[str | None] = []


def server_problem() -> str | None:
    """Why the test server cannot be used (asked once per process), or None."""
    if not _reason:
        try:
            import psycopg

            with psycopg.connect(server_url(), connect_timeout=3, autocommit=True) as conn:
                conn.execute("SELECT 1")
            _reason.append(None)
        except Exception as error:  # any failure to reach it is the same skip
            first = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
            _reason.append(f"no PostgreSQL at {redacted(server_url())}: {first}")
    return _reason[0]


def redacted(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def require_postgres() -> None:
    """Skip loudly (fail under CI) when the test server cannot be reached."""
    require(server_problem(), "PostgreSQL (set TEST_DATABASE_URL)")


_reusable: list[str] = []  # migrated databases this process made and got back, emptied
_ours: set[str] = set()


def create_database(prefix: str = "statbot_test", *, migrated: bool = False) -> str:
    """A database on the test server for one test; its URL. Give it back with `drop_database`.

    `migrated`: at the current schema and empty. Such databases are kept by the process
    that made them (copied from a migrated template the first time) and emptied with
    TRUNCATE between tests, which takes a few milliseconds where creating a database
    takes most of a second; they are dropped when the process ends.
    """
    import psycopg

    if migrated and _reusable:
        url = _reusable.pop()
        _empty(url)
        return url
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url(), autocommit=True) as conn:
        if not migrated:
            conn.execute(f'CREATE DATABASE "{name}"')
        else:
            # One creator at a time across xdist workers: a template being made or copied
            # must have no other session in it.
            conn.execute("SELECT pg_advisory_lock(8675309)")
            try:
                template = _template(conn)
                conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
            finally:
                conn.execute("SELECT pg_advisory_unlock(8675309)")
    url = with_database(server_url(), name)
    if migrated:
        _ours.add(url)
        if len(_ours) == 1:
            atexit.register(_drop_ours)
    return url


def _empty(url: str) -> None:
    """Delete every row and restart every id (DELETE: TRUNCATE takes half a second here)."""
    import psycopg

    with psycopg.connect(url) as conn:
        tables = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
            "AND tablename != 'schema_version'"
        ).fetchall()
        sequences = conn.execute(
            "SELECT sequencename FROM pg_sequences WHERE schemaname = 'public'"
        ).fetchall()
        for (table,) in tables:
            conn.execute(f'DELETE FROM "{table}"')
        for (sequence,) in sequences:
            conn.execute(f'ALTER SEQUENCE "{sequence}" RESTART')


def _drop_ours() -> None:
    for url in _ours:
        with contextlib.suppress(Exception):
            _drop(url)


def _template(conn: Any) -> str:
    """The migrated template for the current schema, made if missing (caller holds the lock)."""
    from stat_bot.queue import postgres_sql
    from stat_bot.queue.postgres import PostgresQueue

    digest = hashlib.sha1("\n".join(postgres_sql.MIGRATIONS).encode()).hexdigest()[:12]
    template = f"statbot_tpl_{digest}"
    found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (template,)).fetchone()
    if not found:
        conn.execute(f'CREATE DATABASE "{template}"')
        queue = PostgresQueue(with_database(server_url(), template))
        try:
            queue.migrate()
        finally:
            queue.close()
    return template


def drop_database(url: str) -> None:
    """Give back a database from `create_database`: dropped, or kept to be emptied for the
    next test (a migrated one), once every session in it has ended."""
    if url in _ours:
        _end_sessions(url)
        _reusable.append(url)
        return
    _drop(url)


def _end_sessions(url: str) -> None:
    import psycopg

    name = urlsplit(url).path.lstrip("/")
    with psycopg.connect(server_url(), autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid != pg_backend_pid()",
            (name,),
        )


def _drop(url: str) -> None:
    import psycopg

    name = urlsplit(url).path.lstrip("/")
    with psycopg.connect(server_url(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """The URL of a fresh database on the test server, dropped after the test."""
    require_postgres()
    url = create_database()
    try:
        yield url
    finally:
        drop_database(url)
