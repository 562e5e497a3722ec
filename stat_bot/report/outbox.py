"""The outbox: every message STAT bot sends on its own, delivered until Slack takes it.

A message is stored in the queue in the same transaction as the change that
causes it (a job's end and its report, a job's start and its notice, a Trac
event and the STAT channel's post), so a crash can lose neither without the
other. `OutboxSender` then claims due messages (a lease, so two senders never
send one message at once and a crashed sender's messages come back), sends them
one at a time through a `Notifier`, and records each outcome:

- accepted: delivered, with where it landed (a report's progress message and
  the tech-support repost need that), and the job's report marked delivered;
- refused for good (`channel_not_found`, `not_in_channel`, `is_archived`, ...):
  given up at once with the reason in words a person can act on;
- anything else (Slack unreachable, 5xx, rate limited): retried with backoff,
  doubling up to SLACK_RETRY_MAX and never sooner than Slack's Retry-After,
  until the message expires (SLACK_DELIVERY_EXPIRY), which is recorded too.

When two messages in a row fail for a reason that may pass, or the last one tried
fails for an outage (unreachable, 5xx, rate limited), Slack itself is in
trouble: the sender holds every message back until the retry time (recorded in
the queue, so a restarted sender does the same), the outage is then probed with
the oldest messages alone, and messages keep their order when Slack returns. A
single failure followed by a success is that message's own trouble: it alone
waits for its retry.

At most once per accepted post: a several-message report records each part as
it goes, so a retry resumes after the last accepted part. The one case that can
post twice is a crash (or a lost answer) after Slack accepted a message and
before the queue recorded it: the message is then sent again when its lease ends.
"""

from __future__ import annotations

import base64
import json
import os
import random
import socket
import threading
import time
import uuid
from dataclasses import replace as dc_replace
from enum import Enum
from typing import Any

import structlog

from stat_bot.queue.base import OutboxItem, OutboxMessage, OutboxState, Queue, QueueError
from stat_bot.report.messages import FileUpload, Message, Report
from stat_bot.report.notifiers import DeliveryError, Notifier, Posted
from stat_bot.settings import Settings

log = structlog.get_logger(__name__)

CLAIM_BATCH = 20
LEASE = 120.0  # longer than any one message takes (Slack calls time out after 30 s)
IDLE_POLL = 1.0  # other processes' messages are noticed at least this often
FIRST_RETRY = 0.5


# -- encoding -----------------------------------------------------------------------------


def encode(report: Report) -> str:
    """A report as the queue stores it (JSON; a file's bytes in base64)."""

    def message(m: Message) -> dict[str, Any]:
        out: dict[str, Any] = {"text": m.text}
        if m.blocks is not None:
            out["blocks"] = m.blocks
        if m.file is not None:
            out["file"] = {
                "filename": m.file.filename,
                "title": m.file.title,
                "content": base64.b64encode(m.file.content).decode("ascii"),
            }
        return out

    return json.dumps(
        {
            "messages": [message(m) for m in report.messages],
            "kind": report.kind,
            "channel": report.channel,
            "thread_ts": report.thread_ts,
            "job_id": report.job_id,
            "is_im": report.is_im,
            "title": report.title,
            "meta": report.meta,
        },
        ensure_ascii=False,
    )


def decode(payload: str) -> Report:
    data = json.loads(payload)

    def message(m: dict[str, Any]) -> Message:
        upload = None
        if m.get("file"):
            f = m["file"]
            upload = FileUpload(f["filename"], base64.b64decode(f["content"]), f.get("title"))
        return Message(m["text"], m.get("blocks"), upload)

    return Report(
        [message(m) for m in data["messages"]],
        data.get("kind", "info"),
        data.get("channel"),
        data.get("thread_ts"),
        data.get("job_id"),
        bool(data.get("is_im")),
        data.get("title", ""),
        data.get("meta") or {},
    )


def outgoing(
    report: Report, kind: str, *, expires_at: float | None = None, ref: str | None = None
) -> OutboxMessage:
    """The outbox row for a report: `kind` is report, start, progress, notice, relay, ..."""
    return OutboxMessage(
        kind=kind,
        payload=encode(report),
        channel=report.channel,
        job_id=report.job_id,
        expires_at=expires_at,
        ref=ref,
    )


# -- sending ------------------------------------------------------------------------------


class Outcome(Enum):
    DELIVERED = "delivered"
    FAILED = "failed"
    RETRY = "retry"
    WAITING = "waiting"  # an edit whose original is not out yet: no sign of Slack's trouble


class WaitingForOriginalError(DeliveryError):
    """An edit cannot go before the message it edits; tried again shortly."""


class OutboxSender:
    """Claims due messages, sends them, records what happened; one thread per process."""

    def __init__(
        self,
        queue: Queue,
        notifier: Notifier,
        settings: Settings,
        *,
        owner: str | None = None,
    ) -> None:
        self.queue = queue
        self.notifier = notifier
        self.settings = settings
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._paused_until = 0.0
        # The latest failed try: whether it blamed Slack itself, and when it is retried.
        self._last_outage = False
        self._last_retry_at = 0.0
        self._flush_until = 0.0
        self._thread: threading.Thread | None = None
        self.log = log.bind(sender=self.owner)

    # the thread -----------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="stat-bot-outbox", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """New messages were stored by this process: look now rather than at the next poll."""
        self._wake.set()

    def stop(self, flush: float = 5.0) -> None:
        """Send what is due for up to `flush` seconds more, then stop; the rest waits in
        the queue for the next sender (a stop never loses a message, nor hangs on Slack)."""
        self._flush_until = self.queue.now() + flush
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(flush + LEASE / 4)

    def _run(self) -> None:
        while True:
            stopping = self._stop.is_set()
            try:
                wait = self.send_due()
            except Exception as error:  # the database, most likely: keep trying
                self.log.warning("outbox: could not read or record messages", error=str(error))
                wait = IDLE_POLL
            if stopping:
                if wait > 0 or self.queue.now() >= self._flush_until:
                    return
                continue
            self._wake.wait(max(0.0, min(wait, IDLE_POLL)))
            self._wake.clear()

    # one pass ---------------------------------------------------------------------------
    def send_due(self) -> float:
        """Send what is due now; seconds until something may be due next."""
        now = self.queue.now()
        if now < self._paused_until:
            return self._paused_until - now
        # A read first: an idle sender takes no write lock (the claim is a write).
        due = self.queue.outbox_next_due()
        if due is None or due > now:
            return IDLE_POLL if due is None else due - now
        items = self.queue.claim_outbox(self.owner, limit=CLAIM_BATCH, lease=LEASE)
        failed_in_a_row = 0
        retry_at = 0.0
        for index, item in enumerate(items):
            if item.state is OutboxState.EXPIRED:
                self._log_expired(item)
                continue
            if self._stop.is_set() and self.queue.now() >= self._flush_until:
                self._release(items[index:])
                break
            if not self._record(self.queue.outbox_renew, item.id, self.owner, LEASE):
                continue  # our lease ran out and another sender has it, or it was given up
            outcome = self._attempt(item)
            if outcome is Outcome.WAITING:
                continue
            if outcome is not Outcome.RETRY:
                failed_in_a_row, retry_at = 0, 0.0
                continue
            failed_in_a_row += 1
            retry_at = max(retry_at, self._last_retry_at)
            # One failure may be that message's own trouble: the next message tells. Two
            # in a row, or an outage with no next message to tell, is Slack itself: stop,
            # and hold every message back until the later retry time (in the queue, so a
            # restarted sender keeps the order too).
            last = index == len(items) - 1
            if failed_in_a_row >= 2 or (last and self._last_outage):
                self._pause(retry_at)
                self._release(items[index + 1 :])
                break
        if len(items) >= CLAIM_BATCH:
            return 0.0
        due = self.queue.outbox_next_due()
        return IDLE_POLL if due is None else max(0.0, due - self.queue.now())

    def deliver_now(
        self, item_id: int, deadline: float, *, behind_outage: bool = False
    ) -> OutboxItem | None:
        """Try one message until it is delivered, given up, or `deadline` (a waiting caller).

        Returns the message as it then is: still pending when time ran out (the caller
        decides whether it may go later) or when another sender holds it.
        `behind_outage`: while older messages wait for Slack, do not jump the queue;
        leave this one to go after them, in order.
        """
        if behind_outage and self._outage_in_progress():
            return self.queue.outbox_get(item_id)
        while True:
            lease = max(LEASE, deadline - self.queue.now() + LEASE)
            claimed = self.queue.claim_outbox(self.owner, only=item_id, lease=lease)
            item = next((i for i in claimed if i.id == item_id), None)
            if item is None or item.state is not OutboxState.PENDING:
                if item is not None:
                    self._log_expired(item)
                return self.queue.outbox_get(item_id)
            if self._attempt(item) is not Outcome.RETRY:
                return self.queue.outbox_get(item_id)
            current = self.queue.outbox_get(item_id)
            if current is None or max(current.next_attempt_at, self.queue.now()) >= deadline:
                return current  # its next try (Slack's Retry-After, or the backoff) is too late
            time.sleep(max(0.0, current.next_attempt_at - self.queue.now()))

    def deliver_within(
        self, item_id: int, wait: float, *, give_up_late: bool = False
    ) -> OutboxItem | None:
        """`deliver_now` for a caller waiting `wait` seconds at most (a web request).

        `give_up_late`: what is not accepted by then is expired, never sent later (the
        STAT relay's form has already told its user it failed); otherwise it stays in
        the outbox, and the dispatcher's sender keeps trying.
        """
        item = self.deliver_now(item_id, self.queue.now() + wait, behind_outage=not give_up_late)
        if give_up_late and item is not None and item.state is OutboxState.PENDING:
            reason = f"{item.last_error or 'Slack did not answer'} (gave up after {wait:g} s)"
            self._record(self.queue.outbox_failed, item_id, reason, state=OutboxState.EXPIRED)
            return self.queue.outbox_get(item_id)
        return item

    def send_unrecorded(self, report: Report, wait: float) -> Posted | DeliveryError:
        """Send without the outbox, for a waiting caller when the queue cannot store it.

        Only the STAT relay does this: its user waits for the answer, so a message that
        cannot be stored is still tried within `wait` (and never later); what came of it
        is the answer, since nothing can be recorded.
        """
        deadline = self.queue.now() + wait
        attempt = 0
        while True:
            try:
                posted: Posted | None = None
                for index in range(len(report.messages)):
                    sent = self.notifier.send(report, index)
                    posted = posted or sent
                return posted or Posted(report.channel)
            except DeliveryError as error:
                attempt += 1
                delay = error.retry_after or FIRST_RETRY * attempt
                if error.permanent or self.queue.now() + delay >= deadline:
                    return error
                time.sleep(delay)

    def _outage_in_progress(self) -> bool:
        """Whether messages are waiting out a failure (Slack down or rate limiting): a
        pending message carries the error of its last try."""
        return self.queue.outbox_summary().last_error is not None

    # one message ----------------------------------------------------------------------
    def _attempt(self, item: OutboxItem) -> Outcome:
        report = decode(item.payload)
        channel = report.channel or self.settings.slack_logs_channel
        report = dc_replace(report, channel=channel)
        first = Posted(item.posted_channel, item.ts) if item.parts_done else None
        if self._superseded(item, report):
            self._record(self.queue.outbox_delivered, item, None, None)
            self.log.info(
                "message superseded by a newer version; not sent", item=item.id, ref=item.ref
            )
            return Outcome.DELIVERED
        try:
            if report.meta.get("thread_of") and not report.thread_ts and not item.parts_done:
                report = self._in_thread(item, report)
            if report.meta.get("archive"):
                # Not a message: archiving an incident's channel, kept here so it is
                # retried through outages like one (incidents/messages.py's `archive`).
                self.notifier.archive(channel or "")
                report = dc_replace(report, messages=[])
            posted_anew = True
            for index in range(item.parts_done, len(report.messages)):
                target = self._replaces(item, report, index)
                posted = self.notifier.send(report, index, replace=target)
                if index == 0 and target is not None and posted.ts == target.ts:
                    posted_anew = False
                first = first or posted
                if index < len(report.messages) - 1:
                    self._record(
                        self.queue.outbox_sent_part, item.id, index + 1, first.channel, first.ts
                    )
                    self._record(self.queue.outbox_renew, item.id, self.owner, LEASE)
        except WaitingForOriginalError as error:
            self._record(self.queue.outbox_retry, item.id, str(error), self.queue.now() + 1.0)
            return Outcome.WAITING
        except DeliveryError as error:
            if error.permanent:
                return self._give_up(item, str(error))
            return self._retry(item, error)
        except Exception as error:  # a bug or an unexpected answer: retried, and logged whole
            self.log.exception("outbox: unexpected error sending", item=item.id, kind=item.kind)
            return self._retry(item, DeliveryError(f"{type(error).__name__}: {error}"))
        first = first or Posted(channel)
        if report.meta.get("pin") and item.parts_done == 0 and report.messages and posted_anew:
            self._pin(item, first)
        self._after_file_report(item, report)
        self._record(
            self.queue.outbox_delivered,
            item,
            first.channel,
            first.ts,
            follow_ups=self._follow_ups(item, report, first),
        )
        self.log.info(
            "message delivered",
            item=item.id,
            kind=item.kind,
            job_id=item.job_id,
            channel=channel,
            attempts=item.attempts + 1,
        )
        return Outcome.DELIVERED

    def _replaces(self, item: OutboxItem, report: Report, index: int) -> Posted | None:
        """The message this one edits instead of posting anew, if any."""
        if index != 0:
            return None
        if item.kind == "progress":
            return Posted(item.posted_channel, item.ts) if item.ts else None
        offer_id = report.meta.get("replaces_outbox")
        if offer_id is not None:
            # A decision on a guarded job edits its offer (report/confirmations.py); an
            # offer never delivered is answered with a new message instead.
            offer = self.queue.outbox_get(int(offer_id))
            return Posted(offer.posted_channel, offer.ts) if offer and offer.ts else None
        if report.meta.get("edits") and item.ref:
            return self._edited(item)
        if (
            item.kind == "report"
            and report.job_id is not None
            and report.meta.get("replaces_progress")
            and not report.meta.get("copy")
            and report.messages[0].file is None
        ):
            where = self.queue.progress_posted(report.job_id)
            return Posted(*where) if where else None
        return None

    def _edited(self, item: OutboxItem) -> Posted | None:
        """Where a new version of a message kept up to date (an incident's pinned control
        message, its digest message: every version shares one `ref`) goes: over the latest
        version delivered, so a version that had to be posted anew (the message was deleted)
        is the one edited from then on. It waits while an earlier version is still on its
        way rather than posting a twin; with none delivered and none waiting, it posts."""
        versions = [i for i in self.queue.outbox_find(str(item.ref)) if i.id < item.id]
        delivered = [i for i in versions if i.ts]
        if delivered:
            latest = delivered[-1]
            return Posted(latest.posted_channel, latest.ts)
        if any(i.state is OutboxState.PENDING for i in versions):
            raise WaitingForOriginalError("waiting for the message it edits to be delivered")
        return None

    def _in_thread(self, item: OutboxItem, report: Report) -> Report:
        """A reply in the thread of an earlier message, named by its outbox ref (`thread_of`:
        an alert's runbook steps under the alert). It waits while that message is on its
        way; if the message was never delivered (given up, expired), the reply goes to the
        channel on its own rather than being lost."""
        parents = [
            i for i in self.queue.outbox_find(str(report.meta["thread_of"])) if i.id < item.id
        ]
        delivered = [i for i in parents if i.ts]
        if delivered:
            first = delivered[0]
            # A parent that is itself a reply (an alert read from the on-call channel is
            # answered in the paging tool's thread): this reply joins that same thread.
            thread = decode(first.payload).thread_ts or first.ts
            return dc_replace(
                report, channel=first.posted_channel or report.channel, thread_ts=thread
            )
        if any(i.state is OutboxState.PENDING for i in parents):
            raise WaitingForOriginalError("waiting for the message it replies to be delivered")
        self.log.warning(
            "the message a reply belongs under was not delivered; posting it on its own",
            item=item.id, thread_of=report.meta["thread_of"],
        )  # fmt: skip
        return report

    def _superseded(self, item: OutboxItem, report: Report) -> bool:
        """Whether a newer version of this kept-up-to-date message is stored already: then
        this one is not sent at all, so an older version retried late never overwrites it."""
        if not (report.meta.get("edits") and item.ref):
            return False
        return any(i.id > item.id for i in self.queue.outbox_find(str(item.ref)))

    def _pin(self, item: OutboxItem, where: Posted) -> None:
        """Pin a just-delivered message; a failure is logged, the message stays delivered."""
        try:
            self.notifier.pin(where)
        except DeliveryError as error:
            self.log.warning("message delivered but not pinned", item=item.id, reason=str(error))

    def _after_file_report(self, item: OutboxItem, report: Report) -> None:
        """A file cannot replace the progress message: leave it saying the job ended."""
        if (
            item.kind != "report"
            or report.job_id is None
            or not report.meta.get("replaces_progress")
            or report.meta.get("copy")
            or report.messages[0].file is None
        ):
            return
        where = self.queue.progress_posted(report.job_id)
        if where:
            try:
                self.notifier.edit(Posted(*where), f"{report.title}: finished, see below.")
            except DeliveryError as error:
                self.log.warning(
                    "progress message not closed", job_id=report.job_id, error=str(error)
                )

    def _follow_ups(self, item: OutboxItem, report: Report, first: Posted) -> list[OutboxMessage]:
        """A failed job's report is reposted to tech support as a link (not DMs' reports)."""
        support = self.settings.slack_tech_support_channel
        if item.kind != "report" or report.kind != "failure" or report.is_im or not support:
            return []
        if report.meta.get("copy"):  # a merged requester's copy: the job's own report reposts
            return []
        if not first.ts or not first.channel:
            return []
        repost = Report(
            [Message(f":rotating_light: {report.title} failed:")],
            "info",
            channel=support,
            job_id=None,
            title=f"{report.title} (repost)",
            meta={"repost_of": {"channel": first.channel, "ts": first.ts}},
        )
        return [outgoing(repost, "repost")]

    def _give_up(self, item: OutboxItem, reason: str) -> Outcome:
        self._record(self.queue.outbox_failed, item.id, reason)
        self.log.warning(
            "message given up", item=item.id, kind=item.kind, job_id=item.job_id, reason=reason
        )
        return Outcome.FAILED

    def _retry(self, item: OutboxItem, error: DeliveryError) -> Outcome:
        self._last_outage = error.outage
        if error.retry_after is not None:
            # Rate limited: Slack is up and says exactly when; no need to back off further.
            delay = error.retry_after + random.random() / 10
        else:
            delay = min(self.settings.slack_retry_max, FIRST_RETRY * 2 ** min(item.attempts, 20))
            delay *= 1 + random.random() / 4  # senders in several processes do not stay in step
        retry_at = self._last_retry_at = self.queue.now() + delay
        self._record(self.queue.outbox_retry, item.id, str(error), retry_at)
        self.log.warning(
            "message not delivered yet; will retry",
            item=item.id,
            kind=item.kind,
            job_id=item.job_id,
            error=str(error),
            retry_in=round(delay, 2),
            attempts=item.attempts + 1,
        )
        return Outcome.RETRY

    def _pause(self, until: float) -> None:
        self._paused_until = until
        self._record(self.queue.outbox_defer, until)

    def _release(self, items: list[OutboxItem]) -> None:
        rest = [i.id for i in items if i.state is OutboxState.PENDING]
        if rest:
            self._record(self.queue.outbox_release, rest)

    def _log_expired(self, item: OutboxItem) -> None:
        if item.state is OutboxState.EXPIRED:
            self.log.error(
                "message expired undelivered",
                item=item.id,
                kind=item.kind,
                job_id=item.job_id,
                reason=item.last_error,
            )

    def _record(self, write: Any, *args: Any, **kwargs: Any) -> Any:
        """A record of what Slack did: retried briefly, since losing it could mean a repost."""
        delay = 0.05
        deadline = time.monotonic() + LEASE / 2
        while True:
            try:
                return write(*args, **kwargs)
            except QueueError as error:
                if time.monotonic() + delay > deadline:
                    raise
                self.log.warning("outbox: recording failed; retrying", error=str(error))
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
