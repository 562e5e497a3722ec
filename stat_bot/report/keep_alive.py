"""A WebClient that keeps its connection to Slack open between calls.

slack-sdk's WebClient sends each Web API call through `urllib`, which opens a new
connection for every call and closes it after (it sends `Connection: close`): against
slack.com a TCP and TLS handshake per reaction, message and report. Against the local
emulator a `reactions.add` cost the caller 0.65-0.77 ms of CPU that way and 0.46-0.49 ms
on a kept connection, and the emulator 0.76-0.80 ms against 0.38-0.40 (BENCHMARKS.md).

Each thread keeps one connection per host. Everything else is urllib's, so slack-sdk's
retry handlers see what they always saw: an error while sending is a `URLError`, an
error while reading the answer is the socket's own (`RemoteDisconnected`,
`ConnectionResetError`, `TimeoutError`), and an answer of 400 or more is an `HTTPError`
carrying its status, headers and body. A connection the server closed while idle is
noticed before it is used (it reads as ready with nothing to read) and replaced; one
that fails mid-call is dropped, never used again. With a proxy (HTTPS_PROXY, or the
client's `proxy`) calls go through urllib as before.
"""

from __future__ import annotations

import http.client
import io
import select
import threading
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.request import Request

from slack_sdk import WebClient

Connection = http.client.HTTPConnection


class KeepAliveWebClient(WebClient):
    """WebClient whose calls reuse the calling thread's open connection to the API host."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._kept = threading.local()

    def _perform_urllib_http_request_internal(self, url: str, req: Request) -> dict[str, Any]:
        if self.proxy is not None or req.type not in ("http", "https"):
            return super()._perform_urllib_http_request_internal(url, req)
        conn = self._connection(req.type, req.host)
        headers = {name.title(): value for name, value in req.header_items()}
        headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        try:
            try:
                conn.request(req.get_method(), req.selector, req.data, headers)
            except OSError as error:
                raise URLError(error) from error
            response = conn.getresponse()
            body = response.read()
        except BaseException:
            self._forget(conn)
            raise
        if response.will_close:
            self._forget(conn)
        if response.status >= 400:  # as urllib: slack-sdk reads Retry-After and the body from it
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

    def _connection(self, scheme: str, host: str) -> Connection:
        """This thread's open connection to `host`, or a new one if it has none or it closed."""
        kept: dict[tuple[str, str], Connection] = self._kept.__dict__.setdefault("by_host", {})
        conn = kept.get((scheme, host))
        if conn is not None and _closed_by_peer(conn):
            self._forget(conn)
            conn = None
        if conn is None:
            if scheme == "https":
                conn = http.client.HTTPSConnection(host, timeout=self.timeout, context=self.ssl)
            else:
                conn = http.client.HTTPConnection(host, timeout=self.timeout)
            kept[(scheme, host)] = conn
        return conn

    def _forget(self, conn: Connection) -> None:
        conn.close()
        kept: dict[tuple[str, str], Connection] = self._kept.__dict__.get("by_host", {})
        for key, held in list(kept.items()):
            if held is conn:
                del kept[key]


def _closed_by_peer(conn: Connection) -> bool:
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
