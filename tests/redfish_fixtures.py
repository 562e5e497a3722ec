"""Redfish peers for the tests: the project's many-BMC emulator, sushy-static, sushy-emulator.

- `redfish_emulator` (session): the project's emulator as a child process with the
  fleet of FLEET_VARIANTS: 6 slot BMCs x1000c0s[0-5]b0, two nodes each; s0 healthy,
  s1 and s2 one unhealthy variant per node, s3-s5 healthy (the ones tests set faults
  on). `redfish_fleet` (function) is the same emulator reset to that state before the test,
  with `.nodes` (inventory Nodes by xname), `.config` (a RedfishConfig with a short
  timeout) and `.control` (faults, variants, patches).
- `sushy_static(tree_dir) -> url`: `sushy-static` serving a mockup tree written with
  redfish_emulator.write_tree (no auth; its request log goes to a file).
- `sushy_emulator` (module): sushy-tools' emulator with the fake driver and two
  systems, for power actions; `.url`, `.systems` (ids).
All bind 127.0.0.1 (or 127.0.10.x) on free ports and are stopped after.
"""

from __future__ import annotations

import contextlib
import csv
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from stat_bot.hardware.inventory import Node
from stat_bot.integrations.redfish import RedfishConfig
from stat_bot.integrations.redfish_emulator import EmulatorControl, EmulatorProcess

BIN = Path(sys.executable).parent
FLEET_BMCS = 6
FLEET_VARIANTS = {
    "x1000c0s1b0n0": "critical_psu",
    "x1000c0s1b0n1": "overtemp_cpu",
    "x1000c0s2b0n0": "failed_dimm",
    "x1000c0s2b0n1": "powered_off",
}
TEST_TIMEOUT = 2.0  # the client's per-request timeout against the emulator


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def wait_for_http(url: str, timeout: float = 30.0, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"{process.args} exited with {process.returncode}") from None
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def stop_process(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)


def read_nodes(inventory: Path) -> dict[str, Node]:
    with inventory.open(newline="") as f:
        return {
            row["xname"]: Node(
                row["xname"], row["bmc"], row["hostname"], int(row["nid"]), row["system"]
            )
            for row in csv.DictReader(f)
        }


@dataclass
class RedfishFleet:
    process: EmulatorProcess
    control: EmulatorControl
    nodes: dict[str, Node]
    config: RedfishConfig


@pytest.fixture(scope="session")
def redfish_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedfishFleet]:
    folder = tmp_path_factory.mktemp("redfish-emulator")
    args = ["--addresses", str(FLEET_BMCS)]
    for xname, variant in FLEET_VARIANTS.items():
        args += ["--set", f"{xname}={variant}"]
    password = uuid.uuid4().hex
    with EmulatorProcess(folder, *args, password=password) as process:
        assert process.control is not None
        config = RedfishConfig("root", password, verify_tls=False, timeout=TEST_TIMEOUT)
        yield RedfishFleet(process, process.control, read_nodes(process.inventory), config)


@pytest.fixture
def redfish_fleet(redfish_emulator: RedfishFleet) -> RedfishFleet:
    redfish_emulator.control.reset()
    return redfish_emulator


@pytest.fixture
def sushy_static(tmp_path: Path) -> Iterator[Callable[[Path], str]]:
    started: list[subprocess.Popen] = []

    def start(tree: Path) -> str:
        port = free_port()
        log = tmp_path / f"sushy-static-{port}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [str(BIN / "sushy-static"), "-i", "127.0.0.1", "-p", str(port), "-m", str(tree)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        started.append(process)
        url = f"http://127.0.0.1:{port}"
        wait_for_http(url + "/redfish/v1", process=process)
        return url

    yield start
    for process in started:
        stop_process(process)


@dataclass
class SushyEmulator:
    url: str
    systems: list[str]


@pytest.fixture(scope="module")
def sushy_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SushyEmulator]:
    folder = tmp_path_factory.mktemp("sushy-emulator")
    port = free_port()
    systems = [str(uuid.uuid4()) for _ in range(2)]
    fake = [
        {"uuid": ident, "name": f"node{n}", "power_state": "On", "nics": []}
        for n, ident in enumerate(systems)
    ]
    config = folder / "emulator.conf"
    config.write_text(
        "SUSHY_EMULATOR_FAKE_DRIVER = True\n"
        f"SUSHY_EMULATOR_FAKE_SYSTEMS = {fake!r}\n"
        "SUSHY_EMULATOR_LISTEN_IP = '127.0.0.1'\n"
        f"SUSHY_EMULATOR_LISTEN_PORT = {port}\n"
    )
    with (folder / "sushy-emulator.log").open("wb") as out:
        process = subprocess.Popen(
            [str(BIN / "sushy-emulator"), "--config", str(config)],
            cwd=folder,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for_http(url + "/redfish/v1", process=process)
        yield SushyEmulator(url, systems)
    finally:
        stop_process(process)
