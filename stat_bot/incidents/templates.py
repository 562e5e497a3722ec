"""Incident messages as JSON Block Kit templates, and the roles and statuses they offer.

A site changes what incidents look like by copying the shipped folder
(stat_bot/incidents/templates/) and pointing TEMPLATES_DIRECTORY at the copy.
Each template is a JSON list of blocks whose strings may hold `{placeholder}`s;
which ones each template may use is fixed here. Everything is checked when a
process starts (`load`), so a typo stops the service with the file and the
placeholder named rather than breaking the first incident at 3 a.m.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stat_bot.hardware.report import escape as escape_untrusted

PLAIN_TEXT_MAX = (
    150  # a header's text; buttons and options allow less, placeholders there are short
)
MRKDWN_TEXT_MAX = 3000  # a section's text
MAX_ROLES = 10  # one Claim button and one Assign select each, in one message


def escape_text(text: str) -> str:
    """Text people typed, for mrkdwn: <, > and & escaped and a plain @channel, @here or
    @everyone defused, so a description can neither ping everyone nor fake a link."""
    return escape_untrusted(text)


SHIPPED = Path(__file__).parent / "templates"
PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*)\}")
COMMON = frozenset({"incident_id", "description", "status", "channel"})

# Each template and the placeholders it may use (beside COMMON).
TEMPLATES: dict[str, frozenset[str]] = {
    "control": COMMON | {"opened_by", "opened_at", "video"},
    "digest": COMMON | {"opened_at", "age", "roles"},
    "update": COMMON | {"text"},
    "role_dm": COMMON | {"role_name", "role_description"},
    "opened": COMMON,
    "snapshot": COMMON | {"snapshot"},
    "resolved": COMMON | {"durations", "archive"},
}
KEY = re.compile(r"^[a-z][a-z0-9_-]{0,30}$")
MAX_BLOCKS = 38  # leaves room for the role (MAX_ROLES) and status blocks of the control message


class TemplateError(ValueError):
    """A template or incident.json is wrong; the message names the file and what to fix."""


@dataclass(frozen=True)
class Role:
    key: str  # what commands and buttons use: `incident role commander @ada`
    name: str
    description: str


@dataclass(frozen=True)
class Templates:
    """The loaded, checked templates, roles and statuses of one folder."""

    directory: Path
    blocks: Mapping[str, list[dict[str, Any]]]
    roles: tuple[Role, ...]
    statuses: tuple[str, ...]
    identified_status: str | None
    resolved_status: str

    @property
    def first_status(self) -> str:
        return self.statuses[0]

    def role(self, key: str) -> Role | None:
        wanted = key.lower().strip()
        for role in self.roles:
            if wanted in (role.key, role.name.lower()):
                return role
        return None

    def status(self, name: str) -> str | None:
        wanted = name.lower().strip()
        return wanted if wanted in self.statuses else None

    def render(
        self, name: str, values: Mapping[str, object], *, raw: frozenset[str] = frozenset()
    ) -> list[dict[str, Any]]:
        """The template's blocks with every placeholder filled in.

        Values are escaped for mrkdwn (a description cannot mention @channel or fake a
        link) unless named in `raw` (text the caller built from escaped parts).
        """

        def text(key: str, plain: bool) -> str:
            value = "" if values.get(key) is None else str(values[key])
            if plain:  # Slack shows plain_text as it is: nothing to escape, nothing parsed
                return value
            return value if key in raw else escape_text(value)

        def fill(node: Any, plain: bool = False) -> Any:
            if isinstance(node, str):
                filled = PLACEHOLDER.sub(lambda m: text(m[1], plain), node)
                return filled[:PLAIN_TEXT_MAX] if plain else filled[:MRKDWN_TEXT_MAX]
            if isinstance(node, list):
                return [fill(n) for n in node]
            if isinstance(node, dict):
                is_plain = node.get("type") == "plain_text"
                return {k: fill(v, is_plain and k == "text") for k, v in node.items()}
            return node

        return fill(copy.deepcopy(self.blocks[name]))


def load(directory: Path | None) -> Templates:
    """Read and check a templates folder (None: the shipped one); TemplateError if wrong."""
    folder = SHIPPED if directory is None else directory.expanduser()
    if not folder.is_dir():
        raise TemplateError(
            f"TEMPLATES_DIRECTORY {folder} is not a folder: set it to a copy of {SHIPPED} "
            "or leave it empty for the shipped templates"
        )
    blocks = {
        name: _template(folder / f"{name}.json", allowed) for name, allowed in TEMPLATES.items()
    }
    roles, statuses, identified, resolved = _incident_config(folder / "incident.json")
    return Templates(folder, blocks, roles, statuses, identified, resolved)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TemplateError(f"{path} is missing: copy it from {SHIPPED / path.name}") from None
    except UnicodeDecodeError:
        raise TemplateError(f"{path} is not UTF-8 text") from None
    except json.JSONDecodeError as error:
        raise TemplateError(
            f"{path} is not valid JSON (line {error.lineno}, column {error.colno}: {error.msg})"
        ) from None


def _template(path: Path, allowed: frozenset[str]) -> list[dict[str, Any]]:
    data = _read_json(path)
    if (
        not isinstance(data, list)
        or not data
        or not all(isinstance(b, dict) and "type" in b for b in data)
    ):
        raise TemplateError(f'{path} must be a JSON list of Block Kit blocks, each with a "type"')
    if len(data) > MAX_BLOCKS:
        raise TemplateError(f"{path} has {len(data)} blocks; at most {MAX_BLOCKS} fit a message")
    for used in PLACEHOLDER.findall(json.dumps(data)):
        if used not in allowed:
            raise TemplateError(
                f"{path} uses the unknown placeholder {{{used}}}; {path.name} may use "
                + ", ".join(f"{{{name}}}" for name in sorted(allowed))
            )
    return data


def _incident_config(path: Path) -> tuple[tuple[Role, ...], tuple[str, ...], str | None, str]:
    data = _read_json(path)
    if not isinstance(data, dict):
        raise TemplateError(f'{path} must be a JSON object with "roles" and "statuses"')
    raw_roles = data.get("roles")
    if not isinstance(raw_roles, list) or not raw_roles:
        raise TemplateError(
            f'{path}: "roles" must be a non-empty list of {{key, name, description}}'
        )
    roles = []
    for index, raw in enumerate(raw_roles):
        if not isinstance(raw, dict) or not all(
            isinstance(raw.get(k), str) and raw.get(k) for k in ("key", "name", "description")
        ):
            raise TemplateError(
                f'{path}: role {index + 1} needs a "key", a "name" and a "description", each a text'
            )
        if not KEY.match(raw["key"]):
            raise TemplateError(
                f"{path}: role key {raw['key']!r} must be lower case letters, digits, - or _ (at most 31)"
            )
        roles.append(Role(raw["key"], raw["name"], raw["description"]))
    if len(roles) > MAX_ROLES:
        raise TemplateError(f"{path}: at most {MAX_ROLES} roles fit the pinned message")
    if len({r.key for r in roles}) != len(roles):
        raise TemplateError(f"{path}: two roles share a key")
    statuses = data.get("statuses")
    if (
        not isinstance(statuses, list)
        or len(statuses) < 2
        or not all(isinstance(s, str) and KEY.match(s) for s in statuses)
    ):
        raise TemplateError(
            f'{path}: "statuses" must list at least two statuses, lower case words such as "investigating"'
        )
    if len(statuses) > 100:
        raise TemplateError(f"{path}: at most 100 statuses fit a select")
    if len(set(statuses)) != len(statuses):
        raise TemplateError(f"{path}: a status is listed twice")
    resolved = data.get("resolved_status", statuses[-1])
    identified = data.get("identified_status")
    for field, value in (("resolved_status", resolved), ("identified_status", identified)):
        if value is not None and value not in statuses:
            raise TemplateError(
                f"{path}: {field} {value!r} is not one of the statuses ({', '.join(statuses)})"
            )
    if resolved == statuses[0]:
        raise TemplateError(
            f"{path}: the first status is where incidents start; it cannot be the resolved one"
        )
    return tuple(roles), tuple(statuses), identified, resolved
