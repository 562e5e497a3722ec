"""Where messages go: here a terminal and a recorder; Slack in report/slack.py.

A notifier sends one message per call or raises DeliveryError saying why, and
whether trying again may help. It keeps no state of its own about what was sent:
the outbox (report/outbox.py) records each step in the queue, so a crash loses
nothing and a retry posts nothing twice.
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass
from typing import IO, Any

from stat_bot.jobs.model import Job
from stat_bot.report.messages import Message, Report


class DeliveryError(Exception):
    """A message was not delivered; the text says why in words a person can act on.

    `permanent`: trying again cannot help (the channel does not exist, the bot is not in
    it): the outbox gives the message up at once. Otherwise it is retried, no sooner
    than `retry_after` seconds when the far end said so (Slack's Retry-After); with
    `outage` every message is held back, since none would go through.
    """

    def __init__(
        self,
        reason: str,
        *,
        permanent: bool = False,
        retry_after: float | None = None,
        outage: bool = False,
    ) -> None:
        super().__init__(reason)
        self.permanent = permanent
        self.retry_after = retry_after
        #: the far end itself is in trouble (unreachable, 5xx, rate limited), not this message
        self.outage = outage


@dataclass(frozen=True, slots=True)
class Posted:
    """Where a message landed: enough to edit it or link to it later."""

    channel: str | None = None
    ts: str | None = None


@dataclass(frozen=True, slots=True)
class Progress:
    """How a running job is getting on: sent every few seconds once it has run a while."""

    job: Job
    elapsed: float
    output_tail: str


class Notifier:
    """Carries the outbox's messages to their destination, one message at a time.

    The outbox sender (report/outbox.py) decides what to send, retries and records;
    a notifier only makes one attempt per call and raises DeliveryError when it fails.
    """

    #: whether the dispatcher should keep a progress message for long jobs at all
    wants_progress: bool = False
    #: whether the dispatcher should store job start notices at all
    wants_starts: bool = False

    def send(self, report: Report, index: int, *, replace: Posted | None = None) -> Posted:
        """Send message `index` of `report`; with `replace`, edit that message instead."""
        raise NotImplementedError

    def edit(self, where: Posted, text: str) -> None:
        """Replace an earlier message's text (a progress message the report could not replace)."""

    def archive(self, channel: str) -> None:
        """Archive a channel (an incident's, some time after it was resolved)."""
        raise DeliveryError("this notifier cannot archive channels", permanent=True)

    def pin(self, where: Posted) -> None:
        """Pin a delivered message to its channel (an incident's control message)."""

    def deliver(self, report: Report) -> None:
        """Every message of a report in order, without the outbox (`stat-bot exec`)."""
        for index in range(len(report.messages)):
            self.send(report, index)


def _text_of(element: Any) -> str:
    if isinstance(element, dict):
        if element.get("type") in ("plain_text", "mrkdwn"):
            return str(element.get("text", ""))
        if "text" in element:
            return _text_of(element["text"])
        if element.get("type") == "image":
            return f"[image: {element.get('alt_text', '')}]"
    if isinstance(element, str):
        return element
    return ""


def _element(element: dict[str, Any]) -> str:
    """A button as `[Label]`; a select as `[Label ▾]` with its current choice."""
    kind = str(element.get("type") or "")
    if kind.endswith("_select") or kind == "overflow":
        chosen = _text_of((element.get("initial_option") or {}).get("text"))
        label = chosen or _text_of(element.get("placeholder")) or "choose"
        return f"[{label} ▾]"
    return f"[{_text_of(element)}]"


def render_block(block: dict[str, Any]) -> list[str]:
    """A Block Kit block as terminal lines: enough to read a report without Slack."""
    kind = block.get("type")
    if kind == "header":
        title = _text_of(block.get("text"))
        return [title.upper(), "=" * min(len(title), 78)]
    if kind == "divider":
        return ["-" * 40]
    if kind == "context":
        return ["  " + "  ".join(_text_of(e) for e in block.get("elements", []))]
    if kind == "image":
        return [f"[image: {block.get('alt_text') or block.get('image_url', '')}]"]
    if kind == "actions":
        return ["  ".join(_element(e) for e in block.get("elements", []))]
    lines: list[str] = []
    if kind == "section":
        if block.get("text"):
            lines.extend(_text_of(block["text"]).splitlines())
        fields = [_text_of(f).splitlines() or [""] for f in block.get("fields", [])]
        for i in range(0, len(fields), 2):
            left, right = fields[i], fields[i + 1] if i + 1 < len(fields) else []
            for j in range(max(len(left), len(right))):
                a = left[j] if j < len(left) else ""
                b = right[j] if j < len(right) else ""
                lines.append(f"{a:<38}  {b}".rstrip())
        if block.get("accessory"):
            lines.append(f"  {_element(block['accessory'])}")
        return lines
    if kind == "rich_text":
        return [str(block.get("elements", ""))]
    return [f"[{kind} block]"]


def render_message(message: Message) -> str:
    """How one message reads in a terminal."""
    parts: list[str] = []
    if message.blocks:
        for block in message.blocks:
            parts.extend(render_block(block))
    else:
        parts.append(message.text)
    if message.file is not None:
        size = len(message.file.content)
        parts.append(f"[file {message.file.filename}, {size:,} bytes]")
        parts.append(message.file.content.decode("utf-8", errors="replace").rstrip("\n"))
    return "\n".join(parts)


class ConsoleNotifier(Notifier):
    """Prints reports readably: the service's notifier when no Slack is configured."""

    def __init__(self, stream: IO[str] | None = None, *, headers: bool = True) -> None:
        self._stream = stream
        self._headers = headers
        self._lock = threading.Lock()

    def send(self, report: Report, index: int, *, replace: Posted | None = None) -> Posted:
        stream = self._stream or sys.stdout
        out: list[str] = []
        if self._headers and index == 0:
            where = f" -> {report.channel}" if report.channel else ""
            thread = f" (thread {report.thread_ts})" if report.thread_ts else ""
            out.append(f"--- {report.title or 'report'} [{report.kind}]{where}{thread} ---")
        out.append(render_message(report.messages[index]))
        with self._lock:
            stream.write("\n".join(out) + "\n")
            stream.flush()
        return Posted(report.channel)


class RecordingNotifier(Notifier):
    """Keeps what it is sent in memory, for tests; can be told to fail, for good or for now."""

    def __init__(self, *, wants_progress: bool = False) -> None:
        self.wants_progress = wants_progress
        self.wants_starts = True
        self.reports: list[Report] = []
        self.started: list[Report] = []
        self.progressed: list[Report] = []
        self.sent: list[tuple[Report, int, Posted | None]] = []
        self.fail_with: str | None = None
        self.fail_permanently = False
        self._ts = 0
        self._lock = threading.Lock()
        self._event = threading.Condition(self._lock)

    def send(self, report: Report, index: int, *, replace: Posted | None = None) -> Posted:
        if self.fail_with:
            raise DeliveryError(
                self.fail_with, permanent=self.fail_permanently, outage=not self.fail_permanently
            )
        with self._lock:
            self.sent.append((report, index, replace))
            self._ts += 1
            if report.meta.get("progress"):
                self.progressed.append(report)
            elif report.meta.get("start"):
                self.started.append(report)
            elif index == len(report.messages) - 1:
                self.reports.append(report)
            self._event.notify_all()
            return replace or Posted(report.channel, f"{self._ts}.000000")

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Report]:
        with self._lock:
            self._event.wait_for(lambda: len(self.reports) >= count, timeout)
            return list(self.reports)
