"""Runbook pages cut into sections (HTML, Trac wiki, Markdown), the alert's query, and the
Slack text built from a section (escaped: page text is never markup)."""

from __future__ import annotations

from stat_bot.oncall.runbook_match import alert_query, split_words
from stat_bot.oncall.runbook_messages import link, search_answer, steps
from stat_bot.oncall.runbook_sources import html_sections, markdown_sections, trac_sections
from stat_bot.queue.runbook_model import RunbookHit, score, terms


def test_html_headings_become_sections_with_numbered_steps_and_no_script() -> None:
    title, sections = html_sections(
        "https://docs.example/node.html",
        "<html><head><title>Node ops</title><script>alert(1)</script></head><body>"
        "<p>intro</p><h1 id='nd'>Node down</h1><p>When a <b>node</b> is down:</p>"
        "<ol><li>Ping the BMC</li><li>Power cycle</li></ol>"
        "<h2>GPFS <a id='gpfs'></a>hang</h2><div><p>run mmdiag</p><ul><li>a</li></ul></div>"
        "<h3>No anchor here</h3><style>p{}</style><noscript>enable js</noscript></body></html>",
    )
    assert title == "Node ops"
    assert [(s.title, s.anchor) for s in sections] == [
        ("Node down", "nd"),
        ("GPFS hang", "gpfs"),
        ("No anchor here", "no-anchor-here"),
    ]
    assert sections[0].body == "When a node is down:\n\n1. Ping the BMC\n2. Power cycle"
    assert sections[1].body == "run mmdiag\n\n- a"
    assert sections[1].url == "https://docs.example/node.html#gpfs"
    assert sections[2].body == ""


def test_a_page_without_headings_is_one_section() -> None:
    title, (only,) = html_sections("https://d/x", "<p>just <i>text</i></p>")
    assert (title, only.title, only.body, only.url) == (
        "https://d/x",
        "https://d/x",
        "just text",
        "https://d/x",
    )


def test_trac_headings_and_anchors_as_trac_makes_them() -> None:
    sections = trac_sections(
        "http://t/wiki/Runbooks/X",
        "intro line\n= Node down =\n 1. Ping the [http://x BMC]\n 2. Power '''cycle'''\n"
        "== Escalation == #esc\n * call the vendor\n=== 3 steps ===\n{{{\n= code =\n}}}\n"
        "==== deeper ====\ntext\n",
    )
    assert [(s.title, s.anchor) for s in sections] == [
        ("Introduction", ""),
        ("Node down", "Nodedown"),
        ("Escalation", "esc"),
        ("3 steps", "a3steps"),
    ]
    assert sections[1].body == "1. Ping the BMC\n2. Power cycle"
    assert sections[2].body == "- call the vendor"
    assert sections[3].body == "= code =\n==== deeper ====\ntext"


def test_markdown_headings_outside_code_fences_with_githubs_anchors() -> None:
    title, sections = markdown_sections(
        "https://git/r/a.md",
        "# Node down!\n1. ping\n* x\n```\n# not a heading\n```\n## Esc\nyes\n## Esc\nno\n",
    )
    assert title == "Node down!"
    assert [(s.title, s.anchor) for s in sections] == [
        ("Node down!", "node-down"),
        ("Esc", "esc"),
        ("Esc", "esc-1"),
    ]
    assert "# not a heading" in sections[0].body
    assert sections[2].url == "https://git/r/a.md#esc-1"


def test_an_alerts_query_splits_camel_case_and_the_score_ignores_unknown_words() -> None:
    assert split_words("GPFSWaitersHigh") == "GPFS Waiters High"
    query = alert_query("NodeDown: x1000c0s0b0n0 stopped", "slurm", {"alertname": "NodeDown"})
    assert terms(query) == ["nodedown", "node", "down", "x1000c0s0b0n0", "stopped", "slurm"]
    words = terms("node down x1000c0s0b0n0")
    assert score(words, "Node down", "ping it", {"node", "down"}) == 1.0
    assert score(words, "Other", "the node is down", {"node", "down"}) == 0.6
    assert score(words, "Other", "nothing", set()) == 0.0


def test_section_text_is_escaped_and_links_are_built_here() -> None:
    text = steps("1. <!channel> look\n2. <https://evil|click>\n\n3. @here & done\n" + "x\n" * 40)
    assert "<!channel>" not in text
    assert "&lt;!channel&gt;" in text
    assert "&lt;https://evil|click&gt;" in text
    assert text.endswith("…")
    assert link("https://docs/x#a", "A <b>|c") == "<https://docs/x#a|A &lt;b&gt;¦c>"
    assert link("runbooks/x.md#a", "A") == "A (`runbooks/x.md#a`)"
    assert link("javascript:alert(1)", "A") == "A (`javascript:alert(1)`)"


def test_a_search_answer_says_how_to_build_an_empty_index() -> None:
    assert "stat-bot task runbook-index" in search_answer("x", [], 0)
    assert "No runbook section matches" in search_answer("<!here>", [], 5)
    assert "&lt;!here&gt;" in search_answer("<!here>", [], 5)
    hit = RunbookHit(
        1, 1, "markdown", "P", "Node down", "1. a\n2. b\n3. c\n4. d", "https://d/x", 0.8
    )
    answer = search_answer("node down", [hit], 1)
    assert "<https://d/x|Node down> (match 80%)\n1. a\n2. b\n3. c\n…" in answer
