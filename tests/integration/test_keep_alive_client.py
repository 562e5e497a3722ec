"""report/keep_alive.py against a real HTTP/1.1 server that counts connections and misbehaves
on cue: calls share a connection per thread, and every failure reaches slack-sdk's retry
handlers as it did through urllib (429 with Retry-After, 5xx, a connection dropped mid-call,
a connection the server closed while idle)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.error import URLError

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)

from stat_bot.report.keep_alive import KeepAliveWebClient
from stat_bot.report.slack import web_client
from stat_bot.settings import PROXY_VARIABLES, Settings

TOKEN = "xoxb-keep-alive-test"


class Scripted(ThreadingHTTPServer):
    """Answers `{"ok": true}` unless a cue says otherwise; records each request's connection."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.cues: list[str] = []  # taken one per request: "429", "500", "drop", "close"
        self.seen: list[dict[str, Any]] = []
        self.connections = 0
        self.idle_timeout: float | None = None  # the server hangs up on a connection idle this long
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/api/"

    def ports(self) -> list[int]:
        return [s["port"] for s in self.seen]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Scripted

    def setup(self) -> None:
        self.timeout = self.server.idle_timeout
        super().setup()
        with self.server.lock:
            self.server.connections += 1

    def log_message(self, *_: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with self.server.lock:
            cue = self.server.cues.pop(0) if self.server.cues else ""
            self.server.seen.append(
                {
                    "port": self.client_address[1],
                    "path": self.path,
                    "auth": self.headers.get("Authorization"),
                    "type": self.headers.get("Content-Type"),
                    "body": body,
                }
            )
        if cue == "drop":  # read the request, answer nothing, hang up
            self.close_connection = True
            return
        status, answer, extra = 200, {"ok": True}, {}
        if cue == "429":
            status, answer, extra = 429, {"ok": False, "error": "ratelimited"}, {"Retry-After": "1"}
        elif cue == "500":
            status, answer = 500, {"ok": False, "error": "fatal_error"}
        elif cue == "close":
            extra = {"Connection": "close"}
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in extra.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
        if cue == "close":
            self.close_connection = True


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[Scripted]:
    for name in PROXY_VARIABLES:  # slack-sdk would send every call through one
        monkeypatch.delenv(name, raising=False)
    scripted = Scripted()
    thread = threading.Thread(target=scripted.serve_forever, daemon=True)
    thread.start()
    try:
        yield scripted
    finally:
        scripted.shutdown()
        scripted.server_close()


def client(server: Scripted, *handlers: Any) -> KeepAliveWebClient:
    return KeepAliveWebClient(
        token=TOKEN, base_url=server.url, timeout=5, retry_handlers=list(handlers)
    )


def test_calls_from_one_thread_share_one_connection_and_each_thread_has_its_own(
    server: Scripted,
) -> None:
    slack = client(server)
    for n in range(5):
        assert slack.chat_postMessage(channel="C1", text=f"message {n}")["ok"]
    assert len(set(server.ports())) == 1
    assert server.connections == 1
    sent = server.seen[0]
    assert sent["path"] == "/api/chat.postMessage"
    assert sent["auth"] == f"Bearer {TOKEN}"
    assert json.loads(sent["body"]) == {"channel": "C1", "text": "message 0"}

    other = threading.Thread(
        target=lambda: slack.reactions_add(channel="C1", timestamp="1.2", name="eyes")
    )
    other.start()
    other.join()
    assert server.connections == 2
    assert server.seen[-1]["path"] == "/api/reactions.add"
    assert slack.auth_test()["ok"]  # back on this thread's own connection
    assert server.ports()[-1] == server.ports()[0]


def test_form_encoded_calls_keep_their_content_type(server: Scripted) -> None:
    slack = client(server)
    slack.api_call("chat.postMessage", params={"channel": "C1", "text": "form"})
    assert server.seen[0]["type"] == "application/x-www-form-urlencoded"
    assert server.seen[0]["body"] == b"channel=C1&text=form"


def test_a_connection_the_server_closed_while_idle_is_replaced_without_a_retry(
    server: Scripted,
) -> None:
    slack = client(server)  # no retry handlers: a lost call would raise
    server.cues = ["close"]  # the server hangs up after answering, as after its idle timeout
    assert slack.auth_test()["ok"]
    time.sleep(0.1)
    assert slack.auth_test()["ok"]
    assert server.connections == 2
    assert len(server.seen) == 2  # each call was sent once


def test_an_idle_connection_closed_without_a_word_is_noticed_before_use(server: Scripted) -> None:
    slack = client(server)  # no retry handlers: a call sent on the dead connection would raise
    server.idle_timeout = 0.2
    assert slack.auth_test()["ok"]
    time.sleep(0.6)  # the server has hung up, sending no Connection: close beforehand
    assert slack.auth_test()["ok"]
    assert server.connections == 2
    assert len(server.seen) == 2


def test_rate_limits_and_server_errors_are_retried_as_through_urllib(server: Scripted) -> None:
    slack = client(
        server,
        RateLimitErrorRetryHandler(max_retry_count=2),
        ServerErrorRetryHandler(max_retry_count=2),
    )
    server.cues = ["429", "500"]
    began = time.monotonic()
    assert slack.chat_postMessage(channel="C1", text="once")["ok"]
    assert time.monotonic() - began >= 1.0  # Retry-After was read and waited out
    assert len(server.seen) == 3
    assert server.connections == 1  # an error answer does not cost the connection


def test_an_error_answer_without_retries_is_slacks_error_with_status_and_headers(
    server: Scripted,
) -> None:
    server.cues = ["429"]
    with pytest.raises(SlackApiError) as raised:
        client(server).chat_postMessage(channel="C1", text="refused")
    assert raised.value.response.status_code == 429
    assert raised.value.response["error"] == "ratelimited"
    assert raised.value.response.headers["Retry-After"] == "1"


def test_a_call_dropped_mid_way_is_retried_on_a_new_connection(server: Scripted) -> None:
    slack = client(server, ConnectionErrorRetryHandler(max_retry_count=2))
    assert slack.auth_test()["ok"]
    server.cues = ["drop"]
    assert slack.chat_postMessage(channel="C1", text="again")["ok"]
    assert [s["path"] for s in server.seen[1:]] == ["/api/chat.postMessage"] * 2
    assert server.connections == 2


def test_a_dropped_call_without_retries_raises_a_connection_error(server: Scripted) -> None:
    slack = client(server)
    server.cues = ["drop"]
    with pytest.raises(ConnectionError):
        slack.auth_test()
    assert slack.auth_test()["ok"]  # the broken connection was not kept
    assert server.connections == 2


def test_an_unreachable_slack_is_a_url_error_as_before(server: Scripted) -> None:
    url = server.url
    server.shutdown()
    server.server_close()
    slack = KeepAliveWebClient(token=TOKEN, base_url=url, timeout=2)
    with pytest.raises(URLError):  # what ConnectionErrorRetryHandler and the outbox expect
        slack.auth_test()


def test_with_a_proxy_calls_go_through_urllib_as_before(server: Scripted) -> None:
    proxy = f"http://127.0.0.1:{server.server_address[1]}"
    slack = KeepAliveWebClient(token=TOKEN, base_url="http://slack.invalid/api/", proxy=proxy)
    assert slack.auth_test()["ok"]
    assert server.seen[0]["path"] == "http://slack.invalid/api/auth.test"  # a proxy's request line


def test_the_services_client_keeps_its_connection(server: Scripted) -> None:
    settings = Settings(
        slack_bot_token=TOKEN, slack_app_token="xapp-keep-alive-test", slack_api_url=server.url
    )
    slack = web_client(settings)
    for _ in range(3):
        slack.auth_test()
    assert server.connections == 1
