"""The outbox: stored with the change that causes it, leased, recorded (every backend)."""

from __future__ import annotations

import pytest

from stat_bot.jobs.model import JobRequest, JobStatus, ReportState
from stat_bot.queue.base import OutboxMessage, OutboxState, Queue, Recovered, Worker
from tests.contract.conftest import Backend

T0 = 1_700_000_000.0


def message(text: str = "hello", **values) -> OutboxMessage:
    return OutboxMessage(kind=values.pop("kind", "report"), payload=f'"{text}"', **values)


def running_job(queue: Queue, now: float = T0) -> int:
    job = queue.enqueue(JobRequest(namespace="ns", job_type="hello"), now=now).job
    (claimed,) = queue.claim("w1", 1, now=now)
    assert claimed.id == job.id
    return job.id


def test_a_report_is_stored_with_the_jobs_end_in_one_transaction(queue: Queue):
    job_id = running_job(queue)
    assert queue.finish(job_id, JobStatus.SUCCEEDED, 0, outbox=[message(job_id=job_id)], now=T0 + 1)
    finished = queue.get(job_id)
    assert finished.report_state == ReportState.PENDING
    (item,) = queue.outbox_items()
    assert (item.kind, item.job_id, item.state, item.payload) == (
        "report",
        job_id,
        OutboxState.PENDING,
        '"hello"',
    )
    assert item.expires_at == pytest.approx(T0 + 1 + queue.outbox_expiry)


def test_no_report_is_stored_for_a_job_that_was_no_longer_running(queue: Queue):
    job_id = running_job(queue)
    queue.finish(job_id, JobStatus.FAILED, 1, now=T0 + 1)
    again = queue.finish(job_id, JobStatus.SUCCEEDED, 0, outbox=[message(job_id=job_id)])
    assert again is False
    assert queue.outbox_items() == []


def test_a_leased_message_is_not_due_for_others_until_its_lease_ends(queue: Queue):
    (item_id,) = queue.post([message()], now=T0)
    assert queue.outbox_next_due() == T0
    queue.claim_outbox("s1", lease=60, now=T0)
    assert queue.outbox_next_due() == T0 + 60
    queue.outbox_release([item_id])
    assert queue.outbox_next_due() == T0


def test_claims_lease_messages_oldest_first_and_not_twice(queue: Queue):
    ids = queue.post([message("a"), message("b"), message("c")], now=T0)
    first = queue.claim_outbox("s1", limit=2, now=T0)
    assert [i.id for i in first] == ids[:2]
    second = queue.claim_outbox("s2", limit=5, now=T0 + 1)
    assert [i.id for i in second] == ids[2:]
    assert queue.claim_outbox("s3", now=T0 + 2) == []
    # A sender that died: its leases end and the messages come back.
    back = queue.claim_outbox("s3", lease=10, now=T0 + 121)
    assert [i.id for i in back] == ids
    queue.outbox_release([i.id for i in back])
    assert [i.id for i in queue.claim_outbox("s4", now=T0 + 122)] == ids


def test_delivery_marks_the_jobs_report_delivered_and_stores_follow_ups(queue: Queue):
    job_id = running_job(queue)
    queue.finish(job_id, JobStatus.FAILED, 1, outbox=[message(job_id=job_id)], now=T0 + 1)
    (item,) = queue.claim_outbox("s1", now=T0 + 2)
    repost = message("link", kind="repost", channel="tech-support")
    queue.outbox_delivered(item, "C1", "123.4", follow_ups=[repost], now=T0 + 3)
    done = queue.outbox_get(item.id)
    assert (done.state, done.posted_channel, done.ts, done.attempts) == (
        OutboxState.DELIVERED,
        "C1",
        "123.4",
        1,
    )
    assert queue.get(job_id).report_state == ReportState.DELIVERED
    (follow,) = queue.claim_outbox("s1", now=T0 + 4)
    assert (follow.kind, follow.channel) == ("repost", "tech-support")


def test_a_job_with_reports_to_several_places_is_delivered_when_all_are(queue: Queue):
    job_id = running_job(queue)
    both = [message("to ada", job_id=job_id), message("to bob", job_id=job_id)]
    queue.finish(job_id, JobStatus.SUCCEEDED, 0, outbox=both, now=T0 + 1)
    first, second = queue.claim_outbox("s1", now=T0 + 2)
    queue.outbox_delivered(first, "C1", "1.1")
    assert queue.get(job_id).report_state == ReportState.PENDING
    queue.outbox_delivered(second, "C2", "2.2")
    assert queue.get(job_id).report_state == ReportState.DELIVERED


def test_a_refusal_gives_the_message_up_and_says_why_on_the_job(queue: Queue):
    job_id = running_job(queue)
    queue.finish(job_id, JobStatus.SUCCEEDED, 0, outbox=[message(job_id=job_id)], now=T0 + 1)
    (item,) = queue.claim_outbox("s1", now=T0 + 2)
    queue.outbox_failed(item.id, "the bot is not a member of #ops (not_in_channel)")
    assert queue.outbox_get(item.id).state is OutboxState.FAILED
    job = queue.get(job_id)
    assert job.report_state == ReportState.FAILED
    assert job.report_error == "the bot is not a member of #ops (not_in_channel)"
    assert queue.claim_outbox("s1", now=T0 + 500) == []


def test_a_retry_waits_until_its_time_and_counts_the_attempt(queue: Queue):
    (item_id,) = queue.post([message()], now=T0)
    queue.claim_outbox("s1", now=T0)
    queue.outbox_retry(item_id, "Slack could not be reached", T0 + 30)
    assert queue.claim_outbox("s1", now=T0 + 29) == []
    assert queue.outbox_next_due() == T0 + 30
    (again,) = queue.claim_outbox("s1", now=T0 + 30)
    assert (again.attempts, again.last_error) == (1, "Slack could not be reached")
    summary = queue.outbox_summary()
    assert (summary.undelivered, summary.oldest_created_at) == (1, T0)
    assert summary.last_error == "Slack could not be reached"


def test_a_leased_message_does_not_expire_under_its_sender(queue: Queue):
    (item_id,) = queue.post([message(expires_at=T0 + 5)], now=T0)
    queue.claim_outbox("s1", lease=100, now=T0)
    queue.claim_outbox("s2", now=T0 + 10)
    assert queue.outbox_get(item_id).state is OutboxState.PENDING


def test_one_progress_message_per_job_rearmed_and_dropped_when_the_job_ends(
    queue: Queue,
):
    job_id = running_job(queue)
    first = queue.post_progress(job_id, message("10 s", kind="progress"), now=T0)
    (item,) = queue.claim_outbox("s1", now=T0)
    # A newer note arrives while the first is being sent: it must not be marked delivered.
    assert queue.post_progress(job_id, message("15 s", kind="progress"), now=T0 + 1) == first
    queue.outbox_delivered(item, "C1", "5.5", now=T0 + 2)
    current = queue.outbox_get(first)
    assert (current.state, current.ts, current.payload) == (OutboxState.PENDING, "5.5", '"15 s"')
    assert queue.progress_posted(job_id) == ("C1", "5.5")
    queue.finish(job_id, JobStatus.SUCCEEDED, 0, outbox=[message(job_id=job_id)], now=T0 + 3)
    assert queue.outbox_get(first).state is OutboxState.DROPPED
    assert queue.progress_posted(job_id) == ("C1", "5.5")  # the report replaces it
    # Too late: a note for a job that has ended is not stored.
    assert queue.post_progress(job_id, message("20 s", kind="progress"), now=T0 + 4) == 0
    current = queue.outbox_get(first)
    assert (current.state, current.payload) == (OutboxState.DROPPED, '"15 s"')


def test_an_end_said_to_have_no_progress_note_leaves_the_outbox_alone(queue: Queue):
    """`progress=False` is the caller's word that the job wrote none (the dispatcher
    knows): the statement that drops one is skipped, so anything there stays."""
    job_id = running_job(queue)
    note = queue.post_progress(job_id, message("10 s", kind="progress"), now=T0)
    assert queue.finish(job_id, JobStatus.SUCCEEDED, 0, now=T0 + 1, progress=False)
    assert queue.outbox_get(note).state is OutboxState.PENDING
    assert queue.get(job_id).status is JobStatus.SUCCEEDED


def test_a_several_part_report_records_each_part(queue: Queue):
    (item_id,) = queue.post([message()], now=T0)
    queue.claim_outbox("s1", now=T0)
    queue.outbox_sent_part(item_id, 1, "C1", "7.7")
    queue.outbox_retry(item_id, "HTTP 503", T0)
    (again,) = queue.claim_outbox("s1", now=T0 + 1)
    assert (again.parts_done, again.posted_channel, again.ts) == (1, "C1", "7.7")


def test_recovery_notices_are_stored_with_the_recovery(queue: Queue):
    job_id = running_job(queue)
    queue.register_worker("w1", "host", 1, now=T0)

    def notices(item: Recovered) -> list[OutboxMessage]:
        return [message(f"lost {item.job.id}", job_id=item.job.id)]

    (recovered,) = queue.recover_lost(lambda w: True, notices=notices, now=T0 + 60)
    assert recovered.job.status is JobStatus.LOST
    (item,) = queue.outbox_items()
    assert (item.job_id, item.payload) == (job_id, f'"lost {job_id}"')


def test_a_broken_notice_builder_undoes_the_recovery(queue: Queue):
    job_id = running_job(queue)
    queue.register_worker("w1", "host", 1, now=T0)

    def broken(item: Recovered) -> list[OutboxMessage]:
        raise RuntimeError("cannot word it")

    with pytest.raises(RuntimeError):
        queue.recover_lost(lambda w: True, notices=broken, now=T0 + 60)
    assert queue.get(job_id).status is JobStatus.RUNNING
    assert [w.id for w in queue.workers()] == ["w1"]
    assert isinstance(queue.workers()[0], Worker)


def test_webhook_notices_are_stored_with_the_delivery_and_found_by_ref(queue: Queue):
    request = JobRequest(namespace="ns", job_type="hello")
    results = queue.accept_delivery(
        "trac",
        "ev-1",
        [request],
        notices=lambda results: [message(f"queued #{results[0].job.id}", ref="trac:ev-1")],
        now=T0,
    )
    assert results is not None
    (item,) = queue.outbox_find("trac:ev-1")
    assert item.payload == f'"queued #{results[0].job.id}"'
    # A replay stores nothing more.
    assert queue.accept_delivery("trac", "ev-1", [request], notices=lambda r: [message()]) is None
    assert len(queue.outbox_items()) == 1


def test_old_outbox_rows_are_pruned_but_pending_ones_kept(queue: Queue):
    sent, waiting = queue.post([message("sent"), message("waiting")], now=T0)
    (item, _) = queue.claim_outbox("s1", now=T0)
    assert item.id == sent
    queue.outbox_delivered(item, "C1", "1.1")
    queue.prune(T0 + 10)
    assert [i.id for i in queue.outbox_items()] == [waiting]


def test_messages_past_their_expiry_are_given_up_and_the_job_says_so(backend: Backend):
    queue = backend.open(slack_delivery_expiry=60)
    job_id = running_job(queue)
    queue.finish(job_id, JobStatus.SUCCEEDED, 0, outbox=[message(job_id=job_id)], now=T0)
    (item,) = queue.claim_outbox("s1", now=T0)
    queue.outbox_retry(item.id, "Slack could not be reached for a message to C1", T0 + 1)
    assert queue.claim_outbox("s1", now=T0 + 59)[0].state is OutboxState.PENDING
    queue.outbox_release([item.id])
    (expired,) = queue.claim_outbox("s1", now=T0 + 61)
    assert expired.state is OutboxState.EXPIRED
    assert expired.last_error == (
        "not delivered before it expired; last error: "
        "Slack could not be reached for a message to C1"
    )
    job = queue.get(job_id)
    assert (job.report_state, job.report_error) == (ReportState.FAILED, expired.last_error)
    assert queue.outbox_summary().by_state == {"pending": 0, "expired": 1}


def test_a_relayed_ticket_is_never_claimed_by_other_senders_only_expired(queue: Queue):
    (relay,) = queue.post([message(kind="relay", expires_at=T0 + 4)], now=T0)
    assert queue.claim_outbox("dispatcher", now=T0) == []
    assert queue.outbox_next_due() == T0 + 4  # due only to be expired
    (mine,) = queue.claim_outbox("web", only=relay, lease=10, now=T0)
    assert mine.id == relay
    queue.outbox_release([relay])
    (expired,) = queue.claim_outbox("dispatcher", now=T0 + 5)
    assert (expired.id, expired.state) == (relay, OutboxState.EXPIRED)


def test_a_lease_is_renewed_only_by_its_holder_and_only_while_it_holds_it(queue: Queue):
    (item_id,) = queue.post([message()])
    queue.claim_outbox("s1", lease=0.2)
    assert queue.outbox_renew(item_id, "s1", 60)
    assert not queue.outbox_renew(item_id, "s2", 60)
    assert queue.claim_outbox("s2") == []  # renewed: still s1's
    queue.outbox_release([item_id])
    (taken,) = queue.claim_outbox("s2")
    assert taken.id == item_id
    assert not queue.outbox_renew(item_id, "s1", 60)  # s1 lost it: it must not send


def test_a_jobs_messages_go_one_at_a_time_in_order(queue: Queue):
    job_id = running_job(queue)
    progress = queue.post_progress(job_id, message("10 s", kind="progress"), now=T0)
    (held,) = queue.claim_outbox("s1", limit=1, now=T0)
    assert held.id == progress
    queue.finish(job_id, JobStatus.SUCCEEDED, 0, outbox=[message(job_id=job_id)], now=T0 + 1)
    # Another sender may not send the report while the progress edit is still in flight.
    assert queue.claim_outbox("s2", now=T0 + 2) == []
    queue.outbox_delivered(held, "C1", "5.5", now=T0 + 3)
    (report,) = queue.claim_outbox("s2", now=T0 + 4)
    assert (report.kind, report.job_id) == ("report", job_id)


def test_a_lost_jobs_unsent_progress_note_is_dropped(queue: Queue):
    job_id = running_job(queue)
    queue.register_worker("w1", "host", 1, now=T0)
    progress = queue.post_progress(job_id, message("10 s", kind="progress"), now=T0)
    queue.recover_lost(lambda w: True, now=T0 + 60)
    assert queue.outbox_get(progress).state is OutboxState.DROPPED
