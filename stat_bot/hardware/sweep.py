"""What changed between two sweeps of the same scope: the part of a sweep people read.

A daily sweep of a thousand nodes that repeats the same twelve known problems every
morning trains people to stop reading it. So a sweep reports what is new (a node that
was fine, or not swept before, now has a problem), what recovered, and problems that
changed (a warning turned critical, another PSU failed); problems that are exactly as
they were are only counted. Nothing new, nothing recovered, nothing changed: the
sweep is quiet.

A problem is identified by the node's state and, for checked nodes, the severity and
component of each finding, not the finding's text: "CPU1 Temp 92 °C" and "CPU1 Temp
93 °C" are the same problem, and a sweep must not call it new every morning.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from stat_bot.hardware.health import RANK, NodeHealth, State


def signature(health: NodeHealth) -> tuple[str, frozenset[tuple[str, str]]]:
    """What makes a node's problem the same problem next time (state and findings' components)."""
    if health.state in (State.OK, State.WARNING, State.CRITICAL):
        parts = frozenset((f.severity, f.component) for f in health.findings)
        return health.state.value, parts
    return health.state.value, frozenset()


@dataclass(frozen=True)
class Change:
    """One node whose health is not what it was: `before` is None for a node new to the scope."""

    before: NodeHealth | None
    after: NodeHealth

    @property
    def xname(self) -> str:
        return self.after.xname


@dataclass
class SweepDiff:
    """The comparison of a sweep with the previous one of the same scope.

    `first` is True when there was no previous sweep: everything found is then new.
    `unchanged` counts problems exactly as they were; `gone` are nodes the previous
    sweep had and this one does not (taken out of the inventory).
    """

    first: bool
    new: list[Change] = field(default_factory=list)
    recovered: list[Change] = field(default_factory=list)
    changed: list[Change] = field(default_factory=list)
    unchanged: list[NodeHealth] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)

    @property
    def quiet(self) -> bool:
        """Nothing worth a message: an earlier sweep exists and nothing new, recovered or changed."""
        return not self.first and not (self.new or self.recovered or self.changed)

    def summary(self) -> str:
        """`2 new problems, 1 recovered, 1 changed, 12 unchanged` (parts that are zero left out)."""
        if self.first:
            return "first sweep of this scope: nothing earlier to compare with"
        parts = []
        if self.new:
            parts.append(f"{len(self.new)} new problem{'s' if len(self.new) != 1 else ''}")
        if self.recovered:
            parts.append(f"{len(self.recovered)} recovered")
        if self.changed:
            parts.append(f"{len(self.changed)} changed")
        count = len(self.unchanged)
        parts.append(f"{count} problem{'s' if count != 1 else ''} unchanged")
        if self.gone:
            parts.append(f"{len(self.gone)} no longer in the inventory")
        return ", ".join(parts) if parts else "nothing changed"


def _worst_first(changes: list[Change]) -> list[Change]:
    return sorted(changes, key=lambda c: RANK[c.after.state])


def compare(previous: Iterable[NodeHealth] | None, current: Iterable[NodeHealth]) -> SweepDiff:
    """Compare this sweep's results with the previous sweep's (None: there was none).

    Lists keep the current sweep's order (xname order), problems worst first.
    """
    current = list(current)
    if previous is None:
        diff = SweepDiff(first=True)
        diff.new = _worst_first([Change(None, h) for h in current if h.state.is_problem])
        return diff
    before = {h.xname: h for h in previous}
    diff = SweepDiff(first=False)
    for health in current:
        old = before.pop(health.xname, None)
        was_problem = old is not None and old.state.is_problem
        if health.state.is_problem:
            if not was_problem:
                diff.new.append(Change(old, health))
            elif old is not None and signature(old) != signature(health):
                diff.changed.append(Change(old, health))
            else:
                diff.unchanged.append(health)
        elif was_problem:
            diff.recovered.append(Change(old, health))
    diff.new = _worst_first(diff.new)
    diff.changed = _worst_first(diff.changed)
    diff.gone = list(before)
    return diff
