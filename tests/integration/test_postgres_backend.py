"""The PostgreSQL backend's own mechanics (the contract suite covers what every backend does),
and the dispatcher's polling where no wake-up arrives, on both backends.

Migrations taken in turns by processes starting together, a schema newer than this
STAT bot refused, the clock read from the server rather than the host, and
wake-ups that survive the listener's connection being cut.
"""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from stat_bot.jobs.model import JobRequest, JobStatus
from stat_bot.queue import open_queue, postgres_sql
from stat_bot.queue.base import QueueError
from stat_bot.queue.postgres import PostgresQueue
from tests.integration.conftest import wait_status
from tests.postgres_fixtures import create_database, drop_database, require_postgres


@pytest.fixture
def empty_database():
    require_postgres()
    url = create_database()
    yield url
    drop_database(url)


@pytest.fixture
def migrated_database():
    require_postgres()
    url = create_database(migrated=True)
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


def test_the_coalescing_lookup_searches_the_index_by_type_and_arguments(migrated_database):
    with psycopg.connect(migrated_database) as conn:
        conn.execute("SET enable_seqscan = off")  # a table this small is cheaper to scan
        plan = "\n".join(
            row[0]
            for row in conn.execute(
                "EXPLAIN " + postgres_sql.SQL_FIND_QUEUED_SAME_ARGS,
                {"ns": "ns", "jt": "hello", "args": "{}"},
            )
        )
    assert "Index Scan using jobs_queued_args on jobs" in plan, plan
    (condition,) = [line for line in plan.splitlines() if "Index Cond:" in line]
    for column in ("namespace = ", "job_type = ", '"left"(args, 500) = '):
        assert column in condition, plan


def test_an_upgrade_to_the_coalescing_index_keeps_the_queued_jobs_and_finds_their_twins(
    empty_database, monkeypatch
):
    with monkeypatch.context() as before:
        before.setattr(postgres_sql, "MIGRATIONS", postgres_sql.MIGRATIONS[:16])
        old = PostgresQueue(empty_database)
        try:
            assert old.migrate() == 16
            queued = [
                old.enqueue(JobRequest(namespace="ns", job_type="t", args={"n": str(i)})).job
                for i in range(3)
            ]
        finally:
            old.close()
    queue = PostgresQueue(empty_database)
    try:
        assert queue.migrate() == len(postgres_sql.MIGRATIONS)
        twin = queue.enqueue(JobRequest(namespace="ns", job_type="t", args={"n": "1"}))
        assert (twin.coalesced, twin.job.id) == (True, queued[1].id)
    finally:
        queue.close()
    with psycopg.connect(empty_database) as conn:
        indexes = {n for (n,) in conn.execute("SELECT indexname FROM pg_indexes")}
    assert "jobs_queued_args" in indexes
    assert "jobs_queued_type" not in indexes


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


def test_a_dispatcher_that_never_gets_a_wakeup_still_runs_jobs_by_polling(
    configure, make_settings, database_url, thread_dispatcher
):
    """As behind PgBouncer in transaction mode, where NOTIFY never reaches LISTEN: the
    dispatcher's short poll (DISPATCHER_POLL_INTERVAL) finds the job all the same."""
    configure({"t": {"jobs": {"quick": {"run_args_template": "true", "coalesce": False}}}})
    settings = make_settings(dispatcher_poll_interval=0.3)
    thread_dispatcher(settings_=settings)
    probe = open_queue(settings)
    base = type(probe)
    probe.close()

    class Silent(base):  # type: ignore[misc, valid-type]
        def _wake(self, conn: object) -> None:
            """Commits wake nobody."""

        def notify(self) -> None:
            """Nor does anything else."""

    silent = Silent(*_queue_args(settings))
    silent.migrate()
    try:
        started = time.monotonic()
        ids = [silent.enqueue(JobRequest(namespace="t", job_type="quick")).job.id for _ in range(3)]
        for job_id in ids:
            wait_status(silent, job_id, JobStatus.SUCCEEDED, timeout=30)
        assert time.monotonic() - started < 20
    finally:
        silent.close()


def _queue_args(settings) -> tuple:
    """What open_queue gives each backend's constructor, for a subclass of it."""
    if settings.database_url.startswith("sqlite"):
        return (settings.sqlite_path,)
    return (settings.database_url,)
