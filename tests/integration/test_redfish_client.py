"""The Redfish client against real servers: the project's emulator, sushy-static, sushy-emulator."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stat_bot.hardware.firmware import firmware_differences
from stat_bot.hardware.health import State, totals_line
from stat_bot.hardware.inventory import Node
from stat_bot.integrations import redfish as client
from stat_bot.integrations.redfish_emulator import (
    EmulatorProcess,
    build_tree,
    demo_chassis,
    fleet,
    write_tree,
)
from tests.redfish_fixtures import TEST_TIMEOUT, RedfishFleet, SushyEmulator, read_nodes

pytestmark = pytest.mark.slow


def by_xname(results: list[client.NodeHealth]) -> dict[str, client.NodeHealth]:
    return {r.xname: r for r in results}


def texts(health: client.NodeHealth) -> list[str]:
    return [f.text for f in health.findings]


def test_healthy_node_is_ok_and_on(redfish_fleet: RedfishFleet) -> None:
    health = client.check_node(redfish_fleet.nodes["x1000c0s0b0n0"], redfish_fleet.config)
    assert health.state is State.OK, health
    assert health.findings == []
    assert health.power_state == "On"
    assert health.hostname == "nid000001"


@pytest.mark.parametrize(
    ("xname", "state", "expected"),
    [
        ("x1000c0s1b0n0", State.CRITICAL, "PSU 2: Critical"),
        ("x1000c0s1b0n1", State.CRITICAL, "CPU1 Temp 92 \u00b0C, critical above 90 \u00b0C"),
        ("x1000c0s2b0n0", State.CRITICAL, "DIMM3: Critical"),
        ("x1000c0s2b0n1", State.WARNING, "Power state: Off"),
    ],
)
def test_unhealthy_variants_are_named_in_words(
    redfish_fleet: RedfishFleet, xname: str, state: State, expected: str
) -> None:
    health = client.check_node(redfish_fleet.nodes[xname], redfish_fleet.config)
    assert health.state is state
    assert expected in texts(health)


def test_recent_critical_event_is_reported_and_old_one_is_not(redfish_fleet: RedfishFleet) -> None:
    health = client.check_node(redfish_fleet.nodes["x1000c0s1b0n0"], redfish_fleet.config)
    events = [t for t in texts(health) if t.startswith("Critical event")]
    assert len(events) == 1
    assert "PSU 2 AC input lost" in events[0]
    healthy = client.check_node(redfish_fleet.nodes["x1000c0s0b0n0"], redfish_fleet.config)
    assert not any("DIMM3" in t for t in texts(healthy))  # the 2024 entry is not recent


@pytest.mark.parametrize(
    ("fault", "state", "words"),
    [
        ("refuse", State.AUTH_REFUSED, "refused the credentials (HTTP 401)"),
        ("hang", State.TIMEOUT, f"did not answer within {TEST_TIMEOUT:g} s"),
        ("garbage", State.MALFORMED, "malformed JSON"),
        ("down", State.UNREACHABLE, "unreachable"),
    ],
)
def test_each_fault_is_its_own_state_for_both_nodes_of_the_bmc(
    redfish_fleet: RedfishFleet, fault: str, state: State, words: str
) -> None:
    redfish_fleet.control.fault("x1000c0s3b0", fault)
    nodes = [redfish_fleet.nodes["x1000c0s3b0n0"], redfish_fleet.nodes["x1000c0s3b0n1"]]
    results = client.check_nodes(nodes, redfish_fleet.config)
    for result in results:
        assert result.state is state, result
        assert words in (result.reason or "")
        assert redfish_fleet.config.password not in (result.reason or "")


def test_wrong_password_is_auth_refused(redfish_fleet: RedfishFleet) -> None:
    config = dataclasses.replace(redfish_fleet.config, password="wrong")
    health = client.check_node(redfish_fleet.nodes["x1000c0s0b0n0"], config)
    assert health.state is State.AUTH_REFUSED
    assert "wrong" not in (health.reason or "")


def test_mixed_fleet_a_hanging_bmc_costs_one_timeout(redfish_fleet: RedfishFleet) -> None:
    redfish_fleet.control.fault("x1000c0s3b0", "hang")
    redfish_fleet.control.fault("x1000c0s4b0", "down")
    redfish_fleet.control.fault("x1000c0s5b0", "garbage")
    nodes = list(redfish_fleet.nodes.values())
    started = time.monotonic()
    results = by_xname(client.check_nodes(nodes, redfish_fleet.config, fanout=4))
    elapsed = time.monotonic() - started
    assert list(results) == [n.xname for n in nodes]
    assert results["x1000c0s0b0n1"].state is State.OK
    assert results["x1000c0s1b0n0"].state is State.CRITICAL
    assert results["x1000c0s3b0n1"].state is State.TIMEOUT
    assert results["x1000c0s4b0n0"].state is State.UNREACHABLE
    assert results["x1000c0s5b0n0"].state is State.MALFORMED
    # The hanging BMC's two nodes share one timeout and the others do not wait for it.
    assert elapsed < 2 * TEST_TIMEOUT + 5, elapsed


def test_fanout_one_still_bounds_a_hanging_bmc(redfish_fleet: RedfishFleet) -> None:
    redfish_fleet.control.fault("x1000c0s3b0", "hang")
    nodes = [redfish_fleet.nodes[x] for x in ("x1000c0s3b0n0", "x1000c0s3b0n1", "x1000c0s0b0n0")]
    started = time.monotonic()
    results = client.check_nodes(nodes, redfish_fleet.config, fanout=1)
    assert [r.state for r in results] == [State.TIMEOUT, State.TIMEOUT, State.OK]
    assert time.monotonic() - started < TEST_TIMEOUT + 5


def test_power_off_on_restart_against_the_emulator(redfish_fleet: RedfishFleet) -> None:
    node = redfish_fleet.nodes["x1000c0s0b0n1"]
    off = client.power(node, redfish_fleet.config, "off")
    assert off.ok
    assert off.reset_type == "GracefulShutdown"
    assert off.power_state == "On"
    assert client.power_state(node, redfish_fleet.config) == "Off"
    assert client.power(node, redfish_fleet.config, "off").reason == "already off"
    restart = client.power(node, redfish_fleet.config, "restart")
    assert not restart.ok
    assert "off" in (restart.reason or "")
    on = client.power(node, redfish_fleet.config, "on")
    assert on.ok
    assert on.reset_type == "On"
    assert client.power_state(node, redfish_fleet.config) == "On"
    forced = client.power(node, redfish_fleet.config, "restart", force=True)
    assert forced.reset_type == "ForceRestart"
    # The other node of the same BMC was never touched.
    assert client.power_state(redfish_fleet.nodes["x1000c0s0b0n0"], redfish_fleet.config) == "On"


def test_power_on_a_dead_bmc_says_why(redfish_fleet: RedfishFleet) -> None:
    redfish_fleet.control.fault("x1000c0s4b0", "down")
    result = client.power(redfish_fleet.nodes["x1000c0s4b0n0"], redfish_fleet.config, "on")
    assert not result.ok
    assert result.state is State.UNREACHABLE


def test_inventory_firmware_and_sel(redfish_fleet: RedfishFleet) -> None:
    node = redfish_fleet.nodes["x1000c0s0b0n1"]
    inv = client.inventory(node, redfish_fleet.config)
    assert inv.model == "HPE Cray EX425"
    assert inv.bios_version == "ex425.bios-1.7.3"
    assert inv.cpu_count == 2
    assert inv.memory_gib == 512
    assert inv.firmware == {"BMC": "nc.1.9.10", "BIOS": "ex425.bios-1.7.3", "NIC": "ss11.1.2.4"}
    redfish_fleet.control.patch(
        "x1000c0s4b0",
        {"/redfish/v1/UpdateService/FirmwareInventory/Node1_BIOS": {"Version": "ex425.bios-1.6.0"}},
    )
    records = client.firmware(list(redfish_fleet.nodes.values()), redfish_fleet.config)
    differences = firmware_differences(
        {r.xname: r.firmware for r in records if r.state is State.OK}
    )
    assert [(d.xname, d.component, d.version) for d in differences] == [
        ("x1000c0s4b0n1", "BIOS", "ex425.bios-1.6.0")
    ]
    log = client.sel(redfish_fleet.nodes["x1000c0s1b0n1"], redfish_fleet.config, 2)
    assert [e.id for e in log.entries] == ["4", "3"]
    assert log.entries[0].severity == "Critical"


def test_sushy_static_serves_a_mockup_tree_the_client_reads(tmp_path: Path, sushy_static) -> None:
    bmc = fleet(1, 2, {"x1000c0s0b0n1": "critical_psu"})[0]
    url = sushy_static(write_tree(build_tree(bmc), tmp_path / "tree"))
    config = client.RedfishConfig("anyone", "anything", timeout=10)
    nodes = [Node(n.xname, url, n.hostname, n.nid, n.system) for n in bmc.nodes]
    results = client.check_nodes(nodes, config)
    assert results[0].state is State.OK, results[0]
    assert results[1].state is State.CRITICAL
    assert "PSU 2: Critical" in texts(results[1])
    inv = client.inventory(nodes[1], config)
    assert inv.firmware["BIOS"] == "ex425.bios-1.7.3"


def test_sushy_static_missing_resource_is_not_a_crash(tmp_path: Path, sushy_static) -> None:
    bmc = demo_chassis()[0]
    url = sushy_static(write_tree(build_tree(bmc), tmp_path / "tree"))
    node = Node("x1000c0s0b0n0", url, None, None, "NoSuchSystem")
    health = client.check_node(node, client.RedfishConfig("u", "p", timeout=10))
    assert health.state in (State.MALFORMED, State.UNKNOWN)
    assert health.reason


def wait_power(node: Node, config: client.RedfishConfig, wanted: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while True:
        state = client.power_state(node, config)
        if state == wanted or time.monotonic() > deadline:
            return state or "unreadable"
        time.sleep(0.2)


def test_power_actions_against_sushy_emulator(sushy_emulator: SushyEmulator) -> None:
    config = client.RedfishConfig("admin", "password", timeout=10)
    node = Node("x3000c0s0b0n0", sushy_emulator.url, "n0", 1, sushy_emulator.systems[0])
    health = client.check_node(node, config)
    assert health.state is State.OK, health
    assert client.power_state(node, config) == "On"
    off = client.power(node, config, "off")
    assert off.ok, off
    assert wait_power(node, config, "Off") == "Off"
    on = client.power(node, config, "on")
    assert on.ok, on
    assert wait_power(node, config, "On") == "On"
    restart = client.power(node, config, "restart")
    assert restart.ok
    assert restart.reset_type in ("GracefulRestart", "ForceRestart")
    assert wait_power(node, config, "On") == "On"
    other = Node("x3000c0s0b0n1", sushy_emulator.url, "n1", 2, sushy_emulator.systems[1])
    assert client.power_state(other, config) == "On"


def test_demo_command_serves_local_modes_chassis(tmp_path: Path) -> None:
    with EmulatorProcess(tmp_path, "--demo") as demo:
        assert demo.lines[0].startswith("Redfish emulator: 8 BMCs (16 nodes) on 127.0.10.1-")
        nodes = list(read_nodes(demo.inventory).values())
        assert [n.xname for n in nodes] == [
            f"x1000c0s{s}b0n{n}" for s in range(8) for n in range(2)
        ]
        assert len({n.bmc_url for n in nodes}) == 8
        config = client.RedfishConfig(demo.username, demo.password, timeout=10)
        results = client.check_nodes(nodes, config)
    assert totals_line(results) == "16 nodes: 2 critical, 14 ok"
    bad = {r.xname: r.findings[0].text for r in results if r.state is State.CRITICAL}
    assert bad == {
        "x1000c0s2b0n1": "PSU 2: Critical",
        "x1000c0s5b0n0": "CPU1 Temp 92 \u00b0C, critical above 90 \u00b0C",
    }


def test_emulator_command_line_refuses_an_unknown_variant(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "stat_bot.integrations.redfish_emulator",
            "--set",
            "x1000c0s0b0n0=melted",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "XNAME=VARIANT, VARIANT one of healthy, critical_psu" in result.stderr


def connections(redfish_fleet: RedfishFleet, bmc: str) -> int:
    return next(b for b in redfish_fleet.control.bmcs() if b["xname"] == bmc)["connections"]


def test_nodes_of_one_bmc_share_one_kept_alive_connection(redfish_fleet: RedfishFleet) -> None:
    nodes = [redfish_fleet.nodes["x1000c0s2b0n0"], redfish_fleet.nodes["x1000c0s2b0n1"]]
    results = client.check_nodes(nodes, redfish_fleet.config)
    assert [r.state for r in results] == [State.CRITICAL, State.WARNING]  # DIMM read too
    assert connections(redfish_fleet, "x1000c0s2b0") == 1


def test_a_bmc_back_up_answers_again(redfish_fleet: RedfishFleet) -> None:
    node = redfish_fleet.nodes["x1000c0s4b0n0"]
    redfish_fleet.control.fault("x1000c0s4b0", "down")
    assert client.check_node(node, redfish_fleet.config).state is State.UNREACHABLE
    redfish_fleet.control.fault("x1000c0s4b0", "none")
    assert client.check_node(node, redfish_fleet.config).state is State.OK


def test_a_variant_set_at_run_time_is_seen_by_the_next_check(redfish_fleet: RedfishFleet) -> None:
    node = redfish_fleet.nodes["x1000c0s0b0n0"]
    redfish_fleet.control.variant(node.xname, "failed_dimm")
    assert "DIMM3: Critical" in texts(client.check_node(node, redfish_fleet.config))
    neighbour = redfish_fleet.nodes["x1000c0s0b0n1"]
    assert client.check_node(neighbour, redfish_fleet.config).state is State.OK


def test_power_change_after_the_bmcs_reset_delay(redfish_fleet: RedfishFleet) -> None:
    node = redfish_fleet.nodes["x1000c0s5b0n0"]
    redfish_fleet.control.reset_delay("x1000c0s5b0", 1.0)
    assert client.power(node, redfish_fleet.config, "off").ok
    assert client.power_state(node, redfish_fleet.config) == "On"  # not yet
    assert wait_power(node, redfish_fleet.config, "Off") == "Off"


def test_system_id_is_needed_only_where_a_bmc_serves_several(tmp_path: Path, sushy_static) -> None:
    one = sushy_static(write_tree(build_tree(fleet(1, 1)[0]), tmp_path / "one"))
    two = sushy_static(write_tree(build_tree(fleet(1, 2)[0]), tmp_path / "two"))
    config = client.RedfishConfig("u", "p", timeout=10)
    alone, shared = client.check_nodes(
        [Node("x1000c0s0b0n0", one), Node("x1000c0s0b0n0", two)], config
    )
    assert alone.state is State.OK
    assert shared.state is State.UNKNOWN
    assert "serves 2 systems" in (shared.reason or "")
    assert "`system` column" in (shared.reason or "")
