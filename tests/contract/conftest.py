"""The queue contract: one set of tests every Queue backend must pass (as huey's StorageTests).

Each test here takes `queue` (a migrated queue on fresh storage) and, where it
needs another process's view, `other` or `backend.open()` (more instances on the
same storage). The fixtures are parametrized over BACKENDS, each opened through
`open_queue` by its DATABASE_URL, so a new backend joins by adding its URL here.
Tests of one backend's own mechanics (SQLite's WAL, lock files, migrations) stay
beside it in tests/unit/.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from stat_bot.queue import Queue, open_queue
from stat_bot.settings import load_settings
from tests.postgres_fixtures import create_database, drop_database, require_postgres


@contextmanager
def sqlite_url(tmp_path: Path) -> Iterator[str]:
    yield f"sqlite:///{tmp_path / 'queue.sqlite3'}"


@contextmanager
def postgres_url(tmp_path: Path) -> Iterator[str]:
    require_postgres()
    url = create_database(migrated=True)
    try:
        yield url
    finally:
        drop_database(url)


BACKENDS: dict[str, Callable[[Path], AbstractContextManager[str]]] = {
    "sqlite": sqlite_url,
    "postgres": postgres_url,
}


@dataclass
class Backend:
    """One backend on one fresh storage; `open()` gives another instance on it."""

    name: str
    open: Callable[..., Queue]  # keyword arguments: settings for this instance


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    with BACKENDS[request.param](tmp_path) as url:
        opened: list[Queue] = []

        def open_(**overrides: object) -> Queue:
            settings = load_settings(state_dir=tmp_path, database_url=url, **overrides)
            queue = open_queue(settings)  # migrated, as every process opens it
            opened.append(queue)
            return queue

        yield Backend(request.param, open_)
        for queue in opened:
            queue.close()


@pytest.fixture
def queue(backend: Backend) -> Queue:
    return backend.open()


@pytest.fixture
def other(backend: Backend, queue: Queue) -> Queue:
    """A second instance on the same storage, as another process would have."""
    return backend.open()
