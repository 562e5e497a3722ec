"""Socket Mode: the websocket Bolt listens on, event envelopes, their acks and forced disconnects.

Envelopes are written to a socket the moment they are published (no polling, no
batching), because the project's benchmark times a command from the control API
to the bot's ack. With no socket connected they wait in order and go out as soon
as one connects, as Slack holds events during a reconnect. Each envelope's send
and ack times are kept for benchmarks to read.

Several open sockets of the app (up to Slack's 10; several bot processes, or one
during a reconnect) share the events as Slack shares them: each envelope goes to ONE
socket, taken in turn (round robin) among those not told to reconnect. An Events API
envelope not acked within `ack_timeout` seconds (Slack: 3) is delivered again, in a
new envelope with the same payload (the same `event_id`), `retry_attempt` 1, 2, 3 and
`retry_reason` "timeout", to the next socket in turn that has not had it yet (when
there is one: a frozen process keeps its socket open, so the same one again could
be as deaf): the first retry at once, the next two `retry_delays` later (Slack: 1
and 5 minutes),
until one attempt is acked. So an app whose process died or froze with events on its
socket still gets them on another, and one that was only slow gets them twice: an app
must answer each `event_id` once. Interactive envelopes (button clicks) are not
redelivered, as Slack does not.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from stat_bot.integrations.slack_emulator.workspace import APP_ID, SlackError

log = logging.getLogger(__name__)

DISCONNECT_KINDS = ("message", "close", "drop")
# After a `disconnect` message Slack closes the old socket itself about 10 s later.
DISCONNECT_GRACE = 10.0
MAX_RECORDS = 200_000
# Slack's: an envelope not acked in 3 s is retried at once, then after 1 and 5 minutes.
ACK_TIMEOUT = 3.0
RETRY_DELAYS = (0.0, 60.0, 300.0)


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
    retry_attempt: int = 0
    retry_reason: str = ""
    first: str = ""  # the envelope id of the event's first delivery (its own, for that one)

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
            "retry_attempt": self.retry_attempt,
            "retry_reason": self.retry_reason,
            "first_envelope_id": self.first or self.envelope_id,
        }


class SocketModeHub:
    """All Socket Mode connections of the app, and the envelopes sent over them."""

    def __init__(
        self,
        app_id: str = APP_ID,
        host_name: str = "slack-emulator-1",
        *,
        ack_timeout: float = ACK_TIMEOUT,
        retry_delays: tuple[float, ...] = RETRY_DELAYS,
    ) -> None:
        self.app_id = app_id
        self.host_name = host_name
        self.connections: OrderedDict[int, Connection] = OrderedDict()
        self.total_connections = 0
        self.pending: deque[tuple[EnvelopeRecord, str]] = deque()
        self.records: OrderedDict[str, EnvelopeRecord] = OrderedDict()
        self.ack_waiters: dict[str, asyncio.Future[float]] = {}
        self._tickets: set[str] = set()
        self.ack_timeout = ack_timeout
        self.retry_delays = retry_delays  # one per retry: len() is how many retries
        self._turn = 0  # the round robin's position among the open sockets
        self._timers: dict[str, asyncio.TimerHandle] = {}  # first envelope id -> next retry
        self._acked_events: set[str] = set()  # first envelope ids of events acked once
        self._payloads: dict[str, dict[str, Any]] = {}  # first envelope id -> unacked event
        self._tried: dict[str, set[int]] = {}  # first envelope id -> sockets it went to
        # Called with each envelope's record when first acked (a slash command's answer).
        self.on_ack: Callable[[EnvelopeRecord], None] | None = None

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
            first = record.first or record.envelope_id
            self._acked_events.add(first)
            self._payloads.pop(first, None)
            self._tried.pop(first, None)
            timer = self._timers.pop(first, None)
            if timer is not None:
                timer.cancel()
            if self.on_ack is not None:  # before any waiter resumes: what the ack caused is done
                try:
                    self.on_ack(record)
                except Exception:
                    log.exception("handling the ack of envelope %s failed", record.envelope_id)
            waiter = self.ack_waiters.pop(first, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(now)

    async def wait_acked(self, record: EnvelopeRecord, timeout: float) -> bool:
        """Until some delivery of `record`'s event is acked (True) or `timeout` s pass (False)."""
        if (record.first or record.envelope_id) in self._acked_events:
            return True
        first = record.first or record.envelope_id
        waiter = self.ack_waiters.setdefault(first, asyncio.get_running_loop().create_future())
        try:
            await asyncio.wait_for(asyncio.shield(waiter), timeout)
        except TimeoutError:
            return False
        finally:
            self.ack_waiters.pop(first, None)
        return True

    async def _flush_pending(self, conn: Connection) -> None:
        while self.pending:
            record, text = self.pending.popleft()
            if not await self._send(conn, record, text):
                self.pending.appendleft((record, text))
                return

    # -- publishing --------------------------------------------------------------------

    async def publish(
        self,
        payload: dict[str, Any],
        kind: str = "events_api",
        *,
        retry_of: EnvelopeRecord | None = None,
        attempt: int = 0,
        envelope_id: str | None = None,
    ) -> EnvelopeRecord:
        """Wrap `payload` in an envelope and write it to a socket now, or queue it for the next.

        `retry_of`: the event's first envelope, when this is its `attempt`-th redelivery.
        `envelope_id`: chosen by the caller, who must know it before the ack can arrive.
        """
        envelope_id = envelope_id or str(uuid.uuid4())
        record = EnvelopeRecord(
            envelope_id=envelope_id,
            type=kind,
            # An event's type, or an interaction's (`block_actions`).
            event_type=payload.get("event", {}).get("type", "")
            or str(payload.get("type", "") or kind),
            event_id=payload.get("event_id", ""),
            published=time.time(),
            event_ts=payload.get("event", {}).get("ts"),
            retry_attempt=attempt,
            retry_reason="timeout" if attempt else "",
            first=retry_of.envelope_id if retry_of is not None else "",
        )
        if kind == "events_api" and retry_of is None:
            self._payloads[envelope_id] = payload  # kept to deliver again until acked
        self.records[envelope_id] = record
        while len(self.records) > MAX_RECORDS:
            _, evicted = self.records.popitem(last=False)
            self._acked_events.discard(evicted.envelope_id)
            self._payloads.pop(evicted.envelope_id, None)
            self._tried.pop(evicted.envelope_id, None)
        text = json.dumps(
            {
                "envelope_id": envelope_id,
                "type": kind,
                # Slack lets an ack carry an answer only where one is shown (a command's).
                "accepts_response_payload": kind == "slash_commands",
                "retry_attempt": record.retry_attempt,
                "retry_reason": record.retry_reason,
                "payload": payload,
            }
        )
        if self.pending:
            self.pending.append((record, text))
            return record
        targets = self._targets()
        if retry_of is not None:  # sockets that have not had this event first
            tried = self._tried.get(retry_of.envelope_id, set())
            targets.sort(key=lambda c: c.id in tried)
        for conn in targets:
            if await self._send(conn, record, text):
                return record
        self.pending.append((record, text))
        return record

    def _targets(self) -> list[Connection]:
        """The open sockets starting at the next one's turn, never one told to reconnect.

        Round robin, as Slack spreads events over an app's connections. A client that
        got a `disconnect` message closes that socket as soon as its replacement is
        open, and websocket-client drops frames that arrive while it closes; so new
        envelopes go to the others, or wait for the replacement.
        """
        open_ = [c for c in self.connections.values() if not c.draining]
        if not open_:
            return []
        start = self._turn % len(open_)
        self._turn += 1
        return open_[start:] + open_[:start]

    # -- redelivery ----------------------------------------------------------------------

    def _arm_retry(self, record: EnvelopeRecord) -> None:
        """After `ack_timeout` s without an ack, deliver the event again (Events API only)."""
        first = record.first or record.envelope_id
        if record.type != "events_api" or first in self._acked_events:
            return
        if record.retry_attempt >= len(self.retry_delays):
            self._payloads.pop(first, None)  # the last try: Slack gives up on it too
            self._tried.pop(first, None)
            return
        old = self._timers.pop(first, None)
        if old is not None:
            old.cancel()
        delay = self.ack_timeout + self.retry_delays[record.retry_attempt]
        loop = asyncio.get_running_loop()
        self._timers[first] = loop.call_later(
            delay, lambda: asyncio.ensure_future(self._retry(record))
        )

    async def _retry(self, record: EnvelopeRecord) -> None:
        first_id = record.first or record.envelope_id
        self._timers.pop(first_id, None)
        first = self.records.get(first_id)
        payload = self._payloads.get(first_id)
        if first is None or payload is None or first_id in self._acked_events:
            return  # acked meanwhile, or forgotten by a reset
        log.info(
            "envelope %s of event %s not acked in %g s: retry %d",
            record.envelope_id,
            record.event_id,
            self.ack_timeout,
            record.retry_attempt + 1,
        )
        await self.publish(payload, record.type, retry_of=first, attempt=record.retry_attempt + 1)

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
        if record.type == "events_api":
            self._tried.setdefault(record.first or record.envelope_id, set()).add(conn.id)
        self._arm_retry(record)
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

    def _cancel_retries(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()

    async def close_all(self) -> None:
        """Close every socket, so the server can stop without waiting on open handlers."""
        self._cancel_retries()
        for conn in list(self.connections.values()):
            self.connections.pop(conn.id, None)
            if conn.closer is not None:
                conn.closer.cancel()
            with contextlib.suppress(ConnectionError, RuntimeError):
                await conn.ws.close(code=1001, message=b"server shutdown")

    def reset(self) -> None:
        """Forget envelopes, their timings and retries; open sockets stay connected."""
        self._cancel_retries()
        self.pending.clear()
        self.records.clear()
        self._acked_events.clear()
        self._payloads.clear()
        self._tried.clear()

    def stats(self) -> dict[str, int]:
        return {
            "connected": len(self.connections),
            "total": self.total_connections,
            "pending": len(self.pending),
        }
