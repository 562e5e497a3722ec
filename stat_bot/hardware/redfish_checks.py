"""Redfish resources -> Findings in words: the checks themselves, pure and testable.

Each function takes the JSON of one Redfish resource (a dict, as any client reads
it) and says what is wrong with it, in the words an admin uses ("PSU 2: Critical",
"CPU1 Temp 92 °C, critical above 90 °C"). The client (integrations/redfish.py) only
fetches; it asks `needs_processors` / `needs_memory` whether a system's summaries
call for reading each processor or DIMM, so a healthy node costs few requests.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

from stat_bot.hardware.health import Finding

Doc = Mapping[str, Any]
BAD_HEALTH = {"Warning": "warning", "Critical": "critical"}
SKIPPED_STATES = {"Absent", "Disabled", "UnavailableOffline", "StandbyOffline"}
SEL_SHOWN = 3  # at most this many recent critical entries become findings


def _health(doc: Doc, key: str = "Health") -> str | None:
    status = doc.get("Status")
    return status.get(key) if isinstance(status, Mapping) else None


def _present(doc: Doc) -> bool:
    status = doc.get("Status")
    return not (isinstance(status, Mapping) and status.get("State") in SKIPPED_STATES)


def _name(doc: Doc, fallback: str) -> str:
    for key in ("Name", "DeviceLocator", "Id", "MemberId"):
        value = doc.get(key)
        if isinstance(value, str) and value:
            return value
    return fallback


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _shown(value: float) -> str:
    return f"{value:g}"


def status_finding(doc: Doc, component: str, name: str | None = None) -> Finding | None:
    """`Name: Critical` when a present part's own Status.Health is Warning or Critical."""
    health = _health(doc)
    if health not in BAD_HEALTH or not _present(doc):
        return None
    return Finding(BAD_HEALTH[health], component, f"{name or _name(doc, component)}: {health}")


def power_state_findings(system: Doc) -> list[Finding]:
    state = system.get("PowerState")
    if state in (None, "On"):
        return []
    return [Finding("warning", "power", f"Power state: {state}")]


def system_findings(system: Doc) -> list[Finding]:
    """The system's own health and its power state (rollups are judged in `rollup_findings`)."""
    found = power_state_findings(system)
    own = status_finding(system, "system", "System health")
    if own:
        found.append(own)
    return found


def _summary_rollup(system: Doc, key: str) -> str | None:
    summary = system.get(key)
    if not isinstance(summary, Mapping):
        return None
    return _health(summary, "HealthRollup") or _health(summary)


def needs_processors(system: Doc) -> bool:
    """Read each processor unless ProcessorSummary says they are all OK."""
    return _summary_rollup(system, "ProcessorSummary") != "OK"


def needs_memory(system: Doc) -> bool:
    """Read each DIMM unless MemorySummary says they are all OK."""
    return _summary_rollup(system, "MemorySummary") != "OK"


def processor_findings(processors: Iterable[Doc]) -> list[Finding]:
    return [f for p in processors if (f := status_finding(p, "processor"))]


def memory_findings(dimms: Iterable[Doc]) -> list[Finding]:
    return [f for d in dimms if (f := status_finding(d, "memory"))]


def temperature_finding(sensor: Doc) -> Finding | None:
    """A reading at or over its thresholds, else the sensor's own bad Status."""
    name = _name(sensor, "Temperature")
    reading = _number(sensor.get("ReadingCelsius"))
    if reading is not None and _present(sensor):
        for key, severity, word in (
            ("UpperThresholdFatal", "critical", "fatal"),
            ("UpperThresholdCritical", "critical", "critical"),
            ("UpperThresholdNonCritical", "warning", "warning"),
        ):
            limit = _number(sensor.get(key))
            if limit is not None and reading > limit:
                return Finding(
                    severity,
                    "temperature",
                    f"{name} {_shown(reading)} \u00b0C, {word} above {_shown(limit)} \u00b0C",
                )
    return status_finding(sensor, "temperature", name)


def fan_finding(fan: Doc) -> Finding | None:
    name = _name(fan, "Fan")
    reading = _number(fan.get("Reading", fan.get("ReadingRPM")))
    units = fan.get("ReadingUnits") or "RPM"
    if reading is not None and _present(fan):
        for key, severity, word in (
            ("LowerThresholdFatal", "critical", "fatal"),
            ("LowerThresholdCritical", "critical", "critical"),
            ("LowerThresholdNonCritical", "warning", "warning"),
        ):
            limit = _number(fan.get(key))
            if limit is not None and reading < limit:
                return Finding(
                    severity,
                    "fan",
                    f"{name} {_shown(reading)} {units}, {word} below {_shown(limit)} {units}",
                )
    return status_finding(fan, "fan", name)


def thermal_findings(thermal: Doc) -> list[Finding]:
    """Chassis Thermal: every temperature against its thresholds, every fan."""
    found = [temperature_finding(t) for t in thermal.get("Temperatures") or ()]
    found += [fan_finding(f) for f in thermal.get("Fans") or ()]
    return [f for f in found if f]


def power_findings(power: Doc) -> list[Finding]:
    """Chassis Power: each power supply's health ("PSU 2: Critical")."""
    found = []
    for n, psu in enumerate(power.get("PowerSupplies") or (), start=1):
        finding = status_finding(psu, "psu", _name(psu, f"PSU {n}"))
        if finding:
            found.append(finding)
    return found


def parse_time(text: Any) -> dt.datetime | None:
    if not isinstance(text, str):
        return None
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def log_entries(collection: Doc) -> list[Doc]:
    """A LogEntryCollection's members that came inline (most BMCs send them whole)."""
    return [m for m in collection.get("Members") or () if isinstance(m, Mapping)]


def latest_entries(entries: Iterable[Doc], count: int) -> list[Doc]:
    """The newest `count` entries, newest first (by Created, then by numeric Id)."""

    def key(entry: Doc) -> tuple[dt.datetime, int]:
        moment = parse_time(entry.get("Created")) or dt.datetime.min.replace(tzinfo=dt.UTC)
        ident = str(entry.get("Id", ""))
        return moment, int(ident) if ident.isdigit() else -1

    return sorted(entries, key=key, reverse=True)[:count]


def log_findings(entries: Iterable[Doc], since: dt.datetime) -> list[Finding]:
    """Critical event-log entries created since `since`, newest first (a warning each:
    the event is past, the part it names is judged by its own check)."""
    recent = [
        e
        for e in entries
        if e.get("Severity") == "Critical" and (parse_time(e.get("Created")) or since) >= since
    ]
    found = []
    for entry in latest_entries(recent, SEL_SHOWN):
        message = str(entry.get("Message") or entry.get("Name") or "(no message)").strip()
        found.append(
            Finding("warning", "event log", f"Critical event {entry.get('Created')}: {message}")
        )
    return found


def rollup_findings(system: Doc, found: list[Finding]) -> list[Finding]:
    """The system's HealthRollup, when it is bad and nothing found so far explains it."""
    rollup = _health(system, "HealthRollup")
    if rollup not in BAD_HEALTH or any(f.severity == BAD_HEALTH[rollup] for f in found):
        return []
    return [Finding(BAD_HEALTH[rollup], "system", f"Health rollup: {rollup}")]
