"""Schema 2 of the SQLite queue: what the web server keeps (schedule overrides, webhook
deliveries, counters, component beats) and the figures it reads (counts, timings)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from zoneinfo import ZoneInfo

from stat_bot.queue.sqlite import MIGRATIONS, SQLiteQueue
from tests.contract.test_queue_web_state import request, schedule

UTC = ZoneInfo("UTC")

T0 = 1_700_000_000.0


def test_a_version_1_database_is_upgraded_keeping_its_data(tmp_path: Path):
    path = tmp_path / "q.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        for statement in MIGRATIONS[0].split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute("INSERT INTO schema_version (version) VALUES (1)")
        conn.execute(
            "INSERT INTO schedules (key, namespace, job_type, cron, enabled, last_fired_at, "
            "updated_at) VALUES ('ns.report', 'ns', 'report', '0 8 * * *', 1, ?, ?)",
            (T0, T0),
        )
    conn.close()
    q = SQLiteQueue(path)
    try:
        assert q.migrate() == len(MIGRATIONS)
        (row,) = q.schedules()
        assert (row.cron, row.last_fired_at, row.enabled) == ("0 8 * * *", T0, True)
        assert (row.interval_seconds, row.interval_since, row.enabled_override) == (None,) * 3
        assert q.accept_delivery("github", "d1", [request()], now=T0) is not None
    finally:
        q.close()


# --- schedule overrides ------------------------------------------------------------------


# --- webhook deliveries --------------------------------------------------------------------


# --- counters, beats, figures -------------------------------------------------------------


def test_status_shows_an_interval_set_on_the_web_instead_of_the_cron(queue: SQLiteQueue):
    from stat_bot.views import StatusView, interval_text, when

    assert [interval_text(s) for s in (3600, 7200, 18000, 86400, 5400, 90)] == [
        "1h",
        "2h",
        "5h",
        "1d",
        "90m",
        "90s",
    ]
    queue.sync_schedules([schedule()], now=T0)
    queue.set_schedule("ns.report", interval_seconds=7200, now=T0)
    text = StatusView.read(queue, UTC, now=T0 + 60).text(UTC)
    assert "every 2h (set on the web; config: 0 8 * * *)" in text
    assert when(T0 + 7200, UTC) in text  # the next fire: 2 h after it was set, not 08:00
    assert when(T0 + 7200, UTC) == "2023-11-15 00:13:20"
