"""Several Socket Mode connections of one app, as Slack treats them: each event goes to one
connection, in turn, and one not acked in time is delivered again (`retry_attempt`,
`retry_reason`), maybe on another connection, until some delivery is acked.

Raw websocket-client connections here, so the test decides what is acked and when;
tests/e2e/test_two_bots.py runs two real bot processes against the same behaviour.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import websocket
from slack_sdk import WebClient

from stat_bot.integrations.slack_emulator import (
    APP_TOKEN,
    BOT_TOKEN,
    BOT_USER_ID,
    EmulatorError,
    EmulatorThread,
    wait_for,
)
from stat_bot.settings import PROXY_VARIABLES


class RawSocket:
    """One Socket Mode connection that records every envelope and acks only when told to."""

    def __init__(self, emulator: EmulatorThread) -> None:
        url = WebClient(token=BOT_TOKEN, base_url=emulator.api_url).apps_connections_open(
            app_token=APP_TOKEN
        )["url"]
        self.ws = websocket.create_connection(url, timeout=10)
        hello = json.loads(self.ws.recv())
        assert hello["type"] == "hello"
        self.envelopes: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                text = self.ws.recv()
            except (websocket.WebSocketException, OSError):
                return
            if not text:
                return
            with self._lock:
                self.envelopes.append(json.loads(text))

    def seen(self) -> list[dict[str, Any]]:
        with self._lock:
            return [e for e in self.envelopes if e.get("type") == "events_api"]

    def ack(self, envelope: dict[str, Any]) -> None:
        self.ws.send(json.dumps({"envelope_id": envelope["envelope_id"]}))

    def close(self) -> None:
        self.ws.close()
        self._reader.join(5)


@pytest.fixture
def emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[EmulatorThread]:
    """STAT bot's subscriptions: a channel mention is one `app_mention` event."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    with EmulatorThread() as emulator:
        yield emulator


@pytest.fixture
def sockets(emulator: EmulatorThread) -> Iterator[list[RawSocket]]:
    opened: list[RawSocket] = []
    yield opened
    for s in opened:
        s.close()


def connect(emulator: EmulatorThread, sockets: list[RawSocket], count: int) -> list[RawSocket]:
    client = emulator.client()
    before = client.connections()["total"]
    for _ in range(count):
        sockets.append(RawSocket(emulator))
    client.wait_for_connections(total=before + count, connected=len(sockets))
    return sockets[-count:]


def test_events_are_spread_over_the_open_connections_in_turn(
    emulator: EmulatorThread, sockets: list[RawSocket]
) -> None:
    a, b, c = connect(emulator, sockets, 3)
    client = emulator.client()
    for n in range(9):
        client.post("admin", "general", f"@stat-bot ping {n}")
    wait_for(lambda: sum(len(s.seen()) for s in (a, b, c)), lambda n: n == 9, what="9 events")
    for s in (a, b, c):
        assert len(s.seen()) == 3  # each event on one connection, the three in turn
        for envelope in s.seen():
            s.ack(envelope)
    texts = sorted(e["payload"]["event"]["text"] for s in (a, b, c) for e in s.seen())
    assert texts == sorted(f"<@{BOT_USER_ID}> ping {n}" for n in range(9))
    records = wait_for(
        client.acks, lambda r: r if all(e["acked"] for e in r) else None, what="9 acks"
    )
    order = [r["connection"] for r in sorted(records, key=lambda r: r["published"])]
    assert len(set(order[:3])) == 3
    assert order == order[:3] * 3  # in turn: 1 2 3 1 2 3 ...


def test_an_unacked_event_is_delivered_again_on_another_connection_until_acked(
    emulator: EmulatorThread, sockets: list[RawSocket]
) -> None:
    client = emulator.client()
    assert client.socket_mode() == {
        "ack_timeout": 3.0,
        "retry_delays": [0.0, 60.0, 300.0],
        "trigger_ttl": 3.0,
    }
    client.socket_mode(ack_timeout=0.3, retry_delays=[0, 0.2, 0.2])
    a, b = connect(emulator, sockets, 2)
    client.post("admin", "general", "@stat-bot once please")
    both = lambda: a.seen() + b.seen()  # noqa: E731
    wait_for(both, lambda e: len(e) == 4, what="the first delivery and three retries")
    envelopes = sorted(both(), key=lambda e: e["retry_attempt"])
    assert [(e["retry_attempt"], e["retry_reason"]) for e in envelopes] == [
        (0, ""),
        (1, "timeout"),
        (2, "timeout"),
        (3, "timeout"),
    ]
    assert len({e["payload"]["event_id"] for e in envelopes}) == 1  # the same event
    assert len({e["envelope_id"] for e in envelopes}) == 4  # each in its own envelope
    assert a.seen()  # round robin: the retries went to both connections
    assert b.seen()
    records = [r for r in client.acks() if r["event_id"] == envelopes[0]["payload"]["event_id"]]
    assert [r["retry_attempt"] for r in records] == [0, 1, 2, 3]
    # The first retry goes to the socket that has not had the event yet.
    assert records[1]["connection"] != records[0]["connection"]
    assert {r["first_envelope_id"] for r in records} == {envelopes[0]["envelope_id"]}
    # Slack gives up after the third retry: nothing more comes.
    wait_for(lambda: len(both()), lambda n: n == 4, timeout=1.5, what="no fourth retry")
    with pytest.raises(AssertionError):
        wait_for(lambda: len(both()), lambda n: n > 4, timeout=1.0, what="a fourth retry")


def test_an_ack_of_any_delivery_stops_the_retries(
    emulator: EmulatorThread, sockets: list[RawSocket]
) -> None:
    client = emulator.client()
    client.socket_mode(ack_timeout=0.3, retry_delays=[0, 0.3, 0.3])
    a, b = connect(emulator, sockets, 2)
    _, ts = client.post("admin", "general", "@stat-bot ack the second")
    both = lambda: a.seen() + b.seen()  # noqa: E731
    retry = wait_for(
        both,
        lambda found: next((e for e in found if e["retry_attempt"] == 1), None),
        what="the first retry",
    )
    (a if retry in a.seen() else b).ack(retry)
    client.wait_for_ack(lambda r: r["retry_attempt"] == 1 and r["event_ts"] == ts)
    with pytest.raises(AssertionError):
        wait_for(lambda: len(both()), lambda n: n > 2, timeout=1.5, what="a second retry")


def test_a_dropped_connections_unacked_events_reach_the_survivor(
    emulator: EmulatorThread, sockets: list[RawSocket]
) -> None:
    """As when a bot's host dies with commands on its socket: they arrive on the other one."""
    client = emulator.client()
    client.socket_mode(ack_timeout=1.0, retry_delays=[0, 0.5, 0.5])
    a, b = connect(emulator, sockets, 2)
    for n in range(4):
        client.post("admin", "general", f"@stat-bot job {n}")
    wait_for(lambda: len(a.seen()) + len(b.seen()), lambda n: n == 4, what="4 events")
    lost = sorted(e["payload"]["event_id"] for e in a.seen())
    assert len(lost) == 2
    for envelope in b.seen():
        b.ack(envelope)
    a.close()  # never acked its two

    def redelivered(found: list[dict[str, Any]]) -> list[str] | None:
        ids = sorted({e["payload"]["event_id"] for e in found if e["retry_attempt"]})
        return ids if ids == lost else None

    wait_for(b.seen, redelivered, what="a's two events on b")
    assert {e["retry_reason"] for e in b.seen() if e["retry_attempt"]} == {"timeout"}


def test_socket_mode_settings_are_checked(emulator: EmulatorThread) -> None:
    client = emulator.client()
    with pytest.raises(EmulatorError) as refused:
        client.socket_mode(ack_timeout=0)
    assert refused.value.code == "invalid_arguments"
    with pytest.raises(EmulatorError):
        client.socket_mode(retry_delays=[-1])
    assert client.socket_mode(retry_delays=[])["retry_delays"] == []
