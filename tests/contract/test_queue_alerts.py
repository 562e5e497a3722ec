"""On-call alerts (Queue.record_alerts / alert / alerts), every backend."""

from __future__ import annotations

import json

import pytest

from stat_bot.jobs.model import JobRequest, Source
from stat_bot.queue.alert_model import AlertChange, AlertChangeKind, AlertEvent, AlertStatus
from stat_bot.queue.base import OutboxMessage, Queue

FIRING, RESOLVED = AlertStatus.FIRING, AlertStatus.RESOLVED


def event(status: AlertStatus = FIRING, at: float = 100.0, **overrides: object) -> AlertEvent:
    values: dict[str, object] = {
        "source": "alertmanager",
        "fingerprint": "abc123",
        "title": "NodeDown: x1000c0s0b0n0",
        "status": status,
        "at": at,
        "service": "slurm",
        "severity": "critical",
        "labels": {"alertname": "NodeDown", "xname": "x1000c0s0b0n0"},
    }
    values.update(overrides)
    return AlertEvent(**values)  # type: ignore[arg-type]


def test_a_fingerprint_is_one_alert_counted_each_time_it_fires(queue: Queue, other: Queue) -> None:
    (first,) = queue.record_alerts([event()], now=100.0)
    assert first.kind is AlertChangeKind.NEW
    assert (first.alert.fire_count, first.alert.status) == (1, FIRING)
    (again,) = queue.record_alerts([event()], now=200.0)  # Alertmanager's reminder
    assert again.kind is AlertChangeKind.REPEATED
    assert again.alert.fire_count == 1
    (resolved,) = queue.record_alerts([event(RESOLVED, at=300.0)], now=300.0)
    assert resolved.kind is AlertChangeKind.RESOLVED
    assert resolved.alert.resolved_at == 300.0
    (refired,) = queue.record_alerts([event(at=400.0)], now=400.0)
    assert refired.kind is AlertChangeKind.REFIRED
    assert (refired.alert.fire_count, refired.alert.resolved_at) == (2, None)
    (same,) = other.alerts()
    assert same.id == first.alert.id
    assert (same.first_fired_at, same.last_fired_at, same.labels["xname"]) == (
        100.0,
        400.0,
        "x1000c0s0b0n0",
    )
    assert other.alert(same.id) == same


def test_a_late_copy_of_a_resolved_firing_does_not_open_it_again(queue: Queue) -> None:
    queue.record_alerts([event(at=100.0)], now=100.0)
    queue.record_alerts([event(RESOLVED, at=300.0)], now=300.0)
    # The same firing (startsAt 100) delivered late, by a retry or an HA peer.
    (late,) = queue.record_alerts([event(at=100.0)], now=310.0)
    assert late.kind is AlertChangeKind.UNCHANGED
    assert (late.alert.status, late.alert.fire_count, late.alert.resolved_at) == (
        RESOLVED,
        1,
        300.0,
    )
    assert [f.resolved_at for f in queue.alert_firings(0.0, 1000.0)] == [300.0]


def test_without_start_times_a_repeat_while_firing_is_a_reminder(queue: Queue) -> None:
    """A paging tool's Slack message dates its post, not the alert's start."""
    posted = {"source": "slack", "starts_known": False}
    queue.record_alerts([event(at=100.0, **posted)], now=100.0)
    (reminder,) = queue.record_alerts([event(at=200.0, **posted)], now=200.0)
    assert reminder.kind is AlertChangeKind.REPEATED
    assert reminder.alert.fire_count == 1
    queue.record_alerts([event(RESOLVED, at=250.0, **posted)], now=250.0)
    (again,) = queue.record_alerts([event(at=400.0, **posted)], now=400.0)
    assert (again.kind, again.alert.fire_count) == (AlertChangeKind.REFIRED, 2)
    firings = [(f.fired_at, f.resolved_at) for f in queue.alert_firings(0.0, 1000.0)]
    assert firings == [(100.0, 250.0), (400.0, None)]


def test_sources_and_fingerprints_keep_alerts_apart(queue: Queue) -> None:
    queue.record_alerts([event(), event(fingerprint="other"), event(source="pagerduty")], now=100.0)
    assert len(queue.alerts()) == 3
    assert queue.alerts(since=101.0) == []
    assert len(queue.alerts(limit=2)) == 2


def test_a_delivery_is_recorded_once_with_its_messages(queue: Queue) -> None:
    def said(changes: list) -> list[OutboxMessage]:
        return [
            OutboxMessage("alert", json.dumps({"text": f"{c.kind} {c.alert.title}"}))
            for c in changes
        ]

    changes = queue.record_alerts([event()], delivery=("pagerduty", "evt-1"), outbox=said)
    assert [c.kind for c in changes] == [AlertChangeKind.NEW]
    assert (
        queue.record_alerts([event(at=500.0)], delivery=("pagerduty", "evt-1"), outbox=said) is None
    )
    assert queue.alerts()[0].fire_count == 1  # the retried delivery counted nothing
    (message,) = queue.outbox_items()
    assert "new NodeDown" in message.payload


def test_a_failing_outbox_records_nothing(queue: Queue) -> None:
    def broken(_: list) -> list[OutboxMessage]:
        raise RuntimeError("template broke")

    with pytest.raises(RuntimeError):
        queue.record_alerts([event()], delivery=("alertmanager", "d1"), outbox=broken)
    assert queue.alerts() == []
    assert queue.record_alerts([event()], delivery=("alertmanager", "d1")) is not None


# acknowledgement and firings (migration 15) -------------------------------------------
def test_the_first_acknowledgement_wins_and_says_so_once(queue: Queue, other: Queue) -> None:
    (change,) = queue.record_alerts([event()], now=100.0)
    alert_id = change.alert.id
    assert change.alert.acknowledged_at is None

    def said(alert: object) -> list[OutboxMessage]:
        return [OutboxMessage(kind="text", payload=json.dumps({"ack": True}), channel="C1")]

    first = queue.acknowledge_alert(alert_id, "U1", at=150.0, outbox=said)
    assert first is not None
    acked, new = first
    assert new is True
    assert (acked.acknowledged_at, acked.acknowledged_by) == (150.0, "U1")
    again = other.acknowledge_alert(alert_id, "U2", at=160.0, outbox=said)
    assert again is not None
    assert again[1] is False
    assert (again[0].acknowledged_at, again[0].acknowledged_by) == (150.0, "U1")
    assert len(queue.outbox_items()) == 1  # the repeat wrote no message
    assert queue.acknowledge_alert(alert_id + 1000, "U1") is None
    # a later firing is acknowledged anew; each firing keeps its own acknowledgement
    queue.record_alerts([event(RESOLVED, at=200.0)], now=200.0)
    (refired,) = queue.record_alerts([event(at=300.0)], now=300.0)
    assert (refired.alert.acknowledged_at, refired.alert.acknowledged_by) == (None, None)
    second = other.acknowledge_alert(alert_id, "U2", at=330.0, outbox=said)
    assert second is not None
    assert second[1] is True
    stored = other.alert(alert_id)
    assert stored is not None
    assert (stored.acknowledged_by, stored.acknowledged_at, stored.fire_count) == ("U2", 330.0, 2)
    firings = queue.alert_firings(0.0, 1000.0)
    assert [(f.fired_at, f.acknowledged_at) for f in firings] == [(100.0, 150.0), (300.0, 330.0)]


def test_an_alert_is_found_by_its_source_and_fingerprint(queue: Queue) -> None:
    queue.record_alerts([event(source="pagerduty", fingerprint="PD1")], now=100.0)
    found = queue.alert_by_key("pagerduty", "PD1")
    assert found is not None
    assert found.fingerprint == "PD1"
    assert queue.alert_by_key("alertmanager", "PD1") is None


def test_each_firing_is_kept_with_its_time(queue: Queue, other: Queue) -> None:
    queue.record_alerts([event(at=100.0), event(fingerprint="b", at=150.0)], now=150.0)
    queue.record_alerts([event(at=100.0)], now=160.0)  # a reminder: not a new firing
    queue.record_alerts([event(RESOLVED, at=200.0)], now=200.0)
    queue.record_alerts([event(at=300.0)], now=300.0)
    queue.record_alerts([event(fingerprint="c", status=RESOLVED, at=310.0)], now=310.0)
    firings = other.alert_firings(0.0, 1000.0)
    assert [f.fired_at for f in firings] == [100.0, 150.0, 300.0]
    a = queue.alert_by_key("alertmanager", "abc123")
    assert a is not None
    assert [f.alert_id for f in firings].count(a.id) == 2
    assert [f.fired_at for f in other.alert_firings(100.0, 300.0)] == [100.0, 150.0]
    between = other.alerts_between(250.0, 320.0)
    assert sorted(x.fingerprint for x in between) == ["abc123", "c"]
    assert other.alerts_between(400.0, 500.0) == []


def test_a_resolution_ends_the_latest_firing(queue: Queue) -> None:
    queue.record_alerts([event(at=100.0)], now=100.0)
    queue.record_alerts([event(RESOLVED, at=160.0)], now=160.0)
    queue.record_alerts([event(RESOLVED, at=170.0)], now=170.0)  # again: changes nothing
    queue.record_alerts([event(at=300.0)], now=300.0)
    firings = queue.alert_firings(0.0, 1000.0)
    assert [(f.fired_at, f.resolved_at) for f in firings] == [(100.0, 160.0), (300.0, None)]


def check_request(target: str = "x1000c0s0b0n0") -> JobRequest:
    return JobRequest(
        namespace="hw", job_type="check", args={"target": target}, channel="oncall",
        source=Source.WEBHOOK, coalesce=False,
    )  # fmt: skip


def test_alert_rules_queue_their_jobs_once_per_key_with_the_alert(
    queue: Queue, other: Queue
) -> None:
    """The rules' jobs are queued in the alert's transaction, each dedupe key once, and the
    messages see the ids of the jobs queued for their alert."""
    seen: list[tuple[int, ...]] = []

    def jobs(change: AlertChange) -> list[tuple[str, JobRequest]]:
        key = f"{change.alert.id}:{change.alert.fire_count}:firing:hw:0"
        return [(key, check_request())] if change.started_firing else []

    def said(changes: list[AlertChange]) -> list[OutboxMessage]:
        seen.extend(c.jobs for c in changes)
        return []

    (first,) = queue.record_alerts([event()], outbox=said, jobs=jobs, now=100.0)
    assert first.previous is None
    assert first.started_firing
    (job_id,) = first.jobs
    job = other.get(job_id)
    assert job is not None
    assert (job.namespace, job.job_type, dict(job.args)) == (
        "hw",
        "check",
        {"target": "x1000c0s0b0n0"},
    )
    assert seen == [(job_id,)]
    # A reminder of the same firing queues nothing; nor does a rule asking again with a
    # key it gave before (a redelivered firing).
    (again,) = queue.record_alerts([event()], jobs=jobs, now=200.0)
    assert (again.kind, again.jobs, again.previous) == (AlertChangeKind.REPEATED, (), FIRING)
    (replayed,) = queue.record_alerts(
        [event()], jobs=lambda c: [("1:1:firing:hw:0", check_request())], now=250.0
    )
    assert replayed.jobs == ()
    queue.record_alerts([event(RESOLVED, at=300.0)], jobs=jobs, now=300.0)
    (refired,) = queue.record_alerts([event(at=400.0)], jobs=jobs, now=400.0)
    assert refired.previous is RESOLVED
    assert len(refired.jobs) == 1
    assert refired.jobs != first.jobs
    assert len(other.jobs()) == 2


def test_a_failing_rule_records_neither_alert_nor_job(queue: Queue) -> None:
    def jobs(change: AlertChange) -> list[tuple[str, JobRequest]]:
        if change.alert.fingerprint == "second":
            raise RuntimeError("rule broke")
        return [(f"{change.alert.id}:1", check_request())]

    with pytest.raises(RuntimeError):
        queue.record_alerts([event(), event(fingerprint="second")], jobs=jobs)
    assert queue.alerts() == []
    assert queue.jobs() == []
