"""When the webhooks benchmark's bare reference fails, the benchmark says how: the answers
it gave and the error its server logged (benchmarks/webhooks.py `bare_round`), against a
real bare server whose database refuses every delivery."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

import benchmarks.bare_webhooks
from benchmarks.common import BenchmarkError
from benchmarks.webhooks import bare_round

REFUSED = "refused by the test"
real = benchmarks.bare_webhooks.create_database


def refusing_database(path: Path) -> None:
    """The reference's table, with a trigger that makes every insert fail."""
    real(path)
    conn = sqlite3.connect(path)
    try:
        conn.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON deliveries "
            f"BEGIN SELECT RAISE(ABORT, '{REFUSED}'); END"
        )
        conn.commit()
    finally:
        conn.close()


def test_a_broken_reference_is_named_with_its_answers_and_its_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(benchmarks.bare_webhooks, "create_database", refusing_database)
    with pytest.raises(BenchmarkError) as raised:
        bare_round(tmp_path / "bare", count=6, clients=2, workers=1, threads=2, timeout=60)
    message = str(raised.value)
    assert "recorded 0 deliveries and accepted 0 of 6" in message
    assert "answers other than 202: {'500': 6}" in message
    assert REFUSED in message  # the server's own words, from its log
