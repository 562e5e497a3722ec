"""Mockup trees: the project's own Redfish JSON (package data), instantiated per BMC.

`mockups/bmc.json` holds what a node BMC serves once (service root, manager with its
SEL, update service); `mockups/node.json` what it serves per node (ComputerSystem with
processors, memory and its SEL, a Chassis with Thermal and Power, BIOS/NIC firmware),
with `{node}`-style placeholders; `mockups/variants.json` the overlays that make a
node unhealthy. A tree is a dict from URL path to resource, so the emulator can answer
from memory and `write_tree` can lay it out as files for `sushy-static`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from collections.abc import Iterable, Mapping
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from stat_bot.integrations.redfish_emulator.layout import EmulatedBmc, EmulatedNode

ROOT = "/redfish/v1"
Tree = dict[str, dict[str, Any]]


@cache
def _text(name: str) -> str:
    return resources.files(__package__).joinpath("mockups", name).read_text(encoding="utf-8")


@cache
def variant_overlays() -> dict[str, dict[str, Any]]:
    """Variant name -> {path template: merge patch} (healthy is the empty overlay)."""
    return {k: v for k, v in json.loads(_text("variants.json")).items() if not k.startswith("_")}


def variants() -> tuple[str, ...]:
    return tuple(variant_overlays())


def _fill(text: str, values: Mapping[str, str]) -> str:
    for key, value in values.items():
        text = text.replace("{" + key + "}", value)
    return text


def merge(target: Any, patch: Any) -> Any:
    """Merge `patch` into `target` (in place where possible) and return the result.

    Objects merge key by key; a list takes `{"2": patch}` to patch one element or
    `{"+": [...]}` to append; any other value replaces.
    """
    if isinstance(target, dict) and isinstance(patch, dict):
        for key, value in patch.items():
            target[key] = merge(target.get(key), value) if key in target else value
        return target
    if isinstance(target, list) and isinstance(patch, dict):
        for key, value in patch.items():
            if key == "+":
                target.extend(value)
            else:
                target[int(key)] = merge(target[int(key)], value)
        return target
    return patch


def _stamp(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _serial(xname: str) -> str:
    return "HPE" + hashlib.sha256(xname.encode()).hexdigest()[:9].upper()


def node_resources(node: EmulatedNode, now: dt.datetime, variant: str | None = None) -> Tree:
    """The resources one node adds to its BMC's tree, with its variant applied."""
    name = variant or node.variant
    overlays = variant_overlays()
    if name not in overlays:
        raise ValueError(f"unknown variant {name!r}; choose from {', '.join(overlays)}")
    values = {
        "node": node.system,
        "xname": node.xname,
        "hostname": node.hostname,
        "serial": _serial(node.xname),
        "recent": _stamp(now - dt.timedelta(minutes=10)),
        "booted": _stamp(now - dt.timedelta(hours=2)),
    }
    tree: Tree = json.loads(_fill(_text("node.json"), values))
    for path, patch in json.loads(_fill(json.dumps(overlays[name]), values)).items():
        merge(tree[path], patch)
    return tree


def build_tree(bmc: EmulatedBmc, now: dt.datetime | None = None) -> Tree:
    """The whole tree one BMC serves: its own resources plus each of its nodes'."""
    now = now or dt.datetime.now(dt.UTC)
    values = {
        "bmc": bmc.xname,
        "uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, bmc.xname)),
        "booted": _stamp(now - dt.timedelta(hours=2)),
    }
    tree: Tree = json.loads(_fill(_text("bmc.json"), values))
    for node in bmc.nodes:
        tree.update(node_resources(node, now))
    _link_members(tree, bmc.nodes)
    return tree


def _link_members(tree: Tree, nodes: Iterable[EmulatedNode]) -> None:
    systems = [f"{ROOT}/Systems/{n.system}" for n in nodes]
    chassis = [f"{ROOT}/Chassis/{n.system}" for n in nodes]
    for collection, members in ((f"{ROOT}/Systems", systems), (f"{ROOT}/Chassis", chassis)):
        tree[collection]["Members"] = [{"@odata.id": m} for m in members]
        tree[collection]["Members@odata.count"] = len(members)
    tree[f"{ROOT}/Managers/BMC"]["Links"]["ManagerForServers"] = [{"@odata.id": m} for m in systems]
    firmware = tree[f"{ROOT}/UpdateService/FirmwareInventory"]
    ids = sorted(p for p in tree if p.startswith(f"{ROOT}/UpdateService/FirmwareInventory/"))
    firmware["Members"] = [{"@odata.id": p} for p in ids]
    firmware["Members@odata.count"] = len(ids)


def write_tree(tree: Tree, directory: Path) -> Path:
    """Lay `tree` out as `sushy-static -m DIR` reads it: DIR/<path under /redfish/v1>/index.json."""
    for path, doc in tree.items():
        relative = path.removeprefix(ROOT).strip("/")
        folder = directory / relative if relative else directory
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "index.json").write_text(json.dumps(doc, indent=1), encoding="utf-8")
    return directory
