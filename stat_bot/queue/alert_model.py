"""Alerts as the queue stores them: one row per (source, fingerprint), repeats counted on it.

Defined beside the queue (which may not import oncall/) and read by the web routes
that take alerts in, the on-call messages and, later, the handoff and its charts.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field


class AlertStatus(enum.StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """One alert as a source reported it (an Alertmanager alert, a PagerDuty incident event).

    `at` is when it started firing (or, resolved, when it ended), by the source's clock.
    """

    source: str
    fingerprint: str
    title: str
    status: AlertStatus
    at: float
    service: str = ""
    severity: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    url: str | None = None
    # Whether `at` of a firing is when it started (Alertmanager's startsAt), so a later one
    # while still firing is a new firing; False for a time that is only when the report was
    # posted (a paging tool's Slack message), where a repeat while firing is a reminder.
    starts_known: bool = True


@dataclass(frozen=True, slots=True)
class Alert:
    id: int
    source: str
    fingerprint: str
    title: str
    service: str
    severity: str
    labels: Mapping[str, str]
    status: AlertStatus
    first_fired_at: float
    last_fired_at: float
    resolved_at: float | None
    fire_count: int
    url: str | None
    updated_at: float
    acknowledged_at: float | None = None  # the first acknowledgement; later ones do not move it
    acknowledged_by: str | None = None  # a Slack user id, or "pagerduty:<agent>"


class AlertChangeKind(enum.StrEnum):
    NEW = "new"  # never seen before
    REFIRED = "refired"  # fired again (after resolving, or a new start time)
    REPEATED = "repeated"  # the same firing reported again: nothing changes but the time
    RESOLVED = "resolved"
    UNCHANGED = "unchanged"  # resolved again, or a resolution of something never seen firing


@dataclass(frozen=True, slots=True)
class AlertChange:
    """What recording one event did to its alert.

    `previous` is the alert's status before the event (None: new), so a rule can tell a
    new firing (from nothing or after a resolution) from a reminder while it still fires;
    `jobs` the ids of the jobs its alert rules queued in the same transaction.
    """

    alert: Alert
    kind: AlertChangeKind
    previous: AlertStatus | None = None
    jobs: tuple[int, ...] = ()

    @property
    def started_firing(self) -> bool:
        """Whether the alert began to fire with this event (not a repeat, not a reminder)."""
        return self.alert.status is AlertStatus.FIRING and (
            self.kind is AlertChangeKind.NEW
            or (self.kind is AlertChangeKind.REFIRED and self.previous is not AlertStatus.FIRING)
        )


@dataclass(frozen=True, slots=True)
class AlertFiring:
    """One time an alert started firing (its first time, or again after resolving)."""

    alert_id: int
    fired_at: float
    resolved_at: float | None = None  # when this firing resolved (None: still firing)
    acknowledged_at: float | None = None  # its first acknowledgement (None: none yet)
