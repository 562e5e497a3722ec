"""A Trac 1.6 client over plain HTTP: what STAT's ticket commands need, no Trac plugin required.

    client = TracClient.from_environment()        # TRAC_URL, TRAC_USER, TRAC_PASSWORD...
    rows = client.query(status="!closed", xname="^x1000c0")
    number = client.create(summary="PSU fault", type="defect", priority="major",
                           xname="x1000c0s0b0n0")
    client.comment(number, "Swapped the PSU.")
    client.close(number, "fixed")
    ticket = client.ticket(number)                # fields + change history
    client.write_wiki("Incidents/2026-12-02-gpfs-hang", text, comment="postmortem")
    page = client.wiki_page("Incidents/2026-12-02-gpfs-hang")   # text, version, url

How it talks to Trac, and why:
- Login: GET `/login` with basic auth (the only URL Trac protects that way) and keep
  the `trac_auth` cookie; every later request is a normal browser-like request.
- Reading many tickets: the query's CSV export with chosen columns (UTF-8 with a BOM,
  CRLF rows, quoted as Excel does), read with the csv module so commas, quotes,
  newlines and any Unicode survive. Times come back as Trac formats them for the
  user: ISO 8601 when `[trac] default_date_format = iso8601`; if a site shows
  another format, the client sets its own session's date preference to ISO 8601
  once and asks again. Times are returned as ISO 8601 in UTC (`...Z`).
- Reading one ticket: its CSV export (every field, raw) and its page, whose change
  log gives each change's author, exact time, field values and comment.
- Writing: the same forms a browser posts, with the `__FORM_TOKEN` Trac expects, so
  Trac's workflow, validation and notifications (and ticket change listeners such
  as contrib/trac/stat_bot_notify.py) all apply. A form Trac redisplays with
  warnings instead of saving raises TracRejectedError quoting Trac.
- Wiki pages: read as the page (does it exist, which version) and that version's
  plain text export (`?version=N&format=txt`, the text exactly as stored); written
  through the wiki edit form with the `version` it showed, so an edit made by
  someone else in between is seen (Trac shows the editor again) and retried once.
  Saving the same text again is "not modified" to Trac: a success, no new version.
- JSON-RPC: when the site runs the TracXMLRPC plugin (`/login/jsonrpc` answers),
  `ticket()` also reads `ticket.changeLog`, which gives the raw values the page
  only summarises or renders (a comment's wiki text, the old and new description,
  user names rather than full names). Everything else
  uses the forms on every site: they can do all of it, including custom fields.
  The trac-ticketrpc plugin (`/ticketrpc`) is not used: it skips Trac's workflow
  and validation, cannot set custom fields and closes without a resolution.

Only the standard library is used, so workspace scripts can import this module
without the service. Nothing secret (password, cookies) goes into a message or log.
"""

from __future__ import annotations

import base64
import csv
import http.client
import http.cookiejar
import io
import json
import logging
import os
import re
import socket
import unicodedata
import urllib.error
import urllib.parse
import urllib.request
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from email.message import Message
from pathlib import Path
from typing import Any

from stat_bot.integrations import trac_html

log = logging.getLogger(__name__)

DEFAULT_COLUMNS: tuple[str, ...] = (
    "id",
    "summary",
    "status",
    "type",
    "priority",
    "owner",
    "reporter",
    "xname",
    "time",
    "changetime",
)
DEFAULT_TIMEOUT = 10.0
LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")
COLLISION = "has been modified since you started editing"  # only to tidy English messages
# Trac's permission names (TICKET_VIEW, TRAC_ADMIN...) are never translated, unlike the
# sentences around them, so hints are keyed on these and on status codes, not on wording.
PERMISSION_RE = re.compile(r"\b([A-Z][A-Z0-9]*_[A-Z0-9_]*[A-Z0-9])\b")


# --- errors ----------------------------------------------------------------------------


class TracError(Exception):
    """Something went wrong talking to Trac; the message says what and how to fix it."""


class TracUnreachableError(TracError):
    """No answer from Trac (refused, timed out, unknown host); the message names the URL."""

    def __init__(self, message: str, url: str = "") -> None:
        super().__init__(message)
        self.url = url


class TracLoginError(TracError):
    """Trac refused the user name or password (HTTP 401 on /login)."""


class TracPermissionError(TracError):
    """The Trac user lacks a permission; `permission` names it, e.g. TICKET_CREATE."""

    def __init__(self, message: str, permission: str = "") -> None:
        super().__init__(message)
        self.permission = permission


class TicketNotFoundError(TracError):
    """There is no ticket with this number."""

    def __init__(self, message: str, ticket_id: int = 0) -> None:
        super().__init__(message)
        self.ticket_id = ticket_id


class TracRejectedError(TracError):
    """Trac refused a value (a field, a resolution, a query); the message quotes Trac."""


class WikiNameError(TracRejectedError):
    """Not a usable wiki page name; refused before any request."""


# --- data ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """One field change in a ticket's history.

    For a comment, `field` is "comment", `old` its number and `new` its text. Fields
    Trac only summarises on the ticket page (the description: "modified"; lists such
    as cc: "alice added") have `old` empty and the summary in `new`, unless the
    change log came through JSON-RPC, which gives the values themselves.
    """

    time: str  # ISO 8601, UTC
    author: str
    field: str
    old: str
    new: str
    cnum: int = 0  # the change's number in Trac (comment:N), 0 if Trac gave none


@dataclass(frozen=True)
class Ticket:
    id: int
    fields: dict[str, str]  # summary, description, type, priority, status, owner, xname, time...
    changes: list[Change]
    url: str

    @property
    def comments(self) -> list[Change]:
        return [c for c in self.changes if c.field == "comment" and c.new]

    def __getitem__(self, name: str) -> str:
        return self.fields.get(name, "")


@dataclass(frozen=True)
class WikiPage:
    """One version of a wiki page: its text exactly as stored in Trac."""

    name: str
    text: str
    version: int
    url: str


@dataclass
class _Response:
    status: int
    headers: Message
    body: bytes
    url: str

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    @property
    def content_type(self) -> str:
        return self.headers.get_content_type()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Trac answers a saved form with 303 to the ticket: read the Location, do not follow."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


# --- the client ------------------------------------------------------------------------


class TracClient:
    """One Trac site, logged in lazily as `user` (anonymous when user is None)."""

    def __init__(
        self,
        url: str,
        user: str | None,
        password: str | None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        url = url.strip().rstrip("/")
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise TracError(
                f"TRAC_URL must be the Trac environment's http(s) URL, "
                f"e.g. http://trac.example.org:8000/stat; got {url!r}"
            )
        if user and password is None:
            raise TracError(
                f"no password for Trac user {user!r}: set TRAC_PASSWORD or TRAC_PASSWORD_FILE"
            )
        self.url = url
        self.user = user or None
        self._password = password
        self.timeout = float(timeout)
        self._cookies = http.cookiejar.CookieJar()
        handlers: list[urllib.request.BaseHandler] = [
            urllib.request.HTTPCookieProcessor(self._cookies),
            _NoRedirect(),
        ]
        if parts.hostname in LOOPBACK:
            handlers.append(urllib.request.ProxyHandler({}))  # a proxy cannot reach our loopback
        self._opener = urllib.request.build_opener(*handlers)
        self._logged_in = False
        self._send_auth = False  # basic auth on every request (a server guarding all URLs)
        self._fields: dict[str, dict] | None = None
        self._rpc: bool | None = None
        self._iso_preference_set = False

    def __repr__(self) -> str:  # never the password
        return f"TracClient({self.url!r}, user={self.user!r})"

    @classmethod
    def from_environment(cls, env: Mapping[str, str] = os.environ) -> TracClient:
        """A client from TRAC_URL, TRAC_USER, TRAC_PASSWORD or TRAC_PASSWORD_FILE, TRAC_TIMEOUT."""
        url = env.get("TRAC_URL", "").strip()
        if not url:
            raise TracError(
                "TRAC_URL is not set: set it to the Trac environment's URL, "
                "e.g. TRAC_URL=http://trac.example.org:8000/stat (see environment-sample)"
            )
        user = env.get("TRAC_USER", "").strip() or None
        password = env.get("TRAC_PASSWORD") or None
        password_file = env.get("TRAC_PASSWORD_FILE", "").strip()
        if user and password is None:
            if not password_file:
                raise TracError(
                    f"TRAC_PASSWORD is not set (nor TRAC_PASSWORD_FILE): Trac user {user!r} "
                    "needs a password"
                )
            try:
                password = Path(password_file).expanduser().read_text(encoding="utf-8")
            except OSError as error:
                raise TracError(
                    f"TRAC_PASSWORD_FILE {password_file!r} cannot be read: {error.strerror}"
                ) from None
            password = password.rstrip("\r\n")
            if not password:
                raise TracError(f"TRAC_PASSWORD_FILE {password_file!r} is empty")
        raw_timeout = env.get("TRAC_TIMEOUT", "").strip()
        try:
            timeout = float(raw_timeout) if raw_timeout else DEFAULT_TIMEOUT
            if not 0 < timeout <= 600:
                raise ValueError
        except ValueError:
            raise TracError(
                f"TRAC_TIMEOUT must be a number of seconds between 0 and 600, got {raw_timeout!r}"
            ) from None
        return cls(url, user, password, timeout=timeout)

    # --- URLs ---------------------------------------------------------------------------

    def ticket_url(self, ticket_id: int) -> str:
        return f"{self.url}/ticket/{int(ticket_id)}"

    def wiki_url(self, name: str) -> str:
        """The page's URL (for links); raises WikiNameError for a name Trac would refuse."""
        return self.url + _wiki_path(name)

    # --- reading ------------------------------------------------------------------------

    def fields(self) -> dict[str, dict]:
        """Every ticket field Trac knows: name -> {label, type, options...} (cached)."""
        if self._fields is None:
            response = self._get("/query", {"max": "1"})
            fields = trac_html.field_properties(response.text)
            if not fields:
                raise TracError(
                    f"{self.url}/query did not describe the ticket fields: "
                    "is TRAC_URL a Trac 1.6 environment's URL?"
                )
            self._fields = fields
        return self._fields

    def types(self) -> list[str]:
        return list(self.fields().get("type", {}).get("options", []))

    def priorities(self) -> list[str]:
        return list(self.fields().get("priority", {}).get("options", []))

    def resolutions(self) -> list[str]:
        return list(self.fields().get("resolution", {}).get("options", []))

    def query(
        self,
        *,
        columns: Sequence[str] = DEFAULT_COLUMNS,
        order: str = "priority",
        max_rows: int = 1000,
        desc: bool = False,
        **conditions: str | Sequence[str],
    ) -> list[dict[str, str]]:
        """Tickets matching Trac query conditions, as rows keyed by column name.

        Conditions use Trac's query syntax: `status="!closed"` (not), `xname="~c0s0"`
        (contains), `xname="^x1000c0"` (begins with), `xname="$n0"` (ends with),
        `owner="alice"`; a list means any of the values. Unknown field names are an
        error here (Trac would silently ignore them and return every ticket).
        """
        known = self.fields()
        columns = list(dict.fromkeys(["id", *columns]))
        unknown = [c for c in [*columns, *conditions] if c not in known and c != "id"]
        if order and order not in known:
            unknown.append(order)
        if unknown:
            raise TracRejectedError(
                f"Trac has no ticket field {', '.join(sorted(set(unknown)))}; "
                f"its fields are: {', '.join(sorted(known))}"
            )
        params: list[tuple[str, str]] = []
        for name, value in conditions.items():
            values = [value] if isinstance(value, str) else list(value)
            params += [(name, v) for v in values]  # repeated: any of them
        params += [("format", "csv"), ("max", str(max(0, int(max_rows))))]
        if order:
            params += [("order", order)] + ([("desc", "1")] if desc else [])
        params += [("col", c) for c in columns]
        rows = self._query_csv(params, columns)
        time_columns = [c for c in columns if known.get(c, {}).get("type") == "time"]
        if (
            time_columns
            and not self._times_are_iso(rows, time_columns)
            and self._prefer_iso_dates()
        ):
            rows = self._query_csv(params, columns)
        for row in rows:
            for column in time_columns:
                iso = trac_html.normalise_time(row[column])
                if iso is not None:
                    row[column] = iso
        return rows

    def _query_csv(self, params: list[tuple[str, str]], columns: list[str]) -> list[dict[str, str]]:
        response = self._get("/query", params)
        if response.content_type != "text/csv":
            problems = trac_html.warnings(trac_html.parse(response.text)) or [
                trac_html.error_message(trac_html.parse(response.text))
            ]
            raise TracRejectedError(
                f"Trac refused the query: {'; '.join(p for p in problems if p)}"
            )
        reader = csv.reader(io.StringIO(response.body.decode("utf-8-sig"), newline=""))
        header = next(reader, None)
        if header is None:
            return []
        if len(header) != len(columns):
            raise TracError(
                f"Trac's CSV has columns {header}, expected {columns}: "
                "is this a Trac 1.6 query export?"
            )
        return [dict(zip(columns, row, strict=False)) for row in reader if row]

    @staticmethod
    def _times_are_iso(rows: list[dict[str, str]], columns: list[str]) -> bool:
        return all(
            trac_html.normalise_time(row[c]) is not None for row in rows[:5] for c in columns
        )

    def _prefer_iso_dates(self) -> bool:
        """Set this user's date format preference to ISO 8601 (once); whether it was set."""
        if self._iso_preference_set:
            return False
        self._iso_preference_set = True
        page = self._get("/prefs/localization")
        prefs = trac_html.form(trac_html.parse(page.text), "userprefs") or trac_html.Form(
            {}, {}, {}, {}
        )
        data = {"action": "save", "lc_time": "iso8601"}
        for name in ("tz", "dateinfo", "language"):
            if name in prefs.inputs:
                data[name] = prefs.inputs[name]
        log.info("trac: setting the session's date format to ISO 8601")
        self._post("/prefs/localization", data)
        return True

    def ticket(self, ticket_id: int) -> Ticket:
        """One ticket: every field (raw, as stored) and its change history, oldest first."""
        ticket_id = _ticket_number(ticket_id)
        response = self._get(f"/ticket/{ticket_id}", {"format": "csv"}, ticket_id=ticket_id)
        reader = csv.DictReader(io.StringIO(response.body.decode("utf-8-sig"), newline=""))
        row = next(reader, None)
        if row is None:
            raise TicketNotFoundError(f"Trac has no ticket #{ticket_id}", ticket_id)
        fields = {k: v or "" for k, v in row.items() if k and k != "id"}
        page = trac_html.parse(self._get(f"/ticket/{ticket_id}", ticket_id=ticket_id).text)
        changes = [Change(**vars(c)) for c in trac_html.changelog(page)]
        raw = self._rpc_changelog(ticket_id)
        if raw:
            changes = _with_raw_values(changes, raw)
        date = page.find("div", cls="date")
        fields["time"] = trac_html.timeline_time(date) if date is not None else ""
        form = trac_html.form(page, "propertyform")
        start = form.inputs.get("start_time", "") if form else ""
        if start.isdigit():
            fields["changetime"] = trac_html.from_utimestamp(start)
        else:
            fields["changetime"] = max([fields["time"], *(c.time for c in changes)])
        return Ticket(ticket_id, fields, changes, self.ticket_url(ticket_id))

    def raw_comment(self, ticket_id: int, cnum: int) -> str:
        """A comment's wiki text exactly as written (Trac's "Reply" quotes it for us).

        `ticket()` gives comments as a reader sees them; this one request per
        comment gives the source, markup included. Needs TICKET_APPEND.
        """
        ticket_id = _ticket_number(ticket_id)
        page = trac_html.parse(
            self._get(f"/ticket/{ticket_id}", {"replyto": str(cnum)}, ticket_id=ticket_id).text
        )
        form = trac_html.form(page, "propertyform")
        quoted = form.textareas.get("comment", "") if form else ""
        lines = quoted.splitlines()
        if not lines or not lines[0].startswith("Replying to [comment:"):
            raise TracError(f"ticket #{ticket_id} has no comment {cnum} this user may quote")
        return "\n".join(line[2:] if line.startswith("> ") else line[1:] for line in lines[1:])

    # --- writing ------------------------------------------------------------------------

    def create(
        self,
        *,
        summary: str,
        type: str,
        priority: str,
        description: str = "",
        xname: str | None = None,
        owner: str | None = None,
        **fields: str,
    ) -> int:
        """Create a ticket through the new-ticket form; its number.

        Custom fields (`xname`, or any in `fields`) must exist in trac.ini's
        [ticket-custom]; Trac would silently drop an unknown one, so it is an error here.
        """
        values = {"summary": summary, "type": type, "priority": priority, **fields}
        values["description"] = description
        if xname is not None:
            values["xname"] = xname
        if owner:
            values["owner"] = owner
        page = trac_html.parse(self._get("/newticket").text)
        form = trac_html.form(page, "propertyform")
        if form is None:
            raise TracPermissionError(
                f"Trac user {self.user or 'anonymous'} may not create tickets: grant TICKET_CREATE",
                "TICKET_CREATE",
            )
        known = self.fields()
        missing = [name for name in values if name not in known]
        if missing:
            raise TracRejectedError(
                f"Trac has no ticket field {', '.join(missing)}: add it to trac.ini's "
                "[ticket-custom] section (e.g. `xname = text`)"
            )
        data = {f"field_{name}": value for name, value in values.items()}
        data["action"] = "create"
        data["submit"] = "Create ticket"
        response = self._post("/newticket", data, form=form)
        location = response.headers.get("Location", "")
        match = re.search(r"/ticket/(\d+)", location)
        if response.status in (302, 303) and match:
            number = int(match.group(1))
            log.info("trac: created ticket #%s", number)
            return number
        raise self._rejected(response, "create the ticket")

    def comment(self, ticket_id: int, text: str) -> None:
        """Add a comment (needs TICKET_APPEND)."""
        if not text.strip():
            raise TracRejectedError("a comment needs some text")
        self._modify(ticket_id, "leave", text, {}, {}, "TICKET_APPEND")

    def close(self, ticket_id: int, resolution: str = "fixed", comment: str = "") -> None:
        """Resolve the ticket with `resolution` (fixed, invalid, wontfix, ... as Trac lists)."""
        self._modify(
            ticket_id,
            "resolve",
            comment,
            {},
            {"action_resolve_resolve_resolution": resolution},
            "TICKET_MODIFY",
        )

    def assign(self, ticket_id: int, owner: str, comment: str = "") -> None:
        """Give the ticket to `owner` (Trac's reassign action; status becomes assigned)."""
        if not owner.strip():
            raise TracRejectedError("assign needs the new owner's Trac user name")
        self._modify(
            ticket_id,
            "reassign",
            comment,
            {},
            {"action_reassign_reassign_owner": owner.strip()},
            "TICKET_MODIFY",
        )

    def update(self, ticket_id: int, *, comment: str = "", **fields: str) -> None:
        """Change fields (summary, priority, xname...) without a workflow action."""
        self._modify(ticket_id, "leave", comment, fields, {}, "TICKET_CHGPROP")

    def _modify(
        self,
        ticket_id: int,
        action: str,
        comment: str,
        fields: Mapping[str, str],
        action_args: Mapping[str, str],
        permission: str,
        *,
        attempts: int = 2,
    ) -> None:
        ticket_id = _ticket_number(ticket_id)
        who = self.user or "anonymous"
        for attempt in range(attempts):
            page = trac_html.parse(self._get(f"/ticket/{ticket_id}", ticket_id=ticket_id).text)
            form = trac_html.form(page, "propertyform")
            if form is None or "start_time" not in form.inputs:
                raise TracPermissionError(
                    f"Trac user {who} may not change ticket #{ticket_id}: grant {permission}",
                    permission,
                )
            actions = form.radios.get("action", [])
            if action not in actions:
                status = _ticket_status(page)
                if status == "closed" and action in ("resolve", "reassign"):
                    raise TracRejectedError(
                        f"ticket #{ticket_id} is closed; reopen it in Trac first"
                    )
                raise TracPermissionError(
                    f"Trac does not offer the {action!r} action to {who} on ticket #{ticket_id} "
                    f"(status {status or 'unknown'}): grant {permission}",
                    permission,
                )
            missing = [name for name in fields if f"field_{name}" not in form.names()]
            if missing:
                raise TracRejectedError(
                    f"ticket #{ticket_id} has no field {', '.join(missing)} that {who} may set "
                    "(owner changes go through assign)"
                )
            data = {
                "start_time": form.inputs["start_time"],
                "view_time": form.inputs.get("view_time", form.inputs["start_time"]),
                "action": action,
                "comment": comment,
                "submit": "Submit changes",
                **{f"field_{name}": value for name, value in fields.items()},
                **action_args,
            }
            response = self._post(f"/ticket/{ticket_id}", data, form=form, ticket_id=ticket_id)
            if response.status in (302, 303):
                log.info("trac: %s on ticket #%s", action, ticket_id)
                return
            problems = trac_html.warnings(trac_html.parse(response.text))
            if attempt + 1 < attempts and self._changed_since(ticket_id, data["start_time"]):
                # Someone changed the ticket between our read and our post (Trac refuses
                # that in words of the site's language; the ticket's change time says it).
                log.info("trac: ticket #%s changed meanwhile; trying again", ticket_id)
                continue
            raise self._rejected(response, f"change ticket #{ticket_id}", problems, permission)

    def _changed_since(self, ticket_id: int, start_time: str) -> bool:
        """Whether the ticket was changed after the `start_time` of a form we read."""
        page = trac_html.parse(self._get(f"/ticket/{ticket_id}", ticket_id=ticket_id).text)
        form = trac_html.form(page, "propertyform")
        now = form.inputs.get("start_time") if form else None
        return bool(now) and now != start_time

    def _rejected(
        self,
        response: _Response,
        what: str,
        problems: list[str] | None = None,
        permission: str = "",
    ) -> TracError:
        if problems is None:
            problems = trac_html.warnings(trac_html.parse(response.text))
        if not problems:
            message = trac_html.error_message(trac_html.parse(response.text))
            return TracError(
                f"Trac did not {what} (HTTP {response.status}){f': {message}' if message else ''}"
            )
        problems = [p for p in problems if COLLISION not in p] or problems
        text = "; ".join(problems)
        named = [m.group(1) for p in problems if (m := PERMISSION_RE.search(p))]
        if named:
            return TracPermissionError(f"Trac refused to {what}: {text}", named[0])
        return TracRejectedError(f"Trac refused to {what}: {text}")

    # --- wiki -------------------------------------------------------------------------

    def wiki_page(self, name: str) -> WikiPage | None:
        """The page's latest version, or None when there is no such page (needs WIKI_VIEW)."""
        path = _wiki_path(name)
        response = self._get(path, missing_ok=True)
        if response.status == 404:
            # Trac shows a missing page as "create it" to those with WIKI_CREATE and as
            # 404 to others; a 404 that is not Trac's own page is a wrong TRAC_URL.
            if trac_html.parse(response.text).find("div", id="content", cls="error") is None:
                raise self._not_found(path)
            return None
        page = trac_html.parse(response.text)
        if page.find("div", id="wikipage") is None:
            return None
        version = _wiki_version(page)
        if version is None:
            raise TracError(
                f"{self.url}{path} shows no version of the page: is TRAC_URL a Trac 1.6 "
                "environment's URL?"
            )
        # The text of exactly that version, even if someone saves a newer one meanwhile.
        export = self._get(path, {"version": str(version), "format": "txt"})
        if export.content_type != "text/plain":
            raise TracError(f"{self.url}{path}?format=txt gave {export.content_type}, not text")
        return WikiPage(name, export.body.decode("utf-8"), version, self.wiki_url(name))

    def wiki_names(self, prefix: str = "") -> list[str]:
        """The names of the wiki pages starting with `prefix`, sorted (needs WIKI_VIEW).

        Trac 1.6 has no listing API without plugins: this reads the TitleIndex page
        every environment is created with (it holds the `[[TitleIndex]]` macro), whose
        links name every page. A site that deleted that page is told how to restore it.
        """
        response = self._get("/wiki/TitleIndex", missing_ok=True)
        page = trac_html.parse(response.text)
        content = page.find("div", id="wikipage")
        if response.status == 404 or content is None:
            raise TracError(
                f"{self.url}/wiki/TitleIndex is missing: STAT bot lists wiki pages from it; "
                "create it with the text [[TitleIndex]]"
            )
        base = urllib.parse.urlsplit(self.url).path.rstrip("/") + "/wiki/"
        names = set()
        for link in content.find_all("a"):
            parts = urllib.parse.urlsplit(link.attrs.get("href", ""))
            if parts.query or parts.fragment or not parts.path.startswith(base):
                continue
            name = urllib.parse.unquote(parts.path[len(base) :])
            if name and name.startswith(prefix) and "missing" not in link.classes:
                names.add(name)
        return sorted(names)

    def write_wiki(self, name: str, text: str, comment: str = "") -> WikiPage:
        """Create the page or replace its text (needs WIKI_CREATE / WIKI_MODIFY); the result.

        The same text as the latest version is not a change to Trac: nothing is saved
        and the latest version comes back. An edit by someone else between our read of
        the form and our post is retried once on top of theirs, then reported.
        """
        path = _wiki_path(name)
        who = self.user or "anonymous"
        attempts = 2
        for attempt in range(attempts):
            editor = trac_html.parse(self._get(path, {"action": "edit"}).text)
            form = trac_html.form(editor, "edit")
            if form is None or not form.inputs.get("version", "").isdigit():
                raise TracPermissionError(
                    f"Trac does not show {who} the editor of wiki page {name}: "
                    "grant WIKI_CREATE and WIKI_MODIFY",
                    "WIKI_MODIFY",
                )
            version = form.inputs["version"]
            data = {
                "action": "edit",
                "version": version,
                "text": text,
                "comment": comment,
                "save": "Submit changes",
            }
            if any("checked" in box.attrs for box in editor.find_all("input", name="readonly")):
                data["readonly"] = "on"  # a WIKI_ADMIN's post without it would clear the flag
            response = self._post(path, data, form=form)
            if response.status in (302, 303):
                log.info("trac: saved wiki page %s, version %s", name, int(version) + 1)
                return WikiPage(name, text, int(version) + 1, self.wiki_url(name))
            page = trac_html.parse(response.text)
            again = trac_html.form(page, "edit")
            if again is None and page.find("div", id="wikipage") is not None:
                # Trac showed the page instead of saving: "Page not modified".
                log.info("trac: wiki page %s already has this text (version %s)", name, version)
                return WikiPage(name, text, int(version), self.wiki_url(name))
            if again is not None and again.inputs.get("version") != version:
                # Someone saved a version between our read and our post; Trac shows the
                # editor again with its "modified by somebody else" message.
                if attempt + 1 < attempts:
                    log.info("trac: wiki page %s changed meanwhile; trying again", name)
                    continue
                said = "; ".join(trac_html.system_messages(page)) or "a concurrent edit"
                raise TracRejectedError(
                    f"Trac refused to save wiki page {name}: {said} (someone else saved it "
                    f"while STAT bot was writing, {attempts} times); look at {self.wiki_url(name)}"
                    " and write it again"
                )
            raise self._rejected(response, f"save wiki page {name}")
        raise AssertionError("unreachable")

    # --- JSON-RPC (TracXMLRPC) ----------------------------------------------------------

    def _rpc_changelog(self, ticket_id: int) -> list[list[Any]] | None:
        """TracXMLRPC's `ticket.changeLog` entries, or None when the site has no JSON-RPC."""
        if self._rpc is False:
            return None
        try:
            result = self._rpc_call("ticket.changeLog", [ticket_id])
        except TracError as error:
            if self._rpc:
                log.warning("trac: JSON-RPC ticket.changeLog failed (%s); reading the page", error)
            self._rpc = False
            return None
        if not isinstance(result, list) or not all(isinstance(e, list) for e in result):
            self._rpc = False
            return None
        self._rpc = True
        return result

    def _rpc_call(self, method: str, params: list[Any]) -> Any:
        path = "/login/jsonrpc" if self.user else "/jsonrpc"
        body = json.dumps({"method": method, "params": params, "id": 1}).encode()
        headers = {"Content-Type": "application/json"}
        if self.user:  # TracXMLRPC's /login/jsonrpc wants the basic auth on every call
            headers["Authorization"] = self._basic_auth()
        response = self._send("POST", path, body=body, headers=headers)
        if response.status != 200 or response.content_type != "application/json":
            raise TracError(f"no JSON-RPC at {self.url}{path} (HTTP {response.status})")
        try:
            reply = json.loads(response.body)
        except ValueError:
            raise TracError(f"JSON-RPC at {self.url}{path} answered no JSON") from None
        if reply.get("error"):
            raise TracError(f"JSON-RPC {method}: {reply['error'].get('message', reply['error'])}")
        return reply.get("result")

    # --- HTTP ---------------------------------------------------------------------------

    def login(self) -> None:
        """Log in now (requests log in by themselves when needed)."""
        if not self.user:
            return
        response = self._send("GET", "/login", headers={"Authorization": self._basic_auth()})
        if response.status == 401:
            raise TracLoginError(
                f"Trac at {self.url} refused the login of {self.user!r}: "
                "check TRAC_USER and TRAC_PASSWORD (the htpasswd entry)"
            )
        if response.status == 404:
            raise TracError(
                f"{self.url}/login does not exist: TRAC_URL must be the Trac environment's URL, "
                "e.g. http://trac.example.org:8000/stat"
            )
        if response.status >= 500:
            # Trac itself failed (its database, a plugin...): its error, not a set-up hint.
            message = trac_html.error_message(trac_html.parse(response.text))
            raise TracError(
                f"Trac at {self.url} failed at /login (HTTP {response.status})"
                f"{f': {message}' if message else ''}; see Trac's log"
            )
        if not any(c.name == "trac_auth" for c in self._cookies):
            message = trac_html.error_message(trac_html.parse(response.text))
            raise TracLoginError(
                f"Trac at {self.url} did not log {self.user!r} in (HTTP {response.status})"
                f"{f': {message}' if message else ''}; /login must be protected by "
                "basic auth (tracd --basic-auth, or the web server in front of Trac)"
            )
        self._logged_in = True
        log.debug("trac: logged in to %s as %s", self.url, self.user)

    def _basic_auth(self) -> str:
        token = base64.b64encode(f"{self.user}:{self._password}".encode()).decode()
        return f"Basic {token}"

    def _get(
        self,
        path: str,
        params: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
        *,
        ticket_id: int | None = None,
        missing_ok: bool = False,
    ) -> _Response:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        return self._checked("GET", path + query, ticket_id=ticket_id, missing_ok=missing_ok)

    def _post(
        self,
        path: str,
        data: Mapping[str, str],
        *,
        form: trac_html.Form | None = None,
        ticket_id: int | None = None,
    ) -> _Response:
        token = self._form_token() or (form.inputs.get("__FORM_TOKEN", "") if form else "")
        body = urllib.parse.urlencode({"__FORM_TOKEN": token, **data}).encode()
        return self._checked(
            "POST",
            path,
            body=body,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            ticket_id=ticket_id,
        )

    def _form_token(self) -> str:
        return next((c.value or "" for c in self._cookies if c.name == "trac_form_token"), "")

    def _checked(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        ticket_id: int | None = None,
        missing_ok: bool = False,
    ) -> _Response:
        """Send (logging in first when needed) and turn Trac's error pages into exceptions.

        `missing_ok`: a 404 comes back as a response, for the caller to tell apart.
        """
        fresh = False
        if self.user and not self._logged_in:
            self.login()
            fresh = True
        response = self._send(method, path, body=body, headers=headers)
        if response.status == 403 and self.user and not fresh and method == "GET":
            # The trac_auth cookie may have expired on Trac's side: log in again, once.
            self._logged_in = False
            self._cookies.clear()
            self.login()
            response = self._send(method, path, body=body, headers=headers)
        if response.status == 401 and self.user and not self._send_auth:
            # The web server in front of Trac guards every URL, not just /login.
            self._send_auth = True
            response = self._send(method, path, body=body, headers=headers)
        if response.status < 400 or (response.status == 404 and missing_ok):
            return response
        message = trac_html.error_message(trac_html.parse(response.text)) or response.text[:200]
        who = self.user or "anonymous"
        if response.status == 401:
            raise TracLoginError(
                f"Trac at {self.url} wants a login: set TRAC_USER and TRAC_PASSWORD"
            )
        if response.status == 403:
            found = PERMISSION_RE.search(message)
            if found and not self.user:
                raise TracPermissionError(
                    f"Trac lets anonymous users do less than this needs ({found.group(1)}; "
                    f"Trac: {message}): set TRAC_USER and TRAC_PASSWORD",
                    found.group(1),
                )
            if found:
                raise TracPermissionError(
                    f"Trac user {who} lacks {found.group(1)} (Trac: {message}); "
                    f"ask a Trac admin for `trac-admin ENV permission add {who} {found.group(1)}`",
                    found.group(1),
                )
            raise TracPermissionError(f"Trac refused {who}: {message}")
        if response.status == 404 and ticket_id is not None:
            raise TicketNotFoundError(f"Trac has no ticket #{ticket_id} ({message})", ticket_id)
        if response.status == 404:
            raise self._not_found(path)
        if response.status == 400 and method == "POST":
            # Trac's 400 for a form is its form-token check (the trac_form_token cookie).
            raise TracError(
                f"Trac refused the form (HTTP 400: {message}): the form token or its "
                "cookie was lost"
            )
        if response.status < 500:
            raise TracRejectedError(f"Trac refused the request (HTTP {response.status}): {message}")
        raise TracError(f"Trac failed (HTTP {response.status}): {message}")

    def _not_found(self, path: str) -> TracError:
        return TracError(
            f"{self.url}{path.split('?')[0]} not found: TRAC_URL must be the Trac "
            "environment's URL, e.g. http://trac.example.org:8000/stat"
        )

    def _send(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> _Response:
        url = self.url + path
        request = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))
        request.add_header("User-Agent", "stat-bot (TracClient)")
        if self._send_auth and not request.has_header("Authorization"):
            request.add_header("Authorization", self._basic_auth())
        log.debug("trac: %s %s", method, path.split("?")[0])
        try:
            with self._opener.open(request, timeout=self.timeout) as reply:
                return _Response(reply.status, reply.headers, reply.read(), url)
        except urllib.error.HTTPError as reply:
            with reply:
                return _Response(reply.code, reply.headers, reply.read(), url)
        except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
            reason = getattr(error, "reason", error)
            if isinstance(reason, socket.timeout | TimeoutError):
                reason = f"no answer within {self.timeout:g} s (TRAC_TIMEOUT)"
            raise TracUnreachableError(
                f"Trac at {self.url} is unreachable: {reason}. Check TRAC_URL and that Trac runs",
                self.url,
            ) from None


# --- helpers ---------------------------------------------------------------------------


def wiki_name(name: str) -> str:
    """`name` if Trac would take it as a wiki page name; WikiNameError saying why not.

    Names are path segments (`Incidents/2026-12-02-gpfs-hang`). Trac itself refuses
    empty, `.` and `..` segments and silently redirects leading, trailing and doubled
    slashes to another page, so all of those are refused here, before any request.
    """
    if not isinstance(name, str) or not name.strip():
        raise WikiNameError("a wiki page name is needed, e.g. Incidents/2026-12-02-gpfs-hang")
    bad = [ch for ch in name if unicodedata.category(ch) == "Cc"]
    if bad:
        raise WikiNameError(
            f"wiki page name {name!r} contains a control character ({bad[0]!r}): "
            "use letters, digits, '-', '_', '.' and '/' between parts"
        )
    if name != name.strip():
        raise WikiNameError(f"wiki page name {name!r} starts or ends with a space: remove it")
    if name.startswith("/") or name.endswith("/"):
        raise WikiNameError(
            f"wiki page name {name!r} starts or ends with '/': write it as {name.strip('/')!r}"
        )
    for part in name.split("/"):
        if part in ("", ".", ".."):
            shown = "an empty part ('//')" if not part else f"a {part!r} part"
            raise WikiNameError(
                f"wiki page name {name!r} has {shown}: each part between slashes must be a "
                "name, e.g. Incidents/2026-12-02-gpfs-hang"
            )
        if part != part.strip():
            raise WikiNameError(
                f"wiki page name {name!r} has a part that starts or ends with a space: remove it"
            )
    return name


def _wiki_path(name: str) -> str:
    """`/wiki/A/B%20C`: each part quoted as Trac quotes its own links, slashes kept."""
    parts = wiki_name(name).split("/")
    return "/wiki/" + "/".join(urllib.parse.quote(part, safe="!~*'()") for part in parts)


def _wiki_version(page: trac_html.Element) -> int | None:
    """The version a wiki page view shows, from its "Last modified" link (`version=N`)."""
    box = page.find("div", cls="trac-modifiedby")
    for link in box.find_all("a") if box is not None else ():
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(link.attrs.get("href", "")).query)
        values = query.get("version", [])
        if values and values[0].isdigit():
            return int(values[0])
    return None


def _ticket_number(value: int | str) -> int:
    try:
        number = int(str(value).strip().lstrip("#"))
    except ValueError:
        raise TracRejectedError(f"{value!r} is not a ticket number") from None
    if number < 1:
        raise TicketNotFoundError(f"Trac has no ticket #{number}", number)
    return number


def _ticket_status(page: trac_html.Element) -> str:
    span = page.find("span", cls="trac-status")
    return span.flat_text().split()[0] if span is not None and span.flat_text() else ""


def _with_raw_values(changes: list[Change], raw: list[list[Any]]) -> list[Change]:
    """The page's changes with the authors and values of TracXMLRPC's change log.

    The page gives each change's number and exact time but only summarises some
    values (description: "modified") and shows comments rendered; the RPC entries
    (`[time, author, field, old, new, permanent]`, times to the second) give the raw
    ones. Comments pair up by number (their old value: "3", or "1.3" for a reply),
    other fields by order: the k-th change of a field on the page is its k-th entry.
    """
    comments: dict[int, tuple[str, str]] = {}
    fields: dict[str, deque[tuple[str, str, str]]] = {}
    for entry in raw:
        if len(entry) < 5:
            continue
        _, author, name, old, new = (("" if v is None else str(v)) for v in entry[:5])
        if name == "comment":
            number = old.rsplit(".", 1)[-1]
            if number.isdigit():
                comments[int(number)] = (author, new)
        elif not name.startswith("_"):  # _comment0...: earlier texts of edited comments
            fields.setdefault(name, deque()).append((author, old, new))
    merged = []
    for change in changes:
        if change.field == "comment" and change.cnum in comments:
            author, text = comments[change.cnum]
            change = replace(change, author=author, new=text)
        elif change.field != "comment" and fields.get(change.field):
            author, old, new = fields[change.field].popleft()
            change = replace(change, author=author, old=old, new=new)
        merged.append(change)
    return merged


__all__ = [
    "DEFAULT_COLUMNS",
    "Change",
    "Ticket",
    "TicketNotFoundError",
    "TracClient",
    "TracError",
    "TracLoginError",
    "TracPermissionError",
    "TracRejectedError",
    "TracUnreachableError",
    "WikiNameError",
    "WikiPage",
    "wiki_name",
]
