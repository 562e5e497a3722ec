"""The PostgreSQL backend's own mechanics (the contract suite covers what every backend does).

Migrations taken in turns by processes starting together, a schema newer than this
STAT bot refused, the clock read from the server rather than the host, and
wake-ups that survive the listener's connection being cut.
"""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from stat_bot.jobs.model import JobRequest
from stat_bot.queue import postgres_sql
from stat_bot.queue.base import QueueError
from stat_bot.queue.postgres import PostgresQueue
from tests.postgres_fixtures import create_database, drop_database, require_postgres


@pytest.fixture
def empty_database():
    require_postgres()
    url = create_database()
    yield url
    drop_database(url)


def test_processes_starting_together_migrate_once_in_turns(empty_database):
    results: list[object] = []

    def start() -> None:
        queue = PostgresQueue(empty_database)
        try:
            results.append(queue.migrate())
        except Exception as error:  # any failure fails the assertion below
            results.append(error)
        finally:
            queue.close()

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert results == [len(postgres_sql.MIGRATIONS)] * 4
    with psycopg.connect(empty_database) as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_version ORDER BY 1")]
    assert versions == list(range(1, len(postgres_sql.MIGRATIONS) + 1))


def test_a_newer_schema_is_refused_naming_both_versions(empty_database):
    queue = PostgresQueue(empty_database)
    try:
        queue.migrate()
        with psycopg.connect(empty_database, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO schema_version VALUES (%s)", (len(postgres_sql.MIGRATIONS) + 3,)
            )
        with pytest.raises(QueueError, match=f"schema version {len(postgres_sql.MIGRATIONS) + 3}"):
            queue.migrate()
    finally:
        queue.close()


def test_the_clock_is_the_servers_not_the_hosts(postgres_url, monkeypatch):
    queue = PostgresQueue(postgres_url)
    try:
        queue.migrate()
        server = queue.now()
        # The host's clock jumps five minutes ahead: the queue's time does not move with it.
        real = time.time
        monkeypatch.setattr(time, "time", lambda: real() + 300)
        assert abs(queue.now() - server) < 5
        job = queue.enqueue(JobRequest(namespace="ns", job_type="t")).job
        with psycopg.connect(postgres_url) as conn:
            (db_now,) = conn.execute("SELECT extract(epoch FROM now())::float8").fetchone()
        assert abs(job.created_at - db_now) < 5
    finally:
        queue.close()


def test_wakeups_resume_after_the_listeners_connection_is_cut(postgres_url):
    writer, reader = PostgresQueue(postgres_url), PostgresQueue(postgres_url)
    try:
        writer.migrate()
        listener = reader.wakeup_listener("test")

        def readable(timeout: float) -> bool:
            import select

            return bool(select.select([listener.fileno()], [], [], timeout)[0])

        assert readable(10)  # it says so once it listens (nothing was missed)
        listener.drain()
        writer.enqueue(JobRequest(namespace="ns", job_type="t"))
        assert readable(10)
        listener.drain()
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE query LIKE 'LISTEN%%' AND datname = current_database() "
                "AND pid != pg_backend_pid()"
            )
        assert readable(15)  # reconnected, and woke its owner to look again
        listener.drain()
        writer.enqueue(JobRequest(namespace="ns", job_type="t", args={"n": "2"}))
        assert readable(10)
    finally:
        writer.close()
        reader.close()
