"""What an incident is, as the queue stores it: the row, its timeline, the changes allowed.

Kept free of Slack and SQL so that the queue, the bot, the web pages and the
postmortem all read the same facts.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class IncidentConflictError(Exception):
    """The incident changed since it was read (another click won): read it again and retry."""


class EntryKind(enum.StrEnum):
    """What a timeline entry records."""

    OPENED = "opened"
    STATUS = "status"
    ROLE = "role"
    NOTE = "note"
    MESSAGE = "message"  # a channel message marked with the timeline reaction
    LINK = "link"  # an xname, a ticket or a job linked
    JOB = "job"  # a linked job's result (added when the timeline is read)
    RESOLVED = "resolved"
    REOPENED = "reopened"
    POSTMORTEM = "postmortem"
    ARCHIVED = "archived"


@dataclass(frozen=True, slots=True)
class Incident:
    """One incident. `roles` maps a role key to a Slack user id; lists keep their order."""

    id: int
    channel_id: str | None
    channel_name: str
    description: str
    status: str
    opened_by: str | None
    opened_by_name: str | None
    opened_at: float
    resolved_at: float | None
    roles: Mapping[str, str]
    xnames: tuple[str, ...]
    tickets: tuple[int, ...]
    jobs: tuple[int, ...]
    control_outbox: int | None  # the pinned control message's first outbox item
    digest_outbox: int | None  # the digest channel's message's first outbox item
    postmortem: str | None  # the wiki page written on resolving
    archived_at: float | None
    version: int
    updated_at: float

    @property
    def is_open(self) -> bool:
        return self.resolved_at is None


@dataclass(frozen=True, slots=True)
class IncidentDraft:
    """What opening an incident stores (the queue adds the id, times and version)."""

    channel_id: str | None
    channel_name: str
    description: str
    status: str
    opened_by: str | None
    opened_by_name: str | None = None
    xnames: tuple[str, ...] = ()
    tickets: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    """One line of an incident's timeline: who did what, when."""

    kind: EntryKind
    text: str
    user: str | None = None
    user_name: str | None = None
    at: float | None = None  # None: the queue's clock when stored
    data: Mapping[str, Any] = field(default_factory=dict)
    id: int | None = None
    incident_id: int | None = None


@dataclass(frozen=True, slots=True)
class IncidentMessages:
    """The outbox messages opening an incident causes. The queue remembers which items
    are the control and digest messages, since every later change edits those two."""

    control: Any = None  # an OutboxMessage (queue/base.py), or None
    digest: Any = None
    others: tuple[Any, ...] = ()


# The columns an update may change, and how each is stored (the queue checks the names).
CHANGEABLE: frozenset[str] = frozenset(
    {
        "status", "roles", "resolved_at", "xnames", "tickets", "jobs", "postmortem",
        "archived_at", "channel_id", "control_outbox", "digest_outbox",
    }
)  # fmt: skip
