"""Schedules with a web-set interval (/set-interval): when they are due, and when next.

With an override a schedule fires at `interval_since + k * interval` (k >= 1) and its
cron is ignored; without one (or after "default" cleared it) the cron rules again.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from stat_bot.jobs.schedules import interval_due, row_latest_due, row_next_due
from stat_bot.queue.base import ScheduleRow
from stat_bot.web.stat_relay import INTERVALS

UTC = ZoneInfo("UTC")
PARIS = ZoneInfo("Europe/Paris")
# Monday 2024-03-04 10:17:30 UTC: between the cron's 10:00 and 11:00.
NOW = datetime(2024, 3, 4, 10, 17, 30, tzinfo=UTC).timestamp()
HOUR = 3600.0

ROW = ScheduleRow(key="trac.active-tickets", namespace="trac", job_type="active", cron="0 * * * *")


def at(hour: int, minute: int = 0, second: int = 0, day: int = 4) -> float:
    return datetime(2024, 3, day, hour, minute, second, tzinfo=UTC).timestamp()


def overridden(seconds: float, since: float) -> ScheduleRow:
    return replace(ROW, interval_seconds=seconds, interval_since=since)


def test_without_an_override_the_cron_decides() -> None:
    assert row_latest_due(ROW, UTC, NOW) == at(10)
    assert row_next_due(ROW, UTC, NOW) == at(11)


@pytest.mark.parametrize(("name", "seconds"), INTERVALS.items())
def test_each_dropdown_interval_first_fires_one_interval_after_it_was_set(
    name: str, seconds: int
) -> None:
    row = overridden(seconds, since=NOW)
    # Nothing is due at the moment it is set, nor just before the first interval ends...
    assert row_latest_due(row, UTC, NOW) is None
    assert row_latest_due(row, UTC, NOW + seconds - 0.001) is None
    # ...then it is due exactly one interval later, and the next is one more interval on.
    assert row_next_due(row, UTC, NOW) == NOW + seconds
    assert row_latest_due(row, UTC, NOW + seconds) == NOW + seconds
    assert row_next_due(row, UTC, NOW + seconds) == NOW + 2 * seconds


def test_an_override_ignores_the_cron_times() -> None:
    row = overridden(2 * HOUR, since=NOW)
    # 11:00 and 12:00 are cron times, but the interval says 12:17:30.
    assert row_latest_due(row, UTC, at(11, 0, 1)) is None
    assert row_next_due(row, UTC, at(11, 0, 1)) == NOW + 2 * HOUR
    assert row_latest_due(row, UTC, at(12, 30)) == at(12, 17, 30)


def test_after_downtime_only_the_latest_missed_interval_is_due() -> None:
    row = overridden(HOUR, since=NOW)
    later = NOW + 5.5 * HOUR
    assert row_latest_due(row, UTC, later) == NOW + 5 * HOUR
    assert row_next_due(row, UTC, later) == NOW + 6 * HOUR


def test_next_due_is_strictly_after_now_even_on_a_due_time() -> None:
    row = overridden(HOUR, since=NOW)
    for k in (1, 2, 3):
        assert row_next_due(row, UTC, NOW + k * HOUR) == NOW + (k + 1) * HOUR


def test_a_minutes_interval_works_like_a_named_one() -> None:
    row = overridden(90 * 60, since=NOW)
    assert row_next_due(row, UTC, NOW) == NOW + 5400
    assert row_latest_due(row, UTC, NOW + 3 * 5400 + 1) == NOW + 3 * 5400


def test_the_interval_does_not_depend_on_the_time_zone() -> None:
    row = overridden(HOUR, since=NOW)
    assert row_next_due(row, PARIS, NOW) == row_next_due(row, UTC, NOW) == NOW + HOUR
    # The cron does: "0 9 * * *" is 09:00 where the site is.
    daily = replace(ROW, cron="0 9 * * *")
    assert row_next_due(daily, UTC, NOW) == at(9, day=5)
    assert row_next_due(daily, PARIS, NOW) == at(8, day=5)


def test_clearing_the_override_gives_the_cron_back() -> None:
    row = overridden(5 * HOUR, since=NOW)
    cleared = replace(row, interval_seconds=None, interval_since=None)
    assert row_next_due(cleared, UTC, NOW) == at(11)
    assert row_latest_due(cleared, UTC, NOW) == at(10)


def test_an_interval_without_its_start_time_falls_back_to_the_cron() -> None:
    # The queue always stores both; a row with only one is not treated as overridden.
    assert row_next_due(replace(ROW, interval_seconds=HOUR), UTC, NOW) == at(11)


def test_interval_due_counts_whole_intervals_only() -> None:
    assert interval_due(100.0, 10.0, 109.999) is None
    assert interval_due(100.0, 10.0, 110.0) == 110.0
    assert interval_due(100.0, 10.0, 135.0) == 130.0
    assert interval_due(100.0, 10.0, 50.0) is None  # a clock that went backwards
