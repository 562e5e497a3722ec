"""`python -m stat_bot.integrations.redfish_emulator`: many Redfish BMCs until Ctrl-C.

The demo (local mode's chassis, 16 nodes on 8 BMCs, two unhealthy):

    python -m stat_bot.integrations.redfish_emulator --demo --inventory-out var/hw-inventory.csv

A fleet for benchmarks: `--addresses 1024` (BMCs, two nodes each). It prints where
the BMCs listen, the control URL and the inventory written, then `ready`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from pathlib import Path

from stat_bot.integrations.redfish_emulator.layout import DEMO_UNHEALTHY, fleet
from stat_bot.integrations.redfish_emulator.mockups import variants
from stat_bot.integrations.redfish_emulator.server import (
    DEFAULT_FIRST_ADDRESS,
    DEFAULT_PASSWORD,
    DEFAULT_USERNAME,
    Emulator,
)
from stat_bot.lifeline import watch_parent


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m stat_bot.integrations.redfish_emulator",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="local mode's chassis: 8 BMCs x1000c0s[0-7]b0 serving 16 nodes, "
        + ", ".join(f"{x} {v}" for x, v in DEMO_UNHEALTHY.items()),
    )
    parser.add_argument("--addresses", type=int, default=8, help="how many BMCs (default 8)")
    parser.add_argument(
        "--systems-per-bmc", type=int, default=2, help="nodes each BMC serves (default 2)"
    )
    parser.add_argument(
        "--first-address",
        default=DEFAULT_FIRST_ADDRESS,
        help=f"the first BMC's loopback address (default {DEFAULT_FIRST_ADDRESS})",
    )
    parser.add_argument("--port", type=int, default=0, help="the BMCs' port (0: any free one)")
    parser.add_argument("--control-port", type=int, default=0, help="control port (0: any free)")
    parser.add_argument("--username", default=DEFAULT_USERNAME)
    parser.add_argument("--password", default=DEFAULT_PASSWORD)
    parser.add_argument(
        "--reset-delay",
        type=float,
        default=0.0,
        help="seconds before ComputerSystem.Reset changes PowerState (default 0)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="XNAME=VARIANT",
        help=f"make a node unhealthy; variants: {', '.join(variants())}",
    )
    parser.add_argument("--inventory-out", type=Path, help="write the HW_INVENTORY CSV here")
    args = parser.parse_args(argv)
    chosen = dict(DEMO_UNHEALTHY) if args.demo else {}
    for item in args.set:
        xname, sep, variant = item.partition("=")
        if not sep or variant not in variants():
            parser.error(
                f"--set {item!r}: give XNAME=VARIANT, VARIANT one of {', '.join(variants())}"
            )
        chosen[xname] = variant
    if args.demo:
        args.addresses, args.systems_per_bmc = 8, 2
    try:
        args.bmcs = fleet(args.addresses, args.systems_per_bmc, chosen)
    except ValueError as exc:
        parser.error(str(exc))
    return args


async def serve(args: argparse.Namespace) -> None:
    emulator = Emulator(
        args.bmcs,
        first_address=args.first_address,
        port=args.port,
        control_port=args.control_port,
        username=args.username,
        password=args.password,
        reset_delay=args.reset_delay,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await emulator.start()
    try:
        nodes = sum(len(b.nodes) for b in args.bmcs)
        print(
            f"Redfish emulator: {len(args.bmcs)} BMCs ({nodes} nodes) on "
            f"{emulator.describe_addresses()}, user {args.username}",
            flush=True,
        )
        print(f"control: {emulator.control_url}", flush=True)
        if args.inventory_out:
            emulator.write_inventory(args.inventory_out)
            print(f"inventory: {args.inventory_out}", flush=True)
        print("ready", flush=True)
        await stop.wait()
    finally:
        await emulator.stop()


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    watch_parent()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
