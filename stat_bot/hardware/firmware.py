"""Which firmware differs from the fleet's majority: pure, over what the client read.

A fleet is meant to run one version per component; the odd ones out are what an
admin asks `hw firmware` for. Ties are broken by the higher version text so the
answer does not depend on the order nodes were read.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class FirmwareDifference:
    xname: str
    component: str
    version: str | None  # None: the node does not report the component
    majority: str
    majority_count: int  # nodes running the majority version
    reporting: int  # nodes reporting the component at all

    @property
    def text(self) -> str:
        found = self.version if self.version is not None else "not reported"
        return (
            f"{self.component} {found}, fleet runs {self.majority} "
            f"({self.majority_count} of {self.reporting})"
        )


def majority_versions(fleet: Mapping[str, Mapping[str, str]]) -> dict[str, tuple[str, int, int]]:
    """component -> (majority version, how many run it, how many report the component)."""
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for components in fleet.values():
        for component, version in components.items():
            counts[component][version] += 1
    result = {}
    for component, versions in counts.items():
        version, count = max(versions.items(), key=lambda item: (item[1], item[0]))
        result[component] = (version, count, sum(versions.values()))
    return result


def firmware_differences(fleet: Mapping[str, Mapping[str, str]]) -> list[FirmwareDifference]:
    """Every (node, component) whose version is not the majority's, in the fleet's order.

    `fleet` maps xname -> {component: version} (NodeInventory.firmware of the nodes read;
    leave out nodes that could not be read). A component missing on a node counts as a
    difference only where most nodes report it.
    """
    majority = majority_versions(fleet)
    found = []
    for xname, components in fleet.items():
        for component, (version, count, reporting) in sorted(majority.items()):
            mine = components.get(component)
            if mine == version or (mine is None and reporting * 2 <= len(fleet)):
                continue
            found.append(FirmwareDifference(xname, component, mine, version, count, reporting))
    return found
