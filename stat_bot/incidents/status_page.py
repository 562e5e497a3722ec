"""What the public status page and its JSON feed show: built from incidents, settings and a time.

The page is read by anyone (no login) and by other sites, so what it says is chosen
here, field by field, rather than filtered out of the full incident: a field that is
not built here cannot leak. Without STATUS_PAGE_DETAILS an incident is only its
number, its status, its times and the cabinets and chassis it touches; nothing a
person typed (description, channel name), no user, no ticket and no xname below a
chassis. With details the description (as plain text) and the node names are added.

Pure functions: the web route (web/status_page.py) reads the queue and the clock and
passes them in, so every rule here is tested without a server.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from stat_bot.hardware.xnames import XnameError, parse_xname
from stat_bot.incidents.model import Incident
from stat_bot.settings import Settings

OPERATIONAL = "operational"
RESOLVED = "resolved"
OPEN = "open"  # shown for an open incident whose status is not a plain word

# Open statuses from worst to least bad. A status not listed (a site's own, from
# incident.json) counts as the worst: a status page should not call an unknown
# state mild.
SEVERITY: tuple[str, ...] = ("investigating", "identified", "monitoring")

# What a public status may look like: a plain word of a configured list, never free text.
STATUS_WORD = re.compile(r"[a-z][a-z0-9_-]{0,31}")
DESCRIPTION_LIMIT = 500
DAY = 86400.0

# Slack's markup in a description: <https://x|label>, <@U123|name>, <#C123|name>, <!here>.
# Other text in angle brackets is left as typed (the page escapes it).
SLACK_MARKUP = re.compile(r"<([@#!][^<>]*|(?:https?|mailto):[^<>]*)>")
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]+")


@dataclass(frozen=True, slots=True)
class Component:
    """A cabinet or chassis an open incident affects, with the worst status touching it."""

    name: str
    kind: str  # "cabinet" or "chassis"
    state: str

    def data(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "state": self.state}


@dataclass(frozen=True, slots=True)
class PublicIncident:
    """One incident as the public sees it; `description` and `nodes` only with details."""

    id: int
    status: str
    is_open: bool
    opened_at: str
    resolved_at: str | None
    components: tuple[str, ...]
    description: str | None = None
    nodes: tuple[str, ...] | None = None

    @property
    def title(self) -> str:
        return f"Incident #{self.id}"

    def data(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "title": self.title,
            "status": self.status,
            "open": self.is_open,
            "opened_at": self.opened_at,
            "resolved_at": self.resolved_at,
            "components": list(self.components),
        }
        if self.description is not None:
            data["description"] = self.description
        if self.nodes is not None:
            data["nodes"] = list(self.nodes)
        return data


@dataclass(frozen=True, slots=True)
class StatusPage:
    """The whole page: overall state, affected components, open then recently resolved incidents."""

    title: str
    state: str
    updated_at: str
    components: tuple[Component, ...]
    incidents: tuple[PublicIncident, ...]
    resolved_days: float

    @property
    def open_incidents(self) -> list[PublicIncident]:
        return [i for i in self.incidents if i.is_open]

    @property
    def resolved_incidents(self) -> list[PublicIncident]:
        return [i for i in self.incidents if not i.is_open]

    @property
    def summary(self) -> str:
        """One line for the banner: `All systems operational`, `Investigating: 2 open incidents`."""
        count = len(self.open_incidents)
        if not count:
            return "All systems operational"
        noun = "incident" if count == 1 else "incidents"
        return f"{self.state.replace('_', ' ').capitalize()}: {count} open {noun}"

    def data(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "state": self.state,
            "summary": self.summary,
            "updated_at": self.updated_at,
            "components": [c.data() for c in self.components],
            "incidents": [i.data() for i in self.incidents],
        }


def iso(ts: float) -> str:
    """ISO 8601 in UTC, to the second: `2026-12-02T08:00:00Z`."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def public_status(incident: Incident) -> str:
    """`resolved`, or the open incident's status when it is a plain word (else `open`)."""
    if not incident.is_open:
        return RESOLVED
    status = incident.status.strip().lower()
    return status if STATUS_WORD.fullmatch(status) and status != OPERATIONAL else OPEN


def severity(status: str) -> int:
    """Lower is worse; unknown statuses are the worst of all."""
    return SEVERITY.index(status) if status in SEVERITY else -1


def worst(statuses: Iterable[str]) -> str:
    """The worst of some open statuses; `operational` when there are none."""
    return min(statuses, key=severity, default=OPERATIONAL)


def components_of(xnames: Iterable[str]) -> tuple[str, ...]:
    """The cabinets and chassis these xnames are in or are, in natural order; invalid text skipped.

    A node (or blade, BMC, slot) gives its cabinet and its chassis; a cabinet-level part
    (a PDU, a cabinet controller) gives the cabinet only.
    """
    found = {}
    for text in xnames:
        try:
            xname = parse_xname(text.strip())
        except XnameError:
            continue
        for part in [*xname.ancestors(), xname][:2]:
            if part.kind in ("cabinet", "chassis"):
                found[part.sort_key] = part.text
    return tuple(found[key] for key in sorted(found))


def nodes_of(xnames: Iterable[str]) -> tuple[str, ...]:
    """The valid xnames below a chassis (shown only with details), normalised and in order."""
    found = {}
    for text in xnames:
        try:
            xname = parse_xname(text.strip())
        except XnameError:
            continue
        if len(xname.parts) > 2:
            found[xname.sort_key] = xname.text
    return tuple(found[key] for key in sorted(found))


def _markup(match: re.Match[str]) -> str:
    inner = match.group(1)
    target, _, label = inner.partition("|")
    if target.startswith(("@", "#")):  # a user or a channel: its name if given, never its id
        return target[0] + label if label else ("@someone" if target[0] == "@" else "#a-channel")
    if target.startswith("!"):  # <!here>, <!channel>, <!subteam^ID|@group>
        return label or "@" + target[1:].split("^")[0]
    return label or target


def plain_text(description: str) -> str:
    """A description without Slack's markup or escapes, on one line, at most DESCRIPTION_LIMIT."""
    text = SLACK_MARKUP.sub(_markup, description)
    text = html.unescape(text)  # Slack sends &lt; &gt; &amp;; the page escapes them again
    text = " ".join(CONTROL.sub(" ", text).split())
    return text if len(text) <= DESCRIPTION_LIMIT else text[: DESCRIPTION_LIMIT - 1] + "…"


def public_incident(incident: Incident, *, details: bool) -> PublicIncident:
    return PublicIncident(
        id=incident.id,
        status=public_status(incident),
        is_open=incident.is_open,
        opened_at=iso(incident.opened_at),
        resolved_at=None if incident.resolved_at is None else iso(incident.resolved_at),
        components=components_of(incident.xnames),
        description=plain_text(incident.description) if details else None,
        nodes=nodes_of(incident.xnames) if details else None,
    )


def shown(incident: Incident, *, resolved_days: float, now: float) -> bool:
    """Open incidents always; resolved ones for `resolved_days` days after resolving."""
    return incident.resolved_at is None or incident.resolved_at >= now - resolved_days * DAY


def build_status_page(
    incidents: Sequence[Incident],
    *,
    title: str,
    details: bool,
    resolved_days: float,
    now: float,
) -> StatusPage:
    """The page for `now`: open incidents newest first, then resolved ones, newest resolved first."""
    kept = [i for i in incidents if shown(i, resolved_days=resolved_days, now=now)]
    opened = sorted((i for i in kept if i.is_open), key=lambda i: (-i.opened_at, -i.id))
    resolved = sorted(
        (i for i in kept if not i.is_open), key=lambda i: (-(i.resolved_at or 0.0), -i.id)
    )
    public = tuple(public_incident(i, details=details) for i in [*opened, *resolved])
    states: dict[str, list[str]] = {}
    for incident in public:
        if incident.is_open:
            for name in incident.components:
                states.setdefault(name, []).append(incident.status)
    components = tuple(
        Component(name, parse_xname(name).kind, worst(found))
        for name, found in sorted(states.items(), key=lambda item: parse_xname(item[0]).sort_key)
    )
    return StatusPage(
        title=title,
        state=worst(i.status for i in public if i.is_open),
        updated_at=iso(now),
        components=components,
        incidents=public,
        resolved_days=resolved_days,
    )


def status_page_for(settings: Settings, incidents: Sequence[Incident], now: float) -> StatusPage:
    """The page as the settings (STATUS_PAGE_TITLE, _DETAILS, _RESOLVED_DAYS) ask for it."""
    return build_status_page(
        incidents,
        title=settings.status_page_title,
        details=settings.status_page_details,
        resolved_days=settings.status_page_resolved_days,
        now=now,
    )
