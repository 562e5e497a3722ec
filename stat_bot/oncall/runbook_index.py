"""The runbook index: every source read into the queue's full-text index.

`stat-bot task runbook-index` (tasks/runbooks.py) runs `index_all` on a schedule.
Each source stores its pages through `Queue.store_runbook_page`, which replaces a
page's sections only when its content hash changed; a page that cannot be read this
time is reported and keeps its old sections; only pages gone from their source (no
longer linked, listed or on disk) are removed. Sources:

- documentation sites (RUNBOOK_SITES): crawled from each start URL, breadth first,
  within that URL's host (redirects elsewhere not followed), RUNBOOK_PAGE_LIMIT pages
  at most, HTML only, RUNBOOK_MAX_PAGE_BYTES at most per page;
- the Trac wiki: pages named RUNBOOK_TRAC_PREFIX... through the Trac client;
- Markdown files (*.md) in RUNBOOK_DIRECTORY.
"""

from __future__ import annotations

import dataclasses
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
from bs4 import BeautifulSoup

from stat_bot.integrations.trac import TracClient, TracError, WikiPage
from stat_bot.oncall.runbook_sources import (
    content_hash,
    html_sections,
    markdown_sections,
    trac_sections,
)
from stat_bot.queue.base import Queue
from stat_bot.queue.runbook_model import RunbookPageDraft, RunbookSectionDraft
from stat_bot.settings import Settings

log = structlog.get_logger(__name__)

LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
HTML_TYPES = ("text/html", "application/xhtml+xml")
USER_AGENT = "stat-bot-runbook-index/1"
Parsed = tuple[str, list[RunbookSectionDraft]]  # a page's title and sections


@dataclass
class SourceReport:
    """What indexing one source did: pages read, parsed (new or changed), unchanged,
    removed, and the pages that could not be read (key, reason)."""

    source: str
    read: int = 0
    parsed: int = 0
    unchanged: int = 0
    sections: int = 0
    removed: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    error: str | None = None  # the whole source could not be read (nothing removed)

    def line(self) -> str:
        if self.error:
            return f"{self.source}: not read: {self.error}"
        text = (
            f"{self.source}: {self.read} pages read, {self.parsed} parsed (new or changed), "
            f"{self.unchanged} unchanged, {len(self.removed)} removed"
        )
        if self.failed:
            text += f", {len(self.failed)} unreadable (old sections kept)"
        return text


def _text(value: str) -> str:
    return value.replace("\x00", "")


class _Store:
    """Stores pages of one source, parsing only those whose hash changed."""

    def __init__(self, queue: Queue, report: SourceReport, source: str) -> None:
        self.queue = queue
        self.report = report
        self.source = source
        self.known = {p.key: p.content_hash for p in queue.runbook_pages(source)}

    def put(self, key: str, url: str, raw: bytes | str, parse: Callable[[], Parsed]) -> None:
        digest = content_hash(raw)
        self.report.read += 1
        if self.known.get(key) == digest:
            touched = RunbookPageDraft(self.source, key, url, key, digest)
            if self.queue.store_runbook_page(touched, touch_only=True).kind == "unchanged":
                self.report.unchanged += 1
                return
        try:
            title, sections = parse()
        except (RecursionError, ValueError, UnicodeError) as error:  # a hostile page
            self.fail(key, f"could not be parsed: {type(error).__name__}")
            return
        # A NUL is no text (and PostgreSQL refuses it): dropped before it reaches the queue.
        sections = [
            dataclasses.replace(s, title=_text(s.title), body=_text(s.body), url=_text(s.url))
            for s in sections
        ]
        draft = RunbookPageDraft(self.source, key, url, _text(title), digest, tuple(sections))
        change = self.queue.store_runbook_page(draft)
        if change.kind == "unchanged":
            self.report.unchanged += 1
        else:
            self.report.parsed += 1
            self.report.sections += change.sections

    def fail(self, key: str, reason: str) -> None:
        self.report.failed.append((key, reason))
        log.warning("runbook page not read", source=self.source, page=key, reason=reason)


# Documentation sites -----------------------------------------------------------------------
class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None  # a redirect comes back as an HTTPError; the crawler decides


READ_CHUNK = 65536


class PageError(Exception):
    """A page that cannot be indexed; the text says why."""


class SiteCrawler:
    """Reads one documentation site within its host, at most `limit` pages."""

    def __init__(self, start: str, *, limit: int, timeout: float, max_bytes: int) -> None:
        self.start = start.split("#", 1)[0]
        parts = urllib.parse.urlsplit(self.start)
        self.scheme, self.host = parts.scheme, parts.netloc.lower()
        self.limit, self.timeout, self.max_bytes = limit, timeout, max_bytes
        handlers: list[urllib.request.BaseHandler] = [_NoRedirect()]
        if parts.hostname in LOOPBACK:
            handlers.append(urllib.request.ProxyHandler({}))
        self._opener = urllib.request.build_opener(*handlers)

    @property
    def source(self) -> str:
        return f"site:{self.host}"

    def same_site(self, url: str) -> bool:
        parts = urllib.parse.urlsplit(url)
        return parts.scheme in ("http", "https") and parts.netloc.lower() == self.host

    def fetch(self, url: str) -> tuple[str, bytes]:
        """(final URL, HTML bytes); redirects followed only within the host."""
        for _ in range(5):
            request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
            try:
                with self._opener.open(request, timeout=self.timeout) as response:
                    kind = response.headers.get_content_type()
                    if kind not in HTML_TYPES:
                        raise PageError(f"not an HTML page ({kind})")
                    return url, self._body(response)
            except urllib.error.HTTPError as error:
                if error.code in (301, 302, 303, 307, 308) and error.headers.get("Location"):
                    target = urllib.parse.urljoin(url, error.headers["Location"]).split("#")[0]
                    if not self.same_site(target):
                        raise PageError(f"redirects off the site, to {target[:200]}") from None
                    url = target
                    continue
                raise PageError(f"HTTP {error.code}") from None
            except (urllib.error.URLError, OSError, ValueError) as error:
                reason = getattr(error, "reason", error)
                raise PageError(f"unreachable: {reason}") from None
        raise PageError("too many redirects")

    def _body(self, response: Any) -> bytes:
        """The page, read against one deadline: the socket's timeout bounds each read
        only, and a server sending a byte now and then would otherwise hold the crawl
        (and every site after it) until the job's own timeout."""
        deadline = time.monotonic() + self.timeout
        chunks: list[bytes] = []
        size = 0
        while chunk := response.read1(READ_CHUNK):
            size += len(chunk)
            if size > self.max_bytes:
                raise PageError(f"larger than RUNBOOK_MAX_PAGE_BYTES ({self.max_bytes})")
            if time.monotonic() > deadline:
                raise PageError(f"slower than RUNBOOK_FETCH_TIMEOUT ({self.timeout:g} s)")
            chunks.append(chunk)
        return b"".join(chunks)

    def links(self, url: str, body: bytes) -> list[str]:
        soup = BeautifulSoup(body, "html.parser")
        found = []
        for a in soup.find_all("a", href=True):
            target = urllib.parse.urljoin(url, str(a["href"])).split("#", 1)[0]
            if self.same_site(target):
                found.append(target)
        return found

    def crawl(self, queue: Queue) -> SourceReport:
        report = SourceReport(self.source)
        store = _Store(queue, report, self.source)
        seen = {self.start}
        todo = deque([self.start])
        fetched = 0
        while todo and fetched < self.limit:
            url = todo.popleft()
            fetched += 1
            try:
                final, body = self.fetch(url)
            except PageError as error:
                store.fail(url, str(error))
                continue
            text = body.decode("utf-8", "replace")

            def parse(final: str = final, text: str = text) -> Parsed:
                return html_sections(final, text)

            store.put(url, final, body, parse)
            for link in self.links(final, body):
                if link not in seen:
                    seen.add(link)
                    todo.append(link)
        # Pages still linked (read, or beyond the limit this time) stay. After a stored
        # page could not be read, the pages only it links to were not seen: nothing is
        # removed. (A link that never worked hides nothing: it was never read.)
        hidden = any(key in store.known for key, _ in report.failed)
        if report.read and not hidden:
            report.removed = queue.prune_runbook_pages(self.source, seen)
        return report


# The Trac wiki -----------------------------------------------------------------------------
def index_trac(queue: Queue, client: TracClient, prefix: str) -> SourceReport:
    report = SourceReport("trac")
    try:
        names = client.wiki_names(prefix)
    except TracError as error:
        report.error = str(error)
        return report
    store = _Store(queue, report, "trac")
    for name in names:
        try:
            page = client.wiki_page(name)
        except TracError as error:
            store.fail(name, str(error))
            continue
        if page is None:
            continue  # deleted since the listing: pruned below

        def parse(page: WikiPage = page) -> Parsed:
            return page.name, trac_sections(page.url, page.text)

        store.put(name, page.url, page.text, parse)
    keep = set(names)
    report.removed = queue.prune_runbook_pages("trac", keep)
    return report


# Markdown files ------------------------------------------------------------------------------
def index_markdown(queue: Queue, folder: Path, base_url: str | None) -> SourceReport:
    report = SourceReport("markdown")
    if not folder.is_dir():
        report.error = f"{folder} is not a folder: set RUNBOOK_DIRECTORY to the runbooks folder"
        return report
    store = _Store(queue, report, "markdown")
    keep = set()
    for path in sorted(folder.rglob("*.md")):
        key = path.relative_to(folder).as_posix()
        keep.add(key)
        url = (
            base_url.rstrip("/") + "/" + urllib.parse.quote(key)
            if base_url
            else f"{folder.as_posix().rstrip('/')}/{key}"
        )
        try:
            text = path.read_text("utf-8")
        except (OSError, UnicodeDecodeError) as error:
            store.fail(key, f"not readable as UTF-8 text: {error}")
            continue

        def parse(text: str = text, url: str = url) -> Parsed:
            return markdown_sections(url, text)

        store.put(key, url, text, parse)
    report.removed = queue.prune_runbook_pages("markdown", keep)
    return report


def index_all(queue: Queue, settings: Settings, trac: TracClient | None) -> list[SourceReport]:
    """Every configured source, one after another; one source's failure stops none."""
    reports = [index_markdown(queue, settings.runbook_directory, settings.runbook_directory_url)]
    if trac is not None and settings.runbook_trac_prefix:
        reports.append(index_trac(queue, trac, settings.runbook_trac_prefix))
    for start in settings.runbook_site_urls:
        crawler = SiteCrawler(
            start,
            limit=settings.runbook_page_limit,
            timeout=settings.runbook_fetch_timeout,
            max_bytes=settings.runbook_max_page_bytes,
        )
        reports.append(crawler.crawl(queue))
    for report in reports:
        log.info("runbook source indexed", summary=report.line())
    return reports
