"""The `trac` namespace's commands: read and change tickets in the site's Trac.

    python3 trac_cmd.py active | active-report | ticket ID | xname XNAME | owner USER
    python3 trac_cmd.py search TEXT | new TYPE PRIORITY XNAME SUMMARY
    python3 trac_cmd.py comment ID TEXT | close ID RESOLUTION | assign ID USER

Like every workspace script it knows nothing of STAT bot's service: Trac's
address and account come from TRAC_URL, TRAC_USER, TRAC_PASSWORD (or
TRAC_PASSWORD_FILE) and TRAC_TIMEOUT through `TracClient.from_environment`, and
who asked from the STAT_BOT_* variables the dispatcher sets. It prints Block Kit
JSON (the `blocks` report format) on stdout. A Trac error is one line on stderr
and exit status 1, so the job fails and its report quotes that line.

Arguments are positional and never parsed as options, so a summary or comment
that starts with `-` arrives as typed.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import trac_format as fmt

from stat_bot.integrations.trac import (
    TicketNotFoundError,
    TracClient,
    TracError,
    TracRejectedError,
)

MAX_ROWS = 1000
NOT_SET_UP = (
    "Trac is not set up: set TRAC_URL (with TRAC_USER and TRAC_PASSWORD) in STAT bot's "
    "environment; see environment-sample"
)
# `trac owner nobody`: the open tickets without an owner (shown as "nobody" in listings).
NOBODY = {"nobody", "none", "unowned", "-"}
TRUE = {"1", "true", "yes", "on"}
FALSE = {"0", "false", "no", "off"}


class UsageError(Exception):
    """The script was called wrongly: a job template and its command disagree."""


def attribution(env: Mapping[str, str]) -> str:
    """Who asked, for the ticket's history: the bot's Trac account makes the change.

    The dispatcher passes the Slack user id (STAT_BOT_USER, e.g. U0123ABCD) for chat
    commands; a display name (STAT_BOT_USER_NAME) is used when one is given.
    """
    user = env.get("STAT_BOT_USER", "").strip()
    name = env.get("STAT_BOT_USER_NAME", "").strip()
    source = env.get("STAT_BOT_SOURCE", "").strip()
    if source == "slack":
        who = (
            f"Slack user @{name} ({user})" if name and user else f"Slack user {name or user or '?'}"
        )
    elif user:
        who = f"{user} ({source})" if source and source not in user else user
    else:
        who = "an unknown user"
    return f"via STAT bot for {who}"


def signed(text: str, env: Mapping[str, str]) -> str:
    """`text` followed by who asked, as plain text: it reads the same in Trac and in Slack."""
    note = f"({attribution(env)})"
    return f"{text.rstrip()}\n\n{note}" if text.strip() else note


def report_when_empty(env: Mapping[str, str]) -> bool:
    """TRAC_REPORT_WHEN_EMPTY: whether the scheduled report posts when nothing is active."""
    value = env.get("TRAC_REPORT_WHEN_EMPTY", "").strip().lower()
    if not value or value in TRUE:
        return True
    if value in FALSE:
        return False
    raise UsageError(f"TRAC_REPORT_WHEN_EMPTY must be true or false, not {value!r}")


def site_timezone(env: Mapping[str, str]) -> tzinfo:
    try:
        return ZoneInfo(env.get("STAT_BOT_TIMEZONE") or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


def ticket_id(text: str) -> int:
    try:
        number = int(text.removeprefix("#"))
    except ValueError:
        raise UsageError(f"a ticket number such as 12 was expected, not {text!r}") from None
    if number < 1:
        raise UsageError(f"ticket numbers start at 1, not {number}")
    return number


class Commands:
    """One method per command; each returns what to print (None: print nothing)."""

    def __init__(self, client: TracClient, env: Mapping[str, str], now: datetime) -> None:
        self.client = client
        self.env = env
        self.now = now
        self.tz = site_timezone(env)

    def _query(self, **conditions: str) -> list[dict[str, str]]:
        return self.client.query(columns=fmt.COLUMNS, max_rows=MAX_ROWS, **conditions)

    def _active(self) -> list[dict[str, str]]:
        return self._query(status="!closed", order="priority")

    def active(self) -> fmt.Output:
        return fmt.active_listing(self._active(), self.client.ticket_url, self.now)

    def active_report(self) -> fmt.Output | None:
        """The scheduled report: as `active`, or nothing when none are active and not wanted."""
        when_empty = report_when_empty(self.env)
        rows = self._active()
        if not rows and not when_empty:
            return None
        return fmt.active_listing(rows, self.client.ticket_url, self.now)

    def ticket(self, number: str) -> fmt.Output:
        ticket = self.client.ticket(ticket_id(number))
        return fmt.Output(fmt.ticket_detail(ticket, self.now, self.tz), fmt.title(ticket))

    def xname(self, xname: str) -> fmt.Output:
        # `~=` (contains) finds the xname inside lists; xname_matches drops x1000c01 for x1000c0.
        rows = self._query(xname=f"~{xname}", order="priority")
        return fmt.xname_listing(xname.lower(), rows, self.client.ticket_url, self.now)

    def owner(self, user: str) -> fmt.Output:
        if user.strip().lower() in NOBODY:  # as the listings show an empty owner
            rows = self._query(status="!closed", owner="", order="priority")
            return fmt.listing(
                "Open tickets nobody owns",
                [fmt.Group(None, rows)],
                self.client.ticket_url,
                self.now,
                csv_name="tickets-unowned.csv",
                empty="Every open ticket has an owner.",
            )
        rows = self._query(status="!closed", owner=user, order="priority")
        return fmt.listing(
            f"Open tickets of {user}",
            [fmt.Group(None, rows)],
            self.client.ticket_url,
            self.now,
            csv_name=f"tickets-{user}.csv",
            empty=f"{fmt.escape(user)} owns no open tickets.",
        )

    def search(self, text: str) -> fmt.Output:
        """Tickets with `text` in their summary, description or xname; newest first."""
        found: dict[str, dict[str, str]] = {}
        for column in ("summary", "description", "xname"):
            for row in self._query(order="id", **{column: f"~{text}"}):
                found.setdefault(row["id"], row)
        rows = sorted(found.values(), key=lambda r: -int(r["id"]))
        return fmt.listing(
            f"Tickets matching “{fmt.shorten(text, 60)}”: {len(rows)}",
            [fmt.Group(None, rows, show_status=True)],
            self.client.ticket_url,
            self.now,
            csv_name="search.csv",
            empty=f"No ticket mentions “{fmt.escape(text)}” in its summary, description or xname.",
        )

    def new(self, type_: str, priority: str, xname: str, summary: str) -> fmt.Output:
        try:
            number = self.client.create(
                summary=summary,
                type=type_,
                priority=priority,
                xname=xname,
                description=f"Opened {attribution(self.env)}.",
            )
        except TracRejectedError as error:
            raise self._with_choices(error, ("types", type_), ("priorities", priority)) from None
        return self._done(":ticket:", "Created", number)

    def comment(self, number: str, text: str) -> fmt.Output:
        n = ticket_id(number)
        self.client.comment(n, signed(text, self.env))
        return self._done(":speech_balloon:", "Commented on", n, fmt.escape(fmt.clip(text, 500)))

    def close(self, number: str, resolution: str) -> fmt.Output:
        n = ticket_id(number)
        try:
            self.client.close(n, resolution, comment=signed(f"Closed as {resolution}.", self.env))
        except TracRejectedError as error:
            raise self._with_choices(error, ("resolutions", resolution)) from None
        return self._done(":lock:", "Closed", n, f"as *{fmt.escape(resolution)}*")

    def assign(self, number: str, user: str) -> fmt.Output:
        n = ticket_id(number)
        self.client.assign(n, user, comment=signed(f"Assigned to {user}.", self.env))
        return self._done(":bust_in_silhouette:", "Assigned", n, f"to *{fmt.escape(user)}*")

    def _with_choices(self, error: TracRejectedError, *given: tuple[str, str]) -> TracError:
        """Trac's refusal, with the values this site accepts for each value it does not.

        Which value was wrong is found by comparing with the site's own lists, not by
        reading Trac's sentence, so it works whatever language Trac answers in.
        """
        message = str(error)
        for plural, value in given:
            try:
                options = getattr(self.client, plural)()
            except TracError:
                continue
            if options and value not in options:
                message += f" (this Trac's {plural}: {', '.join(options)})"
        return TracRejectedError(message)

    def _done(self, icon: str, verb: str, number: int, detail: str = "") -> fmt.Output:
        ticket = self.client.ticket(number)
        blocks = fmt.done(icon, verb, ticket, self.now, detail)
        return fmt.Output(blocks, f"{verb} {fmt.title(ticket)}")


# name -> (method, number of arguments, usage)
COMMANDS: dict[str, tuple[Callable[..., fmt.Output | None], int, str]] = {
    "active": (Commands.active, 0, "active"),
    "active-report": (Commands.active_report, 0, "active-report"),
    "ticket": (Commands.ticket, 1, "ticket ID"),
    "xname": (Commands.xname, 1, "xname XNAME"),
    "owner": (Commands.owner, 1, "owner USER"),
    "search": (Commands.search, 1, "search TEXT"),
    "new": (Commands.new, 4, "new TYPE PRIORITY XNAME SUMMARY"),
    "comment": (Commands.comment, 2, "comment ID TEXT"),
    "close": (Commands.close, 2, "close ID RESOLUTION"),
    "assign": (Commands.assign, 2, "assign ID USER"),
}


def mistake(message: str) -> fmt.Output:
    """A refusal shown as an answer: what Trac said, as a warning."""
    return fmt.Output([fmt.section(f":warning: {fmt.escape(message)}")], message)


def usage() -> str:
    return "usage: trac_cmd.py " + " | ".join(u for _, _, u in COMMANDS.values())


def run(
    argv: Sequence[str],
    env: Mapping[str, str],
    client_factory: Callable[[Mapping[str, str]], TracClient] = TracClient.from_environment,
) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) for one command line; never raises for Trac errors."""
    if not argv or argv[0] not in COMMANDS:
        return 2, "", usage()
    method, arity, form = COMMANDS[argv[0]]
    args = list(argv[1:])
    if len(args) != arity:
        return 2, "", f"usage: trac_cmd.py {form}"
    if any(not a.strip() for a in args):
        return 2, "", f"usage: trac_cmd.py {form} (an argument is empty)"
    if not env.get("TRAC_URL", "").strip():
        if argv[0] == "active-report":
            # A site without Trac: the hourly report is quietly not made (its schedule
            # `requires` TRAC_URL, so it is not even queued; this is for a run by hand).
            return 0, "", "TRAC_URL is not set, so there is no active-tickets report"
        # Not a failure for tech support: an answer to the asker, in their thread.
        return 0, json.dumps(mistake(NOT_SET_UP).to_json(), ensure_ascii=False), ""
    try:
        commands = Commands(client_factory(env), env, datetime.now(UTC))
        output = method(commands, *args)
    except (TicketNotFoundError, TracRejectedError) as error:
        # The asker's mistake (no such ticket, a value this Trac does not accept): an
        # answer in their thread, not a failure for tech support to look at.
        return 0, json.dumps(mistake(str(error)).to_json(), ensure_ascii=False), ""
    except TracError as error:
        return 1, "", str(error)
    except UsageError as error:
        return 2, "", str(error)
    if output is None:
        return 0, "", ""
    return 0, json.dumps(output.to_json(), ensure_ascii=False), ""


def main() -> int:
    status, out, err = run(sys.argv[1:], os.environ)
    if out:
        print(out)
    if err:
        print(f"trac: {err}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
