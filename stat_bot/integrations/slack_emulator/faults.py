"""Injected Web API failures, so tests can show the bot's retry handlers at work.

A fault is armed for the next N matching calls and then disarms itself, which
lets a test say "the next two chat.postMessage calls get HTTP 429" and then
check that the message arrived anyway.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stat_bot.integrations.slack_emulator.workspace import SlackError


@dataclass
class Fault:
    """The next `remaining` calls of `methods` (None: any method) fail with HTTP `status`."""

    kind: str
    remaining: int
    status: int
    methods: frozenset[str] | None = None
    retry_after: int = 1

    def matches(self, method: str) -> bool:
        return self.remaining > 0 and (self.methods is None or method in self.methods)

    def to_api(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "remaining": self.remaining,
            "status": self.status,
            "methods": sorted(self.methods) if self.methods is not None else None,
            "retry_after": self.retry_after,
        }


class FaultPlan:
    """The armed faults, consumed first come first served."""

    def __init__(self) -> None:
        self.faults: list[Fault] = []

    def arm(self, spec: dict[str, Any]) -> list[Fault]:
        """Arm `rate_limit` and/or `server_error` from a control API body."""
        armed = []
        for kind, status in (("rate_limit", 429), ("server_error", 500)):
            options = spec.get(kind)
            if options is None:
                continue
            if not isinstance(options, dict):
                raise SlackError("invalid_arguments", f"{kind} must be an object")
            methods = options.get("methods")
            fault = Fault(
                kind=kind,
                remaining=int(options.get("count", 1)),
                status=int(options.get("status", status)) if kind == "server_error" else 429,
                methods=frozenset(methods) if methods else None,
                retry_after=int(options.get("retry_after", 1)),
            )
            if fault.status not in (429, 500, 502, 503, 504):
                raise SlackError(
                    "invalid_arguments", f"status {fault.status} is not a server error"
                )
            armed.append(fault)
        self.faults.extend(armed)
        return armed

    def take(self, method: str) -> Fault | None:
        """The fault this call must suffer, if any, counting it as used."""
        for fault in self.faults:
            if fault.matches(method):
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self.faults.remove(fault)
                return fault
        return None

    def clear(self) -> None:
        self.faults.clear()
