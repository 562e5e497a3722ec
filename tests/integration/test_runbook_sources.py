"""Runbook sources against real peers: a documentation site served over HTTP by the
test (pages change between crawls; one unreachable; links and redirects off the host;
a page limit; hostile pages), the Trac wiki in a real tracd, and a Markdown folder."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from stat_bot.integrations.trac import TracClient
from stat_bot.oncall.runbook_index import PageError, SiteCrawler, index_markdown, index_trac
from stat_bot.queue import Queue
from tests.peers import free_port
from tests.trac_fixtures import TracServer


@dataclass
class Page:
    body: bytes
    status: int = 200
    kind: str = "text/html; charset=utf-8"
    location: str | None = None


@dataclass
class Site:
    """A documentation site the test writes: path -> Page; every request is counted."""

    pages: dict[str, Page] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def html(self, path: str, text: str) -> None:
        self.pages[path] = Page(f"<html><body>{text}</body></html>".encode())


@pytest.fixture
def site() -> Iterator[Site]:
    served = Site()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            served.requests.append(self.path)
            page = served.pages.get(self.path)
            if page is None:
                self.send_error(404)
                return
            self.send_response(page.status)
            self.send_header("Content-Type", page.kind)
            if page.location:
                self.send_header("Location", page.location)
            self.send_header("Content-Length", str(len(page.body)))
            self.end_headers()
            self.wfile.write(page.body)

        def log_message(self, *args: object) -> None:
            pass

    served.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=served.server.serve_forever, daemon=True)
    thread.start()
    yield served
    served.server.shutdown()
    served.server.server_close()


@pytest.fixture
def elsewhere() -> Iterator[Site]:
    """Another host (another port on loopback is another origin): must never be asked."""
    with_server = Site()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            with_server.requests.append(self.path)
            self.send_error(500)

        def log_message(self, *args: object) -> None:
            pass

    with_server.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=with_server.server.serve_forever, daemon=True)
    thread.start()
    yield with_server
    with_server.server.shutdown()
    with_server.server.server_close()


def crawler(site: Site, limit: int = 50, max_bytes: int = 100_000) -> SiteCrawler:
    return SiteCrawler(site.url + "/", limit=limit, timeout=5, max_bytes=max_bytes)


def write_site(site: Site, elsewhere: Site) -> None:
    site.html(
        "/",
        '<h1>Runbooks</h1><p>Start here.</p><a href="/node-down.html">node down</a> '
        '<a href="gpfs.html#top">gpfs</a> <a href="/missing.html">gone</a> '
        f'<a href="{elsewhere.url}/offsite.html">vendor</a> <a href="/away">away</a> '
        '<a href="/tarball.bin">tools</a> <a href="/huge.html">huge</a> '
        '<a href="/moved">moved</a> <a href="mailto:ops@example.org">mail</a>',
    )
    site.html(
        "/node-down.html",
        "<title>Node runbooks</title><h1 id='nd'>Node down</h1><ol><li>Ping the BMC</li>"
        "<li>Power cycle the node</li></ol><h2>BMC unreachable</h2><p>Reset the BMC.</p>"
        "<script>document.write('<h2>Injected</h2>'); stealCookies()</script>"
        "<p><!channel> &lt;@U123&gt; <b>bold</b></p>",
    )
    site.html("/gpfs.html", "<h1>GPFS hang</h1><ul><li>mmdiag --waiters</li></ul>")
    site.pages["/away"] = Page(b"", 302, location=f"{elsewhere.url}/phish.html")
    site.pages["/moved"] = Page(b"", 301, location="/gpfs.html")
    site.pages["/tarball.bin"] = Page(b"\x00\x01binary\xff" * 100, kind="application/octet-stream")
    site.pages["/huge.html"] = Page(b"<h1>Huge</h1>" + b"<p>x</p>" * 50_000)


def test_a_site_is_crawled_within_its_host_and_reparsed_only_when_changed(
    queue: Queue, site: Site, elsewhere: Site
) -> None:
    write_site(site, elsewhere)
    report = crawler(site).crawl(queue)
    failed = dict(report.failed)
    assert failed[site.url + "/missing.html"] == "HTTP 404"
    assert failed[site.url + "/away"].startswith("redirects off the site")
    assert failed[site.url + "/tarball.bin"] == "not an HTML page (application/octet-stream)"
    assert failed[site.url + "/huge.html"].startswith("larger than RUNBOOK_MAX_PAGE_BYTES")
    assert elsewhere.requests == []  # neither the off-host link nor the redirect's target
    # index, node-down, gpfs, and /moved (a redirect within the host, read as gpfs)
    assert (report.read, report.parsed, report.unchanged) == (4, 4, 0)
    titles = {h.title for h in queue.search_runbooks("node down bmc power cycle", 10)}
    assert {"Node down", "BMC unreachable"} <= titles
    # Scripts are dropped unread; the page's text is stored as text.
    assert queue.search_runbooks("injected steal cookies") == []
    (bmc,) = [h for h in queue.search_runbooks("bmc reset", 5) if h.title == "BMC unreachable"]
    assert bmc.body.endswith("<@U123> bold")  # text, as shown; escaped in Slack (runbook_messages)
    (node,) = [h for h in queue.search_runbooks("ping bmc", 5) if h.title == "Node down"]
    assert node.url == site.url + "/node-down.html#nd"
    assert node.body == "1. Ping the BMC\n2. Power cycle the node"
    pages = {p.key: p for p in queue.runbook_pages(f"site:127.0.0.1:{site.url.rsplit(':', 1)[1]}")}
    before = pages[site.url + "/gpfs.html"]

    # Second crawl: one page changed, one unreachable now (its old sections stay).
    site.html("/gpfs.html", "<h1>GPFS hang</h1><ul><li>mmexpelnode -N node</li></ul>")
    del site.pages["/node-down.html"]
    report = crawler(site).crawl(queue)
    assert report.parsed == 2  # gpfs.html, and /moved which reads it
    assert report.unchanged == 1  # the start page
    assert site.url + "/node-down.html" in dict(report.failed)
    assert report.removed == []
    assert any(h.title == "Node down" for h in queue.search_runbooks("ping bmc", 5))
    assert queue.search_runbooks("mmexpelnode")[0].title == "GPFS hang"
    after = {p.key: p for p in queue.runbook_pages(before.source)}[before.key]
    assert after.parsed_at > before.parsed_at
    assert after.content_hash != before.content_hash

    # Third: the page is back unchanged but no longer linked from anywhere: removed.
    site.html("/", "<h1>Runbooks</h1><a href='/gpfs.html'>gpfs</a>")
    report = crawler(site).crawl(queue)
    assert report.failed == []
    # (pages never read were never stored: only those two had sections)
    assert sorted(report.removed) == [site.url + "/moved", site.url + "/node-down.html"]
    assert not any(h.title == "Node down" for h in queue.search_runbooks("ping bmc", 5))


def test_a_link_that_never_worked_does_not_keep_removed_pages(queue: Queue, site: Site) -> None:
    site.html("/", "<a href='/old.html'>old</a> <a href='/broken.html'>broken</a>")
    site.html("/old.html", "<h1>Old runbook</h1><p>obsolete steps</p>")
    assert crawler(site).crawl(queue).parsed == 2
    site.html("/", "<a href='/broken.html'>broken</a>")  # old.html no longer linked
    report = crawler(site).crawl(queue)
    assert [key for key, _ in report.failed] == [site.url + "/broken.html"]
    assert report.removed == [site.url + "/old.html"]
    assert queue.search_runbooks("obsolete steps") == []


def test_the_page_limit_is_honoured(queue: Queue, site: Site) -> None:
    site.html("/", "".join(f"<a href='/p{i}.html'>p{i}</a>" for i in range(10)))
    for i in range(10):
        site.html(f"/p{i}.html", f"<h1>Page {i}</h1><p>step {i}</p>")
    report = crawler(site, limit=3).crawl(queue)
    assert len(site.requests) == 3
    assert report.read == 3


def test_an_unreachable_site_is_reported_and_removes_nothing(queue: Queue, site: Site) -> None:
    site.html("/", "<h1>Node down</h1><p>Ping the BMC.</p>")
    assert crawler(site).crawl(queue).parsed == 1
    port = site.url.rsplit(":", 1)[1]
    assert site.server is not None
    site.server.shutdown()
    site.server.server_close()
    report = SiteCrawler(f"http://127.0.0.1:{port}/", limit=5, timeout=2, max_bytes=1000).crawl(
        queue
    )
    ((_key, reason),) = report.failed
    assert reason.startswith("unreachable")
    assert report.removed == []
    assert queue.search_runbooks("ping bmc")[0].title == "Node down"
    refused = SiteCrawler(f"http://127.0.0.1:{free_port()}/", limit=5, timeout=2, max_bytes=1000)
    assert refused.crawl(queue).failed[0][1].startswith("unreachable")


@pytest.mark.trac
def test_trac_wiki_pages_under_the_prefix_are_indexed(
    queue: Queue, tracd: TracServer, trac_client: TracClient
) -> None:
    prefix = f"Runbooks{uuid.uuid4().hex[:8]}/"
    trac_client.write_wiki(
        f"{prefix}NodeDown",
        "= Node down =\nWhen a node stops answering:\n 1. Ping its BMC\n 2. Power cycle it\n"
        "== Escalation == #esc\n * Call the vendor\n{{{\n= not a heading =\n}}}\n",
    )
    trac_client.write_wiki(f"{prefix}Gpfs", "= GPFS hang =\n * mmdiag --waiters\n")
    trac_client.write_wiki(f"Other{prefix}Page", "= Node down elsewhere =\nnot a runbook\n")
    assert trac_client.wiki_names(prefix) == [f"{prefix}Gpfs", f"{prefix}NodeDown"]
    report = index_trac(queue, trac_client, prefix)
    assert (report.read, report.parsed, report.failed) == (2, 2, [])
    hits = queue.search_runbooks("node down power cycle", 5)
    assert hits[0].title == "Node down"
    assert hits[0].url == f"{tracd.url}/wiki/{prefix}NodeDown#Nodedown"
    assert hits[0].body == "When a node stops answering:\n1. Ping its BMC\n2. Power cycle it"
    assert "elsewhere" not in " ".join(h.title for h in hits)
    esc = queue.search_runbooks("call the vendor")[0]
    assert (esc.title, esc.url.rsplit("#", 1)[1]) == ("Escalation", "esc")
    assert "= not a heading =" in esc.body  # a code block's lines are not headings

    trac_client.write_wiki(f"{prefix}Gpfs", "= GPFS hang =\n * mmexpelnode\n")
    tracd.admin("wiki", "remove", f"{prefix}NodeDown")
    report = index_trac(queue, trac_client, prefix)
    assert (report.read, report.parsed, report.unchanged) == (1, 1, 0)
    assert report.removed == [f"{prefix}NodeDown"]
    assert queue.search_runbooks("mmexpelnode")[0].title == "GPFS hang"


def test_markdown_files_are_indexed_and_removed_when_deleted(queue: Queue, tmp_path: Path) -> None:
    folder = tmp_path / "runbooks"
    (folder / "storage").mkdir(parents=True)
    (folder / "node-down.md").write_text("# Node down\n1. Ping the BMC\n## Escalation\nCall.\n")
    (folder / "storage" / "gpfs.md").write_text("# GPFS hang\n- mmdiag --waiters\n")
    (folder / "notes.txt").write_text("# Not markdown\n")
    report = index_markdown(queue, folder, "https://git.example.org/runbooks")
    assert (report.read, report.parsed) == (2, 2)
    hit = queue.search_runbooks("gpfs waiters")[0]
    assert hit.url == "https://git.example.org/runbooks/storage/gpfs.md#gpfs-hang"
    (folder / "node-down.md").unlink()
    report = index_markdown(queue, folder, None)
    assert report.removed == ["node-down.md"]
    assert report.unchanged == 1
    assert index_markdown(queue, tmp_path / "nowhere", None).error is not None


def test_a_nul_byte_in_a_page_costs_nothing_else(queue: Queue, tmp_path: Path) -> None:
    """PostgreSQL refuses NUL in text: dropped before storing, so the page and the folder's
    other pages are all indexed, on every backend alike."""
    folder = tmp_path / "runbooks"
    folder.mkdir()
    (folder / "a-nul.md").write_text("# Disk\x00 full\n\n1. Free\x00 space\n")
    (folder / "b-fine.md").write_text("# Fan failed\n\n1. Swap the fan\n")
    report = index_markdown(queue, folder, None)
    assert (report.parsed, report.failed) == (2, [])
    (hit,) = queue.search_runbooks("disk full", 1)
    assert (hit.title, "\x00" in hit.body) == ("Disk full", False)
    assert queue.search_runbooks("fan failed", 1)[0].title == "Fan failed"


def test_shipped_runbooks_answer_their_alerts_and_not_others(queue: Queue) -> None:
    """A section sharing one common word (`node`) with an unrelated alert is not its answer;
    the alerts the shipped runbooks are written for still find them."""
    from stat_bot.oncall.runbook_match import best_match
    from stat_bot.queue.alert_model import AlertEvent, AlertStatus

    index_markdown(queue, Path(__file__).resolve().parents[2] / "runbooks", None)

    def answer(name: str, summary: str, **labels: str) -> str | None:
        event = AlertEvent(
            "alertmanager", name, f"{name}: {summary}", AlertStatus.FIRING, 1.0, "", "critical",
            {"alertname": name, **labels},
        )  # fmt: skip
        hit = best_match(queue, event, 0.5)
        return hit.title if hit else None

    for unrelated in ("HostClockSkew", "HostHighCpuLoad", "HostOutOfMemory", "HostSwapIsFillingUp"):
        assert answer(unrelated, "on nid000012", job="node", instance="nid000012:9100") is None
    assert answer("NodeDown", "x1000c0s0b0n0 stopped answering", xname="x1000c0s0b0n0") == (
        "Node down or BMC unreachable"
    )
    assert answer("SlurmNodeDrained", "nid000006 drained") == "Slurm node drained or down"
    assert answer("GPFSWaitersHigh", "long waiters on nsd1") == "GPFS hang"


def test_a_server_dripping_a_page_is_given_up_at_the_fetch_timeout() -> None:
    """The socket's timeout bounds each read only: a byte every 0.2 s would never trip it."""

    class Drip(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            for _ in range(100):  # 20 s of a page, if nobody hung up
                try:
                    self.wfile.write(b"<p>x</p>\n")
                    self.wfile.flush()
                except OSError:
                    return
                time.sleep(0.2)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Drip)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        crawler = SiteCrawler(url, limit=5, timeout=1.0, max_bytes=1_000_000)
        started = time.monotonic()
        with pytest.raises(PageError, match="slower than RUNBOOK_FETCH_TIMEOUT"):
            crawler.fetch(url)
        assert time.monotonic() - started < 10
    finally:
        server.shutdown()
        server.server_close()
