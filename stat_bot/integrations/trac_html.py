"""Reading Trac 1.6's HTML pages with the standard library: forms, messages, the change log.

Trac without plugins has no machine-readable change history, so `TracClient.ticket`
reads the ticket page. Its markup comes from Trac's own templates (ticket.html,
ticket_change.html, layout.html), which are regular enough for a small element tree
built with `html.parser`; nothing here guesses at layout beyond the ids and classes
those templates define. Times come from attributes that do not depend on the user's
date format: the change's id (`trac-change-CNUM-MICROSECONDS`) and the timeline
links' `from=` parameter (always ISO 8601).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html.parser import HTMLParser
from urllib.parse import parse_qs, urlsplit

VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta"})
VOID |= {"param", "source", "track", "wbr"}
# Elements that start a new block of text when a rendered comment is turned back to text
# (list items only start a new line).
BLOCKS = frozenset({"p", "div", "pre", "blockquote", "ul", "ol", "dl", "dt", "dd", "table"})
BLOCKS |= {"tr", "h1", "h2", "h3", "h4", "h5", "h6", "hr"}


@dataclass
class Element:
    """One element of the page: enough of a DOM to find things by id, class and tag."""

    tag: str
    attrs: dict[str, str]
    children: list[Element | str] = field(default_factory=list)

    @property
    def classes(self) -> list[str]:
        return self.attrs.get("class", "").split()

    def iter(self) -> Iterator[Element]:
        """This element and every element below it, in document order."""
        yield self
        for child in self.children:
            if isinstance(child, Element):
                yield from child.iter()

    def find_all(self, tag: str | None = None, *, cls: str | None = None, **attrs: str):
        for element in self.iter():
            if tag is not None and element.tag != tag:
                continue
            if cls is not None and cls not in element.classes:
                continue
            if all(element.attrs.get(k) == v for k, v in attrs.items()):
                yield element

    def find(self, tag: str | None = None, *, cls: str | None = None, **attrs: str):
        return next(self.find_all(tag, cls=cls, **attrs), None)

    def text(self) -> str:
        """All text below, as is (entities already decoded)."""
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def flat_text(self) -> str:
        """The text with runs of white space made one space: how a browser shows a line."""
        return " ".join(self.text().split())


class _TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("#root", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(element)
        if tag not in VOID:
            self.stack.append(element)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Element(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        # Close up to the matching open element; a stray end tag is ignored.
        for depth in range(len(self.stack) - 1, 0, -1):
            if self.stack[depth].tag == tag:
                del self.stack[depth:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def parse(html: str) -> Element:
    builder = _TreeBuilder()
    builder.feed(html)
    builder.close()
    return builder.root


# --- messages --------------------------------------------------------------------------


def error_message(page: Element) -> str:
    """The message of one of Trac's error pages (`Error: Forbidden`, `Trac Error`...)."""
    content = page.find("div", id="content") or page
    message = content.find("p", cls="message")
    if message is not None:
        return message.flat_text()
    heading = content.find("h1")
    return heading.flat_text() if heading is not None else ""


def warnings(page: Element) -> list[str]:
    """The warnings Trac shows above a form it did not save (one per line item)."""
    box = page.find("div", id="warning")
    if box is None:
        return []
    items = [li.flat_text() for li in box.find_all("li")]
    if items:
        return items
    text = box.flat_text()
    for prefix in ("close", "Warning:"):
        text = text.removeprefix(prefix).strip()
    return [text] if text else []


def system_messages(page: Element) -> list[str]:
    """Trac's boxed messages inside a page (the wiki editor's "modified by somebody else")."""
    return [box.flat_text() for box in page.find_all("div", cls="system-message")]


# --- forms -----------------------------------------------------------------------------


@dataclass
class Form:
    """A form's fields: hidden and text values, the radio choices, the selects' options."""

    inputs: dict[str, str]
    radios: dict[str, list[str]]
    selects: dict[str, list[str]]
    textareas: dict[str, str]

    def names(self) -> set[str]:
        return set(self.inputs) | set(self.radios) | set(self.selects) | set(self.textareas)


def form(page: Element, form_id: str) -> Form | None:
    """The form with this id (`propertyform` on ticket and new-ticket pages), if shown."""
    element = page.find("form", id=form_id)
    if element is None:
        return None
    inputs: dict[str, str] = {}
    radios: dict[str, list[str]] = {}
    selects: dict[str, list[str]] = {}
    textareas: dict[str, str] = {}
    for item in element.iter():
        name = item.attrs.get("name")
        if not name:
            continue
        if item.tag == "input":
            kind = item.attrs.get("type", "text")
            if kind in ("radio", "checkbox"):
                radios.setdefault(name, []).append(item.attrs.get("value", ""))
            elif kind not in ("submit", "button", "file"):
                inputs.setdefault(name, item.attrs.get("value", ""))
        elif item.tag == "select":
            options = list(item.find_all("option"))
            selects[name] = [o.attrs.get("value", o.text()) for o in options]
            chosen = [o for o in options if "selected" in o.attrs] or options[:1]
            if chosen:
                inputs.setdefault(name, chosen[0].attrs.get("value", chosen[0].text()))
        elif item.tag == "textarea":
            textareas[name] = item.text().removeprefix("\n")
    return Form(inputs, radios, selects, textareas)


def field_properties(html: str) -> dict[str, dict]:
    """The ticket fields Trac's query page describes in its `var properties={...}` script.

    One request gives every field's name, label, type and options (types,
    priorities, resolutions, custom fields) as Trac's own JSON.
    """
    match = re.search(r"var properties=(\{.*?\});?\s*$", html, re.M)
    if not match:
        return {}
    try:
        value = json.loads(match.group(1))
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


# --- times -----------------------------------------------------------------------------


def iso_utc(moment: datetime) -> str:
    """`2026-11-25T06:52:15Z`: the form Trac's ISO 8601 CSV uses, always in UTC."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def from_utimestamp(value: str) -> str:
    """Trac's microseconds since the epoch as ISO UTC."""
    return iso_utc(datetime.fromtimestamp(int(value) / 1_000_000, UTC))


def normalise_time(text: str) -> str | None:
    """An ISO 8601 time as ISO UTC (`...Z`); None if the text is not ISO 8601."""
    text = text.strip()
    if not text:
        return ""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return iso_utc(moment)


def timeline_time(element: Element) -> str:
    """The ISO time of the first timeline link below `element` (its `from=` parameter)."""
    for link in element.find_all("a", cls="timeline"):
        values = parse_qs(urlsplit(link.attrs.get("href", "")).query).get("from")
        if values:
            iso = normalise_time(values[0])
            if iso:
                return iso
    return ""


# --- the ticket page -------------------------------------------------------------------


@dataclass(frozen=True)
class RawChange:
    time: str
    author: str
    field: str
    old: str
    new: str
    cnum: int


def changelog(page: Element) -> list[RawChange]:
    """Every change on a ticket page, oldest first: field changes, then the comment."""
    log = page.find("div", id="changelog")
    if log is None:
        return []
    changes: list[RawChange] = []
    for entry in log.find_all("div", cls="change"):
        cnum, when = 0, ""
        match = re.fullmatch(r"trac-change-(\d+)-(\d+)", entry.attrs.get("id", ""))
        if match:
            cnum, when = int(match.group(1)), from_utimestamp(match.group(2))
        heading = entry.find("h3", cls="change")
        if heading is not None and not when:
            when = timeline_time(heading)
        author = _author(heading) if heading is not None else ""
        table = entry.find("table", cls="changes")
        for row in table.find_all("tr") if table is not None else ():
            name = _field_name(row)
            cell = row.find("td")
            if name and cell is not None:
                old, new = _field_values(name, cell)
                changes.append(RawChange(when, author, name, old, new, cnum))
        comment = entry.find("div", cls="comment")
        if comment is not None:
            text = wiki_text(comment)
            if text:
                changes.append(RawChange(when, author, "comment", str(cnum), text, cnum))
    return changes


def _author(heading: Element) -> str:
    for span in heading.find_all("span"):
        if any(c.startswith("trac-author") for c in span.classes):
            return span.flat_text()
    return ""


def _field_name(row: Element) -> str:
    for cls in row.classes:
        if cls.startswith("trac-field-"):
            return cls.removeprefix("trac-field-")
    return ""


def _field_values(name: str, cell: Element) -> tuple[str, str]:
    """(old, new) as Trac shows them; for fields it only summarises, ("", the summary)."""

    def span(cls: str) -> str | None:
        found = cell.find("span", cls=cls)
        return found.text() if found is not None else None

    if name == "attachment":
        em = cell.find("em")
        return "", em.text() if em is not None else cell.flat_text()
    old, new, deleted = span("trac-field-old"), span("trac-field-new"), span("trac-field-deleted")
    if old is not None or new is not None or deleted is not None:
        return (old if old is not None else deleted or ""), (new or "")
    authors = [
        s.flat_text()
        for s in cell.find_all("span")
        if any(c.startswith("trac-author") for c in s.classes)
    ]
    text = cell.flat_text()
    if authors and name in ("owner", "reporter"):
        if text.startswith("set to"):
            return "", authors[0]
        if text.endswith("removed"):
            return authors[0], ""
        if len(authors) >= 2:
            return authors[0], authors[1]
    # textarea fields ("modified (diff)"), checkboxes ("set"), lists ("a added; b removed")
    return "", re.sub(r"\s*\(diff\)$", "", text)


def wiki_text(element: Element) -> str:
    """Trac's rendering of a wiki text (a comment) back to plain text.

    Plain text (commas, quotes, non-ASCII, line breaks) comes back as it was typed:
    Trac renders each line followed by `<br />` and a newline of its own, which is
    dropped; paragraphs become blank lines; `<pre>` blocks are kept verbatim.
    Wiki markup (`''italic''`, links) comes back as the text a reader sees.
    """
    pieces: list[str] = []

    def walk(node: Element, pre: bool) -> None:
        for child in node.children:
            if isinstance(child, str):
                pieces.append(child if pre else child.strip("\n"))
                continue
            if child.tag == "br":
                pieces.append("\n")
                continue
            if child.tag in ("script", "style"):
                continue
            block = child.tag in BLOCKS
            if block:
                pieces.append("\n\n")
            if child.tag == "li":  # items of a list stay on consecutive lines
                pieces.append("\n* ")
            if child.tag == "img":
                pieces.append(child.attrs.get("alt", ""))
            walk(child, pre or child.tag == "pre")
            if block:
                pieces.append("\n\n")

    walk(element, False)
    text = "".join(pieces)
    # Any run of line breaks holding a blank line is one paragraph break; spaces
    # after it stay (the indentation of preformatted text).
    text = re.sub(r"[ \t]*\n(?:[ \t]*\n)+", "\n\n", text)
    return text.strip("\n")
