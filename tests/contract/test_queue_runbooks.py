"""The runbook index (Queue.store_runbook_page / search_runbooks / answers and ratings),
every backend."""

from __future__ import annotations

import pytest

from stat_bot.queue.alert_model import AlertEvent, AlertStatus
from stat_bot.queue.base import Queue
from stat_bot.queue.runbook_model import (
    RunbookAnswerDraft,
    RunbookPageDraft,
    RunbookSectionDraft,
)


def page(
    key: str, digest: str, *sections: tuple[str, str], source: str = "markdown"
) -> RunbookPageDraft:
    return RunbookPageDraft(
        source=source,
        key=key,
        url=f"https://docs.example/{key}",
        title=key,
        content_hash=digest,
        sections=tuple(
            RunbookSectionDraft(
                anchor=title.lower().replace(" ", "-"),
                title=title,
                body=body,
                url=f"https://docs.example/{key}#{title.lower().replace(' ', '-')}",
            )
            for title, body in sections
        ),
    )


NODE_DOWN = page(
    "node-down.md",
    "h1",
    ("Node down", "1. Ping the BMC of the node.\n2. Power cycle the node through Redfish."),
    ("Escalation", "Call the hardware vendor when the BMC stays unreachable."),
)
GPFS = page(
    "gpfs.md",
    "h2",
    ("GPFS hang", "1. Run mmdiag --waiters on the node.\n2. Expel the node from the cluster."),
)


def alert(queue: Queue, fingerprint: str = "f1") -> int:
    (change,) = queue.record_alerts(
        [AlertEvent("alertmanager", fingerprint, "NodeDown", AlertStatus.FIRING, 100.0)]
    ) or [None]
    assert change is not None
    return change.alert.id


def test_a_page_is_stored_once_and_replaced_only_when_its_hash_changes(
    queue: Queue, other: Queue
) -> None:
    assert queue.runbook_section_count() == 0
    assert queue.store_runbook_page(NODE_DOWN, now=10.0).kind == "new"
    assert queue.store_runbook_page(NODE_DOWN, now=20.0).kind == "unchanged"
    (stored,) = other.runbook_pages()
    assert (stored.fetched_at, stored.parsed_at, stored.sections) == (20.0, 10.0, 2)
    # A run that believed the hash unchanged writes nothing when it is not.
    stale = page("node-down.md", "other")
    assert queue.store_runbook_page(stale, touch_only=True).kind == "stale"
    assert other.runbook_pages()[0].sections == 2
    changed = page("node-down.md", "h1b", ("Node down", "Reseat the node's blade."))
    assert queue.store_runbook_page(changed, now=30.0).kind == "changed"
    (stored,) = other.runbook_pages("markdown")
    assert (stored.content_hash, stored.parsed_at, stored.sections) == ("h1b", 30.0, 1)
    # The old sections are gone from the search with the page's old version.
    assert other.search_runbooks("redfish power cycle") == []
    assert other.search_runbooks("reseat blade")[0].title == "Node down"


def test_search_ranks_the_best_section_first_with_a_normalised_score(queue: Queue) -> None:
    queue.store_runbook_page(NODE_DOWN)
    queue.store_runbook_page(GPFS)
    hits = queue.search_runbooks("GPFS hang on node x1000c0s0b0n0", limit=5)
    assert hits[0].title == "GPFS hang"
    assert hits[0].url.endswith("gpfs.md#gpfs-hang")
    assert 0 < hits[-1].score <= hits[0].score <= 1
    # Two words in the heading, "node" in its text only: (1 + 1 + 0.6) / 3 on every
    # backend; the xname is in no runbook and does not count against it.
    assert hits[0].score == 0.8667
    assert queue.search_runbooks("gpfs hangs", limit=1)[0].score == 1.0
    node = queue.search_runbooks("node down", limit=1)[0]
    assert (node.title, node.score) == ("Node down", 1.0)
    assert queue.search_runbooks("node down", limit=0) == []
    assert queue.search_runbooks("zzzz qqqq") == []
    assert queue.search_runbooks('"; DROP TABLE runbook_pages; --') == []
    assert queue.search_runbooks("AND OR NOT ( * ") == []


def test_pages_gone_from_a_source_are_removed_others_kept(queue: Queue) -> None:
    queue.store_runbook_page(NODE_DOWN)
    queue.store_runbook_page(GPFS)
    queue.store_runbook_page(page("Runbooks/NodeDown", "t", ("NodeDown", "x"), source="trac"))
    assert queue.prune_runbook_pages("markdown", keep={"gpfs.md"}) == ["node-down.md"]
    assert [p.key for p in queue.runbook_pages()] == ["gpfs.md", "Runbooks/NodeDown"]
    assert queue.search_runbooks("redfish") == []


def test_answers_and_ratings_one_per_person_changeable(queue: Queue, other: Queue) -> None:
    queue.store_runbook_page(NODE_DOWN)
    (hit,) = queue.search_runbooks("node down", limit=1)
    alert_id = alert(queue)
    draft = RunbookAnswerDraft(alert_id, 1, hit.section_id, hit.title, hit.url, hit.score, "r:1")
    answer = queue.record_runbook_answer(draft, now=50.0)
    assert answer is not None
    assert (answer.alert_id, answer.section_id) == (alert_id, hit.section_id)
    assert queue.record_runbook_answer(draft) is None  # that firing is answered already
    assert other.runbook_answer(ref="r:1") == answer
    assert other.runbook_answer(ref="r:nothing") is None
    assert other.rate_runbook(answer.id, "U1", True) == (1, 0)
    assert other.rate_runbook(answer.id, "U2", True) == (2, 0)
    assert queue.rate_runbook(answer.id, "U1", False) == (1, 1)  # changed, not added
    assert queue.rate_runbook(answer.id + 1000, "U1", True) is None
    summary = other.runbook_answers([alert_id, alert_id + 1000])
    assert list(summary) == [alert_id]
    got = summary[alert_id]
    assert (got.answer_id, got.title, got.helpful, got.not_helpful) == (
        answer.id,
        "Node down",
        1,
        1,
    )
    assert other.runbook_answers([]) == {}
    # A later firing's answer is the one the handoff sees; the page re-indexed keeps it.
    later = RunbookAnswerDraft(alert_id, 2, hit.section_id, hit.title, hit.url, 0.7, "r:2")
    second = queue.record_runbook_answer(later)
    assert second is not None
    queue.store_runbook_page(page("node-down.md", "new", ("Node down", "other text")))
    got = other.runbook_answers([alert_id])[alert_id]
    assert (got.answer_id, got.score, got.helpful, got.not_helpful) == (second.id, 0.7, 0, 0)
    assert other.runbook_answer(second.id).section_id is None  # its section was replaced


def test_answers_recorded_with_the_alert_in_one_transaction(queue: Queue) -> None:
    queue.store_runbook_page(NODE_DOWN)
    (hit,) = queue.search_runbooks("node down", limit=1)

    def answers(changes):  # type: ignore[no-untyped-def]
        return [
            RunbookAnswerDraft(c.alert.id, c.alert.fire_count, hit.section_id, hit.title,
                               hit.url, hit.score, f"runbook:{c.alert.id}")
            for c in changes
        ]  # fmt: skip

    def broken(changes):  # type: ignore[no-untyped-def]
        raise RuntimeError("the messages could not be built")

    event = AlertEvent("alertmanager", "f9", "NodeDown", AlertStatus.FIRING, 100.0)
    with pytest.raises(RuntimeError):
        queue.record_alerts([event], runbooks=answers, outbox=broken)
    assert queue.alerts() == []  # nothing half-stored
    (change,) = queue.record_alerts([event], runbooks=answers) or []
    assert queue.runbook_answers([change.alert.id])[change.alert.id].title == "Node down"


def test_short_common_words_and_word_forms_find_sections_on_every_backend(queue: Queue) -> None:
    """ "down", "off" and "up" are stop words to PostgreSQL's English search and an alert
    named NodeDown needs its "down"; "drained" must find "drain"."""
    queue.store_runbook_page(
        page(
            "slurm.md", "h3",
            ("Slurm node drained", "1. Read the reason.\n2. Resume it when the drain is done."),
            ("Power off", "Switch it off, then back up."),
        )
    )  # fmt: skip
    assert [h.title for h in queue.search_runbooks("off up", 5)] == ["Power off"]
    assert [h.title for h in queue.search_runbooks("draining", 5)] == ["Slurm node drained"]
