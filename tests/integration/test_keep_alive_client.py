"""report/keep_alive.py against a real HTTP/1.1 server that counts connections and misbehaves
on cue: calls share a connection per thread, every failure reaches slack-sdk's retry
handlers as it did through urllib (429 with Retry-After, 5xx, a call dropped), and no call
ever reads another's answer (a 1xx, a read timeout, a connection the server closed)."""

from __future__ import annotations

import json
import socket
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

from stat_bot.report import keep_alive
from stat_bot.report.keep_alive import KeepAliveWebClient
from stat_bot.report.slack import web_client
from stat_bot.settings import PROXY_VARIABLES, Settings

TOKEN = "xoxb-keep-alive-test"


class Scripted(ThreadingHTTPServer):
    """Answers `{"ok": true}` unless a cue says otherwise; records each request's connection."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        # Taken one per request: "429", "500", "103", "drop", "close", "slow".
        self.cues: list[str] = []
        self.seen: list[dict[str, Any]] = []
        self.connections = 0
        self.idle_timeout: float | None = None  # the server hangs up on a connection idle this long
        self.hung_up = threading.Event()  # set each time the server ends a connection
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/api/"

    def shutdown_request(self, request: Any) -> None:
        super().shutdown_request(request)  # the connection's socket closed
        self.hung_up.set()

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
        if cue == "slow":
            time.sleep(2.0)
        if cue == "103":  # an informational answer first; the real one follows
            self.wfile.write(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>\r\n\r\n")
            self.wfile.flush()
            time.sleep(0.5)  # the caller's next call goes out before this call's answer
        status, answer, extra = 200, {"ok": True, "path": self.path}, {}
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
        try:
            self.wfile.write(data)
        except OSError:  # "slow": the caller gave up and hung up
            self.close_connection = True
            return
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


def test_a_kept_connection_sends_without_waiting_for_acknowledgements(server: Scripted) -> None:
    # http.client writes a request's headers and its body in two sends; with Nagle's
    # algorithm on, a kept connection would hold the body back until the headers were
    # acknowledged: one more round trip to Slack per call.
    slack = client(server)
    assert slack.chat_postMessage(channel="C1", text="first")["ok"]
    assert slack.chat_postMessage(channel="C1", text="second")["ok"]
    assert server.connections == 1
    [kept] = slack._kept.by_host.values()
    assert kept.conn.sock is not None
    assert kept.conn.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


def test_form_encoded_calls_keep_their_content_type(server: Scripted) -> None:
    slack = client(server)
    slack.api_call("chat.postMessage", params={"channel": "C1", "text": "form"})
    assert server.seen[0]["type"] == "application/x-www-form-urlencoded"
    assert server.seen[0]["body"] == b"channel=C1&text=form"


def test_a_connection_the_server_ends_with_connection_close_is_not_used_again(
    server: Scripted,
) -> None:
    slack = client(server)  # no retry handlers: a call sent on the ended connection would raise
    server.cues = ["close"]
    assert slack.auth_test()["ok"]
    assert slack.auth_test()["ok"]
    assert server.connections == 2
    assert len(server.seen) == 2  # each call was sent once


def test_a_connection_the_server_closed_while_idle_is_noticed_before_use(
    server: Scripted, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[str] = []
    exchange = KeepAliveWebClient._exchange

    def counted(self: KeepAliveWebClient, kept: Any, req: Any, headers: Any) -> Any:
        sent.append(req.selector)
        return exchange(self, kept, req, headers)

    monkeypatch.setattr(KeepAliveWebClient, "_exchange", counted)
    slack = client(server)  # no retry handlers: a call sent on the dead connection would raise
    server.idle_timeout = 0.3
    assert slack.auth_test()["ok"]
    assert server.hung_up.wait(10)  # the server hung up, with no Connection: close before
    assert slack.auth_test()["ok"]
    assert server.connections == 2
    assert len(server.seen) == 2
    assert sent == ["/api/auth.test"] * 2  # nothing was sent on the dead connection


def test_a_connection_idle_past_the_limit_is_not_used_again(
    server: Scripted, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(keep_alive, "IDLE_LIMIT", 0.0)  # a silent drop by a firewall, say
    slack = client(server)
    for _ in range(3):
        assert slack.auth_test()["ok"]
    assert server.connections == 3


def test_a_call_the_server_dropped_on_a_kept_connection_goes_once_more_on_a_new_one(
    server: Scripted,
) -> None:
    slack = client(server)  # no retry handlers: only the kept connection's rule retries
    assert slack.auth_test()["ok"]
    server.cues = ["drop"]  # as if the server's idle close crossed the call
    assert slack.chat_postMessage(channel="C1", text="again")["path"] == "/api/chat.postMessage"
    assert [s["path"] for s in server.seen[1:]] == ["/api/chat.postMessage"] * 2
    assert server.connections == 2

    server.cues = ["drop", "drop"]  # once more only: the new connection's failure stands
    with pytest.raises(ConnectionError):
        slack.chat_postMessage(channel="C1", text="lost")
    assert len(server.seen) == 5


def test_an_informational_answer_leaves_nothing_behind_for_the_next_call(
    server: Scripted,
) -> None:
    slack = client(server)
    server.cues = ["103"]
    with pytest.raises(SlackApiError) as raised:
        slack.chat_postMessage(channel="C1", text="hinted")
    assert raised.value.response.status_code == 103
    assert slack.chat_delete(channel="C1", ts="1.2")["path"] == "/api/chat.delete"


def test_a_call_that_timed_out_leaves_its_late_answer_behind(server: Scripted) -> None:
    slack = client(server)  # 5 s
    assert slack.auth_test()["ok"]
    slack.timeout = 0.5  # for the connection already kept too (the answer takes 2 s)
    server.cues = ["slow"]
    with pytest.raises(TimeoutError):
        slack.chat_postMessage(channel="C1", text="slow")
    assert slack.chat_delete(channel="C1", ts="1.2")["path"] == "/api/chat.delete"


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


def test_a_call_dropped_on_a_new_connection_is_left_to_the_retry_handler(
    server: Scripted,
) -> None:
    slack = client(server, ConnectionErrorRetryHandler(max_retry_count=2))
    server.cues = ["drop"]
    assert slack.chat_postMessage(channel="C1", text="again")["ok"]
    assert [s["path"] for s in server.seen] == ["/api/chat.postMessage"] * 2
    assert server.connections == 2


def test_a_dropped_call_without_retries_raises_a_connection_error(server: Scripted) -> None:
    slack = client(server)
    server.cues = ["drop"]
    with pytest.raises(ConnectionError):
        slack.auth_test()
    assert slack.auth_test()["ok"]  # the broken connection was not kept
    assert server.connections == 2


def test_an_unreachable_slack_is_a_url_error_as_before() -> None:
    with socket.socket() as bound:  # bound, never listening: connections are refused
        bound.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{bound.getsockname()[1]}/api/"
        slack = KeepAliveWebClient(token=TOKEN, base_url=url, timeout=2)
        with pytest.raises(URLError):  # what ConnectionErrorRetryHandler and the outbox expect
            slack.auth_test()


def test_with_a_proxy_calls_go_through_urllib_as_before(
    server: Scripted, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
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
