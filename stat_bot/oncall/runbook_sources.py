"""Runbook pages cut into titled sections: HTML documentation, Trac wiki text, Markdown.

Each parser turns one page's text into `RunbookSectionDraft`s: a heading (h1-h3,
Trac's `= h =` to `=== h ===`, Markdown's `#` to `###`) and what follows it up to the
next one, with steps kept one per line (list items as `- ` / `1. ` lines), and a
link to the heading's anchor. Page text is data, never markup: scripts and styles
are dropped unread, and the body is plain text that the Slack message escapes.
"""

from __future__ import annotations

import hashlib
import re
import urllib.parse
from collections.abc import Iterable

from bs4 import BeautifulSoup, NavigableString, Tag

from stat_bot.queue.runbook_model import RunbookSectionDraft

MAX_BODY = 20_000  # characters kept of one section's text
MAX_TITLE = 300
HEADINGS = ("h1", "h2", "h3")
# Elements whose text is never shown (and never run): dropped before reading a page.
HIDDEN = ("script", "style", "noscript", "template", "iframe", "object", "embed", "svg")
BLOCK = frozenset(
    [
        "p",
        "div",
        "pre",
        "blockquote",
        "ul",
        "ol",
        "dl",
        "dt",
        "dd",
        "table",
        "tr",
        "h4",
        "h5",
        "h6",
        "br",
        "hr",
        "section",
        "article",
        "li",
    ]
)


def content_hash(data: bytes | str) -> str:
    """What decides whether a page is parsed again: SHA-256 of exactly what was read."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return hashlib.sha256(raw).hexdigest()


def _tidy(lines: Iterable[str]) -> str:
    """Lines with their spaces squeezed, no empty runs, cut to MAX_BODY."""
    out: list[str] = []
    for line in lines:
        line = " ".join(line.split())
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out).strip()[:MAX_BODY]


def slug(title: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[^\w\- ]", "", title.strip().lower())
    return text.replace(" ", "-") or "section"


def with_anchor(url: str, anchor: str) -> str:
    return f"{url.split('#', 1)[0]}#{urllib.parse.quote(anchor, safe='-_.:')}"


# HTML ---------------------------------------------------------------------------------
def html_sections(url: str, html: str) -> tuple[str, list[RunbookSectionDraft]]:
    """A documentation page's title and sections (one untitled page: one section)."""
    soup = BeautifulSoup(html, "html.parser")
    for hidden in soup.find_all(HIDDEN):
        hidden.decompose()
    headings = soup.find_all(HEADINGS)
    title_tag = soup.find("title")
    page_title = (title_tag.get_text(" ", strip=True) if title_tag else "") or (
        headings[0].get_text(" ", strip=True) if headings else url
    )
    page_title = page_title[:MAX_TITLE]
    root = soup.body or soup
    if not headings:
        return page_title, [
            RunbookSectionDraft("", page_title, _tidy(_text_lines(root.descendants)), url)
        ]
    sections = []
    for heading in headings:
        title = heading.get_text(" ", strip=True)[:MAX_TITLE] or page_title
        anchor = _html_anchor(heading) or slug(title)
        body = _tidy(_text_lines(_until_next_heading(heading)))
        sections.append(RunbookSectionDraft(anchor, title, body, with_anchor(url, anchor)))
    return page_title, sections


def _html_anchor(heading: Tag) -> str:
    found = heading.get("id")
    if not found:
        inner = heading.find(["a", "span"], attrs={"id": True}) or heading.find(
            "a", attrs={"name": True}
        )
        found = inner.get("id") or inner.get("name") if inner else None
    return str(found or "")[:200]


def _until_next_heading(heading: Tag) -> Iterable[object]:
    """Everything after the heading's own text, in document order, up to the next h1-h3."""
    inside = {id(x) for x in heading.descendants}
    for element in heading.next_elements:
        if isinstance(element, Tag) and element.name in HEADINGS:
            return
        if id(element) not in inside:
            yield element


def _text_lines(elements: Iterable[object]) -> list[str]:
    """Text with a line break at each block, list items numbered as they show."""
    lines = [""]
    for element in elements:
        if isinstance(element, NavigableString):
            if type(element) is NavigableString:  # not a comment, CDATA or doctype
                lines[-1] += str(element)
        elif isinstance(element, Tag) and element.name in BLOCK:
            lines.append("")
            if element.name == "li":
                parent = element.parent
                if parent is not None and parent.name == "ol":
                    number = len(element.find_previous_siblings("li")) + 1
                    lines[-1] = f"{number}. "
                else:
                    lines[-1] = "- "
    return lines


# Trac wiki ----------------------------------------------------------------------------
TRAC_HEADING = re.compile(r"^\s*(={1,3})\s+(.+?)\s*(?:\1\s*)?(?:#(\S+))?\s*$")
TRAC_ANCHOR_DROP = re.compile(r"[^\w:.-]+")


def trac_anchor(title: str) -> str:
    """The id Trac gives a heading without an explicit `#id`: its words, run together."""
    anchor = TRAC_ANCHOR_DROP.sub("", _trac_plain(title))
    return anchor if anchor[:1].isalpha() else f"a{anchor}"


def _trac_plain(text: str) -> str:
    """Wiki markup taken off a line: links [x label] -> label, bold and italics dropped,
    inline code kept in backticks (Slack's own)."""
    text = re.sub(r"\[\[?(?:\S+)\s+([^\]]+)\]\]?", r"\1", text)
    text = re.sub(r"\[\[?(\S+?)\]\]?", r"\1", text)
    text = re.sub(r"\{\{\{(.*?)\}\}\}", r"`\1`", text)
    return re.sub(r"'''|''", "", text)


def trac_sections(url: str, text: str) -> list[RunbookSectionDraft]:
    """Sections from Trac's `= Heading =` lines (`== Sub ==`, `=== Subsub ===`)."""
    sections: list[RunbookSectionDraft] = []
    title, anchor, body = "", "", []
    in_code = False

    def close() -> None:
        if title or _tidy(body):
            name = title or "Introduction"
            sections.append(
                RunbookSectionDraft(
                    anchor, name, _tidy(body), with_anchor(url, anchor) if anchor else url
                )
            )

    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("{{{"):
            in_code = not stripped.endswith("}}}") or stripped == "{{{"
            continue
        if in_code and stripped.startswith("}}}"):
            in_code = False
            continue
        found = None if in_code else TRAC_HEADING.match(line)
        if found:
            close()
            title = _trac_plain(found.group(2).rstrip("= ").strip())[:MAX_TITLE]
            anchor = found.group(3) or trac_anchor(title)
            body = []
            continue
        if not in_code:
            line = _trac_plain(re.sub(r"^\s+\*\s", "- ", re.sub(r"^\s+(\d+)\.\s", r"\1. ", line)))
        body.append(line)
    close()
    return sections


# Markdown -----------------------------------------------------------------------------
MARKDOWN_HEADING = re.compile(r"^(#{1,3})\s+(.+?)\s*#*\s*$")


def markdown_sections(url: str, text: str) -> tuple[str, list[RunbookSectionDraft]]:
    """A Markdown file's title (its first heading) and sections from `#` to `###`."""
    sections: list[RunbookSectionDraft] = []
    title, anchor, body = "", "", []
    fence = False
    seen: dict[str, int] = {}

    def close() -> None:
        if title or _tidy(body):
            sections.append(
                RunbookSectionDraft(
                    anchor, title or "Introduction", _tidy(body),
                    with_anchor(url, anchor) if anchor else url,
                )
            )  # fmt: skip

    for line in text.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fence = not fence
            body.append(line)
            continue
        found = None if fence else MARKDOWN_HEADING.match(line)
        if found:
            close()
            title = found.group(2).strip()[:MAX_TITLE]
            base = slug(title)
            count = seen.get(base, 0)
            seen[base] = count + 1
            anchor = base if count == 0 else f"{base}-{count}"  # GitHub's numbering of twins
            body = []
            continue
        body.append(re.sub(r"^\s*[*+]\s", "- ", line))
    close()
    page_title = next((s.title for s in sections if s.anchor), url.rsplit("/", 1)[-1])
    return page_title, sections
