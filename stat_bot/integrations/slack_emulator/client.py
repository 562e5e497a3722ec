"""A small synchronous client of the control API, for tests and a terminal chat console.

It ignores proxy variables on purpose: the emulator is always reached directly,
and a corporate HTTP_PROXY would otherwise swallow loopback calls.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class EmulatorError(Exception):
    """The control API refused a request; `code` is its error, e.g. `channel_not_found`."""

    def __init__(self, status: int, code: str, detail: str = "") -> None:
        super().__init__(f"HTTP {status} {code}" + (f": {detail}" if detail else ""))
        self.status = status
        self.code = code
        self.detail = detail


def wait_for(
    fetch: Callable[[], T],
    pick: Callable[[T], R | None],
    *,
    timeout: float = 10.0,
    interval: float = 0.02,
    what: str = "a condition",
) -> R:
    """Poll `fetch` until `pick(result)` is truthy and return that; else fail with what was seen."""
    deadline = time.monotonic() + timeout
    while True:
        seen = fetch()
        found = pick(seen)
        if found:
            return found
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"gave up after {timeout:g} s waiting for {what}; last seen: {seen!r}"
            )
        time.sleep(interval)


class EmulatorClient:
    """Play the humans, read what the bot wrote, inject faults: everything under `/_emulator/`."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _call(
        self,
        verb: str,
        path: str,
        body: Any = None,
        query: dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        url = f"{self.url}/_emulator/{path}"
        if query:
            url += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            url, data=data, method=verb, headers={"Content-Type": "application/json"}
        )
        try:
            with _OPENER.open(request, timeout=timeout or self.timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            raw = error.read()
            try:
                answer = json.loads(raw)
            except ValueError:
                answer = {"error": raw.decode(errors="replace")}
            raise EmulatorError(
                error.code, answer.get("error", "error"), answer.get("detail", "")
            ) from None

    # -- the humans --------------------------------------------------------------------

    def post(
        self,
        user: str,
        channel: str,
        text: str,
        thread_ts: str | None = None,
        *,
        wait_ack: bool = False,
        attachments: list[dict[str, Any]] | None = None,
        blocks: list[dict[str, Any]] | None = None,
    ) -> tuple[str, str]:
        """Post as `user` (id or name) to a channel (id, name, #name, or `dm`); (channel, ts).

        `wait_ack`: return only once the app has acked the events the message caused.
        `attachments` and `blocks`: another app's bot user (add_user(is_bot=True)) posting
        as a paging tool's Slack app does.
        """
        body: dict[str, Any] = {
            "user": user,
            "channel": channel,
            "text": text,
            "thread_ts": thread_ts,
            "wait_ack": wait_ack,
        }
        if attachments is not None:
            body["attachments"] = attachments
        if blocks is not None:
            body["blocks"] = blocks
        answer = self._call("POST", "messages", body)
        return answer["channel"], answer["ts"]

    def click(
        self,
        user: str,
        channel: str,
        ts: str,
        action_id: str | None = None,
        *,
        value: str | None = None,
        index: int | None = None,
        option: str | None = None,
        select_user: str | None = None,
        wait_ack: bool = False,
    ) -> dict[str, Any]:
        """`user` uses an element of the message `ts` (by `action_id`, or its `index`).

        A button is clicked; a static_select or overflow menu is set to the option whose
        value is `option`; a users_select to `select_user` (id or name). The app gets a
        Socket Mode `interactive` envelope with a `block_actions` payload whose trigger_id
        (also in the answer) views.open accepts; `wait_ack`: return once the app has
        acked it (Slack wants that within 3 s).
        """
        body = {
            "user": user,
            "channel": channel,
            "ts": ts,
            "action_id": action_id,
            "value": value,
            "index": index,
            "option": option,
            "select_user": select_user,
            "wait_ack": wait_ack,
        }
        return self._call("POST", "click", body)

    def react(
        self, user: str, channel: str, ts: str, name: str, *, wait_ack: bool = False
    ) -> dict[str, Any]:
        """`user` adds the reaction `name` to the message `ts`; the app gets `reaction_added`."""
        body = {"user": user, "channel": channel, "ts": ts, "name": name, "wait_ack": wait_ack}
        return self._call("POST", "react", body)

    def command(
        self, user: str, channel: str, command: str, text: str = "", *, wait_ack: bool = False
    ) -> dict[str, Any]:
        """`user` types `command text` in `channel`: a Socket Mode `slash_commands` envelope.

        Answers `envelope_id`, `trigger_id`, `response_url`; with `wait_ack`, also `acked`
        and the ack's payload as `response` (its text/blocks are shown to the user alone:
        see `ephemerals`).
        """
        body = {
            "user": user,
            "channel": channel,
            "command": command,
            "text": text,
            "wait_ack": wait_ack,
        }
        return self._call("POST", "command", body)

    def redeliver(self, channel: str, ts: str) -> int:
        """Send a stored message's events to the app again (a Slack redelivery); how many."""
        return self._call("POST", "redeliver", {"channel": channel, "ts": ts})["envelopes"]

    def edit(
        self,
        channel: str,
        ts: str,
        text: str,
        *,
        attachments: list[dict[str, Any]] | None = None,
        blocks: list[dict[str, Any]] | None = None,
    ) -> None:
        """Edit a message as its author would (a bot's attachments and blocks too)."""
        body: dict[str, Any] = {"channel": channel, "ts": ts, "text": text}
        if attachments is not None:
            body["attachments"] = attachments
        if blocks is not None:
            body["blocks"] = blocks
        self._call("POST", "edit", body)

    def add_user(
        self,
        name: str,
        *,
        is_restricted: bool = False,
        is_ultra_restricted: bool = False,
        is_admin: bool = False,
        real_name: str = "",
        is_bot: bool = False,
    ) -> dict[str, Any]:
        """A new member; `is_bot`: another app's bot user (its `profile.bot_id` is set)."""
        body = {
            "name": name,
            "is_restricted": is_restricted,
            "is_ultra_restricted": is_ultra_restricted,
            "is_admin": is_admin,
            "real_name": real_name,
            "is_bot": is_bot,
        }
        return self._call("POST", "users", body)["user"]

    def add_channel(
        self,
        name: str,
        *,
        is_private: bool = False,
        members: list[str] | None = None,
        is_archived: bool = False,
    ) -> dict[str, Any]:
        body = {
            "name": name,
            "is_private": is_private,
            "members": members,
            "is_archived": is_archived,
        }
        return self._call("POST", "channels", body)["channel"]

    # -- looking -----------------------------------------------------------------------

    def messages(
        self,
        channel: str,
        thread_ts: str | None = None,
        after: str | None = None,
        user: str | None = None,
    ) -> list[dict[str, Any]]:
        """Top-level messages of a channel, or one thread (parent first); oldest first."""
        query = {"channel": channel, "thread_ts": thread_ts, "after": after, "user": user}
        return self._call("GET", "messages", query=query)["messages"]

    def ephemerals(
        self, user: str | None = None, channel: str | None = None
    ) -> list[dict[str, Any]]:
        """Messages shown to one user alone, oldest first: channel, ephemeral_to, ts, text,
        blocks, source (command_ack, response_url, chat.postEphemeral), command, replaced."""
        query = {"user": user, "channel": channel}
        return self._call("GET", "ephemerals", query=query)["ephemerals"]

    def views(
        self, user: str | None = None, callback_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Modals the app opened (views.open's view plus `user`, `trigger_id`), oldest first."""
        query = {"user": user, "callback_id": callback_id}
        return self._call("GET", "views", query=query)["views"]

    def file_content(self, file_id: str) -> bytes:
        request = urllib.request.Request(f"{self.url}/_emulator/files/{file_id}")
        try:
            with _OPENER.open(request, timeout=self.timeout) as response:
                return response.read()
        except urllib.error.HTTPError as error:
            raise EmulatorError(error.code, "file_not_found", file_id) from None

    def acks(
        self, since: float | None = None, event_type: str | None = None
    ) -> list[dict[str, Any]]:
        """Envelopes published (after `since`): event_type, published, sent, acked (time.time()).

        A redelivery is an envelope of its own, with `retry_attempt` > 0, `retry_reason`
        and `first_envelope_id`, the envelope of the event's first delivery.
        """
        query = {"since": since, "event_type": event_type}
        return self._call("GET", "acks", query=query)["envelopes"]

    def connections(self) -> dict[str, int]:
        """`connected` now, `total` ever, `pending` envelopes waiting for a socket."""
        answer = self._call("GET", "connections")
        return {k: answer[k] for k in ("connected", "total", "pending")}

    def calls(self, method: str | None = None) -> list[dict[str, Any]]:
        """Recent Web API calls (method, args without token, ok, error), oldest first."""
        return self._call("GET", "calls", query={"method": method})["calls"]

    def feed_cursor(self) -> int:
        """Where the feed ends now: pass it to `feed` to see only what happens from here on."""
        return self._call("GET", "feed", query={"tail": 1})["cursor"]

    def feed(self, cursor: int = 0, wait: float = 0.0) -> tuple[list[dict[str, Any]], int]:
        """What happened after `cursor` (waiting up to `wait` s); and the next cursor.

        Each event: kind, channel, channel_name (None in a DM), names {id: name}, and
        mostly `user` (who did it). Kinds message, edit, reaction, pin and ephemeral carry
        `message` (as `messages` shows it; files carry a text `preview`); a reaction has
        `reaction`, an ephemeral `ephemeral_to`. Also channel_created, channel_archived,
        topic (`which`: topic/purpose, `value`), member_joined (`users`), view_opened
        (`view`: id, callback_id, title, blocks).
        """
        query = {"cursor": cursor, "wait": wait}
        answer = self._call("GET", "feed", query=query, timeout=self.timeout + wait)
        return answer["events"], answer["cursor"]

    # -- breaking things ---------------------------------------------------------------

    def rate_limit(self, count: int = 1, retry_after: int = 1, methods: list[str] | None = None):
        """The next `count` matching Web API calls answer HTTP 429 with Retry-After."""
        spec = {"count": count, "retry_after": retry_after, "methods": methods}
        self._call("POST", "faults", {"rate_limit": spec})

    def server_error(self, count: int = 1, status: int = 500, methods: list[str] | None = None):
        """The next `count` matching Web API calls answer HTTP `status` (500, 503...)."""
        spec = {"count": count, "status": status, "methods": methods}
        self._call("POST", "faults", {"server_error": spec})

    def disconnect(self, kind: str) -> int:
        """`message`, `close` or `drop` every socket; how many there were."""
        return self._call("POST", "faults", {"disconnect": kind})["disconnected"]

    def socket_mode(
        self,
        *,
        ack_timeout: float | None = None,
        retry_delays: list[float] | None = None,
        trigger_ttl: float | None = None,
    ) -> dict[str, Any]:
        """Change (or, without arguments, read) when unacked envelopes are delivered again.

        `ack_timeout`: seconds an Events API envelope may go unacked (Slack: 3);
        `retry_delays`: one delay per retry after that (Slack: [0, 60, 300]; [] for none);
        `trigger_ttl`: seconds after delivery a trigger_id still opens a view (Slack: 3).
        """
        body: dict[str, Any] = {}
        if ack_timeout is not None:
            body["ack_timeout"] = ack_timeout
        if retry_delays is not None:
            body["retry_delays"] = retry_delays
        if trigger_ttl is not None:
            body["trigger_ttl"] = trigger_ttl
        answer = self._call("POST", "socket_mode", body)
        keys = ("ack_timeout", "retry_delays", "trigger_ttl")
        return {k: answer[k] for k in keys}

    def reset(self) -> None:
        self._call("POST", "reset", {})

    # -- waiting -----------------------------------------------------------------------

    def wait_for_message(
        self,
        channel: str,
        predicate: Callable[[dict[str, Any]], Any],
        *,
        thread_ts: str | None = None,
        after: str | None = None,
        timeout: float = 10.0,
    ) -> dict[str, Any]:
        """The first message (of the channel or the thread) for which `predicate` is true."""

        def pick(found: list[dict[str, Any]]) -> dict[str, Any] | None:
            return next((m for m in found if predicate(m)), None)

        return wait_for(
            lambda: self.messages(channel, thread_ts=thread_ts, after=after),
            pick,
            timeout=timeout,
            what=f"a matching message in {channel}" + (f" thread {thread_ts}" if thread_ts else ""),
        )

    def wait_for_reply(
        self,
        channel: str,
        thread_ts: str,
        predicate: Callable[[dict[str, Any]], Any] | None = None,
        timeout: float = 10.0,
    ) -> dict[str, Any]:
        """The first reply in the thread matching `predicate` (default: any reply by a bot)."""
        wanted = predicate or (lambda m: m["bot_id"])
        return self.wait_for_message(
            channel,
            lambda m: m["ts"] != thread_ts and wanted(m),
            thread_ts=thread_ts,
            timeout=timeout,
        )

    def wait_for_ephemeral(
        self,
        predicate: Callable[[dict[str, Any]], Any] | None = None,
        *,
        user: str | None = None,
        channel: str | None = None,
        timeout: float = 10.0,
    ) -> dict[str, Any]:
        """The first ephemeral message (to `user`, in `channel`) for which `predicate` is true."""
        wanted = predicate or (lambda e: True)
        return wait_for(
            lambda: self.ephemerals(user, channel),
            lambda found: next((e for e in found if wanted(e)), None),
            timeout=timeout,
            what="an ephemeral message" + (f" to {user}" if user else ""),
        )

    def wait_for_view(
        self,
        predicate: Callable[[dict[str, Any]], Any] | None = None,
        *,
        user: str | None = None,
        callback_id: str | None = None,
        timeout: float = 10.0,
    ) -> dict[str, Any]:
        """The first modal opened (for `user`, with `callback_id`) matching `predicate`."""
        wanted = predicate or (lambda v: True)
        return wait_for(
            lambda: self.views(user, callback_id),
            lambda found: next((v for v in found if wanted(v)), None),
            timeout=timeout,
            what="a modal" + (f" {callback_id!r}" if callback_id else "") + " to open",
        )

    def wait_for_connections(
        self, *, total: int = 1, connected: int = 1, timeout: float = 10.0
    ) -> dict[str, int]:
        """Once at least `total` sockets have ever connected and `connected` are open now."""
        return wait_for(
            self.connections,
            lambda c: c if c["total"] >= total and c["connected"] >= connected else None,
            timeout=timeout,
            what=f"{connected} open sockets and {total} ever",
        )

    def wait_for_ack(
        self, predicate: Callable[[dict[str, Any]], Any], timeout: float = 10.0
    ) -> dict[str, Any]:
        """The first acked envelope for which `predicate` is true."""
        return wait_for(
            self.acks,
            lambda found: next((e for e in found if e["acked"] and predicate(e)), None),
            timeout=timeout,
            what="an acked envelope",
        )
