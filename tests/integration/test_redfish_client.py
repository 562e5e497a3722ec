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
from tests.redfish_fixtures import (
    TEST_TIMEOUT,
    RedfishFleet,
    SushyEmulator,
    free_port,
    hostile_config,
    minimal_tree,
    read_nodes,
)

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
    assert totals_line(results) == "16 nodes: 14 ok, 2 critical"
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


@pytest.mark.parametrize("first", ["0.0.0.0", "10.1.2.3", "not-an-address"])
def test_emulator_command_line_binds_loopback_only(first: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "stat_bot.integrations.redfish_emulator", "--first-address", first],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr
    assert first in result.stderr


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


# -- a hostile BMC: the client must bound, refuse and report, never hang, leak or crash --


def raw(body: bytes, status: int = 200, headers: dict[str, str] | None = None):
    """A route answering `body` as it is (aiohttp would not send NaN or broken JSON)."""
    from aiohttp import web

    async def handler(request):
        return web.Response(
            body=body, status=status, headers=headers or {"Content-Type": "application/json"}
        )

    return handler


def every_result(nodes: list[Node], config: client.RedfishConfig) -> list:
    """Health, inventory, firmware and event log of `nodes`: none of them may raise."""
    return [
        *client.check_nodes(nodes, config),
        *client.inventory_many(nodes, config),
        *client.firmware(nodes, config),
        *client.sel_many(nodes, config),
    ]


def test_an_endless_chunked_body_is_cut_off_at_the_cap(hostile_bmc) -> None:
    import itertools

    bmc = hostile_bmc()
    endless = itertools.chain([b'{"Name": "'], itertools.repeat(b"x" * 65536))
    bmc.routes["/redfish/v1/Systems/1"] = lambda request: bmc.stream(request, endless)
    started = time.monotonic()
    health = client.check_node(bmc.node(), hostile_config(timeout=10))
    assert health.state is State.MALFORMED, health
    assert "more than 4 MiB" in (health.reason or "")
    assert "too large" in (health.reason or "")
    # It stopped reading: what the server got out is the cap plus what socket buffers hold.
    assert bmc.sent < 8 * client.MAX_BODY, bmc.sent
    assert time.monotonic() - started < 20


def test_a_declared_huge_body_is_refused_before_it_is_read(hostile_bmc) -> None:
    import itertools

    bmc = hostile_bmc()
    headers = {"Content-Type": "application/json", "Content-Length": str(500 * 1024 * 1024)}
    bmc.routes["/redfish/v1/Systems/1"] = lambda request: bmc.stream(
        request, itertools.repeat(b" " * 65536, 8000), headers=headers
    )
    health = client.check_node(bmc.node(), hostile_config())
    assert health.state is State.MALFORMED, health
    assert "too large" in (health.reason or "")
    assert bmc.sent < 8 * client.MAX_BODY, bmc.sent


def test_a_bmc_dribbling_its_body_is_bounded_by_the_budget(hostile_bmc) -> None:
    import itertools

    slow = hostile_bmc()
    # A space every 0.2 s: each read is well under the 1 s timeout, the body never ends.
    slow.routes["/redfish/v1/Systems/1"] = lambda request: slow.stream(
        request, itertools.chain([b"{"], itertools.repeat(b" ")), pause=0.2
    )
    healthy = hostile_bmc()
    config = hostile_config(timeout=1.0, budget=2.5)
    nodes = [slow.node("x3000c0s1b0n0"), slow.node("x3000c0s1b0n1", "1"), healthy.node()]
    started = time.monotonic()
    results = client.check_nodes(nodes, config)
    elapsed = time.monotonic() - started
    assert [r.state for r in results] == [State.TIMEOUT, State.TIMEOUT, State.OK], results
    assert "did not finish within 2.5 s" in (results[0].reason or "")
    assert elapsed < config.bmc_budget + 3, elapsed


@pytest.mark.parametrize(
    ("first", "each"),
    [
        (b"HTTP/1.1 200 OK\r\nX-Slow: ", b"a"),  # a header line that never ends
        (b"", b"HTTP/1.1 100 Continue\r\n\r\n"),  # interim answers without end
    ],
)
def test_a_bmc_dribbling_its_headers_is_bounded_by_the_budget(
    raw_server, first: bytes, each: bytes
) -> None:
    import asyncio

    async def dribble(reader, writer) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(first)
        while True:  # every 0.2 s, well under the 1 s per-read timeout
            writer.write(each)
            await writer.drain()
            await asyncio.sleep(0.2)

    server = raw_server(dribble)
    config = hostile_config(timeout=1.0, budget=2.0)
    started = time.monotonic()
    health = client.check_node(Node("x3000c0s1b0n0", server.url, None, None, "1"), config)
    elapsed = time.monotonic() - started
    assert health.state is State.TIMEOUT, health
    assert "did not finish within 2 s" in (health.reason or "")
    assert elapsed < config.bmc_budget + 3, elapsed


def test_a_tls_bmc_dribbling_its_headers_is_bounded_by_the_budget(raw_server, self_signed) -> None:
    """The watchdog's socket shutdown also wakes a read blocked inside TLS."""
    import asyncio

    async def dribble(reader, writer) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
        while True:
            writer.write(b"a")
            await writer.drain()
            await asyncio.sleep(0.2)

    server = raw_server(dribble, self_signed.server_context())
    config = hostile_config(timeout=1.0, budget=2.0, verify_tls=str(self_signed.cert))
    started = time.monotonic()
    health = client.check_node(Node("x3000c0s1b0n0", server.url, None, None, "1"), config)
    assert health.state is State.TIMEOUT, health
    assert "did not finish within 2 s" in (health.reason or "")
    assert time.monotonic() - started < config.bmc_budget + 3


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_to_another_host_is_not_followed_nor_given_the_credentials(
    hostile_bmc, status: int
) -> None:
    bmc = hostile_bmc()
    elsewhere = hostile_bmc(host="127.0.0.2")
    bmc.routes["/redfish/v1/Systems/1"] = raw(
        b"", status, {"Location": elsewhere.url + "/redfish/v1/Systems/1"}
    )
    health = client.check_node(bmc.node(), hostile_config())
    assert health.state is State.MALFORMED, health
    assert f"redirected /redfish/v1/Systems/1 to {elsewhere.url}" in (health.reason or "")
    assert f"HTTP {status}" in (health.reason or "")
    assert elsewhere.requests == []


def test_a_redirect_loop_ends_at_once(hostile_bmc) -> None:
    bmc = hostile_bmc()
    bmc.routes["/redfish/v1/Systems/1"] = raw(b"", 302, {"Location": "/redfish/v1/Systems/1"})
    started = time.monotonic()
    health = client.check_node(bmc.node(), hostile_config())
    assert health.state is State.MALFORMED
    assert "redirects are not followed" in (health.reason or "")
    assert [p for _, p, _ in bmc.requests].count("/redfish/v1/Systems/1") == 1
    assert time.monotonic() - started < 10


def test_links_to_another_host_are_never_fetched(hostile_bmc) -> None:
    """An @odata.id or action target naming another host would carry the BMC's
    credentials there (an SSRF): members stay on the BMC's own origin."""
    bmc = hostile_bmc()
    elsewhere = hostile_bmc(host="127.0.0.2")
    away = elsewhere.url + "/redfish/v1/Systems/1"
    bmc.tree["/redfish/v1/Systems"]["Members"] = [{"@odata.id": away}]
    config = hostile_config()
    system_less = bmc.node(system=None)
    for result in every_result([system_less], config):
        assert result.state is State.MALFORMED, result
        assert "not a path on it" in (result.reason or "")
    # A chassis link and a reset target elsewhere (sushy follows the latter itself).
    bmc.tree["/redfish/v1/Systems/1"]["Links"] = {"Chassis": [{"@odata.id": away}]}
    assert client.check_node(bmc.node(), config).state is State.MALFORMED
    bmc.tree["/redfish/v1/Systems/1"]["Links"] = {}
    action = bmc.tree["/redfish/v1/Systems/1"]["Actions"]["#ComputerSystem.Reset"]
    action["target"] = away + "/Actions/ComputerSystem.Reset"
    result = client.power(bmc.node(), config, "off")
    assert not result.ok
    assert "links to another origin" in (result.reason or ""), result
    # The same host on another port is another origin too.
    action["target"] = f"http://127.0.0.1:{elsewhere.port}/redfish/v1/Systems/1/Actions/R"
    assert not client.power(bmc.node(), config, "off").ok
    assert elsewhere.requests == []


def test_same_origin_absolute_links_are_followed(hostile_bmc) -> None:
    bmc = hostile_bmc()
    bmc.tree["/redfish/v1/Systems"]["Members"] = [{"@odata.id": bmc.url + "/redfish/v1/Systems/1"}]
    health = client.check_node(bmc.node(system=None), hostile_config())
    assert health.state is State.OK, health


def leaky_scenario(hostile_bmc) -> tuple[list, client.RedfishConfig]:
    """Every way a password could leak: a BMC echoing the credentials in its error, a
    refusing one, inventory URLs with userinfo (dead and alive); all calls, all logged."""
    import base64

    from tests.redfish_fixtures import HOSTILE_PASSWORD

    echo = hostile_bmc()

    async def echo_back(request):
        from aiohttp import web

        sent = request.headers.get("Authorization", "")
        decoded = base64.b64decode(sent.split()[-1]).decode() if sent else ""
        body = {"error": {"code": "Base.1.8.GeneralError", "message": f"bad {sent} {decoded}"}}
        return web.json_response(body, status=400)

    echo.routes["/redfish/v1/Systems/1"] = echo_back
    refusing = hostile_bmc()
    refusing.authorization = "Basic nothing-matches"
    config = hostile_config(timeout=1.0)
    port = free_port()
    nodes = [
        echo.node("x3000c0s1b0n0"),
        refusing.node("x3000c0s2b0n0"),
        # userinfo in an inventory URL, for a BMC that is not there
        Node("x3000c0s3b0n0", f"http://root:{HOSTILE_PASSWORD}@127.0.0.1:{port}", None, None, "1"),
        Node("x3000c0s4b0n0", f"http://root:{HOSTILE_PASSWORD}@{echo.url[7:]}", None, None, "1"),
    ]
    results = [*every_result(nodes, config), *client.power_many(nodes, config, "off")]
    states = [r.state for r in results[:4]]
    assert states == [State.UNKNOWN, State.AUTH_REFUSED, State.UNREACHABLE, State.UNKNOWN]
    assert "*** root:***" in (results[0].reason or "")  # echoed, and blanked out
    return results, config


def assert_no_secret(text: str) -> None:
    import base64

    from tests.redfish_fixtures import HOSTILE_PASSWORD

    token = base64.b64encode(f"root:{HOSTILE_PASSWORD}".encode()).decode()
    assert HOSTILE_PASSWORD not in text
    assert token not in text
    assert "root:***@" not in text
    assert "@127.0.0.1" not in text


def test_the_password_is_in_no_reason_log_line_or_repr(
    hostile_bmc, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    import logging

    caplog.set_level(logging.DEBUG)
    results, config = leaky_scenario(hostile_bmc)
    out = capsys.readouterr()
    assert "Setting basic authentication" in caplog.text  # sushy's debug lines were captured
    reasons = [r.reason or "" for r in results]
    assert_no_secret("\n".join([repr(results), *reasons, repr(config), str(config)]))
    assert_no_secret("\n".join([caplog.text, out.out, out.err]))


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_the_password_is_in_no_structlog_line(hostile_bmc, fmt: str) -> None:
    import io
    import logging

    import structlog

    from stat_bot.log import configure

    root = logging.getLogger()
    handlers, level, saved = root.handlers[:], root.level, structlog.get_config()
    stream = io.StringIO()
    try:
        configure(level="DEBUG", fmt=fmt, stream=stream)
        leaky_scenario(hostile_bmc)
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        structlog.configure(**saved)
    assert "Setting basic authentication" in stream.getvalue()
    assert_no_secret(stream.getvalue())


def serve_chassis(bmc, thermal: dict | bytes) -> None:
    bmc.tree["/redfish/v1/Systems/1"]["Links"] = {
        "Chassis": [{"@odata.id": "/redfish/v1/Chassis/1"}]
    }
    bmc.tree["/redfish/v1/Chassis/1"] = {"@odata.id": "/redfish/v1/Chassis/1"}
    if isinstance(thermal, bytes):
        bmc.routes["/redfish/v1/Chassis/1/Thermal"] = raw(thermal)
    else:
        bmc.tree["/redfish/v1/Chassis/1/Thermal"] = thermal


@pytest.mark.parametrize(
    ("thermal", "state", "words"),
    [
        ({"Temperatures": {"CPU": {"ReadingCelsius": 99}}}, State.OK, None),
        (
            {
                "Temperatures": [
                    {"Name": "CPU", "ReadingCelsius": "99", "UpperThresholdCritical": 90}
                ]
            },
            State.OK,
            None,
        ),
        ({"Temperatures": [{"Name": "CPU"}, "x", 3, None]}, State.OK, None),
        (
            b'{"Temperatures": [{"Name": "CPU", "ReadingCelsius": NaN, '
            b'"UpperThresholdCritical": 90}, {"Name": "GPU", "ReadingCelsius": Infinity, '
            b'"UpperThresholdCritical": 90}]}',
            State.OK,
            None,
        ),
        (
            {
                "Temperatures": [
                    {
                        "Name": "Temp\u00e9rature \u2603 CPU\u2028\u0007" + "x" * 500,
                        "ReadingCelsius": 95,
                        "UpperThresholdCritical": 90,
                    }
                ]
            },
            State.CRITICAL,
            "Temp\u00e9rature \u2603 CPU",
        ),
        (
            {"Fans": [{"Name": "Fan", "Reading": 10, "LowerThresholdCritical": 100, "Status": []}]},
            State.CRITICAL,
            "Fan 10 RPM",
        ),
        ({"Temperatures": [{"Name": "CPU", "Status": {"Health": ["Critical"]}}]}, State.OK, None),
        (b"[" * 200_000 + b"]" * 200_000, State.MALFORMED, "nested too deeply"),
        (b'{"Temperatures": [', State.MALFORMED, "malformed JSON"),
        (b"[1, 2]", State.MALFORMED, "non-object"),
    ],
)
def test_hostile_json_gives_findings_or_malformed_never_an_exception(
    hostile_bmc, thermal, state: State, words: str | None
) -> None:
    bmc = hostile_bmc()
    serve_chassis(bmc, thermal)
    health = client.check_node(bmc.node(), hostile_config())
    assert health.state is state, health
    if words:
        assert words in " ".join([health.reason or "", *texts(health)])
    for finding in health.findings:
        assert "\u2028" not in finding.text
        assert "\x07" not in finding.text
        assert len(finding.text) < 200
    every_result([bmc.node()], hostile_config())


@pytest.mark.parametrize(
    "system",
    [
        {"Status": None, "PowerState": {"x": 1}, "ProcessorSummary": [], "MemorySummary": "OK"},
        {"Processors": {"@odata.id": "/redfish/v1/Systems/1/Processors"}, "Status": "OK"},
        {"Links": {"Chassis": {"@odata.id": "/redfish/v1/Chassis/1"}, "ManagedBy": "x"}},
        {"LogServices": {"@odata.id": 17}, "Manufacturer": ["HPE"], "Model": {"a": 1}},
        {"Id": {"bad": True}, "ProcessorSummary": {"Count": "2", "Model": 5}},
        {"MemorySummary": {"TotalSystemMemoryGiB": float("nan"), "Status": {}}},
    ],
)
def test_wrong_types_in_the_system_never_raise(hostile_bmc, system: dict) -> None:
    bmc = hostile_bmc()
    bmc.tree = minimal_tree(system)
    bmc.tree["/redfish/v1/Systems/1/Processors"] = {"Members": [{"@odata.id": 5}, "x", None]}
    bmc.tree["/redfish/v1/Systems/1/Memory"] = {"Members": "none"}
    for result in every_result([bmc.node()], hostile_config()):
        assert isinstance(result.state, State)
        assert result.state is not State.UNKNOWN, result
    inventory = client.inventory(bmc.node(), hostile_config())
    for name in ("manufacturer", "model", "cpu_model", "power_state"):
        assert getattr(inventory, name) is None or isinstance(getattr(inventory, name), str)
    assert inventory.memory_gib is None or inventory.memory_gib == inventory.memory_gib


def test_members_with_non_string_ids_are_malformed_in_words(hostile_bmc) -> None:
    bmc = hostile_bmc()
    bmc.tree = minimal_tree({"ProcessorSummary": {"Status": {"HealthRollup": "Critical"}}})
    bmc.tree["/redfish/v1/Systems/1"]["Processors"] = {
        "@odata.id": "/redfish/v1/Systems/1/Processors"
    }
    bmc.tree["/redfish/v1/Systems/1/Processors"] = {"Members": [{"@odata.id": 5}]}
    health = client.check_node(bmc.node(), hostile_config())
    assert health.state is State.MALFORMED, health
    assert "gave a link that is not a path on it: 5" in (health.reason or "")


# -- TLS -----------------------------------------------------------------------------


def test_a_self_signed_bmc_with_verification_on_is_a_certificate_problem(
    hostile_bmc, self_signed
) -> None:
    bmc = hostile_bmc(ssl_context=self_signed.server_context())
    health = client.check_node(bmc.node(), hostile_config(verify_tls=True))
    assert health.state is State.UNREACHABLE, health
    assert "certificate is not trusted: self-signed certificate" in (health.reason or "")
    assert "REDFISH_VERIFY_TLS" in (health.reason or "")


def test_a_self_signed_bmc_with_verification_off_answers(hostile_bmc, self_signed) -> None:
    bmc = hostile_bmc(ssl_context=self_signed.server_context())
    assert client.check_node(bmc.node(), hostile_config(verify_tls=False)).state is State.OK


def test_a_self_signed_bmc_trusted_by_a_ca_bundle_answers(hostile_bmc, self_signed) -> None:
    bmc = hostile_bmc(ssl_context=self_signed.server_context())
    health = client.check_node(bmc.node(), hostile_config(verify_tls=str(self_signed.cert)))
    assert health.state is State.OK, health


def test_a_missing_ca_bundle_is_named(hostile_bmc, self_signed, tmp_path: Path) -> None:
    bmc = hostile_bmc(ssl_context=self_signed.server_context())
    health = client.check_node(bmc.node(), hostile_config(verify_tls=str(tmp_path / "no.pem")))
    assert health.state is State.UNKNOWN, health
    assert "an existing CA bundle file" in (health.reason or "")


# -- the emulator's own safety ----------------------------------------------------------


def http(url: str, method: str = "GET", body: bytes | None = None, **headers: str):
    """(status, body) of a plain request, errors included."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_emulator_bmcs_serve_no_control_route_and_no_files(redfish_fleet: RedfishFleet) -> None:
    import base64
    import socket

    bmc = redfish_fleet.control.bmcs()[0]
    token = base64.b64encode(f"root:{redfish_fleet.config.password}".encode()).decode()
    auth = {"Authorization": f"Basic {token}"}
    assert http(bmc["url"] + "/_emulator/bmcs", **auth)[0] == 404
    assert http(bmc["url"] + "/_emulator/reset", "POST", b"{}", **auth)[0] in (404, 405)
    assert http(bmc["url"] + "/redfish/v1/%2e%2e/%2e%2e/etc/passwd", **auth)[0] == 404
    # A raw request line that no client library would normalise first.
    host, port = bmc["url"].removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(
            b"GET /redfish/v1/../../../../etc/passwd HTTP/1.1\r\nHost: x\r\n"
            + f"Authorization: Basic {token}\r\nConnection: close\r\n\r\n".encode()
        )
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 404"), answer[:100]
    assert b"root:" not in answer
    # The BMCs listen on loopback addresses only.
    for each in redfish_fleet.control.bmcs():
        assert each["url"].startswith("http://127."), each["url"]


def test_emulator_control_site_refuses_what_a_browser_could_send(
    redfish_fleet: RedfishFleet,
) -> None:
    control = redfish_fleet.control.url
    name = "x1000c0s3b0"
    body = b'{"fault": "down"}'
    # A cross-site form posts text/plain; a DNS-rebound page sends its own Host name.
    assert http(f"{control}/bmcs/{name}", "POST", body, **{"Content-Type": "text/plain"})[0] == 415
    forged = {"Content-Type": "application/json", "Host": "attacker.example:80"}
    assert http(f"{control}/bmcs/{name}", "POST", body, **forged)[0] == 403
    assert http(f"{control}/bmcs", Host="attacker.example")[0] == 403
    assert redfish_fleet.control.bmcs()[3]["fault"] == "none"
    json_type = {"Content-Type": "application/json"}
    for patch in (
        b'{"/redfish/v1/../../../tmp/x": {}}',
        b'{"/etc/passwd": {}}',
        b'{"/redfish/v1/Systems": "not an object"}',
        b'{"/redfish/v1/Systems": {"Members": {"x": 1}}}',
    ):
        status, text = http(f"{control}/bmcs/{name}/patch", "POST", patch, **json_type)
        assert status == 400, (patch, text)
    status, _ = http(f"{control}/bmcs/{name}", "POST", b'{"reset_delay": "soon"}', **json_type)
    assert status == 400
    assert redfish_fleet.control.patch(name, {"/redfish/v1/Extra": {"Id": "x"}})["xname"] == name


def test_a_compressed_bomb_is_cut_off_at_the_cap_once_inflated(hostile_bmc) -> None:
    import zlib

    bmc = hostile_bmc()
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip
    bomb = packer.compress(b'{"Name": "' + b"x" * (64 * 1024 * 1024)) + packer.flush()
    assert len(bomb) < client.MAX_BODY // 4  # small on the wire, 64 MiB inflated
    headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    bmc.routes["/redfish/v1/Systems/1"] = raw(bomb, 200, headers)
    health = client.check_node(bmc.node(), hostile_config())
    assert health.state is State.MALFORMED, health
    assert "too large" in (health.reason or "")


def test_a_sweep_of_every_hostile_bmc_at_once_ends_within_one_budget(
    hostile_bmc, self_signed
) -> None:
    """Each misbehaviour at once, as one sweep: every node gets its own state and reason,
    nothing raises, and the sweep costs about one BMC's budget, not the sum."""
    import itertools

    config = hostile_config(timeout=1.0, budget=3.0)
    bmcs = {name: hostile_bmc() for name in ("healthy", "endless", "dribble", "redirect", "ssrf")}
    bmcs["endless"].routes["/redfish/v1/Systems/1"] = lambda request: bmcs["endless"].stream(
        request, itertools.repeat(b" " * 65536)
    )
    bmcs["dribble"].routes["/redfish/v1/Systems/1"] = lambda request: bmcs["dribble"].stream(
        request, itertools.repeat(b" "), pause=0.2
    )
    bmcs["redirect"].routes["/redfish/v1/Systems/1"] = raw(
        b"", 302, {"Location": "http://127.0.0.2:9/"}
    )
    bmcs["ssrf"].tree["/redfish/v1/Systems"]["Members"] = [{"@odata.id": "http://127.0.0.2:9/x"}]
    bmcs["tls"] = hostile_bmc(ssl_context=self_signed.server_context())
    nodes = [b.node(f"x3000c0s{n}b0n0", None) for n, b in enumerate(bmcs.values())]
    expected = [
        State.OK,
        State.MALFORMED,
        State.TIMEOUT,
        State.MALFORMED,
        State.MALFORMED,
        State.UNREACHABLE,
    ]
    started = time.monotonic()
    # verify_tls only matters to the https BMC, whose self-signed certificate is refused.
    results = client.check_nodes(nodes, dataclasses.replace(config, verify_tls=True), fanout=4)
    elapsed = time.monotonic() - started
    assert [r.state for r in results] == expected, results
    assert all(r.reason for r in results[1:])
    assert elapsed < config.bmc_budget + 3, elapsed
