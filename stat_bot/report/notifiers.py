"""Where reports go: here a terminal and a recorder; Slack in report/slack.py.

A notifier either delivers a whole report or raises DeliveryError; the dispatcher
records which on the job, so an undelivered report is visible, never silently lost.
Besides the final report a notifier may hear that a job started and, for long
jobs, how it is getting on; those are best effort and may be ignored.
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass
from typing import IO, Any

from stat_bot.jobs.model import Job
from stat_bot.report.messages import Message, Report


class DeliveryError(Exception):
    """A report could not be delivered; the message says why (never a secret)."""


@dataclass(frozen=True, slots=True)
class Progress:
    """How a running job is getting on: sent every few seconds once it has run a while."""

    job: Job
    elapsed: float
    output_tail: str


class Notifier:
    """Base of every notifier: `deliver` is required, the rest are optional extras."""

    #: whether the dispatcher should send `progress` for long jobs at all
    wants_progress: bool = False
    #: whether the dispatcher should call `job_started` at all
    wants_starts: bool = False

    def deliver(self, report: Report) -> None:
        raise NotImplementedError

    def job_started(self, job: Job) -> None:
        """A job's process has started (Slack: a notice in the logs channel)."""

    def progress(self, progress: Progress) -> None:
        """A long job is still running (Slack: one message in its thread, kept up to date)."""


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
        return ["  ".join(f"[{_text_of(e)}]" for e in block.get("elements", []))]
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
            lines.append(f"  [{_text_of(block['accessory'])}]")
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

    def deliver(self, report: Report) -> None:
        stream = self._stream or sys.stdout
        out: list[str] = []
        if self._headers:
            where = f" -> {report.channel}" if report.channel else ""
            thread = f" (thread {report.thread_ts})" if report.thread_ts else ""
            out.append(f"--- {report.title or 'report'} [{report.kind}]{where}{thread} ---")
        out.extend(render_message(m) for m in report.messages)
        with self._lock:
            stream.write("\n".join(out) + "\n")
            stream.flush()


class RecordingNotifier(Notifier):
    """Keeps reports in memory, for tests; can be told to fail to exercise delivery errors."""

    def __init__(self, *, wants_progress: bool = False) -> None:
        self.wants_progress = wants_progress
        self.wants_starts = True
        self.reports: list[Report] = []
        self.started: list[Job] = []
        self.progressed: list[Progress] = []
        self.fail_with: str | None = None
        self._lock = threading.Lock()
        self._event = threading.Condition(self._lock)

    def deliver(self, report: Report) -> None:
        if self.fail_with:
            raise DeliveryError(self.fail_with)
        with self._lock:
            self.reports.append(report)
            self._event.notify_all()

    def job_started(self, job: Job) -> None:
        with self._lock:
            self.started.append(job)

    def progress(self, progress: Progress) -> None:
        with self._lock:
            self.progressed.append(progress)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Report]:
        with self._lock:
            self._event.wait_for(lambda: len(self.reports) >= count, timeout)
            return list(self.reports)
