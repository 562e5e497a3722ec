"""PostgreSQL for tests: a fresh database per test on the server TEST_DATABASE_URL names.

TEST_DATABASE_URL (default postgresql://postgres@127.0.0.1:5432/test) names a server
and a database to connect to for `CREATE DATABASE`; each test gets its own database,
dropped afterwards, so tests on two xdist workers never meet. Where no server answers
the tests that need one are skipped with one loud line, except under CI (the CI
variable, which `.ci/run` sets), where a missing server is a failure.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
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


def create_database(prefix: str = "statbot_test") -> str:
    """A new empty database on the test server; its URL."""
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return with_database(server_url(), name)


def drop_database(url: str) -> None:
    """Drop a database made by `create_database`, ending any session still in it."""
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
