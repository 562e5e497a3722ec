"""Incidents and their timelines (Queue.open_incident / update_incident ...), every backend."""

from __future__ import annotations

import json

import pytest

from stat_bot.incidents.model import (
    EntryKind,
    IncidentConflictError,
    IncidentDraft,
    IncidentMessages,
    TimelineEntry,
)
from stat_bot.queue.base import OutboxMessage, OutboxState, Queue


def draft(**overrides: object) -> IncidentDraft:
    values: dict[str, object] = {
        "channel_id": "C100",
        "channel_name": "inc-202612020800-gpfs-hang",
        "description": "GPFS hangs on login nodes",
        "status": "investigating",
        "opened_by": "U1",
        "opened_by_name": "ada",
        "xnames": ("x1000c0s0b0n0",),
        "tickets": (12,),
    }
    values.update(overrides)
    return IncidentDraft(**values)  # type: ignore[arg-type]


def message(kind: str, text: str) -> OutboxMessage:
    return OutboxMessage(kind=kind, payload=json.dumps({"text": text}), channel="C100")


def test_open_stores_the_incident_its_entries_and_its_messages_together(
    queue: Queue, other: Queue
) -> None:
    opened = queue.open_incident(
        draft(),
        entries=[TimelineEntry(EntryKind.OPENED, "opened", user="U1", user_name="ada")],
        outbox=lambda inc: IncidentMessages(
            control=message("incident", f"control {inc.id}"),
            digest=message("incident", f"digest {inc.id}"),
            others=(message("incident", "snapshot"),),
        ),
        now=1000.0,
    )
    got = other.incident(opened.id)
    assert got == opened
    assert (got.status, got.opened_at, got.resolved_at, got.version) == (
        "investigating",
        1000.0,
        None,
        2,  # the outbox ids were set after the insert
    )
    assert got.xnames == ("x1000c0s0b0n0",)
    assert got.tickets == (12,)
    assert got.roles == {}
    items = {i.id: i for i in other.outbox_items(states=[OutboxState.PENDING])}
    assert json.loads(items[got.control_outbox].payload)["text"] == f"control {got.id}"
    assert json.loads(items[got.digest_outbox].payload)["text"] == f"digest {got.id}"
    assert len(items) == 3
    (entry,) = other.incident_timeline(got.id)
    assert (entry.kind, entry.user, entry.user_name, entry.at) == (
        EntryKind.OPENED,
        "U1",
        "ada",
        1000.0,
    )
    assert other.incident_by_channel("C100") == got
    assert other.incident_by_channel("C999") is None


def test_a_failing_outbox_leaves_nothing_half_written(queue: Queue) -> None:
    def broken(_: object) -> IncidentMessages:
        raise RuntimeError("template broke")

    with pytest.raises(RuntimeError):
        queue.open_incident(draft(), entries=[TimelineEntry(EntryKind.OPENED, "x")], outbox=broken)
    assert queue.incidents() == []
    assert queue.outbox_items() == []


def test_updates_check_the_version_and_keep_every_entry(queue: Queue, other: Queue) -> None:
    first = queue.open_incident(draft(), now=10.0)
    changed = queue.update_incident(
        first.id,
        version=first.version,
        changes={"roles": {"commander": "U2"}, "status": "identified"},
        entries=[TimelineEntry(EntryKind.ROLE, "U2 is commander", user="U2", at=20.0)],
        outbox=lambda inc: [message("incident", f"now {inc.status}")],
        now=20.0,
    )
    assert changed.version == first.version + 1
    assert (changed.status, dict(changed.roles), changed.updated_at) == (
        "identified",
        {"commander": "U2"},
        20.0,
    )
    with pytest.raises(IncidentConflictError):
        other.update_incident(first.id, version=first.version, changes={"status": "resolved"})
    assert queue.incident(first.id).status == "identified"  # the stale click changed nothing
    queue.update_incident(
        first.id, version=None, entries=[TimelineEntry(EntryKind.NOTE, "fs back", at=30.0)]
    )
    kinds = [(e.kind, e.text) for e in other.incident_timeline(first.id)]
    assert kinds == [(EntryKind.ROLE, "U2 is commander"), (EntryKind.NOTE, "fs back")]
    with pytest.raises(ValueError, match="description"):
        queue.update_incident(first.id, version=None, changes={"description": "renamed"})
    with pytest.raises(KeyError):
        queue.update_incident(first.id + 100, version=None, changes={"status": "x"})


def test_listing_shows_open_ones_and_recently_resolved(queue: Queue) -> None:
    old = queue.open_incident(draft(channel_id="C1", channel_name="inc-old"), now=100.0)
    recent = queue.open_incident(draft(channel_id="C2", channel_name="inc-recent"), now=200.0)
    still = queue.open_incident(draft(channel_id="C3", channel_name="inc-open"), now=300.0)
    queue.update_incident(old.id, version=None, changes={"resolved_at": 150.0})
    queue.update_incident(
        recent.id, version=None, changes={"resolved_at": 400.0, "xnames": ["x1", "x2"], "jobs": [5]}
    )
    assert [i.channel_name for i in queue.incidents(resolved_since=300.0)] == [
        "inc-open",
        "inc-recent",
    ]
    assert [i.id for i in queue.incidents()] == [still.id, recent.id, old.id]
    assert queue.incident(recent.id).xnames == ("x1", "x2")
    assert queue.incident(recent.id).jobs == (5,)
    assert queue.incidents(limit=1)[0].id == still.id


def test_hostile_text_is_stored_as_text(queue: Queue) -> None:
    nasty = "'; DROP TABLE incidents; -- <@U1> \u202e ünïcödé"
    opened = queue.open_incident(
        draft(description=nasty), entries=[TimelineEntry(EntryKind.NOTE, nasty, data={"k": nasty})]
    )
    assert queue.incident(opened.id).description == nasty
    (entry,) = queue.incident_timeline(opened.id)
    assert entry.text == nasty
    assert entry.data == {"k": nasty}
