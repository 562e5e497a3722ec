"""The project's own many-BMC Redfish emulator (aiohttp), its mockups and its demo chassis.

See server.py for how BMCs are told apart and which faults a test can set, layout.py
for the xnames served, mockups.py for the JSON trees, `python -m` this package for
the command line.
"""

from stat_bot.integrations.redfish_emulator.layout import (
    DEMO_UNHEALTHY,
    EmulatedBmc,
    EmulatedNode,
    demo_chassis,
    fleet,
)
from stat_bot.integrations.redfish_emulator.mockups import build_tree, variants, write_tree
from stat_bot.integrations.redfish_emulator.process import EmulatorControl, EmulatorProcess
from stat_bot.integrations.redfish_emulator.server import FAULTS, Emulator

__all__ = [
    "DEMO_UNHEALTHY",
    "FAULTS",
    "EmulatedBmc",
    "EmulatedNode",
    "Emulator",
    "EmulatorControl",
    "EmulatorProcess",
    "build_tree",
    "demo_chassis",
    "fleet",
    "variants",
    "write_tree",
]
