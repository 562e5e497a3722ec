"""A week of alerts in numbers: firings by day, service and severity, the most frequent
alerts, and how long acknowledging and resolving took. Read by the handoff and the
alert dashboard, so both say the same."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import date

from stat_bot.oncall.weeks import Week
from stat_bot.queue.alert_model import Alert, AlertFiring

SEVERITY_ORDER = ("critical", "error", "warning", "info")
COLOURS = {
    "critical": (200, 40, 40),
    "error": (230, 110, 40),
    "warning": (240, 180, 40),
    "info": (60, 120, 200),
}
OTHER_COLOUR = (150, 150, 150)
NONE = "none"  # an alert without a severity or service


@dataclass(frozen=True, slots=True)
class Frequent:
    alert: Alert
    fired: int  # firings in the week (fire_count is the alert's total since first seen)


@dataclass(frozen=True, slots=True)
class AlertStats:
    week: Week
    firings: int
    per_day: list[tuple[date, dict[str, int]]]  # severity -> firings that day
    severities: list[str]  # in stacking order, those that occur
    by_service: list[tuple[str, int]]
    by_severity: list[tuple[str, int]]
    frequent: list[Frequent]
    acknowledge: tuple[float, float] | None  # median, p90 seconds; None: none acknowledged
    resolve: tuple[float, float] | None


def _order(severity: str) -> tuple[int, str]:
    s = severity.lower()
    return (SEVERITY_ORDER.index(s) if s in SEVERITY_ORDER else len(SEVERITY_ORDER), s)


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile (0 < fraction <= 1) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, -(-int(fraction * 1000) * len(ordered) // 1000))
    return ordered[min(rank, len(ordered)) - 1]


def _spread(values: list[float]) -> tuple[float, float] | None:
    return (percentile(values, 0.5), percentile(values, 0.9)) if values else None


def alert_stats(
    week: Week, alerts: list[Alert], firings: list[AlertFiring], *, top: int = 10
) -> AlertStats:
    """Numbers for `week` from its firings and the alerts they (or their ends) belong to.

    Time to acknowledge and to resolve: each firing of the week that was acknowledged (or
    resolved), from its start to its first acknowledgement (or its resolution).
    """
    by_id = {a.id: a for a in alerts}
    days = {d: Counter[str]() for d in week.days()}
    per_alert: Counter[int] = Counter()
    services: Counter[str] = Counter()
    severities: Counter[str] = Counter()
    for firing in firings:
        alert = by_id.get(firing.alert_id)
        if alert is None:
            continue
        severity = alert.severity or NONE
        day = week.day_of(firing.fired_at)
        if day in days:
            days[day][severity] += 1
        per_alert[alert.id] += 1
        services[alert.service or NONE] += 1
        severities[severity] += 1
    acks = [f.acknowledged_at - f.fired_at for f in firings if f.acknowledged_at is not None]
    resolves = [
        f.resolved_at - f.fired_at
        for f in firings
        if f.resolved_at is not None and f.resolved_at >= f.fired_at
    ]
    frequent = [
        Frequent(by_id[i], n)
        for i, n in sorted(per_alert.items(), key=lambda item: (-item[1], item[0]))[:top]
    ]
    return AlertStats(
        week=week,
        firings=sum(per_alert.values()),
        per_day=[(d, dict(c)) for d, c in days.items()],
        severities=sorted(severities, key=_order),
        by_service=sorted(services.items(), key=lambda item: (-item[1], item[0])),
        by_severity=sorted(severities.items(), key=lambda item: _order(item[0])),
        frequent=frequent,
        acknowledge=_spread([max(0.0, x) for x in acks]),
        resolve=_spread(resolves),
    )


def colour(severity: str) -> tuple[int, int, int]:
    return COLOURS.get(severity.lower(), OTHER_COLOUR)


def duration(seconds: float) -> str:
    """`45 s`, `12 min`, `3 h 05 min`, `2 d 4 h`."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 86400:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
    return f"{seconds // 86400} d {seconds % 86400 // 3600} h"
