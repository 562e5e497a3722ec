"""open_queue chooses the backend by DATABASE_URL's scheme, and says why it cannot."""

from __future__ import annotations

from pathlib import Path

import pytest

from stat_bot.queue import QueueError, open_queue
from stat_bot.queue.sqlite import SQLiteQueue
from stat_bot.settings import load_settings


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
def test_postgresql_is_refused_as_not_available_yet_naming_the_scheme(tmp_path: Path, scheme):
    settings = load_settings(state_dir=tmp_path, database_url=f"{scheme}://stat:pw@db/stat")
    with pytest.raises(QueueError) as caught:
        open_queue(settings)
    message = str(caught.value)
    assert f"{scheme}://" in message
    assert "not available yet" in message
    assert "sqlite:///" in message  # what to use instead
    assert "pw" not in message  # the URL's password is never repeated
    assert list(tmp_path.iterdir()) == []  # nothing was created


def test_an_unknown_scheme_is_a_clear_error(tmp_path: Path):
    # Settings refuse such a URL at start; a Settings built around that check still
    # gets a clear answer from the queue rather than a SQLite file named "mysql:...".
    settings = load_settings(state_dir=tmp_path).model_copy(update={"database_url": "mysql://x/y"})
    with pytest.raises(QueueError, match=r"unknown scheme mysql://; use sqlite:///PATH"):
        open_queue(settings)
    assert list(tmp_path.iterdir()) == []
