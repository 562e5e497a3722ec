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

import csv
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
from stat_bot.lifeline import stop_process
from tests.peers import free_port

BIN = Path(sys.executable).parent
FLEET_BMCS = 6
FLEET_VARIANTS = {
    "x1000c0s1b0n0": "critical_psu",
    "x1000c0s1b0n1": "overtemp_cpu",
    "x1000c0s2b0n0": "failed_dimm",
    "x1000c0s2b0n1": "powered_off",
}
TEST_TIMEOUT = 2.0  # the client's per-request timeout against the emulator


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


# -- hostile BMCs ----------------------------------------------------------------------
# A BMC is a peer the client must not trust: these serve what real BMCs never should
# (endless bodies, dribbled bytes, redirects, links to other hosts, echoed secrets),
# each a tiny aiohttp (or raw asyncio) server on a loopback address and free port.

HOSTILE_PASSWORD = "S3cret-Hostile-pw!"  # grepped for in every reason, log line and repr


def minimal_tree(system: dict | None = None) -> dict[str, dict]:
    """The least a client needs: service root, one system (healthy unless overridden)."""
    doc = {
        "@odata.id": "/redfish/v1/Systems/1",
        "Id": "1",
        "Name": "node",
        "PowerState": "On",
        "Status": {"Health": "OK", "HealthRollup": "OK", "State": "Enabled"},
        "ProcessorSummary": {"Status": {"HealthRollup": "OK"}},
        "MemorySummary": {"Status": {"HealthRollup": "OK"}},
        "Actions": {
            "#ComputerSystem.Reset": {
                "target": "/redfish/v1/Systems/1/Actions/ComputerSystem.Reset",
                "ResetType@Redfish.AllowableValues": ["On", "ForceOff", "GracefulShutdown"],
            }
        },
    }
    doc.update(system or {})
    return {
        "/redfish/v1": {
            "@odata.id": "/redfish/v1",
            "Id": "RootService",
            "Name": "Root Service",
            "RedfishVersion": "1.6.0",
            "UUID": "00000000-0000-0000-0000-000000000001",
            "Systems": {"@odata.id": "/redfish/v1/Systems"},
        },
        "/redfish/v1/Systems": {
            "@odata.id": "/redfish/v1/Systems",
            "Members": [{"@odata.id": "/redfish/v1/Systems/1"}],
        },
        "/redfish/v1/Systems/1": doc,
    }


class HostileBmc:
    """An aiohttp BMC in its own thread: `tree` (path -> JSON document) is served to
    requests with the right Basic credentials, `routes` (path -> async handler) override
    it; `requests` records (method, path, Authorization) of each, `sent` bytes streamed."""

    def __init__(self, host: str = "127.0.0.1", ssl_context=None) -> None:
        import asyncio
        import base64
        import threading

        self.host = host
        self.ssl_context = ssl_context
        self.tree = minimal_tree()
        self.routes: dict[str, Callable] = {}
        self.requests: list[tuple[str, str, str | None]] = []
        self.sent = 0
        self.authorization = (
            "Basic " + base64.b64encode(f"root:{HOSTILE_PASSWORD}".encode()).decode()
        )
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.port = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(30)
        scheme = "https" if ssl_context else "http"
        self.url = f"{scheme}://{host}:{self.port}"

    async def _start(self) -> int:
        from aiohttp import web

        app = web.Application()
        app.router.add_route("*", "/{path:.*}", self._handle)
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.host, 0, ssl_context=self.ssl_context)
        await site.start()
        return site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def _handle(self, request):
        from aiohttp import web

        path = request.path.rstrip("/") or "/"
        self.requests.append((request.method, path, request.headers.get("Authorization")))
        if path in self.routes:
            return await self.routes[path](request)
        if path != "/redfish/v1" and request.headers.get("Authorization") != self.authorization:
            return web.json_response({"error": {"message": "refused"}}, status=401)
        if path in self.tree:
            return web.json_response(self.tree[path])
        return web.json_response({"error": {"message": f"{path} missing"}}, status=404)

    async def stream(self, request, chunks, pause: float = 0.0, headers=None):
        """Send `chunks` (an iterable of bytes) as the body, counting what went out."""
        import asyncio

        from aiohttp import web

        response = web.StreamResponse(headers=headers or {"Content-Type": "application/json"})
        if headers is None or "Content-Length" not in headers:
            response.enable_chunked_encoding()
        await response.prepare(request)
        try:
            for chunk in chunks:
                await response.write(chunk)
                self.sent += len(chunk)
                if pause:
                    await asyncio.sleep(pause)
        except (ConnectionError, RuntimeError):
            pass  # the client hung up, as it should
        return response

    def node(self, xname: str = "x3000c0s1b0n0", system: str | None = "1") -> Node:
        return Node(xname, self.url, None, None, system)

    def stop(self) -> None:
        import asyncio

        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def hostile_bmc() -> Iterator[Callable[..., HostileBmc]]:
    """Start hostile BMCs: `hostile_bmc(host=..., ssl_context=...)`; all stopped after."""
    started: list[HostileBmc] = []

    def start(**kwargs: object) -> HostileBmc:
        bmc = HostileBmc(**kwargs)  # type: ignore[arg-type]
        started.append(bmc)
        return bmc

    yield start
    for bmc in started:
        bmc.stop()


def hostile_config(**changes: object) -> RedfishConfig:
    values: dict = {"verify_tls": False, "timeout": 2.0}
    values.update(changes)
    return RedfishConfig("root", HOSTILE_PASSWORD, **values)


@dataclass
class SelfSigned:
    cert: Path
    key: Path

    def server_context(self):
        import ssl

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        return context


@pytest.fixture(scope="session")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> SelfSigned:
    """A self-signed certificate for 127.0.0.1 (made with openssl, as an admin would)."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "bmc.crt", folder / "bmc.key"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"),
            *("-addext", "subjectAltName=IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
    )
    return SelfSigned(cert, key)


class RawServer:
    """A TCP server answering every connection with `handler(reader, writer)` (asyncio),
    for what aiohttp will not send (headers dribbled a byte at a time)."""

    def __init__(self, handler: Callable, ssl_context=None) -> None:
        import asyncio
        import threading

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

        async def start():
            return await asyncio.start_server(handler, "127.0.0.1", 0, ssl=ssl_context)

        self.server = asyncio.run_coroutine_threadsafe(start(), self.loop).result(30)
        scheme = "https" if ssl_context else "http"
        self.url = f"{scheme}://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    def stop(self) -> None:
        import asyncio

        async def stop():
            self.server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def raw_server() -> Iterator[Callable[..., RawServer]]:
    started: list[RawServer] = []

    def start(handler: Callable, ssl_context=None) -> RawServer:
        server = RawServer(handler, ssl_context)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
