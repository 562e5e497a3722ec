"""What a hardware command acts on: a target, expanded against the inventory.

A target is an xname, a partial xname (everything below it), a bracket range
(`x1000c[0-3]s[0-7]b0n[0-1]`), a comma list, a hostname or a nid range
(`nid[000001-000128]`). ClusterShell's NodeSet does the range arithmetic and the
folding back for display; this module only decides what each expanded name means.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from ClusterShell.NodeSet import NodeSet, NodeSetException

from stat_bot.hardware.inventory import Inventory, InventoryError, Node, load_inventory
from stat_bot.hardware.xnames import XnameError, parse_xname

ALL = ("", "all", "*")
# More names than any site has nodes: a typo such as x[0-9999]c[0-99]... is refused
# before it is expanded into billions of strings.
MAX_NAMES = 100_000
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
XNAME_LIKE = re.compile(r"^x\d")
NID = re.compile(r"^nid0*(\d+)$")


class TargetError(ValueError):
    """A target that cannot be used; the message is for the person who typed it."""


NO_INVENTORY = (
    "HW_INVENTORY is not set, so there are no nodes to act on. Set it (environment file or "
    "variable) to a CSV or YAML file with the columns xname,bmc,hostname,nid,system, e.g.\n"
    "  xname,bmc,hostname,nid,system\n"
    "  x1000c0s0b0n0,bmc-x1000c0s0b0.example.org,nid000001,1,\n"
    'then check it with `stat-bot check-config` (README, "Hardware (hw)").'
)
SHOWN_PROBLEMS = 20


MAX_LENGTH = 4000
RANGE = re.compile(r"^(\d+)(?:-(\d+))?(?:/(\d+))?$")


def _estimate(text: str) -> int:
    """How many names `text` expands to, counted from its brackets without expanding them:
    NodeSet itself builds every number of a range, so `x[0-99999999]` would hang the job."""
    total, depth, term = 0, 0, []
    for char in text + ",":
        depth += (char == "[") - (char == "]")
        if char == "," and depth == 0:
            count = 1
            for group in re.findall(r"\[([^\]]*)\]", "".join(term)):
                size = 0
                for piece in group.split(","):
                    match = RANGE.match(piece.strip())
                    if match is None:
                        continue  # NodeSet says what is wrong with it
                    low, high, step = match.groups()
                    if high is not None:
                        size += max(0, int(high) - int(low)) // max(1, int(step or 1)) + 1
                    else:
                        size += 1
                count *= max(size, 1)
            total += count
            term = []
        else:
            term.append(char)
    return total


def nodeset(text: str) -> NodeSet:
    """NodeSet(text), refused (TargetError) when it is too long, would expand past
    MAX_NAMES, names a group or does not parse: every expansion of typed text goes here."""
    if len(text) > MAX_LENGTH:
        raise TargetError(
            f"a target of {len(text):,} characters is longer than {MAX_LENGTH:,}: use ranges "
            "such as x1000c[0-7] or a partial xname"
        )
    if (estimate := _estimate(text)) > MAX_NAMES:
        raise TargetError(
            f"{text[:60]!r} names {estimate:,} components, more than {MAX_NAMES:,}: "
            "check the ranges"
        )
    if len(parts := text.split()) > 1:
        raise TargetError(
            f"{text[:60]!r}: separate names with commas, not spaces, "
            f"e.g. {','.join(parts[:3])[:120]}"
        )
    if "@" in text:
        raise TargetError(
            f"{text!r}: node groups (@name) are not supported; write xnames, hostnames or nids"
        )
    try:
        nodes = NodeSet(text)
    except NodeSetException as error:
        raise TargetError(
            f"{text!r} is not a target ({error}); write e.g. x1000c0s0b0n0, x1000c0, "
            "x1000c[0-3]s[0-7]b0n[0-1], nid[000001-000128] or a hostname"
        ) from None
    if len(nodes) > MAX_NAMES:
        raise TargetError(
            f"{text[:60]!r} names {len(nodes):,} components, more than {MAX_NAMES:,}: "
            "check the ranges"
        )
    return nodes


def check_target(text: str) -> str:
    """The target, normalised, if its syntax is right (no inventory needed): for command
    arguments, so a typo is refused when typed rather than when the job runs."""
    value = text.strip()
    if value.lower() in ALL:
        return "all"
    for name in nodeset(value):
        if XNAME_LIKE.match(name):
            try:
                parse_xname(name)
            except XnameError as error:
                raise TargetError(str(error)) from None
        elif not NAME.match(name):
            raise TargetError(
                f"{name!r} is not an xname, hostname or nid (letters, digits, '.', '-', '_')"
            )
    return value


def select(inventory: Inventory, target: str | None) -> list[Node]:
    """The inventory's nodes the target names, in xname order; every name must match
    something, so a typo never silently shrinks what an action touches."""
    value = (target or "").strip()
    if value.lower() in ALL:
        return list(inventory.nodes)
    chosen: dict[str, Node] = {}
    unknown: list[str] = []
    for name in nodeset(value):
        found: list[Node] = []
        if XNAME_LIKE.match(name):
            try:
                xname = parse_xname(name)
            except XnameError as error:
                raise TargetError(str(error)) from None
            exact = inventory.by_xname.get(xname.text)
            found = [exact] if exact else inventory.under(xname)
        else:
            node = inventory.find(name)
            if node is None and (match := NID.match(name)):
                node = inventory.by_nid.get(int(match.group(1)))
            found = [node] if node else []
        if not found:
            unknown.append(name)
        for node in found:
            chosen[node.xname] = node
    if unknown:
        raise TargetError(
            f"not in the inventory ({inventory.source or 'HW_INVENTORY'}): {fold(unknown)}; "
            "`hw show` lists what it holds"
        )
    return sorted(chosen.values(), key=lambda node: node.parsed.sort_key)


def fold(names: Iterable[str]) -> str:
    """`x1000c0s0b0n0,x1000c0s0b0n1` -> `x1000c0s0b0n[0-1]`: short enough for one line."""
    return str(NodeSet.fromlist(list(names)))


def unusable(path: Path | str, error: InventoryError) -> str:
    """What a job says of an inventory that does not load: its first problems with their
    lines, and how to see them all."""
    lines = "\n".join(f"  - {p}" for p in error.problems[:SHOWN_PROBLEMS])
    more = len(error.problems) - SHOWN_PROBLEMS
    return (
        f"HW_INVENTORY {path} cannot be used ({len(error.problems)} problem(s)); fix it and "
        f"check with `stat-bot check-config`:\n{lines}"
        + (f"\n  ... and {more} more" if more > 0 else "")
    )


def select_from(path: Path | str | None, target: str) -> list[Node]:
    """The nodes `target` names in the inventory file at `path`: what every hw command does
    first, whether a built-in task or a workspace script. TargetError (the asker's mistake:
    no inventory, a name not in it, an empty one) or InventoryError (the site's: a file that
    does not load; `unusable` words it)."""
    if path is None or not str(path).strip():
        raise TargetError(NO_INVENTORY)
    inventory = load_inventory(path)
    nodes = select(inventory, target)
    if not nodes:
        raise TargetError(f"{target} selects no nodes: HW_INVENTORY {path} is empty")
    return nodes
