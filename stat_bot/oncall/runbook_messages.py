"""Runbook steps as Slack shows them: under a firing alert, and as an answer to a search.

Everything from a runbook page is outside text: each line is escaped (no `<!channel>`,
no `<http://evil|link>`, no mentions), and links are built here from the stored URL.
"""

from __future__ import annotations

from typing import Any

from stat_bot.hardware.report import escape, link
from stat_bot.oncall.messages import alert_ref
from stat_bot.oncall.runbook_match import FIRED, answer_ref
from stat_bot.queue.alert_model import AlertChange
from stat_bot.queue.base import OutboxMessage, Queue
from stat_bot.queue.runbook_model import RunbookHit
from stat_bot.report.messages import Message, Report
from stat_bot.report.outbox import outgoing

KIND = "runbook"
HELPFUL_ACTION = "runbook-helpful"
NOT_HELPFUL_ACTION = "runbook-not-helpful"
MAX_STEP_LINES = 15
MAX_STEPS_CHARS = 2500
SEARCH_STEP_LINES = 3
SEARCH_HITS = 3  # sections a search shows


def steps(body: str, lines: int = MAX_STEP_LINES, chars: int = MAX_STEPS_CHARS) -> str:
    """The first lines of a section, escaped one by one; "..." when there is more."""
    kept: list[str] = []
    size = 0
    all_lines = [line for line in body.splitlines() if line.strip()]
    for line in all_lines[:lines]:
        line = escape(line.strip())
        if size + len(line) > chars:
            break
        kept.append(line)
        size += len(line) + 1
    if len(kept) < len(all_lines):
        kept.append("…")
    return "\n".join(kept)


def runbook_reply(change: AlertChange, hit: RunbookHit, channel: str) -> OutboxMessage:
    """The steps of the best section, in the alert message's thread, with rating buttons."""
    ref = answer_ref(change)
    head = f":book: Runbook: {link(hit.url, hit.title)} (match {hit.score:.0%})"
    body = steps(hit.body) or "_(this section has no text; see the page)_"
    text = f"{head}\n{body}"
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": head}},
        {"type": "section", "text": {"type": "mrkdwn", "text": body[:2900]}},
        {
            "type": "actions",
            "block_id": "runbook-rating",
            "elements": [
                {
                    "type": "button",
                    "action_id": HELPFUL_ACTION,
                    "value": ref,
                    "text": {"type": "plain_text", "text": "Helpful"},
                    "style": "primary",
                },
                {
                    "type": "button",
                    "action_id": NOT_HELPFUL_ACTION,
                    "value": ref,
                    "text": {"type": "plain_text", "text": "Not helpful"},
                },
            ],
        },
    ]
    report = Report(
        [Message(text, blocks)],
        kind="info",
        channel=channel,
        title=f"runbook for alert {change.alert.id}",
        meta={"thread_of": alert_ref(change)},
    )
    return outgoing(report, KIND, ref=ref)


def runbook_replies(
    changes: list[AlertChange], found: dict[tuple[str, str], RunbookHit], channel: str | None
) -> list[OutboxMessage]:
    if not channel:
        return []
    return [
        runbook_reply(c, found[(c.alert.source, c.alert.fingerprint)], channel)
        for c in changes
        if c.kind in FIRED and (c.alert.source, c.alert.fingerprint) in found
    ]


def search_answer(query: str, hits: list[RunbookHit], indexed: int) -> str:
    """`@stat-bot runbook <text>`: the top hits, or why there are none."""
    if indexed == 0:
        return (
            "The runbook index is empty. Build it with `@stat-bot oncall runbook-index` (or "
            "`stat-bot task runbook-index` on the server); it reads RUNBOOK_DIRECTORY, the "
            "Trac wiki under RUNBOOK_TRAC_PREFIX and RUNBOOK_SITES."
        )
    if not hits:
        return (
            f"No runbook section matches “{escape(query[:200])}”. Try other words (an "
            "alert's name such as `NodeDown`, a component such as `gpfs`)."
        )
    parts = [f"Runbook sections for “{escape(query[:200])}”:"]
    for hit in hits:
        first = steps(hit.body, SEARCH_STEP_LINES, 600)
        parts.append(f"• {link(hit.url, hit.title)} (match {hit.score:.0%})\n{first}")
    return "\n".join(parts)


def runbook_search(queue: Queue, text: str, limit: int = SEARCH_HITS) -> str:
    """`@stat-bot runbook <words...>` and `/runbook <words...>`: the answer to a search."""
    if not text.strip():
        return "Usage: `runbook <words...>`, e.g. `runbook node down` or `runbook gpfs hang`."
    hits = queue.search_runbooks(text, limit)
    return search_answer(text, hits, queue.runbook_section_count() if not hits else len(hits))
