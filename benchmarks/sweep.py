"""(f) Hardware sweep: `check_nodes` over 1,024 emulated BMCs against a bare HTTP client.

Server side: the project's Redfish emulator (`python -m stat_bot.integrations.
redfish_emulator`, its own process) with BMCS slot BMCs on 127.0.10.x, two nodes
each, all healthy: what a daily sweep of a healthy fleet costs.

Client side, in this process, at the same fan-out (HW_FANOUT's default, 64):
- `check_nodes` (sushy, one kept-alive session per BMC, thread pool);
- the reference: a bare `requests.Session` per BMC in a thread pool fetching the
  same resources (service root, then per node the system, Thermal, Power, the
  system's LogServices and the SEL entries) and decoding each as JSON; the
  emulator's request counter shows both made the same number of requests;
- information: the same bare fetch with aiohttp (one event loop, one session per
  BMC), and check_nodes at fan-out 1 (a sequential sweep) over SEQUENTIAL_BMCS BMCs,
  scaled to the whole fleet.
Each client runs ROUNDS times, alternating; the best round of each counts.
Target: check_nodes' wall time >= 0.7 of the bare client's speed.
"""

from __future__ import annotations

import asyncio
import csv
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import aiohttp
import requests

from benchmarks.common import BenchmarkError, Figure
from stat_bot.hardware.health import State
from stat_bot.hardware.inventory import Node
from stat_bot.integrations.redfish import DEFAULT_FANOUT, RedfishConfig, check_nodes
from stat_bot.integrations.redfish_emulator import EmulatorProcess

TARGET_RATIO = 0.7
ROOT = "/redfish/v1"


def node_paths(node: Node) -> list[str]:
    """What check_nodes reads for one healthy node (the root is read once per BMC)."""
    system = f"{ROOT}/Systems/{node.system}"
    chassis = f"{ROOT}/Chassis/{node.system}"
    return [
        system,
        f"{chassis}/Thermal",
        f"{chassis}/Power",
        f"{system}/LogServices",
        f"{system}/LogServices/SEL/Entries",
    ]


def by_bmc(nodes: list[Node]) -> dict[str, list[str]]:
    paths: dict[str, list[str]] = defaultdict(lambda: [f"{ROOT}/"])
    for node in nodes:
        paths[node.bmc_url] += node_paths(node)
    return paths


def bare_requests(nodes: list[Node], cfg: RedfishConfig, fanout: int) -> int:
    def one(url: str, paths: list[str]) -> int:
        with requests.Session() as session:
            session.auth = (cfg.username, cfg.password)
            for path in paths:
                response = session.get(url + path, timeout=cfg.timeout)
                response.raise_for_status()
                response.json()
        return len(paths)

    with ThreadPoolExecutor(fanout) as pool:
        return sum(pool.map(lambda item: one(*item), by_bmc(nodes).items()))


async def _bare_aiohttp(nodes: list[Node], cfg: RedfishConfig, fanout: int) -> int:
    limit = asyncio.Semaphore(fanout)
    headers = {"Authorization": aiohttp.encode_basic_auth(cfg.username, cfg.password)}
    timeout = aiohttp.ClientTimeout(total=cfg.timeout)

    async def one(url: str, paths: list[str]) -> int:
        async with limit, aiohttp.ClientSession(headers=headers, timeout=timeout) as session:
            for path in paths:
                async with session.get(url + path) as response:
                    response.raise_for_status()
                    await response.json()
        return len(paths)

    counts = await asyncio.gather(*(one(u, p) for u, p in by_bmc(nodes).items()))
    return sum(counts)


def bare_aiohttp(nodes: list[Node], cfg: RedfishConfig, fanout: int) -> int:
    return asyncio.run(_bare_aiohttp(nodes, cfg, fanout))


def sweep(nodes: list[Node], cfg: RedfishConfig, fanout: int) -> int:
    results = check_nodes(nodes, cfg, fanout)
    bad = [r for r in results if r.state is not State.OK]
    if bad:
        raise BenchmarkError(f"{len(bad)} nodes not ok, e.g. {bad[0].xname}: {bad[0].problems}")
    return len(results)


def read_nodes(inventory: Path) -> list[Node]:
    with inventory.open(newline="") as f:
        return [
            Node(r["xname"], r["bmc"], r["hostname"], int(r["nid"]), r["system"])
            for r in csv.DictReader(f)
        ]


def run(
    home: Path,
    *,
    bmcs: int = 1024,
    fanout: int = DEFAULT_FANOUT,
    rounds: int = 3,
    sequential_bmcs: int = 64,
) -> tuple[str, list[Figure]]:
    with EmulatorProcess(home / "emulator", "--addresses", str(bmcs)) as emulator:
        control = emulator.control
        assert control is not None
        nodes = read_nodes(emulator.inventory)
        cfg = RedfishConfig(emulator.username, emulator.password, timeout=30.0)

        def timed(fn, subset: list[Node], width: int) -> tuple[float, int]:
            before = control.stats()["requests"]
            started = time.perf_counter()
            fn(subset, cfg, width)
            elapsed = time.perf_counter() - started
            return elapsed, control.stats()["requests"] - before

        sweep(nodes[:8], cfg, fanout)  # warm up imports and the emulator's caches
        best: dict[str, float] = {}
        made: dict[str, int] = {}
        for _ in range(rounds):
            for name, fn in (
                ("bare", bare_requests),
                ("sweep", sweep),
                ("aiohttp", bare_aiohttp),
            ):
                elapsed, count = timed(fn, nodes, fanout)
                best[name] = min(best.get(name, elapsed), elapsed)
                made[name] = count
        if made["sweep"] != made["bare"]:
            raise BenchmarkError(
                f"check_nodes made {made['sweep']} requests, the bare client {made['bare']}: "
                "update node_paths to what check_nodes reads"
            )
        subset = [
            n for n in nodes if n.bmc_url in {m.bmc_url for m in nodes[: 2 * sequential_bmcs]}
        ]
        sequential, _ = timed(sweep, subset, 1)
        sequential *= bmcs / sequential_bmcs
    ratio = best["bare"] / best["sweep"]
    title = (
        f"sweep: check_nodes over {bmcs:,} emulated BMCs ({len(nodes):,} nodes, "
        f"{made['sweep']:,} requests), fan-out {fanout}, best of {rounds}"
    )
    figures = [
        Figure(
            "check_nodes (sushy) wall time", best["sweep"], " s", digits=2, higher_is_better=False
        ),
        Figure("bare requests, same fetches", best["bare"], " s", digits=2, higher_is_better=False),
        Figure("check_nodes speed / bare requests", ratio, "", target=TARGET_RATIO, digits=2),
        Figure(
            "bare aiohttp, same fetches",
            best["aiohttp"],
            " s",
            digits=2,
            higher_is_better=False,
            note=f"check_nodes at {best['aiohttp'] / best['sweep']:.2f} of it (information)",
        ),
        Figure(
            "sequential check_nodes (fan-out 1)",
            sequential,
            " s",
            digits=1,
            higher_is_better=False,
            note=f"{sequential_bmcs} BMCs timed, scaled to {bmcs:,} (information)",
        ),
        Figure("requests/s, check_nodes", made["sweep"] / best["sweep"], "/s"),
    ]
    return title, figures
