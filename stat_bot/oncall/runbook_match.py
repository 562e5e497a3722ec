"""An alert matched to the runbook section that answers it, above a confidence threshold.

The query is what names an alert's trouble: its alertname (CamelCase split into words,
so `NodeDown` finds "Node down"; the name as it is too, for pages that list the alerts
they answer), title (Alertmanager's alertname and summary; the
PagerDuty incident's title) and a few labels (service, job, component). Values such as
xnames and host names are in the query too, but a word the index does not hold does
not count against a section (Queue.search_runbooks), so they neither help nor hurt.

Matching runs before the alert is recorded (a read), and its answers are stored and
posted in the same transaction as the alert (web/alerts.py): one way, and nothing
posted for a firing that was not recorded.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import structlog

from stat_bot.queue.alert_model import AlertChange, AlertChangeKind, AlertEvent
from stat_bot.queue.base import Queue
from stat_bot.queue.runbook_model import RunbookAnswerDraft, RunbookHit

log = structlog.get_logger(__name__)

QUERY_LABELS = ("alertname", "service", "job", "component", "subsystem", "summary")
CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
FIRED = (AlertChangeKind.NEW, AlertChangeKind.REFIRED)


def split_words(name: str) -> str:
    """`NodeDown` -> "Node Down", `GPFSWaitersHigh` -> "GPFS Waiters High"."""
    return CAMEL.sub(" ", name)


def alert_query(title: str, service: str, labels: Mapping[str, str]) -> str:
    name = labels.get("alertname", "")
    parts = [name, split_words(name), split_words(title), service]
    parts += [split_words(labels.get(name, "")) for name in QUERY_LABELS[1:]]
    return " ".join(p for p in parts if p)


def best_match(queue: Queue, event: AlertEvent, threshold: float) -> RunbookHit | None:
    """The best section for a firing alert, if its score reaches `threshold`."""
    hits = queue.search_runbooks(alert_query(event.title, event.service, event.labels), 1)
    if hits and hits[0].score >= threshold:
        return hits[0]
    return None


def matches(
    queue: Queue, events: list[AlertEvent], threshold: float
) -> dict[tuple[str, str], RunbookHit]:
    """Per firing event (source, fingerprint), its best section. A search that fails costs
    the runbook steps, never the alert: logged, and the alert is recorded without them."""
    found: dict[tuple[str, str], RunbookHit] = {}
    try:
        for event in events:
            if str(event.status) != "firing":
                continue
            hit = best_match(queue, event, threshold)
            if hit is not None:
                found[(event.source, event.fingerprint)] = hit
    except Exception as error:
        log.warning(
            "runbook search failed; alerts recorded without runbook steps", error=str(error)
        )
        return {}
    return found


def answer_ref(change: AlertChange) -> str:
    """The outbox ref of a firing's runbook reply (its buttons carry it)."""
    return f"runbook:{change.alert.id}:{change.alert.fire_count}"


def answer_drafts(
    changes: list[AlertChange], found: Mapping[tuple[str, str], RunbookHit]
) -> list[RunbookAnswerDraft]:
    """The answers for the changes that fired (new or again), in the alert's transaction."""
    drafts = []
    for change in changes:
        hit = found.get((change.alert.source, change.alert.fingerprint))
        if hit is None or change.kind not in FIRED:
            continue
        drafts.append(
            RunbookAnswerDraft(
                change.alert.id, change.alert.fire_count, hit.section_id, hit.title, hit.url,
                hit.score, answer_ref(change),
            )
        )  # fmt: skip
    return drafts
