"""Which BMCs and nodes an emulator serves, named as on an HPE Cray EX system.

One BMC per compute slot (`x1000c0s3b0`) serves that blade's nodes (`...b0n0`,
`...b0n1`) as Redfish systems `Node0` and `Node1`, as Cray EX node controllers do:
so the inventory's `system` column and a client's one-connection-per-BMC are
exercised the way a real site uses them.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

INVENTORY_COLUMNS = ("xname", "bmc", "hostname", "nid", "system")
SLOTS_PER_CHASSIS = 8
CHASSIS_PER_CABINET = 8
FIRST_CABINET = 1000


@dataclass(frozen=True)
class EmulatedNode:
    xname: str
    hostname: str
    nid: int
    system: str  # the Redfish ComputerSystem id on its BMC
    variant: str = "healthy"


@dataclass(frozen=True)
class EmulatedBmc:
    xname: str
    nodes: tuple[EmulatedNode, ...]


def bmc_xname(index: int) -> str:
    """The i-th slot BMC: 8 slots a chassis, 8 chassis a cabinet, from x1000c0s0b0."""
    slot = index % SLOTS_PER_CHASSIS
    chassis = (index // SLOTS_PER_CHASSIS) % CHASSIS_PER_CABINET
    cabinet = FIRST_CABINET + index // (SLOTS_PER_CHASSIS * CHASSIS_PER_CABINET)
    return f"x{cabinet}c{chassis}s{slot}b0"


def fleet(
    bmcs: int, systems_per_bmc: int = 2, variants: Mapping[str, str] | None = None
) -> list[EmulatedBmc]:
    """`bmcs` slot BMCs with `systems_per_bmc` nodes each; `variants` maps node xname -> variant."""
    if bmcs < 1 or systems_per_bmc < 1:
        raise ValueError("an emulated fleet needs at least one BMC with at least one system")
    variants = dict(variants or {})
    result = []
    for i in range(bmcs):
        bmc = bmc_xname(i)
        nodes = []
        for j in range(systems_per_bmc):
            nid = i * systems_per_bmc + j + 1
            xname = f"{bmc}n{j}"
            nodes.append(
                EmulatedNode(
                    xname, f"nid{nid:06d}", nid, f"Node{j}", variants.pop(xname, "healthy")
                )
            )
        result.append(EmulatedBmc(bmc, tuple(nodes)))
    if variants:
        raise ValueError(f"not in the emulated fleet: {', '.join(sorted(variants))}")
    return result


DEMO_UNHEALTHY = {"x1000c0s2b0n1": "critical_psu", "x1000c0s5b0n0": "overtemp_cpu"}


def demo_chassis() -> list[EmulatedBmc]:
    """Local mode's chassis: 16 nodes x1000c0s[0-7]b0n[0-1] on 8 BMCs, two of them unhealthy.

    x1000c0s2b0n1 (nid000006) has a critical PSU 2; x1000c0s5b0n0 (nid000011) a CPU
    over its critical temperature.
    """
    return fleet(8, 2, DEMO_UNHEALTHY)


def with_variant(bmc: EmulatedBmc, node_xname: str, variant: str) -> EmulatedBmc:
    nodes = tuple(replace(n, variant=variant) if n.xname == node_xname else n for n in bmc.nodes)
    return replace(bmc, nodes=nodes)


def write_inventory_csv(path: Path, rows: Iterable[Mapping[str, object]]) -> None:
    """The HW_INVENTORY CSV (xname,bmc,hostname,nid,system) for the nodes served."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, INVENTORY_COLUMNS)
        writer.writeheader()
        writer.writerows({k: row[k] for k in INVENTORY_COLUMNS} for row in rows)
    tmp.replace(path)
