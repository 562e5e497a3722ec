"""Socket Mode with a short read timeout, so reconnects and shutdowns never stall for 10 s.

slack-sdk's websocket-client adapter runs each connection with websocket-client's
default select() timeout of 10 s. When a connection is replaced (Slack's
`disconnect` message) or closed (shutdown), the old socket is closed from another
thread while the reader thread sits in that select(), which on Linux does not
wake up: the new connection waits up to 10 s for the reader thread, and events
wait with it. Passing `ping_timeout` shortens the select() to that many seconds
and, as a bonus, ends a connection whose pongs stop coming (a silent network
drop) instead of waiting for TCP to notice.

It also acks each Events API envelope the moment it arrives, on the socket's
reader thread, instead of after it has waited for a worker thread and gone
through Bolt's middleware. Bolt acks events before running listeners anyway
(nothing is said in an events ack), so the meaning is unchanged; but under a
burst of commands the ack no longer queues behind the handling of earlier ones,
so Slack never sees a slow app and never redelivers.

And it reads text frames without websocket-client's UTF-8 check, which walks
every byte of every frame in pure Python (about 0.3 ms for a 1 KB envelope, on the
one reader thread every event passes through: a third of that thread's CPU).
`bytes.decode` checks the same thing in C, first thing in the connection's message
callback (before slack-sdk's own, whose debug logging expects text); a frame that is
not UTF-8 is refused there (logged by the client, not acked, so Slack delivers it
again), where websocket-client would have dropped the whole connection.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections import OrderedDict
from typing import Any

from slack_bolt import App
from slack_bolt.adapter.socket_mode.websocket_client import SocketModeHandler
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.socket_mode.websocket_client import SocketModeClient

REMEMBERED_ACKS = 1000


class PromptSocketModeClient(SocketModeClient):
    """SocketModeClient whose connections use `ping_timeout` (see the module docstring)."""

    def __init__(self, *args: object, ping_timeout: float = 2.0, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.ping_timeout = ping_timeout
        self._acked: OrderedDict[str, None] = OrderedDict()
        self._acked_lock = threading.Lock()

    def enqueue_message(self, message: str) -> None:
        if '"events_api"' in message:
            with contextlib.suppress(ValueError):
                envelope = json.loads(message)
                envelope_id = envelope.get("envelope_id")
                if (
                    envelope.get("type") == "events_api"
                    and envelope_id
                    and not envelope.get("accepts_response_payload")
                ):
                    self._ack_now(envelope_id)
        super().enqueue_message(message)

    def _ack_now(self, envelope_id: str) -> None:
        try:
            self.send_message(json.dumps({"envelope_id": envelope_id}))
        except Exception as error:  # Bolt's own ack, later, is the fallback
            self.logger.warning(f"early ack failed ({error}); Bolt will ack instead")
            return
        with self._acked_lock:
            self._acked[envelope_id] = None
            while len(self._acked) > REMEMBERED_ACKS:
                self._acked.popitem(last=False)

    def send_socket_mode_response(self, response: dict[str, Any] | SocketModeResponse) -> None:
        data = response.to_dict() if isinstance(response, SocketModeResponse) else response
        if set(data) == {"envelope_id"}:
            with self._acked_lock:
                if self._acked.pop(data["envelope_id"], False) is None:
                    return  # acked on arrival already
        super().send_socket_mode_response(response)

    def _run_current_session(self) -> None:
        # The parent's method, with ping_timeout and skip_utf8_validation added to run_forever.
        if self.current_session is None:
            return
        decode_text_frames(self.current_session)
        try:
            self.logger.info("Starting to receive messages from a new connection")
            self.current_session.run_forever(
                ping_interval=self.ping_interval,
                ping_timeout=self.ping_timeout,
                skip_utf8_validation=True,  # enqueue_message decodes (see the module docstring)
                http_proxy_host=self.http_proxy_host,
                http_proxy_port=self.http_proxy_port,
                http_proxy_auth=self.http_proxy_auth,
                proxy_type=self.proxy_type,
            )
            self.logger.info("Stopped receiving messages from a connection")
        except Exception as error:
            self.logger.exception(f"Failed to start or stop the current session: {error}")
            if self.current_session is not None:
                self.current_session.close()


def decode_text_frames(session: Any) -> None:
    """Have `session` (a WebSocketApp) hand its message callback text, not bytes.

    With skip_utf8_validation, websocket-client passes text frames on undecoded; every
    callback after this one (slack-sdk's, which logs the message at DEBUG with a text
    pattern, and the client's listeners) gets a str as before.
    """
    handle = session.on_message
    if getattr(handle, "decodes_text_frames", False):
        return  # this connection's callback is already wrapped

    def on_message(ws: Any, message: str | bytes) -> None:
        if isinstance(message, bytes):
            message = message.decode("utf-8")  # UnicodeDecodeError: refused, not acked
        handle(ws, message)

    on_message.decodes_text_frames = True  # type: ignore[attr-defined]
    session.on_message = on_message


class PromptSocketModeHandler(SocketModeHandler):
    """Bolt's websocket-client handler on a PromptSocketModeClient."""

    def __init__(
        self,
        app: App,
        app_token: str,
        *,
        ping_interval: float = 5.0,
        ping_timeout: float = 2.0,
        concurrency: int = 8,
    ) -> None:
        # Not super().__init__: it would build the stock client only to throw it away.
        self.app = app
        self.app_token = app_token
        self.client = PromptSocketModeClient(
            app_token=app_token,
            logger=app.logger,
            web_client=app.client,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            concurrency=concurrency,
        )
        self.client.socket_mode_request_listeners.append(self.handle)  # type: ignore[arg-type]
