"""open_queue chooses the backend by DATABASE_URL's scheme, and says why it cannot."""

from __future__ import annotations

from pathlib import Path

import pytest

from stat_bot.queue import QueueError, open_queue, postgres_sql
from stat_bot.queue.postgres import PostgresQueue
from stat_bot.queue.sqlite import SQLiteQueue
from stat_bot.settings import load_settings
from tests.peers import free_port


def test_sqlite_url_opens_the_sqlite_backend_on_that_file(tmp_path: Path):
    path = tmp_path / "db" / "q.sqlite3"
    queue = open_queue(load_settings(state_dir=tmp_path, database_url=f"sqlite:///{path}"))
    try:
        assert isinstance(queue, SQLiteQueue)
        assert queue.jobs() == []
        assert path.is_file()
    finally:
        queue.close()


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_both_postgresql_schemes_open_the_postgresql_backend(tmp_path: Path, scheme, postgres_url):
    url = postgres_url.replace("postgresql://", f"{scheme}://", 1)
    settings = load_settings(state_dir=tmp_path, database_url=url)
    queue = open_queue(settings)
    try:
        assert isinstance(queue, PostgresQueue)
        assert queue.schema_version() == len(postgres_sql.MIGRATIONS)
    finally:
        queue.close()
    assert list(tmp_path.iterdir()) == []  # no SQLite file was made beside it


def test_a_refused_postgresql_connection_names_the_server_never_the_password(tmp_path: Path):
    port = free_port()
    settings = load_settings(
        state_dir=tmp_path,
        database_url=f"postgresql://stat:pw-s3cret@127.0.0.1:{port}/stat",
        database_connect_timeout=2,
    )
    with pytest.raises(QueueError) as caught:
        open_queue(settings)
    message = str(caught.value)
    assert message.startswith(f"could not write to the queue database at 127.0.0.1:{port}/stat: ")
    assert "\n" not in message
    assert "s3cret" not in message


def test_an_unknown_scheme_is_a_clear_error(tmp_path: Path):
    # Settings refuse such a URL at start; a Settings built around that check still
    # gets a clear answer from the queue rather than a SQLite file named "mysql:...".
    settings = load_settings(state_dir=tmp_path).model_copy(update={"database_url": "mysql://x/y"})
    with pytest.raises(QueueError, match=r"unknown scheme mysql://; use sqlite:///PATH"):
        open_queue(settings)
    assert list(tmp_path.iterdir()) == []
