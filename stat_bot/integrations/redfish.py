"""Redfish client for node health, power, inventory, firmware and event logs (sushy).

Built for sweeps of a thousand BMCs: nodes are grouped by BMC so the nodes a BMC
serves share one sushy connection (kept alive: sushy asks for `Connection: close`
by default, which costs a TCP handshake per request); BMCs are checked by a bounded
thread pool (sushy is synchronous; threads measured faster than wrapping it in
asyncio); every request has the configured timeout and a whole BMC a budget, and
sushy's own retries are cut to none on connection errors (by default it tries three
times with two-second sleeps), so a dead or hanging BMC costs one timeout at most.
Only what the checks need is fetched: a system whose ProcessorSummary and
MemorySummary say OK is not asked for each processor and DIMM.

Nothing raises out of `check_nodes`/`check_node`: an unreachable BMC, refused
credentials, a timeout, malformed JSON each become their own State with a reason.
The translation of resources into Findings is in stat_bot/hardware/redfish_checks.py.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import requests
import sushy
from sushy import ResetType
from sushy import exceptions as sushy_exc
from sushy.connector import Connector

from stat_bot.hardware import redfish_checks as checks
from stat_bot.hardware.health import Finding, NodeHealth, State, worst
from stat_bot.hardware.inventory import Node

ROOT = "/redfish/v1"
# sushy logs every refused login and dead BMC at ERROR; each is reported in the
# result instead, so without a handler of the caller's they are not printed twice.
logging.getLogger("sushy").addHandler(logging.NullHandler())
SEPARATORS = ("_", ".", "-", " ")  # between a system id and a component in firmware ids
DEFAULT_FANOUT = 64
T = TypeVar("T")
PowerAction = Literal["on", "off", "restart", "status"]
# Preferred ResetType for each action, in order: the first the system allows is used.
RESET_TYPES: dict[str, tuple[ResetType, ...]] = {
    "on": (ResetType.ON, ResetType.FORCE_ON, ResetType.PUSH_POWER_BUTTON),
    "off": (ResetType.GRACEFUL_SHUTDOWN, ResetType.FORCE_OFF),
    "restart": (ResetType.GRACEFUL_RESTART, ResetType.FORCE_RESTART, ResetType.POWER_CYCLE),
}
FORCED: dict[str, tuple[ResetType, ...]] = {
    "off": (ResetType.FORCE_OFF,),
    "restart": (ResetType.FORCE_RESTART, ResetType.POWER_CYCLE),
}


@dataclass(frozen=True)
class RedfishConfig:
    """How to talk to BMCs. `verify_tls`: True, False or a CA bundle path (the
    environment's REQUESTS_CA_BUNDLE is not read); `timeout` bounds each request
    (seconds); `budget` one BMC's whole check (default three timeouts); `recent` how
    far back a critical event-log entry still counts."""

    username: str
    password: str = field(repr=False)
    verify_tls: bool | str = True
    timeout: float = 10.0
    budget: float | None = None
    recent: dt.timedelta = dt.timedelta(hours=24)

    @property
    def bmc_budget(self) -> float:
        return self.budget if self.budget is not None else 3 * self.timeout


class BmcError(Exception):
    """A BMC could not be read: `state` says how (unreachable, timeout, ...), `reason` in words."""

    def __init__(self, state: State, reason: str) -> None:
        super().__init__(reason)
        self.state = state
        self.reason = reason


def _cause(exc: BaseException) -> BaseException | None:
    return exc.__cause__ or exc.__context__


def classify(exc: BaseException, url: str, timeout: float) -> BmcError:
    """An exception from talking to a BMC -> the State it means and a reason for a person."""
    if isinstance(exc, BmcError):
        return exc
    if isinstance(exc, sushy_exc.AccessError):
        return BmcError(
            State.AUTH_REFUSED,
            f"BMC {url} refused the credentials (HTTP {exc.status_code}): check "
            "REDFISH_USERNAME and REDFISH_PASSWORD",
        )
    if isinstance(exc, sushy_exc.ConnectionError):
        inner = _cause(exc)
        if isinstance(inner, requests.exceptions.Timeout):
            return BmcError(State.TIMEOUT, f"BMC {url} did not answer within {timeout:g} s")
        if isinstance(inner, requests.exceptions.SSLError):
            return BmcError(
                State.UNREACHABLE,
                f"TLS to BMC {url} failed ({_first_line(inner)}); "
                "set REDFISH_VERIFY_TLS to a CA bundle or false",
            )
        return BmcError(State.UNREACHABLE, f"BMC {url} is unreachable ({_short(inner or exc)})")
    if isinstance(exc, ValueError) and isinstance(
        exc, json.JSONDecodeError | requests.JSONDecodeError
    ):
        return BmcError(State.MALFORMED, f"BMC {url} answered malformed JSON ({exc})")
    if isinstance(exc, AttributeError):
        # sushy reads error bodies as Redfish {"error": {...}}; anything else raises this.
        return BmcError(State.MALFORMED, f"BMC {url} answered an error that is not Redfish JSON")
    if isinstance(exc, sushy_exc.HTTPError):
        detail = exc.detail or exc.code
        return BmcError(State.UNKNOWN, f"BMC {url} answered HTTP {exc.status_code}: {detail}")
    if isinstance(exc, KeyError | TypeError | sushy_exc.SushyError):
        return BmcError(State.MALFORMED, f"BMC {url} answered unexpected Redfish: {_short(exc)}")
    return BmcError(State.UNKNOWN, f"BMC {url}: {type(exc).__name__}: {_short(exc)}")


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:200]


def _short(exc: BaseException) -> str:
    text = _first_line(exc)
    for marker in ("Connection refused", "Name or service not known", "No route to host"):
        if marker in str(exc):
            return marker.lower()
    return text


class BmcSession:
    """One BMC: one kept-alive sushy connection, a deadline, GETs that return JSON dicts."""

    def __init__(self, url: str, cfg: RedfishConfig) -> None:
        self.url = url
        self.cfg = cfg
        self.deadline = time.monotonic() + cfg.bmc_budget
        self._root: sushy.Sushy | None = None
        self._conn: Connector | None = None

    def root(self) -> sushy.Sushy:
        if self._root is None:
            conn = Connector(
                self.url,
                verify=self.cfg.verify_tls,
                # One try on connection errors (sushy's default is 3 with 2 s sleeps), one
                # immediate retry on a 5xx: a dead BMC must cost one timeout, not 7 s more.
                server_side_retries=1,
                server_side_retries_delay=0,
                default_request_timeout=self.cfg.timeout,
                connect_timeout=self.cfg.timeout,
            )
            http = conn._session
            http.headers.pop("Connection", None)  # keep the connection alive
            # requests reads the proxy variables from the environment on every request
            # (a fifth of a sweep's CPU): read them once for this BMC instead.
            http.proxies.update(requests.utils.get_environ_proxies(self.url))
            http.trust_env = False
            self._conn = conn
            try:
                self._root = sushy.Sushy(
                    self.url + ROOT,
                    auth=sushy.auth.BasicAuth(self.cfg.username, self.cfg.password),
                    verify=self.cfg.verify_tls,
                    connector=conn,
                )
            except BaseException:
                conn.close()
                raise
        return self._root

    def _timeout(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise BmcError(
                State.TIMEOUT,
                f"BMC {self.url} did not finish within {self.cfg.bmc_budget:g} s",
            )
        return min(self.cfg.timeout, left)

    def get(self, path: str) -> dict[str, Any]:
        self.root()
        assert self._conn is not None
        doc = self._conn.get(path, timeout=self._timeout()).json()
        if not isinstance(doc, dict):
            raise BmcError(State.MALFORMED, f"BMC {self.url} answered {path} with a non-object")
        return doc

    def get_optional(self, path: str) -> dict[str, Any] | None:
        """The resource, or None where the BMC does not have it (404)."""
        try:
            return self.get(path)
        except sushy_exc.ResourceNotFoundError:
            return None

    def members(self, collection_path: str) -> list[dict[str, Any]]:
        """A collection's members, read one by one unless they came inline."""
        collection = self.get(collection_path)
        found = []
        for member in collection.get("Members") or ():
            if not isinstance(member, dict):
                continue
            if set(member) - {"@odata.id"}:
                found.append(member)
            elif member.get("@odata.id"):
                found.append(self.get(member["@odata.id"]))
        return found

    def system_path(self, node: Node) -> str:
        if node.system:
            return f"{ROOT}/Systems/{node.system}"
        members = self.get(f"{ROOT}/Systems").get("Members") or []
        if len(members) != 1:
            raise BmcError(
                State.UNKNOWN,
                f"BMC {self.url} serves {len(members)} systems: give this node's Redfish "
                "system id in the inventory's `system` column",
            )
        return members[0]["@odata.id"]

    def system(self, node: Node) -> sushy.resources.system.system.System:
        root = self.root()
        path = self.system_path(node)
        self._timeout()  # the budget is checked before sushy's own GET too
        return root.get_system(path)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()


def _link(doc: dict[str, Any], key: str) -> str | None:
    value = doc.get(key)
    return value.get("@odata.id") if isinstance(value, dict) else None


def _links(doc: dict[str, Any], key: str) -> list[str]:
    links = doc.get("Links")
    items = links.get(key) if isinstance(links, dict) else None
    return [i["@odata.id"] for i in items or () if isinstance(i, dict) and "@odata.id" in i]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# -- health ---------------------------------------------------------------------------


def _chassis_findings(session: BmcSession, system: dict[str, Any]) -> list[Finding]:
    found: list[Finding] = []
    for chassis in _links(system, "Chassis")[:1]:
        # Redfish fixes these URIs (Chassis/{id}/Thermal, /Power): read them directly and
        # fall back to the chassis' links only where the BMC does not have them.
        thermal = session.get_optional(f"{chassis}/Thermal")
        power = session.get_optional(f"{chassis}/Power")
        if thermal is None or power is None:
            doc = session.get(chassis)
            if thermal is None and _link(doc, "Thermal"):
                thermal = session.get(_link(doc, "Thermal"))  # type: ignore[arg-type]
            if power is None and _link(doc, "Power"):
                power = session.get(_link(doc, "Power"))  # type: ignore[arg-type]
        if thermal:
            found += checks.thermal_findings(thermal)
        if power:
            found += checks.power_findings(power)
    return found


def _log_service_entries(session: BmcSession, owner: dict[str, Any]) -> list[dict[str, Any]]:
    """Entries of the owner's SEL (or first) log service: the system's, else its manager's."""
    services_path = _link(owner, "LogServices")
    if not services_path:
        return []
    paths = _member_paths(session.get(services_path))
    if not paths:
        return []
    chosen = next((p for p in paths if p.rsplit("/", 1)[-1] in ("SEL", "Log1")), paths[0])
    return checks.log_entries(session.get(f"{chosen}/Entries"))


def _event_log(session: BmcSession, system: dict[str, Any]) -> list[dict[str, Any]]:
    if _link(system, "LogServices"):
        return _log_service_entries(session, system)
    for manager in _links(system, "ManagedBy")[:1]:
        return _log_service_entries(session, session.get(manager))
    return []


def _node_health(session: BmcSession, node: Node, now: dt.datetime) -> NodeHealth:
    system_res = session.system(node)
    system = system_res.json
    path = system_res.path
    found = checks.system_findings(system)
    if checks.needs_processors(system) and _link(system, "Processors"):
        found += checks.processor_findings(session.members(f"{path}/Processors"))
    if checks.needs_memory(system) and _link(system, "Memory"):
        found += checks.memory_findings(session.members(f"{path}/Memory"))
    found += _chassis_findings(session, system)
    found += checks.log_findings(_event_log(session, system), now - session.cfg.recent)
    found += checks.rollup_findings(system, found)
    return NodeHealth(
        xname=node.xname,
        hostname=node.hostname,
        state=worst(found),
        findings=found,
        power_state=system.get("PowerState"),
        reason=None,
        checked_at=now,
    )


def _failed(node: Node, error: BmcError, now: dt.datetime) -> NodeHealth:
    return NodeHealth(
        xname=node.xname,
        hostname=node.hostname,
        state=error.state,
        findings=[],
        power_state=None,
        reason=error.reason,
        checked_at=now,
    )


def _per_bmc(
    nodes: Sequence[Node],
    cfg: RedfishConfig,
    fanout: int,
    work: Callable[[BmcSession, Node], T],
    failed: Callable[[Node, BmcError], T],
) -> list[T]:
    """Run `work` for every node, one session per BMC, BMCs `fanout` at a time.

    After one node of a BMC fails at the connection level (unreachable, timeout,
    refused credentials), its other nodes get the same answer without more waiting.
    """
    groups: dict[str, list[int]] = defaultdict(list)
    for i, node in enumerate(nodes):
        groups[node.bmc_url].append(i)
    results: list[Any] = [None] * len(nodes)

    def run(url: str, indexes: list[int]) -> None:
        session = BmcSession(url, cfg)
        fatal: BmcError | None = None
        try:
            for i in indexes:
                if fatal is not None:
                    results[i] = failed(nodes[i], fatal)
                    continue
                try:
                    results[i] = work(session, nodes[i])
                except Exception as exc:
                    error = classify(exc, url, cfg.timeout)
                    results[i] = failed(nodes[i], error)
                    if error.state in (State.UNREACHABLE, State.TIMEOUT, State.AUTH_REFUSED):
                        fatal = error
        finally:
            session.close()

    workers = max(1, min(fanout, len(groups)))
    if workers == 1:
        for url, indexes in groups.items():
            run(url, indexes)
    else:
        with ThreadPoolExecutor(workers, thread_name_prefix="redfish") as pool:
            for future in [pool.submit(run, url, idx) for url, idx in groups.items()]:
                future.result()
    return results


def check_nodes(
    nodes: Sequence[Node], cfg: RedfishConfig, fanout: int = DEFAULT_FANOUT
) -> list[NodeHealth]:
    """Every node's health, in the order given; never raises for a BMC's failure."""
    now = _now()
    return _per_bmc(
        nodes,
        cfg,
        fanout,
        lambda session, node: _node_health(session, node, now),
        lambda node, error: _failed(node, error, now),
    )


def check_node(node: Node, cfg: RedfishConfig) -> NodeHealth:
    return check_nodes([node], cfg, 1)[0]


# -- power ----------------------------------------------------------------------------


@dataclass(frozen=True)
class PowerResult:
    """What a power action did (or a status read found): `ok` False with `reason` if not done."""

    xname: str
    action: str
    ok: bool
    power_state: str | None = None  # as read before the action
    reset_type: str | None = None
    state: State = State.OK
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "xname": self.xname,
            "action": self.action,
            "ok": self.ok,
            "power_state": self.power_state,
            "reset_type": self.reset_type,
            "state": str(self.state),
            "reason": self.reason,
        }


def choose_reset_type(
    action: str, allowed: Iterable[ResetType], force: bool = False
) -> ResetType | None:
    """The first ResetType for `action` that the system allows (forced ones first if `force`)."""
    allowed = set(allowed)
    preferred = (*FORCED.get(action, ()), *RESET_TYPES[action]) if force else RESET_TYPES[action]
    return next((t for t in preferred if t in allowed), None)


def _power(session: BmcSession, node: Node, action: str, force: bool) -> PowerResult:
    system = session.system(node)
    state = str(system.power_state.value) if system.power_state else None
    if action == "status":
        return PowerResult(node.xname, action, True, state)
    if (action == "on" and state == "On") or (action == "off" and state == "Off"):
        return PowerResult(node.xname, action, True, state, reason=f"already {state.lower()}")
    if action == "restart" and state == "Off":
        return PowerResult(
            node.xname, action, False, state, reason="the node is off: power it on instead"
        )
    reset = choose_reset_type(action, system.get_allowed_reset_system_values(), force)
    if reset is None:
        return PowerResult(
            node.xname,
            action,
            False,
            state,
            state=State.UNKNOWN,
            reason=f"the system allows no ResetType for {action}",
        )
    system.reset_system(reset)
    return PowerResult(node.xname, action, True, state, str(reset.value))


def power(
    node: Node, cfg: RedfishConfig, action: PowerAction, *, force: bool = False
) -> PowerResult:
    """ComputerSystem.Reset for on|off|restart (graceful where allowed unless `force`),
    or `status` to read PowerState; never raises for a BMC's failure."""
    return power_many([node], cfg, action, force=force)[0]


def power_many(
    nodes: Sequence[Node],
    cfg: RedfishConfig,
    action: PowerAction,
    *,
    force: bool = False,
    fanout: int = DEFAULT_FANOUT,
) -> list[PowerResult]:
    if action not in ("on", "off", "restart", "status"):
        raise ValueError(f"power action must be on, off, restart or status, not {action!r}")
    return _per_bmc(
        nodes,
        cfg,
        fanout,
        lambda session, node: _power(session, node, action, force),
        lambda node, error: PowerResult(
            node.xname, action, False, state=error.state, reason=error.reason
        ),
    )


def power_state(node: Node, cfg: RedfishConfig) -> str | None:
    """PowerState ("On", "Off", ...) or None when the BMC cannot be read."""
    return power(node, cfg, "status").power_state


# -- inventory, firmware, event log ---------------------------------------------------


@dataclass(frozen=True)
class NodeInventory:
    xname: str
    hostname: str | None
    state: State = State.OK
    reason: str | None = None
    manufacturer: str | None = None
    model: str | None = None
    serial: str | None = None
    bios_version: str | None = None
    power_state: str | None = None
    cpu_count: int | None = None
    cpu_model: str | None = None
    memory_gib: float | None = None
    firmware: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, State) else v) for k, v in self.__dict__.items()}


def _firmware_of(session: BmcSession, node: Node, system_id: str) -> dict[str, str]:
    """Components of this node (ids prefixed by its system id, prefix dropped) and the BMC's own."""
    if not _link(session.root().json, "UpdateService"):
        return {}
    service = session.get_optional(f"{ROOT}/UpdateService")
    path = _link(service or {}, "FirmwareInventory")
    if not path:
        return {}
    systems = [m.rsplit("/", 1)[-1] for m in _member_paths(session.get(f"{ROOT}/Systems"))]
    result = {}
    for item in session.members(path):
        ident = str(item.get("Id") or item.get("Name") or "")
        version = item.get("Version")
        if not ident or not isinstance(version, str):
            continue
        owner = next(
            (
                s
                for s in systems
                if ident[len(s) : len(s) + 1] in SEPARATORS and ident.startswith(s)
            ),
            None,
        )
        if owner is None:
            result[ident] = version  # the BMC's own, or shared by its nodes
        elif owner == system_id:
            result[ident[len(owner) + 1 :]] = version
    return result


def _member_paths(collection: dict[str, Any]) -> list[str]:
    return [
        m["@odata.id"]
        for m in collection.get("Members") or ()
        if isinstance(m, dict) and "@odata.id" in m
    ]


def _inventory(session: BmcSession, node: Node) -> NodeInventory:
    system_res = session.system(node)
    system = system_res.json
    cpu = system.get("ProcessorSummary") or {}
    memory = system.get("MemorySummary") or {}
    return NodeInventory(
        xname=node.xname,
        hostname=node.hostname,
        manufacturer=system.get("Manufacturer"),
        model=system.get("Model"),
        serial=system.get("SerialNumber"),
        bios_version=system.get("BiosVersion"),
        power_state=system.get("PowerState"),
        cpu_count=cpu.get("Count"),
        cpu_model=cpu.get("Model"),
        memory_gib=memory.get("TotalSystemMemoryGiB"),
        firmware=_firmware_of(session, node, system.get("Id") or system_res.identity),
    )


def inventory_many(
    nodes: Sequence[Node], cfg: RedfishConfig, fanout: int = DEFAULT_FANOUT
) -> list[NodeInventory]:
    return _per_bmc(
        nodes,
        cfg,
        fanout,
        _inventory,
        lambda node, error: NodeInventory(
            node.xname, node.hostname, state=error.state, reason=error.reason
        ),
    )


def inventory(node: Node, cfg: RedfishConfig) -> NodeInventory:
    """Model, serial, BIOS version, CPU/memory summary and firmware versions of one node."""
    return inventory_many([node], cfg, 1)[0]


def firmware(
    nodes: Sequence[Node], cfg: RedfishConfig, fanout: int = DEFAULT_FANOUT
) -> list[NodeInventory]:
    """Each node's inventory, whose `.firmware` (component -> version) is what
    stat_bot.hardware.firmware compares with the fleet's majority."""
    return inventory_many(nodes, cfg, fanout)


@dataclass(frozen=True)
class LogEntry:
    id: str
    created: str | None
    severity: str | None
    message: str

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> LogEntry:
        return cls(
            str(doc.get("Id", "")),
            doc.get("Created"),
            doc.get("Severity"),
            str(doc.get("Message") or doc.get("Name") or ""),
        )


@dataclass(frozen=True)
class NodeLog:
    xname: str
    hostname: str | None
    entries: list[LogEntry] = field(default_factory=list)
    state: State = State.OK
    reason: str | None = None


def sel_many(
    nodes: Sequence[Node], cfg: RedfishConfig, count: int = 20, fanout: int = DEFAULT_FANOUT
) -> list[NodeLog]:
    def work(session: BmcSession, node: Node) -> NodeLog:
        entries = _event_log(session, session.system(node).json)
        latest = [LogEntry.from_doc(e) for e in checks.latest_entries(entries, count)]
        return NodeLog(node.xname, node.hostname, latest)

    return _per_bmc(
        nodes,
        cfg,
        fanout,
        work,
        lambda node, error: NodeLog(
            node.xname, node.hostname, state=error.state, reason=error.reason
        ),
    )


def sel(node: Node, cfg: RedfishConfig, count: int = 20) -> NodeLog:
    """The node's latest `count` event-log entries, newest first."""
    return sel_many([node], cfg, count, 1)[0]
