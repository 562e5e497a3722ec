"""A node's health as every hardware check reports it, whatever asked (Redfish or SSH).

One shape for all of them, so a report, a sweep comparison and a closing-the-loop
rule read the same thing. A BMC that cannot be asked is a state of its own with its
reason, never an exception: one dead BMC must not hide the other 1,023 results.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

Severity = Literal["warning", "critical"]


class State(StrEnum):
    OK = "ok"
    WARNING = "warning"
    CRITICAL = "critical"
    UNREACHABLE = "unreachable"
    AUTH_REFUSED = "auth_refused"
    TIMEOUT = "timeout"
    MALFORMED = "malformed"
    UNKNOWN = "unknown"

    @property
    def words(self) -> str:
        return STATE_WORDS[self]

    @property
    def is_problem(self) -> bool:
        return self is not State.OK


STATE_WORDS = {
    State.OK: "ok",
    State.WARNING: "warning",
    State.CRITICAL: "critical",
    State.UNREACHABLE: "BMC unreachable",
    State.AUTH_REFUSED: "credentials refused",
    State.TIMEOUT: "BMC timed out",
    State.MALFORMED: "BMC answered garbage",
    State.UNKNOWN: "unknown",
}
# The order totals and problem lists use: worst first.
ORDER = [
    State.CRITICAL,
    State.WARNING,
    State.UNREACHABLE,
    State.AUTH_REFUSED,
    State.TIMEOUT,
    State.MALFORMED,
    State.UNKNOWN,
    State.OK,
]
RANK = {state: index for index, state in enumerate(ORDER)}


@dataclass(frozen=True)
class Finding:
    """One thing wrong, in words an admin acts on: component "PSU 2", text "PSU 2: Critical"."""

    severity: Severity
    component: str
    text: str

    def to_dict(self) -> dict[str, str]:
        return {"severity": self.severity, "component": self.component, "text": self.text}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Finding:
        return cls(data["severity"], data["component"], data["text"])


def worst(findings: Iterable[Finding]) -> State:
    severities = {finding.severity for finding in findings}
    if "critical" in severities:
        return State.CRITICAL
    if "warning" in severities:
        return State.WARNING
    return State.OK


@dataclass
class NodeHealth:
    """What one check learned about one node."""

    xname: str
    hostname: str | None = None
    state: State = State.UNKNOWN
    findings: list[Finding] = field(default_factory=list)
    power_state: str | None = None
    reason: str | None = None
    checked_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def add(self, findings: Iterable[Finding]) -> None:
        """Merge more findings (e.g. SSH's after Redfish's); the state follows the worst."""
        self.findings.extend(findings)
        if self.state in (State.OK, State.WARNING, State.CRITICAL, State.UNKNOWN):
            self.state = worst(self.findings)

    @property
    def problems(self) -> list[str]:
        """The node's trouble as lines: its findings, or why it could not be checked."""
        if self.state in (State.OK, State.WARNING, State.CRITICAL):
            return [finding.text for finding in self.findings]
        return [f"{self.state.words}: {self.reason}" if self.reason else self.state.words]

    def to_dict(self) -> dict[str, Any]:
        return {
            "xname": self.xname,
            "hostname": self.hostname,
            "state": self.state.value,
            "findings": [finding.to_dict() for finding in self.findings],
            "power_state": self.power_state,
            "reason": self.reason,
            "checked_at": self.checked_at.isoformat(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NodeHealth:
        checked = data.get("checked_at")
        return cls(
            xname=data["xname"],
            hostname=data.get("hostname"),
            state=State(data.get("state", "unknown")),
            findings=[Finding.from_dict(item) for item in data.get("findings", [])],
            power_state=data.get("power_state"),
            reason=data.get("reason"),
            checked_at=datetime.fromisoformat(checked) if checked else datetime.now(UTC),
        )


def totals_line(results: Iterable[NodeHealth]) -> str:
    """`16 nodes: 14 ok, 1 warning, 1 critical`: the first line of every report."""
    results = list(results)
    counts = Counter(result.state for result in results)
    noun = "node" if len(results) == 1 else "nodes"
    parts = [f"{counts[state]} {state.words}" for state in ORDER if counts[state]]
    return f"{len(results)} {noun}: {', '.join(parts)}" if parts else f"0 {noun}"


def by_severity(results: Iterable[NodeHealth]) -> list[NodeHealth]:
    """Problem nodes worst first, then in xname order as given."""
    return sorted((r for r in results if r.state.is_problem), key=lambda r: RANK[r.state])
