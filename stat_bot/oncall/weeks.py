"""On-call weeks: an ISO week (`2026-W48`, Monday 00:00 to Monday 00:00 in TIMEZONE) or the
seven days ending now, as the handoff and the alert dashboard both read them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

WEEK = re.compile(r"^(\d{4})-W(\d{2})$")
FIRST_YEAR, LAST_YEAR = 1971, 9998


class WeekError(ValueError):
    """Not an ISO week; the message says what is expected."""


@dataclass(frozen=True, slots=True)
class Week:
    """[start, end) in epoch seconds; `label` is the ISO week or `last 7 days`."""

    start: float
    end: float
    label: str
    tz: ZoneInfo

    def days(self) -> list[date]:
        """Each local calendar day the week touches, oldest first."""
        first = datetime.fromtimestamp(self.start, self.tz).date()
        last = datetime.fromtimestamp(self.end - 1, self.tz).date()
        return [first + timedelta(days=n) for n in range((last - first).days + 1)]

    def day_of(self, at: float) -> date:
        return datetime.fromtimestamp(at, self.tz).date()


def iso_week(label: str, tz: ZoneInfo) -> Week:
    """`2026-W48`: that week's Monday 00:00 to the next Monday 00:00 in `tz`."""
    match = WEEK.match(label.strip())
    if not match:
        raise WeekError(f"week {label[:20]!r} is not an ISO week: write it as 2026-W48")
    year, number = int(match.group(1)), int(match.group(2))
    if not FIRST_YEAR <= year <= LAST_YEAR:
        # Beyond these, the week before or after (the page's links) has no date.
        raise WeekError(f"week {label[:20]!r}: give a year from {FIRST_YEAR} to {LAST_YEAR}")
    try:
        monday = date.fromisocalendar(year, number, 1)
    except ValueError:
        raise WeekError(
            f"{year} has no week {number} (ISO weeks run from W01 to W52 or W53)"
        ) from None
    start = datetime.combine(monday, time(0), tz)
    end = datetime.combine(monday + timedelta(days=7), time(0), tz)
    return Week(start.timestamp(), end.timestamp(), f"{year}-W{number:02d}", tz)


def week_label(at: float, tz: ZoneInfo) -> str:
    """The ISO week holding `at`."""
    year, number, _ = datetime.fromtimestamp(at, tz).isocalendar()
    return f"{year}-W{number:02d}"


def shifted(label: str, weeks: int, tz: ZoneInfo) -> str:
    """The ISO week `weeks` before (negative) or after this one."""
    week = iso_week(label, tz)
    return week_label(week.start + weeks * 7 * 86400 + 3 * 86400, tz)


def last_seven_days(now: float, tz: ZoneInfo) -> Week:
    """The seven days ending at `now` (what a handoff run on Monday morning looks back on)."""
    return Week(now - 7 * 86400, now, "the last 7 days", tz)
