"""contrib/trac/stat_bot_notify.py inside a real Trac 1.6 environment (Trac's Python API).

Each test builds a Trac environment in a temporary folder with the plugin in its
`plugins/` folder, as a site installs it, and changes tickets through Trac's own model
(what the web forms, JSON-RPC and trac-admin call). The plugin's events go to a real
HTTP peer: either STAT bot's web app (served by werkzeug, posting into the Slack
emulator) or a recording server that checks the wire format independently. Trac's log
file is read for the plugin's warnings. The e2e test drives the same plugin in tracd.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from werkzeug.serving import make_server

from stat_bot.integrations.slack_emulator import APP_TOKEN, BOT_TOKEN, EmulatorClient
from stat_bot.queue import Queue
from tests import trac_events as te
from tests.integration.conftest import wait_until
from tests.peers import free_port
from tests.trac_fixtures import require_trac

pytestmark = [
    pytest.mark.trac,
    # Trac 1.6's own imports, in this process (tracd runs with them silenced too).
    pytest.mark.filterwarnings("ignore:pkg_resources is deprecated"),
    pytest.mark.filterwarnings("ignore:'crypt' is deprecated"),
    pytest.mark.filterwarnings("ignore:'cgi' is deprecated"),
]

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = ROOT / "contrib" / "trac" / "stat_bot_notify.py"
TRAC_ADMIN = str(Path(sys.executable).parent / "trac-admin")
BASE_URL = "http://trac.example.org/stat"
UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")

RAW = {
    "hw": {
        "jobs": {"check": {"run_args_template": "echo check {node}"}},
        "trac_rules": [
            {
                "event": "created",
                "when": {"xname": True},
                "job_type": "check",
                "args": {"node": "{xname}"},
            }
        ],
    }
}


@dataclass
class Trac:
    """A Trac environment with the plugin, opened through Trac's API."""

    path: Path
    env: Any

    @property
    def log(self) -> str:
        log = self.path / "log" / "trac.log"
        return log.read_text(errors="replace") if log.exists() else ""

    def warnings(self) -> list[str]:
        return [line for line in self.log.splitlines() if "stat_bot_notify] WARNING" in line]

    def ticket(self, number: int | None = None) -> Any:
        from trac.ticket.model import Ticket

        return Ticket(self.env, number)

    def new_ticket(self, **values: str) -> Any:
        ticket = self.ticket()
        defaults = {
            "summary": "Node will not boot",
            "reporter": "alice",
            "type": "defect",
            "priority": "major",
            "status": "new",  # as Trac's workflow sets it on the new-ticket form
            "xname": "x1000c0s0b0n0",
        }
        for name, value in {**defaults, **values}.items():
            ticket[name] = value
        ticket.insert()
        return ticket

    def set(self, **options: str) -> None:
        """Change [stat_bot] options as an admin editing trac.ini would (read at each event)."""
        for name, value in options.items():
            self.env.config.set("stat_bot", name, value)


@pytest.fixture
def make_trac(tmp_path: Path) -> Iterator[Callable[..., Trac]]:
    require_trac()  # skipped without trac, failed in CI
    from trac.env import Environment

    made: list[Any] = []

    def make(url: str | None, secret: str | None = te.SECRET, timeout: str = "2") -> Trac:
        path = tmp_path / f"trac{len(made)}"
        options = [
            ("trac", "database", "sqlite:db/trac.db"),
            ("trac", "base_url", BASE_URL),
            ("ticket-custom", "xname", "text"),
            ("logging", "log_type", "file"),
            ("logging", "log_level", "INFO"),
            ("stat_bot", "timeout", timeout),
        ]
        options += [("stat_bot", "url", url)] if url else []
        options += [("stat_bot", "secret", secret)] if secret else []
        Environment(str(path), create=True, options=options).shutdown()
        shutil.copy(PLUGIN, path / "plugins")
        env = Environment(str(path))
        made.append(env)
        return Trac(path, env)

    yield make
    for env in made:
        env.shutdown()


@dataclass
class Recorder:
    """A bare HTTP server that records what the plugin sends and answers as told."""

    url: str
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    status: int = 200

    def wait(self, count: int) -> list[tuple[dict[str, str], bytes]]:
        wait_until(lambda: len(self.requests) >= count, what=f"{count} request(s)")
        return self.requests


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    rec = Recorder(f"http://127.0.0.1:{server.server_address[1]}/trac")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            rec.requests.append((dict(self.headers.items()), body))
            answer = json.dumps({"ok": True, "posted": True}).encode()
            self.send_response(rec.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: Any) -> None:
            pass

    server.RequestHandlerClass = Handler
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield rec
    server.shutdown()
    server.server_close()


@pytest.fixture
def stat_bot_url(
    make_web_app: Callable[..., Flask], make_settings, configure, slack_emulator
) -> Iterator[str]:
    """STAT bot's web app on a loopback port, its Slack the emulator, STAT channel #general."""
    configure(RAW)
    app = make_web_app(
        make_settings(
            trac_webhook_secret=te.SECRET,
            slack_bot_token=BOT_TOKEN,
            slack_app_token=APP_TOKEN,
            slack_api_url=slack_emulator.api_url,
            stat_channel="general",
        )
    )
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/trac"
    server.shutdown()


def stat_posts(emulator_client: EmulatorClient) -> list[dict[str, Any]]:
    return [m for m in emulator_client.messages("general") if m.get("bot_id")]


# --- through STAT bot ------------------------------------------------------------------------


def test_created_changed_and_deleted_tickets_reach_the_stat_channel_in_order(
    make_trac, stat_bot_url, emulator_client, queue: Queue
):
    trac = make_trac(stat_bot_url)
    ticket = trac.new_ticket()
    ticket["status"] = "closed"
    ticket["resolution"] = "fixed"
    ticket.save_changes(author="bob", comment="Reseated the DIMM")
    ticket.delete()
    posted = wait_until(
        lambda: len(stat_posts(emulator_client)) >= 3 and stat_posts(emulator_client)
    )
    created, changed, deleted = (m["text"] for m in posted)
    link = f"{BASE_URL}/ticket/{ticket.id}"
    assert created == (
        f"STAT ticket #{ticket.id} created: Node will not boot | type defect, priority major, "
        f"xname x1000c0s0b0n0, action new, by alice | {link}"
    )
    assert changed.startswith(f"STAT ticket #{ticket.id} changed: Node will not boot")
    assert "action new → closed (fixed), by bob" in changed
    assert "Reseated the DIMM" in json.dumps(posted[1]["blocks"])
    assert deleted.startswith(f"STAT ticket #{ticket.id} deleted")
    (job,) = queue.jobs(limit=10)
    assert (job.job_type, job.args, job.user) == ("check", {"node": "x1000c0s0b0n0"}, "trac alice")
    assert trac.warnings() == []


def test_a_trac_with_the_wrong_secret_is_refused_and_says_so_in_its_log(
    make_trac, stat_bot_url, emulator_client, queue
):
    trac = make_trac(stat_bot_url, secret="not the secret")
    ticket = trac.new_ticket()
    (warning,) = wait_until(trac.warnings)
    assert f"STAT bot refused created of ticket #{ticket.id}: HTTP 403" in warning
    assert "must be the same as TRAC_WEBHOOK_SECRET" in warning
    assert "not the secret" not in trac.log
    assert stat_posts(emulator_client) == []
    assert queue.jobs(limit=10) == []
    assert queue.counters("trac_requests") == {"bad_signature": 1}
    # Trac itself is unaffected: the ticket is there.
    assert trac.ticket(ticket.id)["summary"] == "Node will not boot"


# --- the wire format -------------------------------------------------------------------------


def test_each_event_is_signed_json_as_documented(make_trac, recorder):
    trac = make_trac(recorder.url)
    ticket = trac.new_ticket(owner="")
    ticket["owner"] = "bob"
    ticket["status"] = "assigned"
    ticket.save_changes(author="carol", comment="Ünïcode & <brackets>")
    ticket.delete()
    sent = recorder.wait(3)
    bodies = []
    for headers, body in sent:
        assert headers["Content-Type"] == "application/json"
        assert headers["X-Trac-Signature-256"] == te.sign(te.SECRET, body)
        event = json.loads(body)
        assert headers["X-Trac-Event-Id"] == event["id"]
        assert UUID4.match(event["id"])
        assert set(event) == {
            "event", "id", "ticket", "fields", "old_values", "comment", "author", "time", "link",
        }  # fmt: skip
        assert event["ticket"] == ticket.id
        assert event["link"] == f"{BASE_URL}/ticket/{ticket.id}"
        bodies.append(event)
    created, changed, deleted = bodies
    assert [b["event"] for b in bodies] == ["created", "changed", "deleted"]
    assert len({b["id"] for b in bodies}) == 3
    assert created["fields"]["xname"] == "x1000c0s0b0n0"
    assert created["fields"]["summary"] == "Node will not boot"
    assert created["fields"]["status"] == "new"
    assert created["author"] == "alice"
    assert created["old_values"] == {}
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", created["time"])
    assert created["fields"]["time"] == created["time"]
    assert changed["author"] == "carol"
    assert changed["comment"] == "Ünïcode & <brackets>"
    assert changed["old_values"] == {"owner": "", "status": "new"}
    assert (changed["fields"]["owner"], changed["fields"]["status"]) == ("bob", "assigned")
    assert changed["time"] == changed["fields"]["changetime"]
    assert deleted["author"] == ""
    assert deleted["fields"]["summary"] == "Node will not boot"


def test_a_user_and_password_in_the_url_are_sent_as_basic_auth(make_trac, recorder):
    trac = make_trac(recorder.url.replace("http://", "http://stat:p%40ss@"))
    trac.new_ticket()
    ((headers, _),) = recorder.wait(1)
    assert headers["Authorization"] == "Basic " + base64.b64encode(b"stat:p@ss").decode()


def test_without_base_url_the_link_is_empty(make_trac, recorder):
    trac = make_trac(recorder.url)
    trac.env.config.set("trac", "base_url", "")
    trac.new_ticket()
    ((_, body),) = recorder.wait(1)
    assert json.loads(body)["link"] == ""


def test_a_refusal_is_a_warning_with_stat_bots_reason(make_trac, recorder):
    recorder.status = 500
    trac = make_trac(recorder.url)
    trac.new_ticket()
    (warning,) = wait_until(trac.warnings)
    assert "STAT bot refused created of ticket #1: HTTP 500" in warning


# --- never breaking or slowing Trac ---------------------------------------------------------


def test_unconfigured_the_plugin_warns_once_and_sends_nothing(make_trac, recorder):
    trac = make_trac(None, secret=None)
    trac.new_ticket()
    trac.new_ticket()
    (warning,) = trac.warnings()
    assert "STAT bot notifications are off: set url and secret in the [stat_bot] section" in warning
    trac.set(url=recorder.url)
    trac.new_ticket()
    assert "set secret in the [stat_bot] section" in trac.warnings()[-1]
    trac.set(secret=te.SECRET)
    trac.new_ticket()
    ((_, body),) = recorder.wait(1)
    assert json.loads(body)["ticket"] == 4
    assert len(trac.warnings()) == 2


def test_a_url_that_is_not_http_is_not_used(make_trac):
    trac = make_trac("file:///etc/passwd")
    trac.new_ticket()
    (warning,) = trac.warnings()
    assert "set url as http:// or https://" in warning


def test_an_unreachable_stat_bot_costs_trac_nothing(make_trac):
    url = f"http://user:pw@127.0.0.1:{free_port()}/trac?x=1"
    trac = make_trac(url)
    started = time.monotonic()
    for _ in range(3):
        trac.new_ticket()
    assert time.monotonic() - started < 1.0
    warnings = wait_until(lambda: len(trac.warnings()) >= 3 and trac.warnings())
    assert "could not send created of ticket #1" in warnings[0]
    assert "Connection refused" in warnings[0]
    assert "pw" not in trac.log  # the URL is logged without its password
    assert te.SECRET not in trac.log


def test_a_hanging_stat_bot_never_holds_trac_up(make_trac):
    """A peer that takes the connection and never answers: each send gives up at `timeout`."""
    with socket.socket() as hanging:
        hanging.bind(("127.0.0.1", 0))
        hanging.listen(16)
        trac = make_trac(f"http://127.0.0.1:{hanging.getsockname()[1]}/trac", timeout="0.5")
        started = time.monotonic()
        for _ in range(3):
            trac.new_ticket()
        assert time.monotonic() - started < 1.0, "a ticket change waited for STAT bot"
        warnings = wait_until(lambda: len(trac.warnings()) >= 3 and trac.warnings(), timeout=10)
        took = time.monotonic() - started
    assert all("timed out" in w for w in warnings), warnings
    assert 1.4 < took < 5, f"three sends with a 0.5 s timeout took {took:.1f} s"


def test_trac_admin_sends_its_event_before_the_process_exits(make_trac, recorder):
    trac = make_trac(recorder.url)
    ticket = trac.new_ticket()
    recorder.wait(1)
    result = subprocess.run(
        [TRAC_ADMIN, str(trac.path), "ticket", "remove", str(ticket.id)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    # Already there when trac-admin has exited: the queued event was sent before it did.
    assert len(recorder.requests) == 2
    assert json.loads(recorder.requests[1][1])["event"] == "deleted"


# --- STAT bot down: spooled and retried ------------------------------------------------------


class Receiver:
    """A recording `/trac` peer on a fixed port that can go away and come back (a restart)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}/trac"
        self.events: list[dict[str, Any]] = []
        self.ids: list[str] = []
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.ids.append(self.headers["X-Trac-Event-Id"])
                receiver.events.append(json.loads(body))
                answer = b'{"ok": true}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def spooled(env_dir: Path) -> int:
    import sqlite3

    path = env_dir / "db" / "stat-bot-spool.sqlite"
    if not path.exists():
        return 0
    with contextlib.closing(sqlite3.connect(path, timeout=10)) as conn:
        return conn.execute("SELECT count(*) FROM events").fetchone()[0]


def test_events_made_while_stat_bot_is_down_all_arrive_once_when_it_is_back(tmp_path):
    """tracd changes tickets while the receiving server is stopped; after it starts again
    every event arrives, in order, once, and the spool is empty."""
    require_trac()
    from tests.trac_fixtures import TracServer

    receiver = Receiver(free_port())
    (tmp_path / "trac").mkdir()
    trac = TracServer(tmp_path / "trac")
    trac.build()
    trac.set_notify(receiver.url, te.SECRET, timeout=1)
    trac.set_option("stat_bot", "retry_max", "1")
    receiver.start()
    trac.start()
    try:
        client = trac.client()
        first = client.create(
            summary="Node will not boot", type="defect", priority="major", xname="x1000c0s0b0n0"
        )
        wait_until(lambda: len(receiver.events) == 1, what="the first event")

        receiver.stop()  # STAT bot restarts
        client.comment(first, "reseated the DIMM")
        client.comment(first, "still failing")
        second = client.create(
            summary="Fan alarm", type="defect", priority="minor", xname="x1000c0s1b0n0"
        )
        wait_until(
            lambda: "could not send changed of ticket #1" in trac.log_text(),
            what="the plugin to fail to reach STAT bot",
        )
        assert "trying again in" in trac.log_text()
        assert len(receiver.events) == 1
        assert spooled(trac.env_dir) == 3

        receiver.start()  # back on the same URL
        wait_until(lambda: spooled(trac.env_dir) == 0, timeout=30, what="the spool to drain")
        kinds = [(e["event"], e["ticket"]) for e in receiver.events]
        assert kinds == [("created", first), ("changed", first), ("changed", first),
                         ("created", second)]  # fmt: skip
        assert [e["comment"] for e in receiver.events[1:3]] == [
            "reseated the DIMM",
            "still failing",
        ]
        assert len(set(receiver.ids)) == len(receiver.ids) == 4
        assert te.SECRET not in trac.log_text()
    finally:
        trac.stop()
        receiver.stop()


def test_a_full_spool_drops_the_oldest_event_with_a_warning(make_trac):
    url = f"http://127.0.0.1:{free_port()}/trac"  # nobody there
    trac = make_trac(url)
    trac.set(spool_size="2", retry_max="0.5")
    for _ in range(3):
        trac.new_ticket()
    warning = wait_until(
        lambda: [w for w in trac.warnings() if "dropped the oldest" in w], what="a drop warning"
    )
    assert "2 events are waiting to be sent; dropped the oldest, created of ticket #1" in warning[0]
    assert spooled(trac.path) == 2
