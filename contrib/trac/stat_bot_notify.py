"""STAT bot notifications: a single-file Trac 1.6 plugin that sends ticket events to STAT bot.

Install: copy this file into the Trac environment's `plugins/` folder and add to trac.ini

    [stat_bot]
    url = https://stat-bot.example.org/trac
    secret = <the same value as TRAC_WEBHOOK_SECRET on STAT bot>
    timeout = 2

Trac loads it without further configuration (set `[components] stat_bot_notify.* =
disabled` to turn it off). On every ticket created, changed or deleted - from the web
forms, JSON-RPC, trac-admin or Python code - it POSTs a JSON event to `url`:

    {"event": "created" | "changed" | "deleted", "id": "<uuid4>", "ticket": 12,
     "fields": {every field of the ticket after the change, custom ones such as xname},
     "old_values": {the changed fields' previous values}, "comment": "...",
     "author": "alice", "time": "2025-01-31T09:15:00+00:00",
     "link": "https://trac.example.org/stat/ticket/12"}

signed in the header `X-Trac-Signature-256: sha256=<HMAC-SHA256 of the body with the
secret, in hex>`; `X-Trac-Event-Id` repeats the id, by which STAT bot ignores replays.
`link` needs `[trac] base_url`; without it the link is empty and STAT bot builds one
from its TRAC_URL.

It never breaks or slows Trac: events are queued in memory and sent in order by one
background thread, each with a short timeout and no retry; every failure is logged as a
warning in Trac's log (never the secret), and a full queue drops events rather than
wait. A process that exits (trac-admin) waits at most `timeout` + 1 seconds for the
events it queued. Proxies from the environment are not used: STAT bot is reached
directly; a user and password in the URL (https://user:password@host/trac) are sent
as basic auth, for a reverse proxy that wants them, and never logged. Only the
standard library is used, in the Python that runs Trac (3.6+).
"""

import atexit
import base64
import datetime
import hashlib
import hmac
import json
import os
import queue
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

from trac.config import FloatOption, Option
from trac.core import Component, implements
from trac.ticket.api import ITicketChangeListener
from trac.util.datefmt import datetime_now, utc

SECTION = "stat_bot"
SIGNATURE = "X-Trac-Signature-256"
EVENT_ID = "X-Trac-Event-Id"
USER_AGENT = "stat-bot-notify/1 (Trac plugin)"
MAX_PENDING = 1000  # events waiting to be sent; beyond that they are dropped, and logged
MIN_TIMEOUT, MAX_TIMEOUT = 0.1, 30.0


def _json_value(value):
    """A field value as JSON: datetimes in ISO 8601, None as null, everything else as text."""
    if value is None:
        return None
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    return str(value)


def _safe_url(url):
    """The URL for a log line: no user, password, query or fragment in it."""
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.netloc.rpartition("@")[2]
        return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))
    except ValueError:
        return "(an unreadable URL)"


def sign(secret, body):
    """The signature header's value for a body: `sha256=` and the HMAC-SHA256 in hex."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


class _Sender:
    """One background thread sending queued events in order; restarted after a fork."""

    def __init__(self, log):
        self._log = log
        self._queue = queue.Queue(MAX_PENDING)
        self._lock = threading.Lock()
        self._pending = 0
        self._idle = threading.Condition(self._lock)
        self._thread = None
        self._pid = None
        self._flush_timeout = 0.0
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        atexit.register(self.flush)

    def submit(self, url, secret, timeout, event):
        """Queue an event; never blocks. False (and a warning) when the queue is full."""
        self._ensure_thread()
        with self._lock:
            self._flush_timeout = timeout + 1.0
            try:
                self._queue.put_nowait((url, secret, timeout, event))
            except queue.Full:
                self._log.warning(
                    "STAT bot: %d events are waiting to be sent; dropped %s of ticket #%s",
                    MAX_PENDING,
                    event["event"],
                    event["ticket"],
                )
                return False
            self._pending += 1
        return True

    def flush(self, seconds=None):
        """Wait until every queued event is sent or `seconds` pass (default: timeout + 1)."""
        deadline = time.monotonic() + (self._flush_timeout if seconds is None else seconds)
        with self._idle:
            while self._pending and self._thread_alive():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return not self._pending

    def _thread_alive(self):
        return self._thread is not None and self._pid == os.getpid() and self._thread.is_alive()

    def _ensure_thread(self):
        with self._lock:
            if self._thread_alive():
                return
            if self._pid is not None and self._pid != os.getpid():
                # A forked child: the parent's thread did not come along, nor its events.
                self._queue = queue.Queue(MAX_PENDING)
                self._pending = 0
            self._pid = os.getpid()
            self._thread = threading.Thread(target=self._run, name="stat-bot-notify", daemon=True)
            self._thread.start()

    def _run(self):
        while True:
            url, secret, timeout, event = self._queue.get()
            try:
                self._send(url, secret, timeout, event)
            except Exception as error:  # never let the thread die
                self._log.warning(
                    "STAT bot: sending %s of ticket #%s failed: %s",
                    event["event"],
                    event["ticket"],
                    error.__class__.__name__,
                )
            finally:
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()

    def _send(self, url, secret, timeout, event):
        body = json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            SIGNATURE: sign(secret, body),
            EVENT_ID: event["id"],
        }
        parts = urllib.parse.urlsplit(url)
        if parts.username is not None:  # https://user:password@host/trac: basic auth
            credentials = "{}:{}".format(
                urllib.parse.unquote(parts.username), urllib.parse.unquote(parts.password or "")
            )
            headers["Authorization"] = "Basic " + base64.b64encode(
                credentials.encode("utf-8")
            ).decode("ascii")
            url = urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
        request = urllib.request.Request(url, data=body, method="POST", headers=headers)
        what = "{} of ticket #{}".format(event["event"], event["ticket"])
        try:
            with self._opener.open(request, timeout=timeout) as response:
                answer = response.read(4096)
                status = response.status
        except urllib.error.HTTPError as error:
            self._log.warning(
                "STAT bot refused %s: HTTP %s from %s: %s",
                what,
                error.code,
                _safe_url(url),
                _reason(error),
            )
            return
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            self._log.warning("STAT bot: could not send %s to %s: %s", what, _safe_url(url), reason)
            return
        self._log.debug("STAT bot took %s: HTTP %s %s", what, status, _answer(answer))


def _reason(error):
    """STAT bot's `error` text from a refusal, cut short; the status's reason otherwise."""
    try:
        body = error.read(4096)
    except Exception:
        body = b""
    return _answer(body) or error.reason


def _answer(body):
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return body[:200].decode("utf-8", "replace")
    if isinstance(data, dict):
        detail = data.get("error") or data.get("reason")
        if detail:
            return str(detail)[:300]
        return "posted" if data.get("posted") else "not posted: {}".format(data.get("reason"))
    return str(data)[:200]


class StatBotNotifier(Component):
    """Sends every ticket created, changed or deleted to STAT bot's `/trac` endpoint."""

    implements(ITicketChangeListener)

    url = Option(
        SECTION,
        "url",
        "",
        doc="STAT bot's `/trac` URL, such as https://stat-bot.example.org/trac. "
        "Empty: nothing is sent.",
    )
    secret = Option(
        SECTION,
        "secret",
        "",
        doc="The secret events are signed with: STAT bot's TRAC_WEBHOOK_SECRET. "
        "Empty: nothing is sent.",
    )
    timeout = FloatOption(
        SECTION,
        "timeout",
        2.0,
        doc="Seconds to wait for STAT bot per event (in a background thread; Trac never waits).",
    )

    def __init__(self):
        self._sender = _Sender(self.log)
        self._warned = None  # the last "notifications are off" warning given

    # ITicketChangeListener

    def ticket_created(self, ticket):
        self._notify("created", ticket, author=ticket["reporter"], when=ticket["time"])

    def ticket_changed(self, ticket, comment, author, old_values):
        self._notify(
            "changed",
            ticket,
            author=author,
            when=ticket["changetime"],
            comment=comment,
            old_values=old_values,
        )

    def ticket_deleted(self, ticket):
        self._notify("deleted", ticket, author=None, when=None)

    def ticket_comment_modified(self, ticket, cdate, author, comment, old_comment):
        """An edited comment is not news for the STAT channel."""

    def ticket_change_deleted(self, ticket, cdate, changes):
        """Nor is a change removed from the history."""

    # sending

    def _notify(self, kind, ticket, author, when, comment=None, old_values=None):
        """Build the event and queue it; any failure is a warning, never Trac's problem."""
        try:
            settings = self._settings()
            if settings is None:
                return
            event = self._event(kind, ticket, author, when, comment, old_values or {})
            self._sender.submit(settings[0], settings[1], settings[2], event)
        except Exception as error:
            self.log.warning(
                "STAT bot: %s of ticket #%s not sent: %s",
                kind,
                getattr(ticket, "id", "?"),
                error.__class__.__name__,
            )

    def _settings(self):
        """(url, secret bytes, timeout), or None after a warning (once) when not configured."""
        url = (self.url or "").strip()
        secret = (self.secret or "").strip()
        missing = [name for name, value in (("url", url), ("secret", secret)) if not value]
        if not missing and not url.startswith(("http://", "https://")):
            missing = ["url as http:// or https://"]
        if missing:
            warning = "STAT bot notifications are off: set {} in the [{}] section of trac.ini"
            warning = warning.format(" and ".join(missing), SECTION)
            if warning != self._warned:  # once, until the configuration changes
                self._warned = warning
                self.log.warning(warning)
            return None
        self._warned = None
        try:
            timeout = float(self.timeout)
        except Exception:  # ConfigurationError: not a number
            timeout = 2.0
        timeout = min(max(timeout, MIN_TIMEOUT), MAX_TIMEOUT)
        return url, secret.encode("utf-8"), timeout

    def _event(self, kind, ticket, author, when, comment, old_values):
        if when is None:
            when = datetime_now(utc)
        link = ""
        if (self.env.base_url or "").strip():
            link = self.env.abs_href.ticket(ticket.id)
        return {
            "event": kind,
            "id": str(uuid.uuid4()),
            "ticket": ticket.id,
            "fields": {name: _json_value(value) for name, value in ticket.values.items()},
            "old_values": {name: _json_value(value) for name, value in old_values.items()},
            "comment": comment or "",
            "author": author or "",
            "time": _json_value(when),
            "link": link,
        }
