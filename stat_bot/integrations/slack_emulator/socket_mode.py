"""Socket Mode: the websocket Bolt listens on, event envelopes, their acks and forced disconnects.

Envelopes are written to a socket the moment they are published (no polling, no
batching), because the project's benchmark times a command from the control API
to the bot's ack. With no socket connected they wait in order and go out as soon
as one connects, as Slack holds events during a reconnect. Each envelope's send
and ack times are kept for benchmarks to read.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from stat_bot.integrations.slack_emulator.workspace import APP_ID, SlackError

log = logging.getLogger(__name__)

DISCONNECT_KINDS = ("message", "close", "drop")
# After a `disconnect` message Slack closes the old socket itself about 10 s later.
DISCONNECT_GRACE = 10.0
MAX_RECORDS = 200_000


@dataclass
class Connection:
    """One open websocket; `draining` once told to reconnect, so new envelopes avoid it."""

    id: int
    ws: web.WebSocketResponse
    transport: asyncio.BaseTransport | None
    opened: float = field(default_factory=time.time)
    draining: bool = False
    closer: asyncio.TimerHandle | None = None


@dataclass
class EnvelopeRecord:
    """When one envelope was published, written to a socket and acked (time.time() floats)."""

    envelope_id: str
    type: str
    event_type: str
    event_id: str
    published: float
    event_ts: str | None = None  # the message's ts, to match an ack to the command it carried
    sent: float | None = None
    acked: float | None = None
    connection: int | None = None
    ack_payload: Any = None

    def to_api(self) -> dict[str, Any]:
        return {
            "envelope_id": self.envelope_id,
            "type": self.type,
            "event_type": self.event_type,
            "event_id": self.event_id,
            "event_ts": self.event_ts,
            "published": self.published,
            "sent": self.sent,
            "acked": self.acked,
            "connection": self.connection,
            "ack_payload": self.ack_payload,
        }


class SocketModeHub:
    """All Socket Mode connections of the app, and the envelopes sent over them."""

    def __init__(self, app_id: str = APP_ID, host_name: str = "slack-emulator-1") -> None:
        self.app_id = app_id
        self.host_name = host_name
        self.connections: OrderedDict[int, Connection] = OrderedDict()
        self.total_connections = 0
        self.pending: deque[tuple[EnvelopeRecord, str]] = deque()
        self.records: OrderedDict[str, EnvelopeRecord] = OrderedDict()
        self.ack_waiters: dict[str, asyncio.Future[float]] = {}
        self._tickets: set[str] = set()

    # -- connecting --------------------------------------------------------------------

    def issue_url(self, base_ws_url: str) -> str:
        """A single-use websocket URL, as `apps.connections.open` hands out."""
        ticket = uuid.uuid4().hex
        self._tickets.add(ticket)
        return f"{base_ws_url}/socket-mode?ticket={ticket}&app_id={self.app_id}"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """The websocket endpoint: hello, queued envelopes, then acks until it closes."""
        ticket = request.query.get("ticket", "")
        if ticket not in self._tickets:
            raise web.HTTPUnauthorized(text="unknown or used ticket: call apps.connections.open")
        self._tickets.discard(ticket)
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self.total_connections += 1
        conn = Connection(self.total_connections, ws, request.transport)
        try:
            await ws.send_str(
                json.dumps(
                    {
                        "type": "hello",
                        "num_connections": len(self.connections) + 1,
                        "debug_info": {
                            "host": self.host_name,
                            "build_number": 1,
                            "approximate_connection_time": 18060,
                        },
                        "connection_info": {"app_id": self.app_id},
                    }
                )
            )
            await self._flush_pending(conn)
            self.connections[conn.id] = conn
            # Anything published while the queue drained went to `pending` too.
            await self._flush_pending(conn)
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    self._on_text(conn, msg.data)
                elif msg.type == WSMsgType.ERROR:
                    log.info("socket %s error: %s", conn.id, ws.exception())
        except (ConnectionError, RuntimeError) as exc:
            log.info("socket %s lost: %s", conn.id, exc)
        finally:
            self.connections.pop(conn.id, None)
            if conn.closer is not None:
                conn.closer.cancel()
        return ws

    def _on_text(self, conn: Connection, data: str) -> None:
        now = time.time()
        try:
            message = json.loads(data)
        except ValueError:
            log.warning("socket %s sent something that is not JSON: %.200s", conn.id, data)
            return
        envelope_id = message.get("envelope_id") if isinstance(message, dict) else None
        record = self.records.get(envelope_id or "")
        if record is None:
            log.warning("socket %s acked an unknown envelope: %.200s", conn.id, data)
            return
        if record.acked is None:
            record.acked = now
            record.ack_payload = message.get("payload")
            waiter = self.ack_waiters.pop(record.envelope_id, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(now)

    async def wait_acked(self, record: EnvelopeRecord, timeout: float) -> bool:
        """Until `record` is acked (True) or `timeout` seconds pass (False)."""
        if record.acked is not None:
            return True
        waiter = self.ack_waiters.setdefault(
            record.envelope_id, asyncio.get_running_loop().create_future()
        )
        try:
            await asyncio.wait_for(asyncio.shield(waiter), timeout)
        except TimeoutError:
            return False
        finally:
            self.ack_waiters.pop(record.envelope_id, None)
        return True

    async def _flush_pending(self, conn: Connection) -> None:
        while self.pending:
            record, text = self.pending.popleft()
            if not await self._send(conn, record, text):
                self.pending.appendleft((record, text))
                return

    # -- publishing --------------------------------------------------------------------

    async def publish(self, payload: dict[str, Any], kind: str = "events_api") -> EnvelopeRecord:
        """Wrap `payload` in an envelope and write it to a socket now, or queue it for the next."""
        envelope_id = str(uuid.uuid4())
        record = EnvelopeRecord(
            envelope_id=envelope_id,
            type=kind,
            # An event's type, or an interaction's (`block_actions`).
            event_type=payload.get("event", {}).get("type", "") or str(payload.get("type", "")),
            event_id=payload.get("event_id", ""),
            published=time.time(),
            event_ts=payload.get("event", {}).get("ts"),
        )
        self.records[envelope_id] = record
        while len(self.records) > MAX_RECORDS:
            self.records.popitem(last=False)
        text = json.dumps(
            {
                "envelope_id": envelope_id,
                "type": kind,
                "accepts_response_payload": False,
                "retry_attempt": 0,
                "retry_reason": "",
                "payload": payload,
            }
        )
        if self.pending:
            self.pending.append((record, text))
            return record
        for conn in self._targets():
            if await self._send(conn, record, text):
                return record
        self.pending.append((record, text))
        return record

    def _targets(self) -> list[Connection]:
        """Newest socket first, never one told to reconnect.

        A client that got a `disconnect` message closes that socket as soon as its
        replacement is open, and websocket-client drops frames that arrive while it
        closes; so new envelopes wait for the replacement instead.
        """
        return [c for c in reversed(self.connections.values()) if not c.draining]

    async def _send(self, conn: Connection, record: EnvelopeRecord, text: str) -> bool:
        if conn.ws.closed:
            return False
        record.sent = time.time()
        try:
            await conn.ws.send_str(text)
        except (ConnectionError, RuntimeError) as exc:
            log.info("socket %s refused envelope %s: %s", conn.id, record.envelope_id, exc)
            record.sent = None
            self.connections.pop(conn.id, None)
            return False
        record.connection = conn.id
        return True

    # -- faults and shutdown -----------------------------------------------------------

    async def disconnect(self, kind: str) -> int:
        """Force every open socket to go away in one of Slack's three ways; how many were hit."""
        if kind not in DISCONNECT_KINDS:
            raise SlackError("invalid_arguments", f"disconnect must be one of {DISCONNECT_KINDS}")
        conns = list(self.connections.values())
        loop = asyncio.get_running_loop()
        for conn in conns:
            if kind == "message":
                conn.draining = True
                notice = {
                    "type": "disconnect",
                    "reason": "refresh_requested",
                    "debug_info": {"host": self.host_name},
                }
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await conn.ws.send_str(json.dumps(notice))
                conn.closer = loop.call_later(
                    DISCONNECT_GRACE, lambda ws=conn.ws: asyncio.ensure_future(ws.close())
                )
            elif kind == "close":
                self.connections.pop(conn.id, None)
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await conn.ws.close(code=1001, message=b"server closing")
            else:
                self.connections.pop(conn.id, None)
                if conn.transport is not None:
                    conn.transport.abort()
        return len(conns)

    async def close_all(self) -> None:
        """Close every socket, so the server can stop without waiting on open handlers."""
        for conn in list(self.connections.values()):
            self.connections.pop(conn.id, None)
            if conn.closer is not None:
                conn.closer.cancel()
            with contextlib.suppress(ConnectionError, RuntimeError):
                await conn.ws.close(code=1001, message=b"server shutdown")

    def reset(self) -> None:
        """Forget envelopes and their timings; open sockets stay connected."""
        self.pending.clear()
        self.records.clear()

    def stats(self) -> dict[str, int]:
        return {
            "connected": len(self.connections),
            "total": self.total_connections,
            "pending": len(self.pending),
        }
