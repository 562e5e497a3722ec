"""Guarded jobs in the queue: offers, one-transaction decisions, and xname locks (every backend)."""

from __future__ import annotations

import json

from stat_bot.jobs.model import JobRequest, JobStatus, Source
from stat_bot.jobs.targets import expand
from stat_bot.queue.base import (
    Confirmation,
    ConfirmationState,
    Decision,
    OutboxMessage,
    Queue,
)

T0 = 1_700_000_000.0


def power(target: str, **values) -> JobRequest:
    return JobRequest(
        namespace="ns",
        job_type=values.pop("job_type", "power"),
        args={"target": target, "action": "off"},
        source=Source.SLACK,
        user="U1",
        channel="C1",
        coalesce=values.pop("coalesce", False),
        concurrency=values.pop("concurrency", 10),
        targets=expand(target, None),
        **values,
    )


def offer_message(offer: Confirmation) -> list[OutboxMessage]:
    return [OutboxMessage("confirm", json.dumps({"code": offer.code}), channel=offer.channel)]


def decided_message(offer: Confirmation, job) -> list[OutboxMessage]:
    body = {"code": offer.code, "state": str(offer.state), "job": job.id if job else None}
    return [OutboxMessage("confirm", json.dumps(body), channel=offer.channel)]


def offer(queue: Queue, target: str = "x1000c0s0b0n0", now: float = T0, **values) -> Confirmation:
    return queue.offer_confirmation(
        power(target),
        requested_by="U1",
        requested_by_name="alice",
        channel="C1",
        thread_ts="100.1",
        summary=f"Power off {target}",
        expires_in=values.pop("expires_in", 600.0),
        confirmers=values.pop("confirmers", ("U0ADMIN1", "@hpc-admins")),
        outbox=offer_message,
        now=now,
    )


def test_an_offer_is_stored_with_its_message_under_an_unguessable_code(queue: Queue, other: Queue):
    first = offer(queue)
    second = offer(queue)
    assert first.code != second.code
    assert len(first.code) == 6
    assert first.code.isalnum()
    assert first.code.isupper() or first.code.isdigit()
    stored = other.get_confirmation(first.code.lower())
    assert stored is not None
    assert stored.state is ConfirmationState.PENDING
    assert stored.request == power("x1000c0s0b0n0")
    assert (stored.requested_by, stored.channel, stored.thread_ts) == ("U1", "C1", "100.1")
    assert stored.confirmers == ("U0ADMIN1", "@hpc-admins")
    assert stored.expires_at == T0 + 600
    item = queue.outbox_get(stored.offer_id)
    assert item is not None
    assert json.loads(item.payload) == {"code": first.code}
    assert queue.jobs() == []  # nothing runs before someone confirms


def test_confirming_queues_the_job_records_who_and_edits_the_offer_at_once(queue: Queue):
    made = offer(queue)
    result = queue.decide_confirmation(
        made.code, confirm=True, by="U1", by_name="alice", outbox=decided_message, now=T0 + 5
    )
    assert result.decision is Decision.CONFIRMED
    job = result.enqueued.job
    assert job.confirmed_by == "alice"
    assert queue.get(job.id).confirmed_by == "alice"
    assert queue.job_locks(job.id) == ["x1000.c0.s0.b0.n0."]
    decided = queue.get_confirmation(made.code)
    assert (decided.state, decided.decided_by, decided.job_id) == (
        ConfirmationState.CONFIRMED,
        "U1",
        job.id,
    )
    payloads = [json.loads(i.payload) for i in queue.outbox_items()]
    assert {"code": made.code, "state": "confirmed", "job": job.id} in payloads


def test_a_second_click_queues_nothing_and_says_who_decided(queue: Queue, other: Queue):
    made = offer(queue)
    queue.decide_confirmation(made.code, confirm=True, by="U1", now=T0 + 1)
    again = other.decide_confirmation(made.code, confirm=True, by="U0ADMIN1", now=T0 + 2)
    assert again.decision is Decision.ALREADY
    assert again.confirmation.decided_by == "U1"
    cancel = other.decide_confirmation(made.code, confirm=False, by="U0ADMIN1", now=T0 + 3)
    assert cancel.decision is Decision.ALREADY
    assert len(queue.jobs()) == 1
    assert queue.get_confirmation(made.code).state is ConfirmationState.CONFIRMED


def test_cancelling_queues_nothing(queue: Queue):
    made = offer(queue)
    result = queue.decide_confirmation(
        made.code, confirm=False, by="U1", outbox=decided_message, now=T0 + 1
    )
    assert result.decision is Decision.CANCELLED
    assert result.enqueued is None
    assert queue.jobs() == []
    assert queue.get_confirmation(made.code).state is ConfirmationState.CANCELLED
    assert queue.decide_confirmation(made.code, confirm=True, by="U1").decision is Decision.ALREADY
    assert queue.jobs() == []


def test_a_late_confirmation_expires_the_offer_instead(queue: Queue):
    made = offer(queue, expires_in=60)
    result = queue.decide_confirmation(
        made.code, confirm=True, by="U1", outbox=decided_message, now=T0 + 60
    )
    assert result.decision is Decision.EXPIRED
    assert queue.jobs() == []
    assert queue.get_confirmation(made.code).state is ConfirmationState.EXPIRED
    payloads = [json.loads(i.payload) for i in queue.outbox_items()]
    assert {"code": made.code, "state": "expired", "job": None} in payloads


def test_unanswered_offers_expire_with_their_messages(queue: Queue):
    soon = offer(queue, expires_in=10)
    later = offer(queue, expires_in=1000)
    assert queue.expire_confirmations(outbox=decided_message, now=T0 + 5) == []
    (expired,) = queue.expire_confirmations(outbox=decided_message, now=T0 + 10)
    assert expired.code == soon.code
    assert expired.state is ConfirmationState.EXPIRED
    assert queue.get_confirmation(later.code).state is ConfirmationState.PENDING
    pending = queue.confirmations(states=[ConfirmationState.PENDING])
    assert [c.code for c in pending] == [later.code]


def test_an_unknown_code_is_not_found(queue: Queue):
    assert queue.decide_confirmation("ZZZZZZ", confirm=True, by="U1").decision is (
        Decision.NOT_FOUND
    )
    assert queue.get_confirmation("ZZZZZZ") is None


# --- locks ------------------------------------------------------------------------------------


def claim_ids(queue: Queue, now: float = T0) -> list[int]:
    return [job.id for job in queue.claim("w1", 10, now=now)]


def test_overlapping_exclusive_jobs_never_run_at_once(queue: Queue):
    chassis = queue.enqueue(power("x1000c0"), now=T0).job
    node = queue.enqueue(power("x1000c0s0b0n0", job_type="other"), now=T0).job
    elsewhere = queue.enqueue(power("x1000c1s0b0n0", job_type="third"), now=T0).job
    check = queue.enqueue(JobRequest("ns", "check", {"target": "x1000c0"}), now=T0).job
    assert claim_ids(queue) == [chassis.id, elsewhere.id, check.id]
    assert claim_ids(queue) == []  # the node waits for its chassis
    queue.finish(chassis.id, JobStatus.SUCCEEDED, 0, now=T0 + 1)
    assert claim_ids(queue, T0 + 1) == [node.id]


def test_a_cabinet_number_prefix_is_not_an_ancestor(queue: Queue):
    one = queue.enqueue(power("x1000c1"), now=T0).job
    ten = queue.enqueue(power("x1000c10s0b0n0", job_type="other"), now=T0).job
    assert claim_ids(queue) == [one.id, ten.id]


def test_an_unresolved_target_locks_everything(queue: Queue):
    everything = queue.enqueue(power("nid[001-004]"), now=T0).job
    node = queue.enqueue(power("x3000c0s0b0n0", job_type="other"), now=T0).job
    assert claim_ids(queue) == [everything.id]
    queue.finish(everything.id, JobStatus.FAILED, 1, now=T0 + 1)
    assert claim_ids(queue, T0 + 1) == [node.id]


def test_a_merged_request_moves_the_jobs_locks_to_its_target(queue: Queue):
    first = queue.enqueue(power("x1000c0s0b0n0", coalesce="type"), now=T0).job
    merged = queue.enqueue(power("x1000c2s0b0n0", coalesce="type"), now=T0 + 1)
    assert merged.coalesced
    assert merged.job.id == first.id
    assert queue.job_locks(first.id) == ["x1000.c2.s0.b0.n0."]
