"""Trac ticket events as `trac_rules` see them: what an event holds, and which rules it meets.

The Trac plugin (contrib/trac/stat_bot_notify.py) POSTs one JSON event per ticket
created, changed or deleted; `read_ticket_event` turns the (already authenticated)
body into a TicketEvent, naming the part at fault when it is malformed. Rules in
job_configs.py (a namespace's `trac_rules`, checked in jobs/config.py against the
names here) are matched in this module, so the web route only verifies, parses,
enqueues and posts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stat_bot.jobs.config import TracRuleSpec

EVENTS = ("created", "changed", "deleted")

# Trac's own ticket fields, and `xname`, the custom field every STAT site has. A site's
# other custom fields may be used in a rule's args once the rule names them in `when`.
TICKET_FIELDS = (
    "summary", "reporter", "owner", "cc", "type", "status", "priority", "milestone",
    "component", "version", "resolution", "keywords", "description", "time", "changetime",
    "xname",
)  # fmt: skip
# What an event adds to its ticket's fields: the `{names}` any rule's args may use.
EVENT_VALUES = ("ticket", "event", "author", "link", "comment")
VALUES = (*EVENT_VALUES, *TICKET_FIELDS)

EVENT_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
FIELD_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,63}$")
MAX_FIELDS = 200  # Trac sites have a few dozen at most; more is not a ticket

JSON_TYPES: dict[type, str] = {
    str: "a string", int: "a number", bool: "true or false", float: "a number",
    dict: "an object", list: "an array",
}  # fmt: skip


class EventError(ValueError):
    """The body is not an event as the plugin sends it; the text names the part at fault."""


@dataclass(frozen=True)
class TicketEvent:
    """One ticket change: the ticket's fields after it, the fields' values before it, who, when."""

    event: str  # created | changed | deleted
    id: str  # the plugin's unique id for this event: replays are recognised by it
    ticket: int
    fields: Mapping[str, str]  # every field, custom ones included; "" when empty
    old_values: Mapping[str, str] = field(default_factory=dict)  # changed fields only
    comment: str = ""
    author: str = ""
    time: str = ""  # ISO 8601, from Trac
    link: str = ""  # the ticket's absolute URL, when Trac knows its own (base_url)

    def value(self, name: str) -> str:
        """A field's value, or one of EVENT_VALUES; "" for a field the ticket does not have."""
        if name == "ticket":
            return str(self.ticket)
        if name in ("event", "author", "link", "comment"):
            return str(getattr(self, name))
        return self.fields.get(name, "")

    @property
    def changed(self) -> list[str]:
        """The fields this change altered (a comment alone alters none)."""
        return [name for name, old in self.old_values.items() if old != self.fields.get(name, "")]

    @property
    def action(self) -> str:
        """HPC-STAT's "action": what happened to the ticket's status, in a few words.

        `new`, `new → assigned`, `assigned → closed (fixed)`, `reassigned to bob`,
        `commented`, `updated`, `deleted`.
        """
        status = self.fields.get("status", "")
        resolution = self.fields.get("resolution", "")
        closed = f" ({resolution})" if status == "closed" and resolution else ""
        if self.event == "created":
            return f"{status or 'new'}{closed}"
        if self.event == "deleted":
            return "deleted"
        changed = self.changed
        if "status" in changed:
            old = self.old_values["status"] or "new"
            return f"{old} → {status}{closed}"
        if "resolution" in changed and closed:
            return f"{status}{closed}"
        if "owner" in changed:
            owner = self.fields.get("owner", "")
            return f"reassigned to {owner}" if owner else "unassigned"
        if not changed and self.comment.strip():
            return "commented"
        return "updated"


def _text(value: Any, where: str) -> str:
    """A field value as text: Trac sends strings, or null for an empty field."""
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        got = JSON_TYPES.get(type(value), f"a {type(value).__name__}")
        raise EventError(f"{where} must be a string or null, not {got}")
    return str(value)


def _values(body: Mapping[str, Any], key: str, *, required: bool) -> dict[str, str]:
    raw = body.get(key)
    if raw is None:
        if required:
            raise EventError(f"the event has no {key!r} object (the ticket's fields)")
        return {}
    if not isinstance(raw, dict):
        got = JSON_TYPES.get(type(raw), f"a {type(raw).__name__}")
        raise EventError(f"{key!r} must be an object of field names to values, not {got}")
    if len(raw) > MAX_FIELDS:
        raise EventError(f"{key!r} has {len(raw)} fields; a ticket has at most {MAX_FIELDS}")
    values = {}
    for name, value in raw.items():
        if not FIELD_NAME.match(name):
            raise EventError(
                f"{key!r} has the field name {name[:70]!r}; Trac's field names are lower-case "
                "letters, digits and _"
            )
        values[name] = _text(value, f"{key}.{name}")
    return values


def read_ticket_event(body: Any) -> TicketEvent:
    """The event in a parsed JSON body, or EventError naming the part at fault.

    Parts this version does not use are ignored, so a newer plugin still works.
    """
    if not isinstance(body, dict):
        got = JSON_TYPES.get(type(body), "null")
        raise EventError(f"the body must be a JSON object (a ticket event), not {got}")
    event = body.get("event")
    if event not in EVENTS:
        raise EventError(
            f"'event' must be one of {', '.join(EVENTS)} (got {str(event)[:40]!r})"
            if event is not None
            else f"the event has no 'event' ({', '.join(EVENTS)})"
        )
    event_id = body.get("id")
    if not isinstance(event_id, str) or not EVENT_ID.match(event_id):
        raise EventError(
            "'id' must be the event's unique id: 1-128 letters, digits, '.', '_', ':' or '-' "
            f"(got {str(event_id)[:40]!r})"
        )
    ticket = body.get("ticket")
    if not isinstance(ticket, int) or isinstance(ticket, bool) or ticket < 1:
        raise EventError(f"'ticket' must be the ticket's number (got {str(ticket)[:40]!r})")
    texts = {key: _text(body.get(key), key) for key in ("comment", "author", "time", "link")}
    return TicketEvent(
        event=event,
        id=event_id,
        ticket=ticket,
        fields=_values(body, "fields", required=True),
        old_values=_values(body, "old_values", required=False),
        **texts,
    )


def _meets(value: str, condition: bool | str | list[str]) -> bool:
    if isinstance(condition, bool):
        return bool(value.strip()) is condition
    patterns = [condition] if isinstance(condition, str) else condition
    folded = value.strip().casefold()
    return any(fnmatchcase(folded, pattern.strip().casefold()) for pattern in patterns)


def matches(rule: TracRuleSpec, event: TicketEvent) -> bool:
    """Whether the event meets every condition the rule sets (none set: every such event).

    `when` compares the ticket's fields after the change: True means not empty,
    False empty, text a glob pattern (case ignored), a list any of its patterns.
    `changed` (changed events only) wants at least one of its fields altered.
    """
    if rule.event != event.event:
        return False
    if rule.changed and not set(rule.changed) & set(event.changed):
        return False
    return all(_meets(event.value(name), cond) for name, cond in rule.when.items())


class _Blank(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return ""


def rule_args(rule: TracRuleSpec, event: TicketEvent) -> dict[str, str]:
    """The job's arguments: each of the rule's `args` with `{field}` values filled in."""
    values = _Blank(event.fields)
    values.update({name: event.value(name) for name in EVENT_VALUES})
    return {key: value.format_map(values) for key, value in rule.args.items()}
