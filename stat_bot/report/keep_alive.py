"""A WebClient that keeps its connection to Slack open between calls.

slack-sdk's WebClient sends each Web API call through `urllib`, which opens a new
connection for every call and closes it after (it sends `Connection: close`): against
slack.com a TCP and TLS handshake per reaction, message and report. Against the local
emulator a `reactions.add` cost the caller 0.59-0.77 ms of CPU that way and 0.42-0.51 ms
on a kept connection, and the emulator 0.62-0.80 ms against 0.34-0.36 (BENCHMARKS.md).

Each thread keeps one connection per host, with TCP_NODELAY set as http.client sets it on
connecting: a request's headers and body go out in two writes, and Nagle's algorithm would
hold the body back for the headers' acknowledgement, a round trip per call. Everything
else is urllib's, so slack-sdk's retry handlers see what they always saw: an error while
sending is a `URLError`, an error while reading the answer is the socket's own
(`RemoteDisconnected`, `ConnectionResetError`, `TimeoutError`), and any answer outside
2xx is an `HTTPError` carrying its status, headers and body. A redirect is not followed
(urllib would have sent the token on to the new address), and a 1xx other than 100 does
not leave the real answer behind for the next call.

A kept connection is closed, and the next call opens another, after any failure, after a
1xx answer, after the server's `Connection: close`, once the server has closed it while
idle (it reads as ready with nothing to read), and after IDLE_LIMIT seconds unused (a
firewall or NAT may drop an idle flow without a word, and a call on it would wait out
the whole timeout). When a call on a kept connection fails before any answer, because
the server closed it just as the call went out (the send fails, or the connection ends
with no status line), the call is made once more on a new connection, as HTTP clients
do for an idle connection's close. With a proxy (HTTPS_PROXY, or the client's `proxy`)
calls go through urllib as before.
"""

from __future__ import annotations

import http.client
import io
import select
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.request import Request

from slack_sdk import WebClient

IDLE_LIMIT = 15.0  # seconds a kept connection may sit unused and still be used again


@dataclass
class _Kept:
    """A thread's connection to one host, and when it last answered (for IDLE_LIMIT)."""

    key: tuple[str, str]  # (scheme, host), where `_Connections.by_host` holds it
    conn: http.client.HTTPConnection
    used: float  # time.monotonic() at the end of its last call


class _Connections(threading.local):
    """A thread's kept connections."""

    def __init__(self) -> None:
        self.by_host: dict[tuple[str, str], _Kept] = {}


class KeepAliveWebClient(WebClient):
    """WebClient whose calls reuse the calling thread's open connection to the API host."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._kept = _Connections()

    def _perform_urllib_http_request_internal(self, url: str, req: Request) -> dict[str, Any]:
        if self.proxy is not None or req.type not in ("http", "https"):
            return super()._perform_urllib_http_request_internal(url, req)
        headers = {name.title(): value for name, value in req.header_items()}
        headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        kept, reused = self._connection(req.type, req.host)
        try:
            response, body = self._exchange(kept, req, headers)
        except (URLError, http.client.RemoteDisconnected):
            if not reused:
                raise
            # The server closed the kept connection as the call went out: it never
            # answered this call. Once more, on a new connection.
            kept, _ = self._connection(req.type, req.host)
            response, body = self._exchange(kept, req, headers)
        if not 200 <= response.status < 300:  # as urllib: slack-sdk reads it from HTTPError
            raise HTTPError(
                url, response.status, response.reason, response.headers, io.BytesIO(body)
            )
        if response.headers.get_content_type() == "application/gzip":
            return {"status": response.status, "headers": response.headers, "body": body}
        charset = response.headers.get_content_charset() or "utf-8"
        return {
            "status": response.status,
            "headers": response.headers,
            "body": body.decode(charset),
        }

    def _exchange(
        self, kept: _Kept, req: Request, headers: dict[str, str]
    ) -> tuple[http.client.HTTPResponse, bytes]:
        """One request and its whole answer; the connection is dropped unless left sound."""
        conn = kept.conn
        try:
            if conn.sock is not None and conn.sock.gettimeout() != self.timeout:
                conn.sock.settimeout(self.timeout)  # the client's timeout was changed
            try:
                conn.request(req.get_method(), req.selector, req.data, headers)
            except OSError as error:
                raise URLError(error) from error
            response = conn.getresponse()
            body = response.read()
        except BaseException:
            self._forget(kept)
            raise
        if response.will_close or response.status < 200:  # a 1xx: the real answer still to come
            self._forget(kept)
        else:
            kept.used = time.monotonic()
        return response, body

    def _connection(self, scheme: str, host: str) -> tuple[_Kept, bool]:
        """This thread's sound connection to `host`, and whether it has been used before;
        a new one when it has none."""
        key = (scheme, host)
        kept = self._kept.by_host.get(key)
        if kept is not None and (
            time.monotonic() - kept.used > IDLE_LIMIT or _closed_by_peer(kept.conn)
        ):
            self._forget(kept)
            kept = None
        if kept is not None:
            return kept, kept.conn.sock is not None
        if scheme == "https":
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                host, timeout=self.timeout, context=self.ssl
            )
        else:
            conn = http.client.HTTPConnection(host, timeout=self.timeout)
        kept = self._kept.by_host[key] = _Kept(key, conn, time.monotonic())
        return kept, False

    def _forget(self, kept: _Kept) -> None:
        kept.conn.close()
        if self._kept.by_host.get(kept.key) is kept:
            del self._kept.by_host[kept.key]


def _closed_by_peer(conn: http.client.HTTPConnection) -> bool:
    """Whether an idle kept connection was closed by the server (or is otherwise unusable).

    An idle connection has nothing to read; readable means the server closed it (or sent
    something unasked), and a request sent on it could be lost without an answer.
    """
    sock = conn.sock
    if sock is None:
        return False  # not connected yet: the next request connects
    poller = select.poll()
    try:
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError):  # closed under us
        return True
