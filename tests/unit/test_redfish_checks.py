"""The Redfish checks as pure functions over resource JSON (fixtures: the shipped mockups)."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import requests
from sushy import exceptions as sushy_exc

from stat_bot.hardware import redfish_checks as checks
from stat_bot.hardware.firmware import firmware_differences, majority_versions
from stat_bot.hardware.health import Finding, State
from stat_bot.integrations import redfish
from stat_bot.integrations.redfish_emulator import build_tree, fleet, variants
from stat_bot.integrations.redfish_emulator.mockups import merge, write_tree

NOW = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.UTC)
S = "/redfish/v1/Systems/Node0"
C = "/redfish/v1/Chassis/Node0"


def tree(variant: str = "healthy") -> dict:
    return build_tree(fleet(1, 1, {"x1000c0s0b0n0": variant})[0], NOW)


def all_findings(t: dict) -> list[Finding]:
    system = t[S]
    found = checks.system_findings(system)
    if checks.needs_memory(system):
        found += checks.memory_findings(t[m["@odata.id"]] for m in t[S + "/Memory"]["Members"])
    found += checks.thermal_findings(t[C + "/Thermal"])
    found += checks.power_findings(t[C + "/Power"])
    entries = checks.log_entries(t[S + "/LogServices/SEL/Entries"])
    found += checks.log_findings(entries, NOW - dt.timedelta(hours=24))
    return found + checks.rollup_findings(system, found)


def test_healthy_mockup_has_no_findings_and_needs_no_member_reads() -> None:
    t = tree()
    assert all_findings(t) == []
    assert not checks.needs_processors(t[S])
    assert not checks.needs_memory(t[S])


def test_every_variant_is_known_and_distinct() -> None:
    assert set(variants()) == {
        "healthy",
        "critical_psu",
        "overtemp_cpu",
        "failed_dimm",
        "powered_off",
    }


def test_critical_psu() -> None:
    found = all_findings(tree("critical_psu"))
    assert Finding("critical", "psu", "PSU 2: Critical") in found
    assert not any(f.component == "system" for f in found)  # the rollup is explained


def test_over_temperature_names_reading_and_threshold() -> None:
    found = all_findings(tree("overtemp_cpu"))
    assert found[0] == Finding(
        "critical", "temperature", "CPU1 Temp 92 \u00b0C, critical above 90 \u00b0C"
    )
    assert found[1].component == "event log"
    assert "CPU1 Temp crossed" in found[1].text


def test_failed_dimm_needs_memory_reads_and_names_the_dimm() -> None:
    t = tree("failed_dimm")
    assert checks.needs_memory(t[S])
    assert Finding("critical", "memory", "DIMM3: Critical") in all_findings(t)


def test_powered_off_is_a_warning() -> None:
    assert all_findings(tree("powered_off")) == [Finding("warning", "power", "Power state: Off")]


@pytest.mark.parametrize(
    ("sensor", "expected"),
    [
        (
            {
                "Name": "Inlet",
                "ReadingCelsius": 36,
                "UpperThresholdNonCritical": 35,
                "UpperThresholdCritical": 40,
            },
            Finding("warning", "temperature", "Inlet 36 \u00b0C, warning above 35 \u00b0C"),
        ),
        ({"Name": "Inlet", "ReadingCelsius": 35, "UpperThresholdNonCritical": 35}, None),
        (
            {
                "Name": "Inlet",
                "ReadingCelsius": 99.5,
                "UpperThresholdFatal": 95,
                "UpperThresholdCritical": 90,
            },
            Finding("critical", "temperature", "Inlet 99.5 \u00b0C, fatal above 95 \u00b0C"),
        ),
        (
            {"Name": "Inlet", "ReadingCelsius": None, "Status": {"Health": "Warning"}},
            Finding("warning", "temperature", "Inlet: Warning"),
        ),
        (
            {
                "Name": "Inlet",
                "ReadingCelsius": 99,
                "UpperThresholdCritical": 90,
                "Status": {"State": "Absent"},
            },
            None,
        ),
    ],
)
def test_temperature_thresholds(sensor: dict, expected: Finding | None) -> None:
    assert checks.temperature_finding(sensor) == expected


def test_fan_below_its_critical_threshold() -> None:
    fan = {"Name": "Fan 2", "Reading": 800, "ReadingUnits": "RPM", "LowerThresholdCritical": 1000}
    assert checks.fan_finding(fan) == Finding(
        "critical", "fan", "Fan 2 800 RPM, critical below 1000 RPM"
    )
    assert checks.fan_finding({**fan, "Reading": 1200}) is None


def test_psu_without_a_name_is_numbered() -> None:
    power = {"PowerSupplies": [{"Status": {"Health": "OK"}}, {"Status": {"Health": "Warning"}}]}
    assert checks.power_findings(power) == [Finding("warning", "psu", "PSU 2: Warning")]


def test_rollup_without_an_explanation_is_reported() -> None:
    system = {"Status": {"Health": "OK", "HealthRollup": "Critical"}, "PowerState": "On"}
    assert checks.rollup_findings(system, []) == [
        Finding("critical", "system", "Health rollup: Critical")
    ]
    assert checks.rollup_findings(system, [Finding("critical", "psu", "PSU 1: Critical")]) == []


def test_summary_without_status_means_read_members() -> None:
    assert checks.needs_processors({"ProcessorSummary": {"Count": 2}})
    assert checks.needs_memory({})


def test_log_findings_only_recent_critical_newest_first_at_most_three() -> None:
    entries = [
        {
            "Id": str(i),
            "Severity": "Critical",
            "Created": (NOW - dt.timedelta(hours=i)).isoformat(),
            "Message": f"event {i}",
        }
        for i in range(1, 6)
    ] + [{"Id": "9", "Severity": "Warning", "Created": NOW.isoformat(), "Message": "minor"}]
    found = checks.log_findings(entries, NOW - dt.timedelta(hours=4, minutes=30))
    assert [f.text.rsplit(": ", 1)[1] for f in found] == ["event 1", "event 2", "event 3"]
    assert {f.severity for f in found} == {"warning"}


def test_latest_entries_by_time_then_numeric_id() -> None:
    same = NOW.isoformat()
    entries = [
        {"Id": "2", "Created": same},
        {"Id": "10", "Created": same},
        {"Id": "3", "Created": "2020-01-01T00:00:00Z"},
    ]
    assert [e["Id"] for e in checks.latest_entries(entries, 2)] == ["10", "2"]


def test_merge_patches_lists_by_index_and_appends() -> None:
    doc = {"a": [{"x": 1}, {"x": 2}], "b": {"c": 1}}
    merge(doc, {"a": {"1": {"x": 3}, "+": [{"x": 4}]}, "b": {"d": 2}})
    assert doc == {"a": [{"x": 1}, {"x": 3}, {"x": 4}], "b": {"c": 1, "d": 2}}


def test_write_tree_lays_out_index_files(tmp_path) -> None:
    t = tree("critical_psu")
    write_tree(t, tmp_path)
    assert json.loads((tmp_path / "index.json").read_text())["Id"] == "RootService"
    power = json.loads((tmp_path / "Chassis/Node0/Power/index.json").read_text())
    assert power["PowerSupplies"][1]["Status"]["Health"] == "Critical"


def test_firmware_majority_and_differences() -> None:
    fleet_fw = {
        "n1": {"BIOS": "1.7", "BMC": "2.0"},
        "n2": {"BIOS": "1.7", "BMC": "2.0"},
        "n3": {"BIOS": "1.6", "BMC": "2.0"},
        "n4": {"BMC": "2.1"},
    }
    assert majority_versions(fleet_fw)["BIOS"] == ("1.7", 2, 3)
    assert [(d.xname, d.component, d.version) for d in firmware_differences(fleet_fw)] == [
        ("n3", "BIOS", "1.6"),
        ("n4", "BIOS", None),
        ("n4", "BMC", "2.1"),
    ]
    assert firmware_differences(fleet_fw)[0].text == "BIOS 1.6, fleet runs 1.7 (2 of 3)"


def test_majority_tie_is_decided_by_version_not_order() -> None:
    a = {"n1": {"BIOS": "1.6"}, "n2": {"BIOS": "1.7"}}
    b = {"n2": {"BIOS": "1.7"}, "n1": {"BIOS": "1.6"}}
    assert majority_versions(a) == majority_versions(b)


@pytest.mark.parametrize(
    ("action", "allowed", "force", "expected"),
    [
        ("off", {"On", "ForceOff", "GracefulShutdown"}, False, "GracefulShutdown"),
        ("off", {"On", "ForceOff", "GracefulShutdown"}, True, "ForceOff"),
        ("off", {"On", "ForceOff"}, False, "ForceOff"),
        ("restart", {"ForceRestart"}, False, "ForceRestart"),
        ("restart", {"GracefulRestart", "ForceRestart"}, False, "GracefulRestart"),
        ("on", {"PushPowerButton"}, False, "PushPowerButton"),
        ("on", {"ForceOff"}, False, None),
    ],
)
def test_reset_type_choice(
    action: str, allowed: set[str], force: bool, expected: str | None
) -> None:
    chosen = redfish.choose_reset_type(action, {redfish.ResetType(v) for v in allowed}, force)
    assert (chosen.value if chosen else None) == expected


def test_config_hides_the_password() -> None:
    assert "s3cret" not in repr(redfish.RedfishConfig("root", "s3cret"))


def raised_from(inner: BaseException) -> BaseException:
    """sushy's ConnectionError as sushy raises it: inside the handler of requests' error."""
    try:
        try:
            raise inner
        except Exception as exc:
            raise sushy_exc.ConnectionError(url="http://bmc", error=exc)  # noqa: B904
    except sushy_exc.ConnectionError as outer:
        return outer


@pytest.mark.parametrize(
    ("exc", "state", "words"),
    [
        (
            raised_from(requests.exceptions.ReadTimeout("read timed out")),
            State.TIMEOUT,
            "within 5 s",
        ),
        (
            raised_from(requests.exceptions.ConnectionError("[Errno 111] Connection refused")),
            State.UNREACHABLE,
            "connection refused",
        ),
        (
            raised_from(requests.exceptions.SSLError("certificate verify failed")),
            State.UNREACHABLE,
            "REDFISH_VERIFY_TLS",
        ),
        (
            AttributeError("'list' object has no attribute 'get'"),
            State.MALFORMED,
            "not Redfish JSON",
        ),
        (json.JSONDecodeError("Expecting value", "<html>", 0), State.MALFORMED, "malformed JSON"),
        (RuntimeError("surprise"), State.UNKNOWN, "RuntimeError: surprise"),
    ],
)
def test_classify_names_the_state_and_reason(exc: BaseException, state: State, words: str) -> None:
    error = redfish.classify(exc, "http://bmc", 5)
    assert error.state is state
    assert words in error.reason
