"""Runbooks as the queue stores them: pages, their sections, answers to alerts, ratings.

Defined beside the queue (which may not import oncall/): the index (oncall/runbook_index.py)
writes pages, matching reads `RunbookHit`s, the handoff reads `RunbookAnswerSummary`s.

The score of a hit is computed here, in Python, from the hit's own text, so both
backends give the same number for the same section and query: each database's full-
text search only picks the candidates (SQLite FTS5's bm25, PostgreSQL's ts_rank).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

WORD = re.compile(r"[a-z0-9]+")
# Words that say nothing about which runbook: an alert's filler and English's.
STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "for",
        "from",
        "has",
        "have",
        "in",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "the",
        "to",
        "was",
        "were",
        "with",
        "not",
        "no",
        "this",
        "that",
        "alert",
        "alerts",
        "firing",
        "fired",
        "critical",
        "warning",
        "info",
        "page",
    ]
)
TITLE_WEIGHT = 0.4  # a term in the section's heading counts this much more than in its text
MAX_TERMS = 24


def stem(word: str) -> str:
    """A light stemmer, enough to match "drained" with "drain" and "nodes" with "node"."""
    for suffix in ("ing", "ed", "es", "s"):
        if len(word) > len(suffix) + 2 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def terms(text: str) -> list[str]:
    """The query terms of a text: lower-cased words, not stopwords, each once, in order."""
    seen: dict[str, None] = {}
    for word in WORD.findall(text.lower()):
        if len(word) < 2 or word in STOPWORDS or word.isdigit():
            continue
        seen.setdefault(word, None)
    return list(seen)[:MAX_TERMS]


def score(query: list[str], title: str, body: str, known: set[str]) -> float:
    """0..1: the share of the query's terms the section holds, headings weighing more.

    Only terms `known` to the candidates count in the denominator: a node's xname or a
    ticket number is in no runbook, and should not make every runbook look worse.
    """
    counted = [t for t in query if stem(t) in known]
    if not counted:
        return 0.0
    heading = {stem(w) for w in WORD.findall(title.lower())}
    text = heading | {stem(w) for w in WORD.findall(body.lower())}
    total = 0.0
    for term in counted:
        s = stem(term)
        if s in text:
            total += (1 - TITLE_WEIGHT) + (TITLE_WEIGHT if s in heading else 0.0)
    return round(total / len(counted), 4)


STEP = re.compile(r"^\s*(?:\d+[.)]|[-*•])\s")


def step_lines(body: str) -> int:
    """How many lines of a section are steps (numbered or bulleted)."""
    return sum(1 for line in body.splitlines() if STEP.match(line))


def stems_of(title: str, body: str) -> set[str]:
    return {stem(w) for w in WORD.findall(f"{title} {body}".lower())}


@dataclass(frozen=True, slots=True)
class RunbookSectionDraft:
    """One titled section of a page, before it is stored."""

    anchor: str
    title: str
    body: str
    url: str


@dataclass(frozen=True, slots=True)
class RunbookPageDraft:
    """A page read from a source: `key` names it within the source (a URL, a wiki page
    name, a file path); `content_hash` decides whether its sections are stored again."""

    source: str
    key: str
    url: str
    title: str
    content_hash: str
    sections: tuple[RunbookSectionDraft, ...] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class RunbookPage:
    id: int
    source: str
    key: str
    url: str
    title: str
    content_hash: str
    fetched_at: float
    parsed_at: float
    sections: int


@dataclass(frozen=True, slots=True)
class RunbookHit:
    """A section found by a search; `score` is 0..1 (see `score`)."""

    section_id: int
    page_id: int
    source: str
    page_title: str
    title: str
    body: str
    url: str
    score: float


@dataclass(frozen=True, slots=True)
class RunbookAnswer:
    """The section posted for one firing of an alert (its outbox `ref` is the reply's)."""

    id: int
    alert_id: int
    fire_count: int
    section_id: int | None
    title: str
    url: str
    score: float
    ref: str
    created_at: float


@dataclass(frozen=True, slots=True)
class RunbookAnswerDraft:
    alert_id: int
    fire_count: int
    section_id: int
    title: str
    url: str
    score: float
    ref: str


@dataclass(frozen=True, slots=True)
class RunbookAnswerSummary:
    """Per alert, for the weekly handoff: its latest answer and how it was rated."""

    alert_id: int
    answer_id: int
    title: str
    url: str
    score: float
    helpful: int
    not_helpful: int


@dataclass(frozen=True, slots=True)
class PageChange:
    """What storing a page did: "new", "changed" (sections replaced), "unchanged", or
    "stale" (a touch-only store found another hash: nothing written)."""

    key: str
    kind: str
    sections: int
