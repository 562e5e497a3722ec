"""Cron arithmetic for schedules, in the site's time zone.

The queue guarantees a due time fires at most once; this module only says which
due time is current and when to look again. After downtime a schedule fires once
for the latest missed time, not once per missed time: a backlog of identical
reports helps nobody. The dispatcher fires by it; the status views and the
dashboard show the next fire time by it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol
from zoneinfo import ZoneInfo

from croniter import croniter


class ScheduleTimes(Protocol):
    """What a schedule's times depend on (the queue's ScheduleRow has these)."""

    @property
    def cron(self) -> str: ...

    @property
    def interval_seconds(self) -> float | None: ...

    @property
    def interval_since(self) -> float | None: ...


def latest_due(cron: str, tz: ZoneInfo, now: float) -> float:
    """The most recent time at or before `now` that `cron` names."""
    start = datetime.fromtimestamp(now, tz)
    itr = croniter(cron, start)
    # croniter's get_prev is strictly before the start, so test `now` itself first.
    if croniter.match(cron, start) and start.microsecond == 0:
        return now
    return float(itr.get_prev(float))


def next_due(cron: str, tz: ZoneInfo, now: float) -> float:
    """The first time strictly after `now` that `cron` names."""
    return float(croniter(cron, datetime.fromtimestamp(now, tz)).get_next(float))


def interval_due(since: float, interval: float, now: float) -> float | None:
    """The latest `since + k * interval` (k >= 1) at or before `now`; None before the first."""
    k = int((now - since) // interval)
    return since + k * interval if k >= 1 else None


def row_latest_due(row: ScheduleTimes, tz: ZoneInfo, now: float) -> float | None:
    """The schedule's most recent due time: by its web-set interval if any, else its cron."""
    if row.interval_seconds and row.interval_since is not None:
        return interval_due(row.interval_since, row.interval_seconds, now)
    return latest_due(row.cron, tz, now)


def row_next_due(row: ScheduleTimes, tz: ZoneInfo, now: float) -> float:
    """The schedule's first due time strictly after `now`."""
    if row.interval_seconds and row.interval_since is not None:
        k = max(1, int((now - row.interval_since) // row.interval_seconds) + 1)
        return row.interval_since + k * row.interval_seconds
    return next_due(row.cron, tz, now)
