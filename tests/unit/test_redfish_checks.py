"""The Redfish checks as pure functions over resource JSON (fixtures: the shipped mockups)."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st
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


# -- hostile resources: wrong types are absent, never raised on -----------------------

KEYS = st.sampled_from(
    [
        *("Status", "Health", "HealthRollup", "State", "Name", "Id", "MemberId"),
        *("ReadingCelsius", "Reading", "ReadingUnits", "UpperThresholdCritical"),
        *("LowerThresholdCritical", "Temperatures", "Fans", "PowerSupplies", "Members"),
        *("Severity", "Created", "Message", "PowerState", "ProcessorSummary", "MemorySummary"),
    ]
)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.sampled_from(["OK", "Warning", "Critical", "Absent", "On", "Off", "2026-12-02T11:00:00Z"]),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(KEYS | st.text(max_size=3), children, max_size=5)
    ),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None)
@given(json_values.filter(lambda v: isinstance(v, dict)))
def test_no_check_raises_on_any_json_object(doc: dict) -> None:
    """Any property of any type, at the top and one level down as each check reads it."""
    for wrapped in (doc, {"Temperatures": [doc]}, {"Fans": [doc]}, {"PowerSupplies": [doc]}):
        checks.system_findings(wrapped)
        checks.needs_processors(wrapped)
        checks.needs_memory(wrapped)
        checks.processor_findings([wrapped])
        checks.memory_findings([wrapped])
        checks.thermal_findings(wrapped)
        checks.power_findings(wrapped)
        checks.rollup_findings(wrapped, checks.system_findings(wrapped))
        entries = checks.log_entries({"Members": [wrapped, doc]}) + checks.log_entries(wrapped)
        checks.latest_entries(entries, 5)
        checks.log_findings(entries, NOW)


@pytest.mark.parametrize(
    "thermal",
    [
        {"Temperatures": {"CPU": {"ReadingCelsius": 99, "UpperThresholdCritical": 90}}},
        {"Temperatures": "hot", "Fans": 3},
        {"Temperatures": [None, 1, "x", []]},
        {"Temperatures": [{"ReadingCelsius": "99", "UpperThresholdCritical": 90}]},
        {"Temperatures": [{"ReadingCelsius": float("nan"), "UpperThresholdCritical": 90}]},
        {"Temperatures": [{"ReadingCelsius": float("inf"), "UpperThresholdCritical": 90}]},
        {"Temperatures": [{"ReadingCelsius": 99, "UpperThresholdCritical": float("nan")}]},
        {"Temperatures": [{"ReadingCelsius": True, "UpperThresholdCritical": False}]},
        {"Temperatures": [{"Status": {"Health": ["Critical"], "State": {"x": 1}}}]},
        {"Temperatures": [{"Status": "Critical"}]},
    ],
)
def test_wrong_types_and_non_numbers_in_thermal_are_no_reading(thermal: dict) -> None:
    assert checks.thermal_findings(thermal) == []


def test_bmc_supplied_names_are_one_short_line() -> None:
    sensor = {
        "Name": "CPU\n<!channel>\u2028\x1b[31m" + "\u00e9" * 500,
        "ReadingCelsius": 95,
        "UpperThresholdCritical": 90,
    }
    [finding] = checks.thermal_findings({"Temperatures": [sensor]})
    assert finding.text.startswith("CPU <!channel> [31m\u00e9")
    assert "\n" not in finding.text
    assert "\x1b" not in finding.text
    assert len(finding.text) < checks.NAME_LIMIT + 40
    fan = {"Name": "Fan", "Reading": 1, "LowerThresholdCritical": 5, "ReadingUnits": {"x": 1}}
    assert checks.fan_finding(fan) == Finding("critical", "fan", "Fan 1 RPM, critical below 5 RPM")


def test_power_state_of_the_wrong_type_is_said_plainly() -> None:
    assert checks.power_state_findings({"PowerState": {"a": 1}}) == [
        Finding("warning", "power", "Power state: not stated")
    ]


def test_event_log_of_the_wrong_types_is_no_entries() -> None:
    assert checks.log_entries({"Members": {"1": {"Severity": "Critical"}}}) == []
    assert checks.log_entries({"Members": "x"}) == []
    entries = [
        {"Id": "\u00b2", "Created": "2026-12-02T11:00:00Z"},  # isdigit, yet int() refuses it
        {"Id": "9" * 5000, "Created": "2026-12-02T11:00:00Z"},  # beyond int()'s digit limit
        {"Id": 7, "Created": "2026-12-02T11:00:00Z"},
        {"Id": ["x"], "Created": {"not": "a time"}},
        {"Severity": "Critical", "Created": "2026-12-02T11:30:00Z", "Message": "x\n" * 500},
    ]
    latest = checks.latest_entries(entries, 5)
    assert latest[0]["Created"] == "2026-12-02T11:30:00Z"
    assert latest[1]["Id"] == 7
    [finding] = checks.log_findings(entries, NOW - dt.timedelta(hours=1))
    assert "\n" not in finding.text
    assert len(finding.text) < checks.MESSAGE_LIMIT + 60


def test_reasons_never_carry_the_password_or_userinfo() -> None:
    config = redfish.RedfishConfig("root", "pa ss/w0rd")
    echoed = redfish.BmcError(
        State.UNKNOWN, "BMC said: pa ss/w0rd pa%20ss%2Fw0rd cm9vdDpwYSBzcy93MHJk " + "x" * 999
    )
    reason = redfish.scrubbed(echoed, config).reason
    assert "pa ss" not in reason
    assert "pa%20ss" not in reason
    assert "cm9vdDpwYSBzcy93MHJk" not in reason
    assert len(reason) <= redfish.REASON_LIMIT
    assert redfish.shown_url("https://root:pw@bmc:8443") == "https://bmc:8443"
    error = redfish.classify(
        raised_from(requests.exceptions.ConnectionError("boom")), "https://root:pw@bmc", 5
    )
    assert "pw" not in error.reason
    assert "https://bmc" in error.reason


def test_json_nested_too_deeply_is_malformed() -> None:
    with pytest.raises(RecursionError) as caught:
        json.loads("[" * 200_000 + "]" * 200_000)
    error = redfish.classify(caught.value, "http://bmc", 5)
    assert error.state is State.MALFORMED
    assert "nested too deeply" in error.reason


def test_a_self_signed_certificate_is_named_in_words() -> None:
    inner = requests.exceptions.SSLError(
        "HTTPSConnectionPool(host='bmc', port=443): Max retries exceeded (Caused by "
        "SSLError(SSLCertVerificationError(1, '[SSL: CERTIFICATE_VERIFY_FAILED] certificate "
        "verify failed: self-signed certificate (_ssl.c:1006)')))"
    )
    error = redfish.classify(raised_from(inner), "https://bmc", 5)
    assert "its certificate is not trusted: self-signed certificate)" in error.reason


# -- the emulator's own safety ----------------------------------------------------------


def test_write_tree_refuses_paths_that_leave_its_folder(tmp_path) -> None:
    for path in ("/redfish/v1/../../escape", "/etc/passwd", "/redfish/v1/a\\..\\b", "x"):
        with pytest.raises(ValueError, match="resource path"):
            write_tree({path: {}}, tmp_path / "tree")
    assert not (tmp_path / "escape").exists()


def test_the_emulator_binds_loopback_only() -> None:
    from stat_bot.integrations.redfish_emulator.server import Emulator, loopback_addresses

    with pytest.raises(ValueError, match="loopback only"):
        Emulator([], control_host="0.0.0.0")
    with pytest.raises(ValueError, match="loopback range"):
        loopback_addresses("10.0.0.1", 2)
    with pytest.raises(ValueError, match="loopback range"):
        loopback_addresses("127.255.255.254", 3)
