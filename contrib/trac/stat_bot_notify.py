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

It never breaks or slows Trac, and a STAT bot that is down or restarting loses no event:
each event is written to a spool in the Trac environment (`db/stat-bot-spool.sqlite`,
shared by tracd and trac-admin) and sent from there in order by one background thread,
each try with a short timeout. An event STAT bot could not take (no connection, a time-
out, HTTP 5xx, 408 or 429) is tried again after 0.5 s, 1 s, 2 s... up to `retry_max`
seconds (default 60) until it is taken or `max_age` seconds (default a day) have
passed; other refusals (a wrong secret) are not retried. Every failure is a warning
in Trac's log (never the secret). The spool holds at most `spool_size` events (default
1000): beyond that the oldest is dropped, with a warning. A process that exits
(trac-admin) waits at most `timeout` + 1 seconds for the events it spooled; what is
left is sent by tracd (or the next process to change a ticket). STAT bot ignores an
event id it has already taken, so an event sent again after a lost answer counts
once. Proxies from the environment are not used: STAT bot is reached
directly; a user and password in the URL (https://user:password@host/trac) are sent
as basic auth, for a reverse proxy that wants them, and never logged. Only the
standard library is used, in the Python that runs Trac (3.6+).
"""

import atexit
import base64
import collections
import contextlib
import datetime
import hashlib
import hmac
import json
import os
import sqlite3
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
import weakref

from trac.config import FloatOption, IntOption, Option
from trac.core import Component, implements
from trac.ticket.api import ITicketChangeListener
from trac.util.datefmt import datetime_now, utc

SECTION = "stat_bot"
SIGNATURE = "X-Trac-Signature-256"
EVENT_ID = "X-Trac-Event-Id"
USER_AGENT = "stat-bot-notify/1 (Trac plugin)"
MAX_PENDING = 1000  # events spooled; beyond that the oldest are dropped, and logged
MIN_TIMEOUT, MAX_TIMEOUT = 0.1, 30.0
SPOOL = os.path.join("db", "stat-bot-spool.sqlite")  # in the Trac environment
RETRY_MIN = 0.5  # seconds before the first retry; doubles up to retry_max
DEFAULT_RETRY_MAX = 60.0
DEFAULT_MAX_AGE = 86400.0
POLL = 5.0  # seconds between looks at the spool when idle (events of other processes)
LEASE_EXTRA = 5.0  # an event is claimed for its timeout plus this, then free for anyone


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


class _Spool:
    """Events waiting to be sent: a small SQLite file in the Trac environment (db/).

    Shared by every process of the environment (tracd, trac-admin): each sends the
    oldest event first, claiming it for the length of one attempt so that two
    processes never send it at once. Kept in order: a later event waits while an
    earlier one is being retried.
    """

    def __init__(self, path):
        self.path = path
        self._made = False

    @contextlib.contextmanager
    def _transaction(self):
        if not self._made:
            folder = os.path.dirname(self.path)
            if not os.path.isdir(folder):
                os.makedirs(folder)
        conn = sqlite3.connect(self.path, timeout=10, isolation_level=None)
        try:
            if not self._made:
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS events ("
                    " seq INTEGER PRIMARY KEY AUTOINCREMENT, what TEXT NOT NULL,"
                    " url TEXT NOT NULL, timeout REAL NOT NULL, body BLOB NOT NULL,"
                    " signature TEXT NOT NULL, event_id TEXT NOT NULL, created REAL NOT NULL,"
                    " attempts INTEGER NOT NULL DEFAULT 0, next_try REAL NOT NULL DEFAULT 0,"
                    " claimed_until REAL NOT NULL DEFAULT 0)"
                )
                self._made = True
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        finally:
            conn.close()

    def exists(self):
        return os.path.exists(self.path)

    def add(self, what, url, timeout, body, signature, event_id, limit):
        """Spool one event; returns (its seq, what was dropped to stay within `limit`)."""
        with self._transaction() as conn:
            seq = conn.execute(
                "INSERT INTO events (what, url, timeout, body, signature, event_id, created)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (what, url, timeout, body, signature, event_id, time.time()),
            ).lastrowid
            dropped = [
                row[1]
                for row in conn.execute(
                    "SELECT seq, what FROM events ORDER BY seq DESC LIMIT -1 OFFSET ?",
                    (max(1, limit),),
                ).fetchall()
            ]
            if dropped:
                conn.execute(
                    "DELETE FROM events WHERE seq IN (SELECT seq FROM events"
                    " ORDER BY seq DESC LIMIT -1 OFFSET ?)",
                    (max(1, limit),),
                )
        return seq, dropped[::-1]

    def claim(self, now, max_age):
        """(the oldest event, now ours for one attempt, None) or (None, when to look again).

        Events older than `max_age` seconds are dropped here; their names come back in
        the third item so the caller can say so.
        """
        expired = []
        with self._transaction() as conn:
            rows = conn.execute(
                "SELECT seq, what FROM events WHERE created < ? ORDER BY seq", (now - max_age,)
            ).fetchall()
            if rows:
                expired = [what for _, what in rows]
                conn.execute("DELETE FROM events WHERE created < ?", (now - max_age,))
            row = conn.execute(
                "SELECT seq, what, url, timeout, body, signature, event_id, attempts,"
                " next_try, claimed_until FROM events ORDER BY seq LIMIT 1"
            ).fetchone()
            if row is None:
                return None, None, expired
            if row[9] > now:  # another process is sending it
                return None, row[9], expired
            if row[8] > now:  # waiting before its next try
                return None, row[8], expired
            conn.execute(
                "UPDATE events SET claimed_until = ? WHERE seq = ?",
                (now + row[3] + LEASE_EXTRA, row[0]),
            )
        return row, None, expired

    def done(self, seq):
        with self._transaction() as conn:
            conn.execute("DELETE FROM events WHERE seq = ?", (seq,))

    def retry(self, seq, attempts, next_try):
        with self._transaction() as conn:
            conn.execute(
                "UPDATE events SET attempts = ?, next_try = ?, claimed_until = 0 WHERE seq = ?",
                (attempts, next_try, seq),
            )
            return conn.execute("SELECT count(*) FROM events").fetchone()[0]

    def waiting(self, upto=None):
        """How many events are spooled (up to seq `upto`, if given)."""
        if not self.exists():
            return 0
        with self._transaction() as conn:
            if upto is None:
                return conn.execute("SELECT count(*) FROM events").fetchone()[0]
            return conn.execute("SELECT count(*) FROM events WHERE seq <= ?", (upto,)).fetchone()[0]


class _Sender:
    """One background thread sending spooled events in order; restarted after a fork."""

    def __init__(self, log, spool_path, env=None):
        self._log = log
        # The thread ends once its environment is gone (no retrying for nobody forever).
        self._env = weakref.ref(env) if env is not None else None
        self._spool = _Spool(spool_path)
        self._lock = threading.Lock()
        self._wakeup = threading.Event()
        self._thread = None
        self._pid = None
        self._flush_timeout = 0.0
        self._last_seq = None  # the newest event this process spooled
        self._memory = collections.deque()  # events that could not be spooled: sent once
        self._limits = (MAX_PENDING, DEFAULT_RETRY_MAX, DEFAULT_MAX_AGE)
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        atexit.register(self.flush)

    def configure(self, limit, retry_max, max_age):
        self._limits = (limit, retry_max, max_age)

    def resume(self):
        """Start sending what an earlier process left in the spool (Trac restarted, say)."""
        try:
            if self._spool.waiting():
                self._ensure_thread()
        except Exception as error:
            self._log.warning("STAT bot: the event spool cannot be read: %s", error)

    def submit(self, url, secret, timeout, event):
        """Spool an event for sending; never blocks on STAT bot. Always True."""
        body = json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        what = "{} of ticket #{}".format(event["event"], event["ticket"])
        row = (what, url, timeout, body, sign(secret, body), event["id"])
        try:
            seq, dropped = self._spool.add(*row, limit=self._limits[0])
        except Exception as error:  # a full or read-only disk under Trac: send it once
            self._log.warning(
                "STAT bot: could not spool %s (%s); sending it once, without retry", what, error
            )
            self._memory.append(row)
        else:
            with self._lock:
                self._flush_timeout = timeout + 1.0
                self._last_seq = seq
            for lost in dropped:
                self._log.warning(
                    "STAT bot: %d events are waiting to be sent; dropped the oldest, %s",
                    self._limits[0],
                    lost,
                )
        self._ensure_thread()
        self._wakeup.set()
        return True

    def flush(self, seconds=None):
        """Wait until the events this process spooled are sent or `seconds` pass
        (default: timeout + 1); what is left stays spooled for the next process."""
        with self._lock:
            upto, timeout = self._last_seq, self._flush_timeout
        if upto is None or not self._thread_alive():
            return True
        deadline = time.monotonic() + (timeout if seconds is None else seconds)
        while True:
            try:
                if not self._spool.waiting(upto):
                    return True
            except Exception:
                return False
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)

    def _thread_alive(self):
        return self._thread is not None and self._pid == os.getpid() and self._thread.is_alive()

    def _ensure_thread(self):
        with self._lock:
            if self._thread_alive():
                return
            if self._pid is not None and self._pid != os.getpid():
                # A forked child: the parent's thread did not come along (its spool did).
                self._memory = collections.deque()
                self._wakeup = threading.Event()
            self._pid = os.getpid()
            self._thread = threading.Thread(target=self._run, name="stat-bot-notify", daemon=True)
            self._thread.start()

    def _run(self):
        while self._env is None or self._env() is not None:
            try:
                wait = self._step()
            except Exception as error:  # never let the thread die
                self._log.warning("STAT bot: the event spool failed: %s", error)
                wait = POLL
            if wait:
                self._wakeup.wait(wait)
                self._wakeup.clear()

    def _step(self):
        """Send one event if one is due; returns how long to wait before the next look."""
        while self._memory:
            row = self._memory.popleft()
            problem = self._send(*row)[1]
            if problem:
                self._log.warning("%s", problem)
        retry_max, max_age = self._limits[1:]
        now = time.time()
        row, wake_at, expired = self._spool.claim(now, max_age)
        for what in expired:
            self._log.warning(
                "STAT bot: dropped %s: not delivered within %g s (max_age)", what, max_age
            )
        if row is None:
            return POLL if wake_at is None else min(POLL, max(0.01, wake_at - now))
        seq, what, url, timeout, body, signature, event_id, attempts = row[:8]
        retry, problem = self._send(what, url, timeout, body, signature, event_id)
        if not retry:
            self._spool.done(seq)
            if problem:
                self._log.warning("%s", problem)
            return 0
        attempts += 1
        delay = min(RETRY_MIN * 2 ** (attempts - 1), retry_max)
        waiting = self._spool.retry(seq, attempts, time.time() + delay)
        self._log.warning("%s; trying again in %g s (%d event(s) waiting)", problem, delay, waiting)
        return 0

    def _send(self, what, url, timeout, body, signature, event_id):
        """One attempt: (whether to try again, the warning to give or None)."""
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            SIGNATURE: signature,
            EVENT_ID: event_id,
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
        try:
            with self._opener.open(request, timeout=timeout) as response:
                answer = response.read(4096)
                status = response.status
        except urllib.error.HTTPError as error:
            problem = f"STAT bot refused {what}: HTTP {error.code} from {_safe_url(url)}: {_reason(error)}"
            # STAT bot down behind a proxy, overloaded or failing: try again. Any other
            # refusal (a wrong secret, a bad event) would be refused again.
            return error.code >= 500 or error.code in (408, 429), problem
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            return True, f"STAT bot: could not send {what} to {_safe_url(url)}: {reason}"
        self._log.debug("STAT bot took %s: HTTP %s %s", what, status, _answer(answer))
        return False, None


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
    spool_size = IntOption(
        SECTION,
        "spool_size",
        MAX_PENDING,
        doc="Events kept in the spool while STAT bot cannot be reached; beyond that the "
        "oldest are dropped, each with a warning in Trac's log.",
    )
    retry_max = FloatOption(
        SECTION,
        "retry_max",
        DEFAULT_RETRY_MAX,
        doc="Longest wait in seconds between two tries of an event (the wait starts at "
        "0.5 s and doubles).",
    )
    max_age = FloatOption(
        SECTION,
        "max_age",
        DEFAULT_MAX_AGE,
        doc="Seconds an event may wait in the spool; older ones are dropped with a warning.",
    )

    def __init__(self):
        self._sender = _Sender(self.log, os.path.join(self.env.path, SPOOL), self.env)
        self._warned = None  # the last "notifications are off" warning given
        self._sender.resume()

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
            self._sender.configure(*self._limits())
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

    def _limits(self):
        """(spool size, longest retry wait, longest age), each kept sensible."""
        values = []
        for option, default, low in (
            ("spool_size", MAX_PENDING, 1),
            ("retry_max", DEFAULT_RETRY_MAX, RETRY_MIN),
            ("max_age", DEFAULT_MAX_AGE, 1.0),
        ):
            try:
                value = float(getattr(self, option))
            except Exception:  # ConfigurationError: not a number
                value = default
            values.append(max(value, low))
        return int(values[0]), values[1], values[2]

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
