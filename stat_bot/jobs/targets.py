"""Which nodes a guarded job's target selects, and the lock keys that keep two such jobs apart.

A job type with `exclusive: "<arg>"` holds a lock on every xname its target arg
selects while it runs; the dispatcher never starts a second exclusive job whose
locks overlap (one xname the same as, or an ancestor of, another: `x1000c0`
overlaps `x1000c0s0b0n0`, `x1000c1` does not overlap `x1000c10`). The set is
computed once, here, when the request is built (jobs/requests.py), and stored
with the job, so the confirmation a person reads and the lock the dispatcher
holds are the same nodes.

With the site's inventory (HW_INVENTORY) the target is expanded to its nodes
(an unknown target is refused before anything is offered). Without one it is
locked as typed when every name in it is an xname; anything else (a hostname, a
nid range, `all`) cannot be placed in the tree, so it locks everything: a guarded
action may wait longer, but never overlaps another on a node.
"""

from __future__ import annotations

from stat_bot.hardware.inventory import Inventory
from stat_bot.hardware.targets import TargetError, nodeset, select
from stat_bot.hardware.xnames import XnameError, lock_key, parse_xname
from stat_bot.jobs.model import ArgsError, TargetSet

LOCK_ALL = ""  # the empty key is a prefix of every key: it overlaps everything


def expand(target: str, inventory: Inventory | None, *, exclusive: bool = True) -> TargetSet:
    """The nodes `target` selects and their lock keys; ArgsError saying why it selects none."""
    typed = target.strip()
    if inventory is not None:
        try:
            nodes = select(inventory, typed or None)
        except TargetError as error:
            raise ArgsError(f"target {typed!r}: {error}") from None
        if not nodes:
            raise ArgsError(
                f"target {typed!r} selects no node of the inventory; check the xname or hostname"
            )
        return TargetSet(
            typed=typed,
            xnames=tuple(n.xname for n in nodes),
            hostnames=tuple(n.hostname for n in nodes),
            locks=tuple(dict.fromkeys(lock_key(parse_xname(n.xname)) for n in nodes)),
            from_inventory=True,
            exclusive=exclusive,
        )
    return TargetSet(typed=typed, locks=typed_locks(typed), exclusive=exclusive)


def typed_locks(target: str) -> tuple[str, ...]:
    """Lock keys for a target as typed (no inventory): its xnames, else everything."""
    if not target or target.lower() == "all":
        return (LOCK_ALL,)
    try:
        names = list(nodeset(target))  # bounded: a huge range is refused, not expanded
    except TargetError:
        return (LOCK_ALL,)
    try:
        return tuple(dict.fromkeys(lock_key(parse_xname(name)) for name in names))
    except XnameError:
        return (LOCK_ALL,)


def overlap(a: str, b: str) -> bool:
    """Whether two lock keys overlap: one is the other or an ancestor of it."""
    return a.startswith(b) or b.startswith(a)
