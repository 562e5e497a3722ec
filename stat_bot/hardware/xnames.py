"""HPE Cray EX component names (xnames): parse, validate, order, relate.

An xname is a path from the cabinet down (`x1000c0s0b0n0` is node 0 of BMC 0 in
slot 0 of chassis 0 of cabinet 1000), so every prefix made of whole parts is the
name of an ancestor. Targets, locks and inventories all lean on that: "everything
under x1000c0" is a containment test, and two actions overlap when one's xname
contains the other's. Containment is decided on parsed parts, never on text
prefixes (x1000c1 is not an ancestor of x1000c10).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

# Which part may follow which, and what the result is called: (parent kind, letter) -> kind.
# The letters and their limits follow HPE's naming convention for EX cabinets.
GRAMMAR: dict[tuple[str, str], str] = {
    ("", "x"): "cabinet",
    ("cabinet", "c"): "chassis",
    ("cabinet", "m"): "cabinet_pdu_controller",
    ("cabinet", "b"): "cabinet_bmc",
    ("cabinet", "e"): "cabinet_environment_controller",
    ("cabinet_pdu_controller", "p"): "cabinet_pdu",
    ("cabinet_pdu", "j"): "cabinet_pdu_outlet",
    ("chassis", "s"): "slot",
    ("chassis", "r"): "router_slot",
    ("chassis", "b"): "chassis_bmc",
    ("chassis", "w"): "management_switch",
    ("chassis", "h"): "switch_connector",
    ("management_switch", "j"): "management_switch_port",
    ("switch_connector", "s"): "switch_connector_slot",
    ("slot", "b"): "node_bmc",
    ("slot", "e"): "node_enclosure",
    ("node_bmc", "n"): "node",
    ("node", "p"): "processor",
    ("node", "d"): "dimm",
    ("node", "i"): "hsn_nic",
    ("router_slot", "b"): "router_bmc",
    ("router_slot", "e"): "router_enclosure",
    ("router_slot", "j"): "router_connector",
    ("router_slot", "a"): "router_tor",
    ("router_connector", "p"): "router_port",
}

# Largest number each part takes (cabinets up to 9999; the rest are small).
LIMITS: dict[str, int] = {"x": 9999, "c": 99, "s": 99, "r": 99, "j": 999, "w": 99, "h": 99}
DEFAULT_LIMIT = 9

KIND_WORDS = {kind: kind.replace("_", " ") for kind in GRAMMAR.values()}
PART = re.compile(r"([a-z])(\d*)")


class XnameError(ValueError):
    """Text is not an xname; the message names the part that is wrong and what fits there."""

    def __init__(self, text: str, detail: str) -> None:
        self.text = text
        self.detail = detail
        super().__init__(f"{text!r} is not an xname: {detail}" if text else detail)


@dataclass(frozen=True)
class Xname:
    """A parsed xname: its parts from the cabinet down, and what kind of component it names."""

    parts: tuple[tuple[str, int], ...]
    kind: str

    @cached_property
    def text(self) -> str:
        return "".join(f"{letter}{number}" for letter, number in self.parts)

    def __str__(self) -> str:
        return self.text

    @property
    def parent(self) -> Xname | None:
        if len(self.parts) == 1:
            return None
        return _build(self.parts[:-1])

    def ancestors(self) -> list[Xname]:
        """From the cabinet down to (not including) this component."""
        return [_build(self.parts[:n]) for n in range(1, len(self.parts))]

    def contains(self, other: Xname) -> bool:
        """True when `other` is this component or anything below it."""
        return other.parts[: len(self.parts)] == self.parts

    @property
    def sort_key(self) -> tuple[tuple[str, int], ...]:
        """Natural order: x1000c2 before x1000c10, parents before their children."""
        return self.parts

    def child(self, letter: str, number: int) -> Xname:
        return _build((*self.parts, (letter, number)))


def _build(parts: tuple[tuple[str, int], ...]) -> Xname:
    kind = ""
    for letter, _number in parts:
        kind = GRAMMAR[(kind, letter)]
    return Xname(parts, kind)


def _expected(kind: str) -> str:
    letters = [
        f"{letter} ({KIND_WORDS[child]})" for (k, letter), child in GRAMMAR.items() if k == kind
    ]
    return ", ".join(letters) if letters else "nothing (it is the lowest level)"


def parse_xname(text: str) -> Xname:
    """Parse `text`; the error says which part is wrong and what may come there instead."""
    raw = text
    value = raw.lower()
    if not value:
        raise XnameError("", "an xname is empty: write one such as x1000c0s0b0n0")
    parts: list[tuple[str, int]] = []
    kind = ""
    position = 0
    while position < len(value):
        match = PART.match(value, position)
        if match is None:
            rest = raw[position:]
            where = f"after {value[:position]!r}" if position else "at the start"
            raise XnameError(
                raw,
                f"{rest!r} {where} is not a letter followed by a number; "
                f"expected {_expected(kind)} (e.g. x1000c0s0b0n0)",
            )
        letter, digits = match.group(1), match.group(2)
        child = GRAMMAR.get((kind, letter))
        if child is None:
            where = f"after {value[:position]!r} ({KIND_WORDS[kind]})" if kind else "at the start"
            raise XnameError(raw, f"{letter!r} {where} is not allowed; expected {_expected(kind)}")
        if not digits:
            raise XnameError(
                raw, f"{KIND_WORDS[child]} {letter!r} after {value[:position]!r} needs a number"
            )
        number = int(digits)
        limit = LIMITS.get(letter, DEFAULT_LIMIT)
        if number > limit or (len(digits) > 1 and digits.startswith("0")):
            raise XnameError(
                raw,
                f"{KIND_WORDS[child]} number {digits!r} in {match.group(0)!r} must be "
                f"0-{limit} without leading zeros",
            )
        parts.append((letter, number))
        kind = child
        position = match.end()
    return Xname(tuple(parts), kind)


def is_xname(text: str) -> bool:
    try:
        parse_xname(text)
    except XnameError:
        return False
    return True


def overlaps(a: Xname, b: Xname) -> bool:
    """Two components overlap when one is the other or below it (a lock's conflict rule)."""
    return a.contains(b) or b.contains(a)


def lock_key(xname: Xname) -> str:
    """Text whose plain prefix test is containment: `x1000.c0.` is a prefix of `x1000.c0.s1.`
    but not of `x1000.c01.`: for storing locks where only string comparison is at hand."""
    return "".join(f"{letter}{number}." for letter, number in xname.parts)
