"""Trac tickets -> Block Kit and CSV, for the `trac` namespace's scripts.

Everything here is a pure function of query rows (dicts of column -> text, as
`TracClient.query` returns them) or of a ticket (`TracClient.ticket`), so the
formatting is tested without a Trac. Output follows the `blocks` report format:
a JSON list of blocks, or an object with "blocks" and a "file" (CSV) when a list
is too long to read in Slack.

Slack limits that shape it: 50 blocks a message, 3,000 characters a section,
150 a header, 10 fields a section. Lists show at most MAX_LISTED tickets; longer
ones show the most urgent MAX_LISTED (the query orders by priority) and attach
every row as CSV.
"""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, Protocol

MAX_SECTION = 3000
MAX_HEADER = 150
MAX_LISTED = 20
SUMMARY_CHARS = 120
DESCRIPTION_CHARS = 2500
COMMENT_CHARS = 900
LAST_COMMENTS = 3
RECENT_DAYS = 30

# What every listing asks Trac for, in the CSV's column order.
COLUMNS = (
    "id",
    "summary",
    "status",
    "resolution",
    "type",
    "priority",
    "owner",
    "reporter",
    "xname",
    "time",
    "changetime",
)

Row = Mapping[str, str]
Blocks = list[dict[str, Any]]
UrlFor = Callable[[int], str]


class ChangeLike(Protocol):
    time: str
    author: str
    field: str
    old: str
    new: str


class TicketLike(Protocol):
    """What formatting reads of `stat_bot.integrations.trac.Ticket`."""

    id: int
    fields: dict[str, str]
    url: str

    @property
    def comments(self) -> Sequence[ChangeLike]: ...


# --- text -------------------------------------------------------------------------------


def escape(text: str) -> str:
    """Text for mrkdwn: Slack reads <, > and & as markup, so they are sent as entities."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def shorten(text: str, limit: int) -> str:
    """One line of at most `limit` characters, cut at a word with an ellipsis when longer."""
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    cut = flat.rfind(" ", 0, limit - 1)
    return flat[: cut if cut > limit // 2 else limit - 1] + "…"


def clip(text: str, limit: int) -> str:
    """Multi-line text of at most `limit` characters, ending with an ellipsis when cut."""
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def link(url: str, text: str) -> str:
    """A mrkdwn link; `|` and `>` in the URL would end it early, so they are percent-encoded."""
    safe = url.replace("|", "%7C").replace(">", "%3E").replace("<", "%3C")
    return f"<{safe}|{escape(text)}>"


def ticket_link(ticket_id: int | str, url_for: UrlFor) -> str:
    return link(url_for(int(ticket_id)), f"#{ticket_id}")


def parse_time(text: str | None) -> datetime | None:
    """A Trac ISO 8601 time (`2026-11-25T06:50:12Z`, `+01:00`, or naive UTC); None if not one."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def age(since: str | None, now: datetime) -> str:
    """How long ago, coarse enough to read at a glance: `4 min`, `5 h`, `12 d`."""
    moment = parse_time(since)
    if moment is None:
        return "?"
    seconds = max(0.0, (now - moment).total_seconds())
    if seconds < 60:
        return "<1 min"
    if seconds < 3600:
        return f"{int(seconds // 60)} min"
    if seconds < 2 * 86400:
        return f"{int(seconds // 3600)} h"
    return f"{int(seconds // 86400)} d"


def local_time(text: str | None, tz: tzinfo) -> str:
    """`2026-11-25 06:50 UTC` in the site's time zone, or the text as Trac gave it."""
    moment = parse_time(text)
    if moment is None:
        return text or "?"
    return moment.astimezone(tz).strftime("%Y-%m-%d %H:%M %Z")


# --- xnames -----------------------------------------------------------------------------

_XNAME_SPLIT = re.compile(r"[\s,;]+")


def xname_matches(value: str, xname: str) -> bool:
    """Whether a ticket's xname field names `xname` or a component below it.

    `x1000c0` is the chassis, so it matches `x1000c0s0b0n0` but not `x1000c01`
    (another chassis): the rest after the prefix must start a new level (a
    letter). The field may list several xnames, separated by commas or spaces.
    """
    wanted = xname.strip().lower()
    if not wanted:
        return False
    for part in _XNAME_SPLIT.split(value.lower()):
        if part == wanted:
            return True
        if part.startswith(wanted) and part[len(wanted)].isalpha():
            return True
    return False


def recently_closed(rows: Iterable[Row], now: datetime, days: int = RECENT_DAYS) -> list[Row]:
    """Closed tickets last changed within `days` of `now`."""
    since = now - timedelta(days=days)
    kept = []
    for row in rows:
        changed = parse_time(row.get("changetime"))
        if row.get("status") == "closed" and changed is not None and changed >= since:
            kept.append(row)
    return kept


# --- counts and lines -------------------------------------------------------------------


def counts(rows: Sequence[Row], column: str, *, keep_order: bool = False) -> list[tuple[str, int]]:
    """How many rows have each value of `column`.

    `keep_order` keeps the order values first appear in: rows ordered by
    priority give Trac's own priority order (blocker before critical), which
    sorting by name would lose. Otherwise the largest count comes first.
    """
    tally = Counter((row.get(column) or "(none)") for row in rows)
    if keep_order:
        return list(tally.items())
    return sorted(tally.items(), key=lambda item: (-item[1], item[0]))


def counts_text(pairs: Sequence[tuple[str, int]]) -> str:
    return " · ".join(f"{escape(name)} {count}" for name, count in pairs) or "none"


def ticket_line(row: Row, url_for: UrlFor, now: datetime, *, show_status: bool = False) -> str:
    """`#12 Fan failure · x1000c0s0b0n0 · alice · 3 d` as one mrkdwn line."""
    parts = [
        f"{ticket_link(row['id'], url_for)} {escape(shorten(row.get('summary', ''), SUMMARY_CHARS))}"
    ]
    if show_status:
        status = row.get("status", "")
        if status == "closed" and row.get("resolution"):
            status += f": {row['resolution']}"
        parts.append(f"_{escape(status)}_")
    if row.get("xname"):
        parts.append(f"`{escape(row['xname'])}`")
    parts.append(escape(row.get("owner") or "nobody"))
    parts.append(age(row.get("time"), now))
    return " · ".join(parts)


def sections(lines: Iterable[str], limit: int = MAX_SECTION) -> Blocks:
    """Lines packed into as few mrkdwn sections as Slack's per-section limit allows."""
    blocks: Blocks = []
    current: list[str] = []
    size = 0
    for line in lines:
        line = clip(line, limit)
        if current and size + 1 + len(line) > limit:
            blocks.append(section("\n".join(current)))
            current, size = [], 0
        current.append(line)
        size += len(line) + (1 if size else 0)
    if current:
        blocks.append(section("\n".join(current)))
    return blocks


def section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": clip(text, MAX_SECTION)}}


def header(text: str) -> dict[str, Any]:
    return {"type": "header", "text": {"type": "plain_text", "text": shorten(text, MAX_HEADER)}}


def context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": clip(text, MAX_SECTION)}]}


DIVIDER = {"type": "divider"}


# --- output -----------------------------------------------------------------------------


@dataclass
class Output:
    """What a command prints: blocks, the notification text, and the CSV of a long list."""

    blocks: Blocks
    text: str = ""
    csv_name: str | None = None
    csv_text: str | None = None

    def to_json(self) -> dict[str, Any]:
        """{"blocks", "text"} for the `blocks` report format, with "file" when there is a CSV.

        `text` is what Slack shows in notifications and where blocks cannot be drawn.
        """
        data: dict[str, Any] = {"blocks": self.blocks, "text": self.text}
        if self.csv_text is not None:
            name = self.csv_name or "tickets.csv"
            data["file"] = {"filename": name, "content": self.csv_text, "title": name}
        return data


def to_csv(rows: Sequence[Row], url_for: UrlFor) -> str:
    """Every row with its link, for a spreadsheet; fields as Trac gave them."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["url", *COLUMNS])
    for row in rows:
        writer.writerow([url_for(int(row["id"])), *(row.get(column, "") for column in COLUMNS)])
    return out.getvalue()


@dataclass(frozen=True)
class Group:
    """A titled part of a listing: `Open (3)`, `Closed in the last 30 days (1)`."""

    title: str | None
    rows: Sequence[Row]
    show_status: bool = False


def listing(
    title: str,
    groups: Sequence[Group],
    url_for: UrlFor,
    now: datetime,
    *,
    csv_name: str,
    summary: Blocks | None = None,
    empty: str = "No tickets.",
    limit: int = MAX_LISTED,
) -> Output:
    """A header, optional summary blocks, then each group's tickets (CSV beyond `limit`)."""
    blocks: Blocks = [header(title)]
    blocks.extend(summary or [])
    total = sum(len(g.rows) for g in groups)
    text = escape(title)
    if total == 0:
        blocks.append(section(empty))
        return Output(blocks, empty)
    room = limit
    for group in groups:
        if not group.rows:
            continue
        shown = group.rows[: max(room, 0)]
        room -= len(shown)
        lines = [f"*{escape(group.title)}*"] if group.title else []
        lines += [ticket_line(r, url_for, now, show_status=group.show_status) for r in shown]
        if len(shown) < len(group.rows):
            lines.append(f"_… and {len(group.rows) - len(shown)} more_")
        blocks.extend(sections(lines))
    if total <= limit:
        return Output(blocks, text)
    blocks.append(
        context(
            f"{total} tickets: the first {limit} are shown, all {total} are in the attached {csv_name}."
        )
    )
    every = [row for group in groups for row in group.rows]
    return Output(blocks, text, csv_name, to_csv(every, url_for))


def active_listing(rows: Sequence[Row], url_for: UrlFor, now: datetime) -> Output:
    """The active-tickets report: counts by priority and by type, then the tickets."""
    if not rows:
        return Output([section(":white_check_mark: No active tickets.")], "No active tickets.")
    summary = [
        {
            "type": "section",
            "fields": [
                {
                    "type": "mrkdwn",
                    "text": "*By priority*\n"
                    + counts_text(counts(rows, "priority", keep_order=True)),
                },
                {"type": "mrkdwn", "text": "*By type*\n" + counts_text(counts(rows, "type"))},
            ],
        },
        DIVIDER,
    ]
    noun = "ticket" if len(rows) == 1 else "tickets"
    return listing(
        f"Active tickets: {len(rows)} {noun}",
        [Group(None, rows)],
        url_for,
        now,
        csv_name="active-tickets.csv",
        summary=summary,
    )


def xname_listing(
    xname: str, rows: Sequence[Row], url_for: UrlFor, now: datetime, days: int = RECENT_DAYS
) -> Output:
    """Open and recently closed tickets of `xname` and everything below it."""
    mine = [r for r in rows if xname_matches(r.get("xname", ""), xname)]
    open_rows = [r for r in mine if r.get("status") != "closed"]
    closed = recently_closed(mine, now, days)
    return listing(
        f"Tickets for {xname}",
        [
            Group(f"Open ({len(open_rows)})", open_rows),
            Group(f"Closed in the last {days} days ({len(closed)})", closed, show_status=True),
        ],
        url_for,
        now,
        csv_name=f"tickets-{xname}.csv",
        empty=f"No open tickets and none closed in the last {days} days for `{escape(xname)}` "
        "or anything below it.",
    )


# --- one ticket -------------------------------------------------------------------------


def field_block(pairs: Sequence[tuple[str, str]]) -> dict[str, Any]:
    return {
        "type": "section",
        "fields": [
            {"type": "mrkdwn", "text": clip(f"*{name}*\n{value}", 2000)}
            for name, value in pairs[:10]
        ],
    }


def title(ticket: TicketLike) -> str:
    """`#12 Fan failure`, escaped: a ticket named in a notification's text."""
    return f"#{ticket.id} {escape(shorten(ticket.fields.get('summary', ''), SUMMARY_CHARS))}"


# Trac's own ticket fields; any other field in a ticket's CSV export is one of the site's
# custom fields ([ticket-custom] in trac.ini: xname, hostname...).
STANDARD_FIELDS = frozenset(
    {
        "id", "summary", "reporter", "owner", "description", "type", "status", "priority",
        "milestone", "component", "version", "resolution", "keywords", "cc", "time",
        "changetime",
    }
)  # fmt: skip
FIELD_LABELS = {"xname": "XName"}


def custom_fields(fields: Mapping[str, str]) -> list[tuple[str, str]]:
    """The site's custom fields with a value, labelled, in the order Trac exports them."""
    return [
        (FIELD_LABELS.get(name, name.replace("_", " ").capitalize()), value)
        for name, value in fields.items()
        if name not in STANDARD_FIELDS and not name.startswith("_") and (value or "").strip()
    ]


def field_blocks(pairs: Sequence[tuple[str, str]]) -> Blocks:
    """Section blocks of up to 10 fields each (Slack's limit per section)."""
    return [field_block(pairs[i : i + 10]) for i in range(0, len(pairs), 10)]


def ticket_detail(ticket: TicketLike, now: datetime, tz: tzinfo) -> Blocks:
    """One ticket: fields, description and its last comments."""
    f = ticket.fields
    status = f.get("status", "")
    if status == "closed" and f.get("resolution"):
        status += f" ({f['resolution']})"
    pairs = [
        ("Status", escape(status) or "?"),
        ("Type", escape(f.get("type", "")) or "-"),
        ("Priority", escape(f.get("priority", "")) or "-"),
        ("Owner", escape(f.get("owner", "")) or "nobody"),
        ("Reporter", escape(f.get("reporter", "")) or "-"),
        ("XName", f"`{escape(f['xname'])}`" if f.get("xname") else "-"),
        *(
            (label, escape(value))
            for label, value in custom_fields(f)
            if label != FIELD_LABELS["xname"]
        ),
        ("Created", f"{local_time(f.get('time'), tz)} ({age(f.get('time'), now)} ago)"),
        (
            "Modified",
            f"{local_time(f.get('changetime'), tz)} ({age(f.get('changetime'), now)} ago)",
        ),
    ]
    if f.get("component"):
        pairs.insert(6, ("Component", escape(f["component"])))
    blocks: Blocks = [
        header(f"#{ticket.id} {f.get('summary', '')}"),
        context(link(ticket.url, f"Open #{ticket.id} in Trac")),
        *field_blocks(pairs),
    ]
    description = f.get("description", "").strip()
    blocks.append(
        section(
            "*Description*\n"
            + (escape(clip(description, DESCRIPTION_CHARS)) if description else "_(none)_")
        )
    )
    comments = list(ticket.comments)
    if comments:
        blocks.append(DIVIDER)
        shown = comments[-LAST_COMMENTS:]
        title = (
            f"*Last {len(shown)} of {len(comments)} comments*"
            if len(comments) > len(shown)
            else "*Comments*"
        )
        blocks.append(section(title))
        for change in shown:
            blocks.append(
                section(
                    f"*{escape(change.author or 'anonymous')}* · {local_time(change.time, tz)}\n"
                    + escape(clip(change.new, COMMENT_CHARS))
                )
            )
    return blocks


def done(icon: str, verb: str, ticket: TicketLike, now: datetime, detail: str = "") -> Blocks:
    """The answer to a change: what was done to which ticket, and where it stands now."""
    f = ticket.fields
    line = f"{icon} {verb} {link(ticket.url, f'#{ticket.id}')} {escape(shorten(f.get('summary', ''), SUMMARY_CHARS))}"
    if detail:
        line += f"\n{detail}"
    facts = [escape(f.get(name, "")) for name in ("type", "priority", "status")]
    if f.get("xname"):
        facts.append(f"`{escape(f['xname'])}`")
    facts.append(f"owner {escape(f.get('owner') or 'nobody')}")
    return [section(line), context(" · ".join(x for x in facts if x))]
