"""The outbox sender against the Slack emulator: retries, refusals, order, resumption.

The sender, the queue and slack_sdk are the real ones; Slack is the project's
emulator with injected faults, or a closed port for "unreachable".
"""

from __future__ import annotations

import contextlib
import socketserver
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from stat_bot.integrations.slack_emulator import (
    APP_TOKEN,
    BOT_TOKEN,
    GENERAL_CHANNEL_ID,
    SUPPORT_CHANNEL_ID,
    EmulatorClient,
    EmulatorThread,
)
from stat_bot.jobs.model import JobRequest, JobStatus, ReportState
from stat_bot.queue import Queue
from stat_bot.queue.base import OutboxState
from stat_bot.report.messages import FileUpload, Message, Report
from stat_bot.report.notifiers import DeliveryError, Posted, RecordingNotifier
from stat_bot.report.outbox import OutboxSender, decode, encode, outgoing
from stat_bot.report.slack import SlackNotifier
from stat_bot.settings import Settings
from tests.integration.conftest import wait_until
from tests.trac_fixtures import free_port


@pytest.fixture
def slack_settings(make_settings: Callable[..., Settings], slack_emulator: EmulatorThread):
    def make(**overrides: Any) -> Settings:
        values = {
            "slack_bot_token": BOT_TOKEN,
            "slack_app_token": APP_TOKEN,
            "slack_api_url": slack_emulator.api_url,
            "slack_retry_max": 0.5,
            **overrides,
        }
        return make_settings(**values)

    return make


@pytest.fixture
def senders(queue: Queue) -> Iterator[list[OutboxSender]]:
    started: list[OutboxSender] = []
    yield started
    for sender in started:
        sender.stop()


def slack_sender(settings: Settings, queue: Queue, owner: str = "test") -> OutboxSender:
    return OutboxSender(queue, SlackNotifier(settings), settings, owner=owner)


def drain(sender: OutboxSender, until: Callable[[], bool], timeout: float = 20.0) -> None:
    """Run send passes (as the sender's thread would) until `until()` holds."""
    deadline = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, "the outbox did not get there in time"
        time.sleep(min(0.05, max(0.0, sender.send_due())))


def texts(client: EmulatorClient, channel: str = GENERAL_CHANNEL_ID) -> list[str]:
    return [m["text"] for m in client.messages(channel) if m.get("bot_id")]


def store(queue: Queue, *reports: Report, kind: str = "notice") -> list[int]:
    return queue.post([outgoing(r, kind) for r in reports])


def finished_job(queue: Queue, report: Report) -> int:
    job = queue.enqueue(JobRequest(namespace="ns", job_type="hello")).job
    queue.claim("w1", 1)
    report = Report(report.messages, report.kind, report.channel, None, job.id, title=f"#{job.id}")
    queue.finish(job.id, JobStatus.SUCCEEDED, 0, outbox=[outgoing(report, "report")])
    return job.id


def test_payloads_round_trip_with_blocks_and_files():
    report = Report(
        [
            Message("text", blocks=[{"type": "divider"}]),
            Message("file", file=FileUpload("a.csv", b"\x00\xffx,y\n", "A")),
        ],
        "failure",
        "general",
        "1.2",
        7,
        True,
        "#7 ns job",
        {"replaces_progress": True},
    )
    assert decode(encode(report)) == report


def test_server_errors_are_retried_and_the_message_posted_once(
    slack_settings, queue, emulator_client
):
    emulator_client.server_error(count=3, methods=["chat.postMessage"])
    job_id = finished_job(queue, Report([Message("report one")], channel="general"))
    sender = slack_sender(slack_settings(), queue)
    drain(sender, lambda: queue.get(job_id).report_state == ReportState.DELIVERED)
    assert texts(emulator_client) == ["report one"]
    (item,) = queue.outbox_items()
    assert (item.state, item.attempts, item.posted_channel) == (
        OutboxState.DELIVERED,
        4,
        GENERAL_CHANNEL_ID,
    )
    assert item.ts == emulator_client.messages(GENERAL_CHANNEL_ID)[-1]["ts"]


def test_a_missing_channel_is_given_up_at_once_in_words_to_act_on(
    slack_settings, queue, emulator_client
):
    job_id = finished_job(queue, Report([Message("lost")], channel="no-such"))
    sender = slack_sender(slack_settings(), queue)
    drain(sender, lambda: queue.get(job_id).report_state == ReportState.FAILED)
    job = queue.get(job_id)
    assert job.report_error == (
        "Slack has no channel no-such that the bot can see: check the channel's name, "
        "or invite @stat-bot to it if it is private (channel_not_found)"
    )
    assert len(emulator_client.calls("chat.postMessage")) == 1


@pytest.mark.parametrize(
    ("code", "words"),
    [
        ("not_in_channel", "invite it with `/invite @stat-bot` in that channel"),
        ("is_archived", "is archived: unarchive it"),
    ],
)
def test_permanent_refusals_name_what_to_do(slack_settings, queue, emulator_client, code, words):
    if code == "not_in_channel":
        emulator_client.add_channel("private-ops", members=[])
    else:
        emulator_client.add_channel("old-ops", is_archived=True)
    channel = "private-ops" if code == "not_in_channel" else "old-ops"
    (item_id,) = store(queue, Report([Message("x")], channel=channel))
    sender = slack_sender(slack_settings(), queue)
    drain(sender, lambda: queue.outbox_get(item_id).state is not OutboxState.PENDING)
    item = queue.outbox_get(item_id)
    assert item.state is OutboxState.FAILED
    assert words in item.last_error
    assert f"({code})" in item.last_error


def test_retry_after_is_honoured(slack_settings, queue, emulator_client):
    emulator_client.rate_limit(count=1, retry_after=2, methods=["chat.postMessage"])
    (item_id,) = store(queue, Report([Message("patient")], channel="general"))
    sender = slack_sender(slack_settings(), queue)
    before = time.time()
    sender.send_due()
    item = queue.outbox_get(item_id)
    assert item.state is OutboxState.PENDING
    assert item.next_attempt_at >= before + 2
    assert sender.send_due() > 1.0  # paused: nothing is tried before Slack said
    assert len(emulator_client.calls("chat.postMessage")) == 1
    drain(sender, lambda: queue.outbox_get(item_id).state is OutboxState.DELIVERED)
    assert texts(emulator_client) == ["patient"]


def test_an_unreachable_slack_keeps_every_message_in_order_until_it_returns(
    slack_settings, queue, slack_emulator, emulator_client
):
    down = slack_settings(slack_api_url=f"http://127.0.0.1:{free_port()}/api/")
    ids = store(queue, *[Report([Message(f"m{i}")], channel="general") for i in range(5)])
    sender = slack_sender(down, queue)
    drain(sender, lambda: queue.outbox_get(ids[0]).attempts >= 4)
    items = [queue.outbox_get(i) for i in ids]
    assert [i.state for i in items] == [OutboxState.PENDING] * 5
    # Only the two oldest probe the outage (one failure alone might be that message's).
    assert items[0].attempts == 4
    assert items[1].attempts >= 3
    assert [i.attempts for i in items[2:]] == [0] * 3
    assert "could not be reached" in items[0].last_error
    summary = queue.outbox_summary()
    assert summary.undelivered == 5
    assert "could not be reached" in summary.last_error
    # Slack is back: a sender with the right address delivers them all, once, in order.
    up = slack_sender(slack_settings(), queue, owner="after")
    drain(up, lambda: queue.outbox_summary().undelivered == 0)
    assert texts(emulator_client) == [f"m{i}" for i in range(5)]


class NotHttp(socketserver.ThreadingTCPServer):
    """A service that is not Slack on Slack's address: an SMTP server's greeting first.

    Seen in CI when a stopped emulator's port was taken by another test's mail server.
    """

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        class Greet(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                self.request.sendall(b"220 localhost Python SMTP 1.4.6\r\n")
                self.request.settimeout(5)
                with contextlib.suppress(OSError):  # as a mail server: wait for commands
                    while self.request.recv(4096):
                        pass

        super().__init__(("127.0.0.1", 0), Greet)


def test_a_service_that_is_not_slack_on_its_address_is_an_outage_not_a_crash(
    slack_settings, queue, slack_emulator, emulator_client
):
    from structlog.testing import capture_logs

    other = NotHttp()
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        wrong = slack_settings(slack_api_url=f"http://127.0.0.1:{other.server_address[1]}/api/")
        (item,) = store(queue, Report([Message("m0")], channel="general"))
        with pytest.raises(DeliveryError) as raised:
            SlackNotifier(wrong).send(Report([Message("m0")], channel="general"), 0)
        assert raised.value.outage
        assert not raised.value.permanent
        assert "could not be reached" in str(raised.value)
        assert "BadStatusLine" in str(raised.value)
        sender = slack_sender(wrong, queue)
        with capture_logs() as logged:
            drain(sender, lambda: queue.outbox_get(item).attempts >= 2)
    finally:
        other.shutdown()
        other.server_close()
    pending = queue.outbox_get(item)
    assert pending.state is OutboxState.PENDING
    assert "could not be reached" in pending.last_error
    assert [e for e in logged if e["log_level"] in ("error", "critical")] == []
    assert not any("exc_info" in e or "exception" in e for e in logged)
    # The right address again: delivered once.
    drain(
        slack_sender(slack_settings(), queue, owner="after"),
        lambda: not queue.outbox_summary().undelivered,
    )
    assert texts(emulator_client) == ["m0"]


class FlakyOnSecondPart(RecordingNotifier):
    """Fails the second message of a report once: the first must not be sent again."""

    def __init__(self) -> None:
        super().__init__()
        self.failed = False

    def send(self, report: Report, index: int, *, replace: Posted | None = None) -> Posted:
        if index == 1 and not self.failed:
            self.failed = True
            raise DeliveryError("HTTP 503")
        return super().send(report, index, replace=replace)


def test_a_retry_resumes_after_the_last_part_slack_accepted(settings, queue):
    notifier = FlakyOnSecondPart()
    (item_id,) = store(queue, Report([Message("one"), Message("two")], channel="general"))
    sender = OutboxSender(queue, notifier, settings, owner="t")
    sender.send_due()
    assert queue.outbox_get(item_id).parts_done == 1
    sender._paused_until = 0
    queue.outbox_retry(item_id, "HTTP 503", time.time())
    sender.send_due()
    assert [(r.messages[i].text, i) for r, i, _ in notifier.sent] == [("one", 0), ("two", 1)]
    item = queue.outbox_get(item_id)
    assert (item.state, item.ts) == (OutboxState.DELIVERED, "1.000000")


def test_a_crashed_senders_lease_ends_and_another_delivers(settings, queue):
    (item_id,) = store(queue, Report([Message("orphan")], channel="general"))
    assert [i.id for i in queue.claim_outbox("dead-sender", lease=0.5)] == [item_id]
    notifier = RecordingNotifier()
    sender = OutboxSender(queue, notifier, settings, owner="alive")
    sender.send_due()
    assert notifier.reports == []
    time.sleep(0.6)
    drain(sender, lambda: queue.outbox_get(item_id).state is OutboxState.DELIVERED)
    assert [r.messages[0].text for r in notifier.reports] == ["orphan"]


def test_a_failed_jobs_report_is_reposted_to_tech_support_with_a_link(
    slack_settings, queue, emulator_client
):
    settings = slack_settings(slack_tech_support_channel="tech-support")
    job_id = finished_job(queue, Report([Message("Job #1 failed")], "failure", channel="general"))
    sender = slack_sender(settings, queue)
    drain(sender, lambda: texts(emulator_client, SUPPORT_CHANNEL_ID) != [])
    (repost,) = texts(emulator_client, SUPPORT_CHANNEL_ID)
    assert repost.startswith(f":rotating_light: #{job_id} failed: http")
    (report,) = emulator_client.messages(GENERAL_CHANNEL_ID)
    assert report["ts"].replace(".", "") in repost


def test_the_report_replaces_the_progress_message(slack_settings, queue, emulator_client):
    job = queue.enqueue(JobRequest(namespace="ns", job_type="hello", channel="general")).job
    queue.claim("w1", 1)
    sender = slack_sender(slack_settings(), queue)
    progress = Report([Message("running for 10 s")], "info", "general", None, job.id)
    queue.post_progress(job.id, outgoing(progress, "progress"))
    drain(sender, lambda: queue.progress_posted(job.id) is not None)
    queue.post_progress(
        job.id,
        outgoing(
            Report([Message("running for 15 s")], "info", "general", None, job.id), "progress"
        ),
    )
    drain(sender, lambda: queue.outbox_summary().undelivered == 0)
    report = Report(
        [Message("done")], "success", "general", None, job.id, meta={"replaces_progress": True}
    )
    queue.finish(job.id, JobStatus.SUCCEEDED, 0, outbox=[outgoing(report, "report")])
    drain(sender, lambda: queue.get(job.id).report_state == ReportState.DELIVERED)
    (only,) = emulator_client.messages(GENERAL_CHANNEL_ID)
    assert only["text"] == "done"
    assert only["edited"]
    assert len(emulator_client.calls("chat.postMessage")) == 1
    assert len(emulator_client.calls("chat.update")) == 2


def test_a_relayed_message_not_taken_in_time_is_never_sent_later(
    slack_settings, queue, emulator_client
):
    emulator_client.server_error(count=50, methods=["chat.postMessage"])
    (item_id,) = queue.post(
        [
            outgoing(
                Report([Message("ticket")], channel="general"), "relay", expires_at=time.time() + 2
            )
        ]
    )
    sender = slack_sender(slack_settings(), queue, owner="web")
    started = time.monotonic()
    item = sender.deliver_within(item_id, 1.0, give_up_late=True)
    assert time.monotonic() - started < 3
    assert item.state is OutboxState.EXPIRED
    assert item.last_error.endswith("(gave up after 1 s)")
    emulator_client.reset()
    later = slack_sender(slack_settings(), queue, owner="dispatcher")
    later.send_due()
    assert texts(emulator_client) == []


def test_the_sender_thread_wakes_on_new_messages_and_stops_cleanly(settings, queue, senders):
    notifier = RecordingNotifier()
    sender = OutboxSender(queue, notifier, settings, owner="thread")
    sender.start()
    senders.append(sender)
    store(queue, Report([Message("first")], channel="general"))
    sender.wake()
    assert [r.messages[0].text for r in notifier.wait_for(1, timeout=10)] == ["first"]
    notifier.fail_with = "HTTP 503"
    (item_id,) = store(queue, Report([Message("second")], channel="general"))
    sender.wake()
    wait_until(lambda: queue.outbox_get(item_id).attempts >= 1, what="a failed try")
    sender.stop()
    item = queue.outbox_get(item_id)
    assert item.state is OutboxState.PENDING  # kept for the next sender, not lost
    stopped = threading.enumerate()
    assert not any(t.name == "stat-bot-outbox" and t.is_alive() for t in stopped)


class FailsOne(RecordingNotifier):
    """Refuses one message with a lasting error Slack does not call permanent."""

    def send(self, report: Report, index: int, *, replace: Posted | None = None) -> Posted:
        if report.messages[index].text == "poison":
            raise DeliveryError("Slack refused a message to general: HTTP 400")
        return super().send(report, index, replace=replace)


def test_one_failing_message_does_not_hold_the_others_back(settings, queue):
    notifier = FailsOne()
    sender = OutboxSender(queue, notifier, settings, owner="t")
    (poison,) = store(queue, Report([Message("poison")], channel="general"))
    sender.send_due()
    assert queue.outbox_get(poison).attempts == 1
    assert sender.send_due() > 0  # only the poison is pending, and it waits its backoff
    store(queue, Report([Message("fresh")], channel="general"))
    sender.send_due()  # the new message goes at once: nothing is paused for one failure
    assert [r.messages[0].text for r in notifier.reports] == ["fresh"]


def test_a_web_notice_does_not_jump_ahead_of_messages_waiting_out_an_outage(settings, queue):
    notifier = RecordingNotifier()
    (older,) = store(queue, Report([Message("older")], channel="general"))
    queue.claim_outbox("dispatcher")
    queue.outbox_retry(older, "Slack could not be reached", time.time() + 60)
    (notice,) = store(queue, Report([Message("newer")], channel="general"))
    web = OutboxSender(queue, notifier, settings, owner="web")
    item = web.deliver_within(notice, 1.0)
    assert item.state is OutboxState.PENDING  # left to go after the older one, in order
    assert item.attempts == 0
    assert notifier.reports == []
    # A relayed ticket's person is waiting: it is tried all the same.
    (relay,) = queue.post(
        [
            outgoing(
                Report([Message("ticket")], channel="general"), "relay", expires_at=time.time() + 5
            )
        ]
    )
    assert web.deliver_within(relay, 1.0, give_up_late=True).state is OutboxState.DELIVERED


# -- messages kept up to date (an incident's control and digest messages) ------------------


def version(text: str, *, pin: bool = False) -> Any:
    from stat_bot.incidents.messages import post

    return post(Message(text), GENERAL_CHANNEL_ID, pin=pin, ref="incident:1:control")


def test_versions_of_a_message_edit_it_in_place_and_only_the_newest_is_sent(
    slack_settings, queue, emulator_client
):
    """The first version is posted and pinned; each later one edits it. A version stored
    after another one waiting is never sent (the newer one carries the state), and a
    version whose original is still pending waits for it rather than posting a twin."""
    settings = slack_settings()
    sender = slack_sender(settings, queue)
    queue.post([version("v1", pin=True)])
    drain(sender, lambda: texts(emulator_client) == ["v1"])
    (posted,) = emulator_client.messages(GENERAL_CHANNEL_ID)
    assert posted["pinned_to"] == [GENERAL_CHANNEL_ID]
    queue.post([version("v2", pin=True), version("v3", pin=True)])
    drain(sender, lambda: texts(emulator_client) == ["v3"])
    (edited,) = emulator_client.messages(GENERAL_CHANNEL_ID)
    assert edited["ts"] == posted["ts"]
    assert [h["text"] for h in edited["history"]] == ["v1"]  # v2 was superseded, never sent
    assert all(i.state is OutboxState.DELIVERED for i in queue.outbox_find("incident:1:control"))


def test_a_version_stored_while_the_first_waits_replaces_it_and_a_deleted_one_is_posted_once(
    slack_settings, queue, emulator_client, slack_web_client
):
    settings = slack_settings()
    sender = slack_sender(settings, queue)
    emulator_client.server_error(count=1, methods=["chat.postMessage"])
    (first,) = queue.post([version("v1", pin=True)])
    sender.send_due()  # v1 fails once and waits for its retry
    queue.post([version("v2", pin=True)])
    drain(sender, lambda: texts(emulator_client) == ["v2"])
    (only,) = emulator_client.messages(GENERAL_CHANNEL_ID)  # no twin: v1 was never sent
    assert only["pinned_to"] == [GENERAL_CHANNEL_ID]
    assert queue.outbox_get(first).ts is None
    # Someone deletes the message: the next version is posted (and pinned) anew, once,
    # and the version after that edits the new one.
    slack_web_client.chat_delete(channel=GENERAL_CHANNEL_ID, ts=only["ts"])
    queue.post([version("v3", pin=True)])
    drain(sender, lambda: texts(emulator_client) == ["v3"])
    queue.post([version("v4", pin=True)])
    drain(sender, lambda: texts(emulator_client) == ["v4"])
    (again,) = emulator_client.messages(GENERAL_CHANNEL_ID)
    assert again["pinned_to"] == [GENERAL_CHANNEL_ID]
    assert [h["text"] for h in again["history"]] == ["v3"]


def reply_to(ref: str, text: str) -> Report:
    return Report([Message(text)], "info", GENERAL_CHANNEL_ID, meta={"thread_of": ref})


def test_a_reply_goes_under_its_parent_once_delivered_and_alone_if_the_parent_is_lost(
    slack_settings, queue, emulator_client
):
    """`thread_of`: a message (an alert's runbook steps) posted in the thread of an earlier
    one named by its outbox ref, waiting while that one is still on its way."""
    settings = slack_settings()
    sender = slack_sender(settings, queue)
    emulator_client.server_error(count=1, methods=["chat.postMessage"])
    parent = Report([Message("the alert")], "info", GENERAL_CHANNEL_ID)
    queue.post(
        [
            outgoing(parent, "alert", ref="alert:1:1"),
            outgoing(reply_to("alert:1:1", "steps"), "runbook"),
        ]
    )
    sender.send_due()  # the parent fails once; the reply must not go out before it
    assert texts(emulator_client) == []
    drain(
        sender,
        lambda: (
            texts(emulator_client) == ["the alert"]
            and all(i.state is OutboxState.DELIVERED for i in queue.outbox_items())
        ),
    )
    (posted,) = emulator_client.messages(GENERAL_CHANNEL_ID)
    thread = emulator_client.messages(GENERAL_CHANNEL_ID, thread_ts=posted["ts"])
    assert [m["text"] for m in thread] == ["the alert", "steps"]
    # A parent given up (here: never stored) does not take its reply with it.
    queue.post([outgoing(reply_to("alert:2:1", "orphan steps"), "runbook")])
    drain(sender, lambda: texts(emulator_client) == ["the alert", "orphan steps"])
