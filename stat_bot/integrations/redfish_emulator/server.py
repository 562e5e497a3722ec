"""Many Redfish BMCs in one aiohttp process: one port on many loopback addresses.

Each BMC listens on its own address (127.0.10.1, 127.0.10.2, ...) at the same port;
a request is told apart by the local address it reached. Each BMC's tree is kept in
memory with its serialized answers cached, so 1,024 BMCs cost one process. Where
those addresses cannot be bound (not Linux), every BMC gets its own port on
127.0.0.1 instead. A separate control site (`/_emulator/...` on 127.0.0.1) sets
per-BMC faults, a node's variant, patches and the reset delay, so a test can make one
BMC misbehave while the rest answer.

Faults: `refuse` (401 with a Redfish error body; the service root stays open, as the
standard says), `hang` (no answer until the fault is cleared), `garbage` (200 with
malformed JSON), `down` (the BMC stops listening and drops open connections).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import errno
import ipaddress
import json
import logging
import resource
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from stat_bot.integrations.redfish_emulator.layout import (
    EmulatedBmc,
    with_variant,
    write_inventory_csv,
)
from stat_bot.integrations.redfish_emulator.mockups import ROOT, Tree, build_tree, merge, variants

LOG = logging.getLogger(__name__)
FAULTS = ("none", "refuse", "hang", "garbage", "down")
DEFAULT_FIRST_ADDRESS = "127.0.10.1"
DEFAULT_USERNAME = "root"
DEFAULT_PASSWORD = "initial0"
BACKLOG = 1024
HANG_LIMIT = 3600.0
GARBAGE = b'{"@odata.id": "/redfish/v1/Systems/Node0", "Status": {"Health": "OK", "Sta'
POWER_AFTER = {
    "On": "On",
    "ForceOn": "On",
    "ForceOff": "Off",
    "GracefulShutdown": "Off",
    "GracefulRestart": "On",
    "ForceRestart": "On",
    "PowerCycle": "On",
}
JSON_TYPE = "application/json"


def redfish_error(status: int, code: str, message: str) -> web.Response:
    """An error body shaped as Redfish says (clients such as sushy parse it)."""
    body = {
        "error": {
            "code": f"Base.1.8.{code}",
            "message": message,
            "@Message.ExtendedInfo": [{"MessageId": f"Base.1.8.{code}", "Message": message}],
        }
    }
    headers = {"WWW-Authenticate": 'Basic realm="Redfish"'} if status == 401 else None
    return web.Response(
        status=status, body=json.dumps(body).encode(), content_type=JSON_TYPE, headers=headers
    )


@dataclass
class Bmc:
    """One emulated BMC: what it serves, how it misbehaves, where it listens."""

    spec: EmulatedBmc
    host: str
    port: int = 0
    tree: Tree = field(default_factory=dict)
    cache: dict[str, bytes] = field(default_factory=dict)
    fault: str = "none"
    reset_delay: float = 0.0
    site: web.TCPSite | None = None
    unhang: asyncio.Event = field(default_factory=asyncio.Event)
    connections: int = 0  # TCP connections accepted: shows whether clients keep them alive
    seen: weakref.WeakSet[Any] = field(default_factory=weakref.WeakSet)

    @property
    def key(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def rebuild(self) -> None:
        self.tree = build_tree(self.spec)
        self.cache.clear()

    def body(self, path: str) -> bytes | None:
        cached = self.cache.get(path)
        if cached is None:
            doc = self.tree.get(path)
            if doc is None:
                return None
            cached = self.cache[path] = json.dumps(doc).encode()
        return cached

    def describe(self) -> dict[str, Any]:
        return {
            "xname": self.spec.xname,
            "url": self.url,
            "fault": self.fault,
            "reset_delay": self.reset_delay,
            "connections": self.connections,
            "nodes": [
                {
                    "xname": n.xname,
                    "system": n.system,
                    "variant": n.variant,
                    "power_state": self.tree[f"{ROOT}/Systems/{n.system}"]["PowerState"],
                }
                for n in self.spec.nodes
            ],
        }


def loopback_addresses(first: str, count: int) -> list[str]:
    """`count` loopback addresses from `first`, skipping .0 and .255."""
    address = ipaddress.IPv4Address(first)
    result = []
    while len(result) < count:
        if address not in ipaddress.IPv4Network("127.0.0.0/8"):
            raise ValueError(f"{count} addresses from {first} leave the loopback range 127.0.0.0/8")
        if int(address) & 0xFF not in (0, 255):
            result.append(str(address))
        address += 1
    return result


def raise_file_limit(wanted: int) -> None:
    """Each BMC's listening socket and each client connection is a file descriptor."""
    with contextlib.suppress(ValueError, OSError):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and soft < wanted:
            target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


class Emulator:
    """The BMCs of `bmcs`, served by one aiohttp runner once `start()`ed."""

    def __init__(
        self,
        bmcs: Sequence[EmulatedBmc],
        *,
        first_address: str = DEFAULT_FIRST_ADDRESS,
        port: int = 0,
        control_host: str = "127.0.0.1",
        control_port: int = 0,
        username: str = DEFAULT_USERNAME,
        password: str = DEFAULT_PASSWORD,
        reset_delay: float = 0.0,
    ) -> None:
        self.specs = list(bmcs)
        self.first_address = first_address
        self.port = port
        self.control_host = control_host
        self.control_port = control_port
        self.username = username
        self.password = password
        self.reset_delay = reset_delay
        token = base64.b64encode(f"{username}:{password}".encode()).decode()
        self._authorization = f"Basic {token}"
        self.bmcs: list[Bmc] = []
        self.by_key: dict[str, Bmc] = {}
        self.distinct_ports = False
        self.runner: web.AppRunner | None = None
        self.control_runner: web.AppRunner | None = None
        self.control_url = ""
        self._timers: set[asyncio.TimerHandle] = set()
        self.requests = 0  # answered by any BMC: benchmarks compare clients' request counts

    # -- life cycle -------------------------------------------------------------------

    async def start(self) -> None:
        raise_file_limit(len(self.specs) * 4 + 1024)
        app = web.Application()
        app.router.add_route("*", "/{path:.*}", self.handle)
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self.runner.setup()
        hosts = loopback_addresses(self.first_address, len(self.specs))
        self.bmcs = [Bmc(spec, host) for spec, host in zip(self.specs, hosts, strict=True)]
        for bmc in self.bmcs:
            bmc.rebuild()
            bmc.reset_delay = self.reset_delay
        try:
            await self._bind_addresses()
        except OSError as exc:
            if exc.errno != errno.EADDRNOTAVAIL:
                raise
            LOG.warning("cannot bind %s (%s): one port per BMC on 127.0.0.1", hosts[0], exc)
            await self._bind_ports()
        self.by_key = {b.key: b for b in self.bmcs}
        control = web.Application()
        control.add_routes(
            [
                web.get("/_emulator/bmcs", self.list_bmcs),
                web.get("/_emulator/stats", self.stats),
                web.post("/_emulator/bmcs/{name}", self.set_bmc),
                web.post("/_emulator/bmcs/{name}/patch", self.patch_bmc),
                web.post("/_emulator/nodes/{name}", self.set_node),
                web.post("/_emulator/reset", self.reset_all),
            ]
        )
        self.control_runner = web.AppRunner(control, access_log=None, shutdown_timeout=1.0)
        await self.control_runner.setup()
        site = web.TCPSite(self.control_runner, self.control_host, self.control_port)
        await site.start()
        port = self.control_runner.addresses[0][1]
        self.control_url = f"http://{self.control_host}:{port}/_emulator"

    async def _bind_addresses(self) -> None:
        """Every BMC on its own address, all at one port (any free one when port is 0)."""
        for attempt in range(8):
            port = self.port
            started: list[web.TCPSite] = []
            try:
                for bmc in self.bmcs:
                    bmc.port = port
                    await self._listen(bmc)
                    started.append(bmc.site)  # type: ignore[arg-type]
                    if port == 0:
                        port = bmc.site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
                        bmc.port = port
                return
            except OSError as exc:
                for site in started:
                    await site.stop()
                if exc.errno != errno.EADDRINUSE or self.port != 0 or attempt == 7:
                    raise

    async def _bind_ports(self) -> None:
        self.distinct_ports = True
        for bmc in self.bmcs:
            if bmc.site is not None:
                with contextlib.suppress(RuntimeError):
                    await bmc.site.stop()
            bmc.host, bmc.port = "127.0.0.1", 0
            await self._listen(bmc)
            bmc.port = bmc.site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def _listen(self, bmc: Bmc) -> None:
        assert self.runner is not None
        site = web.TCPSite(self.runner, bmc.host, bmc.port, backlog=BACKLOG, reuse_address=True)
        await site.start()
        bmc.site = site

    async def stop(self) -> None:
        for timer in self._timers:
            timer.cancel()
        for bmc in self.bmcs:
            bmc.unhang.set()
        for runner in (self.control_runner, self.runner):
            if runner is not None:
                await runner.cleanup()

    # -- what is served ---------------------------------------------------------------

    def inventory_rows(self) -> list[dict[str, object]]:
        return [
            {
                "xname": n.xname,
                "bmc": bmc.url,
                "hostname": n.hostname,
                "nid": n.nid,
                "system": n.system,
            }
            for bmc in self.bmcs
            for n in bmc.spec.nodes
        ]

    def write_inventory(self, path: Path) -> None:
        write_inventory_csv(path, self.inventory_rows())

    def describe_addresses(self) -> str:
        if not self.bmcs:
            return "no BMCs"
        if self.distinct_ports:
            ports = [b.port for b in self.bmcs]
            return f"127.0.0.1 ports {min(ports)}-{max(ports)} (one port per BMC)"
        first, last = self.bmcs[0].host, self.bmcs[-1].host
        span = first if first == last else f"{first}-{last}"
        return f"{span} port {self.bmcs[0].port}"

    # -- BMC requests -----------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        bmc = self.by_key.get(f"{sockname[0]}:{sockname[1]}") if sockname else None
        if bmc is None:
            return redfish_error(404, "ResourceMissingAtURI", "no BMC at this address")
        self.requests += 1
        if request.transport is not None and request.transport not in bmc.seen:
            bmc.seen.add(request.transport)
            bmc.connections += 1
        path = request.path.rstrip("/") or "/"
        if bmc.fault == "down":
            if request.transport is not None:
                request.transport.abort()
            raise web.HTTPServiceUnavailable()
        if bmc.fault == "hang":
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(bmc.unhang.wait(), HANG_LIMIT)
        if bmc.fault == "garbage":
            return web.Response(body=GARBAGE, content_type=JSON_TYPE)
        refused = (
            bmc.fault == "refuse" or request.headers.get("Authorization") != self._authorization
        )
        if path != ROOT and refused:
            return redfish_error(401, "NoValidSession", "the credentials were refused")
        if request.method == "GET":
            body = bmc.body(path)
            if body is None:
                return redfish_error(404, "ResourceMissingAtURI", f"{path} does not exist")
            return web.Response(body=body, content_type=JSON_TYPE)
        if request.method == "POST" and path.endswith("/Actions/ComputerSystem.Reset"):
            return await self.reset_system(
                bmc, path.removesuffix("/Actions/ComputerSystem.Reset"), request
            )
        return redfish_error(405, "ActionNotSupported", f"{request.method} {path} is not supported")

    async def reset_system(self, bmc: Bmc, system_path: str, request: web.Request) -> web.Response:
        system = bmc.tree.get(system_path)
        if system is None:
            return redfish_error(404, "ResourceMissingAtURI", f"{system_path} does not exist")
        try:
            reset_type = (await request.json())["ResetType"]
        except (ValueError, KeyError, TypeError):
            return redfish_error(400, "PropertyMissing", 'the body must be {"ResetType": ...}')
        allowed = system["Actions"]["#ComputerSystem.Reset"]["ResetType@Redfish.AllowableValues"]
        if reset_type not in allowed or reset_type not in POWER_AFTER:
            return redfish_error(
                400, "ActionParameterValueNotInList", f"ResetType {reset_type} is not allowed"
            )
        state = POWER_AFTER[reset_type]
        if bmc.reset_delay > 0:
            loop = asyncio.get_running_loop()
            timer = loop.call_later(bmc.reset_delay, self._set_power, bmc, system_path, state)
            self._timers.add(timer)
        else:
            self._set_power(bmc, system_path, state)
        return web.Response(status=204)

    def _set_power(self, bmc: Bmc, system_path: str, state: str) -> None:
        bmc.tree[system_path]["PowerState"] = state
        chassis = system_path.replace("/Systems/", "/Chassis/")
        if chassis in bmc.tree:
            bmc.tree[chassis]["PowerState"] = state
        bmc.cache.clear()

    # -- control ----------------------------------------------------------------------

    def find(self, name: str) -> Bmc:
        """A BMC by its xname, one of its nodes' xnames, or host:port."""
        for bmc in self.bmcs:
            if name in (bmc.key, bmc.spec.xname) or any(n.xname == name for n in bmc.spec.nodes):
                return bmc
        raise web.HTTPNotFound(text=f"no emulated BMC or node {name!r}\n")

    async def stats(self, request: web.Request) -> web.Response:
        return web.json_response({"requests": self.requests, "bmcs": len(self.bmcs)})

    async def list_bmcs(self, request: web.Request) -> web.Response:
        return web.json_response([b.describe() for b in self.bmcs])

    async def _body(self, request: web.Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except ValueError:
            raise web.HTTPBadRequest(text="the body must be a JSON object\n") from None
        if not isinstance(body, dict):
            raise web.HTTPBadRequest(text="the body must be a JSON object\n")
        return body

    async def set_bmc(self, request: web.Request) -> web.Response:
        """{"fault": "none|refuse|hang|garbage|down", "reset_delay": seconds}"""
        bmc = self.find(request.match_info["name"])
        body = await self._body(request)
        if "fault" in body:
            if body["fault"] not in FAULTS:
                raise web.HTTPBadRequest(text=f"fault must be one of {', '.join(FAULTS)}\n")
            await self.set_fault(bmc, body["fault"])
        if "reset_delay" in body:
            bmc.reset_delay = float(body["reset_delay"])
        return web.json_response(bmc.describe())

    async def set_fault(self, bmc: Bmc, fault: str) -> None:
        was = bmc.fault
        bmc.fault = fault
        if was == "hang" and fault != "hang":
            bmc.unhang.set()
            bmc.unhang = asyncio.Event()
        if fault == "down" and bmc.site is not None:
            await bmc.site.stop()
            bmc.site = None
        if fault != "down" and bmc.site is None:
            await self._listen(bmc)

    async def patch_bmc(self, request: web.Request) -> web.Response:
        """{path: merge patch, ...} applied to the BMC's resources (new paths are added)."""
        bmc = self.find(request.match_info["name"])
        for path, patch in (await self._body(request)).items():
            bmc.tree[path] = merge(bmc.tree[path], patch) if path in bmc.tree else patch
        bmc.cache.clear()
        return web.json_response(bmc.describe())

    async def set_node(self, request: web.Request) -> web.Response:
        """{"variant": name}: the node's resources rebuilt as that variant."""
        name = request.match_info["name"]
        bmc = self.find(name)
        variant = (await self._body(request)).get("variant")
        if variant not in variants():
            raise web.HTTPBadRequest(text=f"variant must be one of {', '.join(variants())}\n")
        bmc.spec = with_variant(bmc.spec, name, variant)
        bmc.rebuild()
        return web.json_response(bmc.describe())

    async def reset_all(self, request: web.Request) -> web.Response:
        """Every BMC back to how it started: its variants, no fault, the default reset delay."""
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        for bmc, spec in zip(self.bmcs, self.specs, strict=True):
            await self.set_fault(bmc, "none")
            bmc.connections = 0
            bmc.spec = spec
            bmc.reset_delay = self.reset_delay
            bmc.rebuild()
        return web.json_response([b.describe() for b in self.bmcs])
