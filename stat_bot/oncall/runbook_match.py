"""An alert matched to the runbook section that answers it, above a confidence threshold.

The query is what names an alert's trouble: its alertname (CamelCase split into words,
so `NodeDown` finds "Node down"; the name as it is too, for pages that list the alerts
they answer), title (Alertmanager's alertname and summary; the
PagerDuty incident's title) and a few labels (service, component). Values such as
xnames and host names are in the query too, but a word the index does not hold does
not count against a section (Queue.search_runbooks), so they neither help nor hurt.

Matching runs before the alert is recorded (a read), and its answers are stored and
posted in the same transaction as the alert (web/alerts.py): one way, and nothing
posted for a firing that was not recorded.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping

import structlog

from stat_bot.queue.alert_model import AlertChange, AlertChangeKind, AlertEvent
from stat_bot.queue.base import Queue
from stat_bot.queue.runbook_model import RunbookAnswerDraft, RunbookHit, stem, stems_of, terms

log = structlog.get_logger(__name__)

# Not `job` or `instance`: a Prometheus scrape job (`node`) says where, and matched every
# runbook that mentions a node.
QUERY_LABELS = ("alertname", "service", "component", "subsystem", "summary")
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


def naming_terms(event: AlertEvent) -> list[str]:
    """The words that say what the trouble is: the alert's name split into words (its
    title when it has none, as PagerDuty's incidents), less those holding a digit (an
    xname, a node, a host: they name where, not what)."""
    name = event.labels.get("alertname", "") or event.title
    return [t for t in terms(split_words(name)) if not any(c.isdigit() for c in t)]


def coverage(event: AlertEvent, hit: RunbookHit) -> float:
    """0..1: how much of what names the alert the section speaks of. A section that names
    the alert itself (`NodeDown`) covers it whole."""
    words = stems_of(hit.title, hit.body)
    name = event.labels.get("alertname", "").lower()
    if name and stem(name) in words:
        return 1.0
    wanted = {stem(t) for t in naming_terms(event)}
    return len(wanted & words) / len(wanted) if wanted else 1.0


def best_match(queue: Queue, event: AlertEvent, threshold: float) -> RunbookHit | None:
    """The best section for a firing alert whose score reaches `threshold`.

    The search's score counts only words some runbook holds, so a section sharing one
    common word (`node`) with an alert it has nothing to do with (`HostClockSkew`) could
    score high; the score is therefore capped by how much of the alert's name the section
    covers, and the best section after that cap wins."""
    hits = queue.search_runbooks(alert_query(event.title, event.service, event.labels), 5)
    capped = [
        dataclasses.replace(h, score=round(min(h.score, coverage(event, h)), 4)) for h in hits
    ]
    capped.sort(key=lambda h: (-h.score, h.section_id))
    if capped and capped[0].score >= threshold:
        return capped[0]
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
