"""`python -m benchmarks [NAME ...]`: run benchmarks (queue, latency, spawn, slack, webhooks, sweep,
ssh, postgres).

Usually run as `python3 bootstrap.py bench [queue|latency|spawn ...]`. Exit
status 0 when every benchmark ran or was skipped for want of its peer (targets
missed or not: a MISS is a finding, not a crash), 1 when one could not run, 2
for a wrong command line.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from benchmarks import (
    latency,
    postgres_queue,
    queue_cycle,
    slack,
    spawn,
    ssh_fanout,
    sweep,
    webhooks,
)
from benchmarks.common import (
    SLOW_FILES_US,
    BenchmarkSkipError,
    Figure,
    Repeats,
    file_cost,
    file_system,
    machine,
    print_figures,
)

NAMES = ("queue", "latency", "spawn", "slack", "webhooks", "sweep", "ssh", "postgres")
# These create a job's log folder and files for every job, so the file system's state is
# part of their figures (BENCHMARKS.md, "The file system"): they wait for it to settle.
FILE_BOUND = frozenset({"latency", "spawn", "slack", "postgres"})
SETTLE_PROBE_EVERY = 15.0  # seconds
SETTLED_US = SLOW_FILES_US / 2  # settled: well clear of the slow state, not just under it


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python3 bootstrap.py bench",
        description="STAT bot's benchmarks; see BENCHMARKS.md for the targets and the method.",
    )
    parser.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help=f"which to run: {', '.join(NAMES)} (default: all, in that order)",
    )
    parser.add_argument("--queue-jobs", type=int, default=20_000, help="queue: jobs (20,000)")
    parser.add_argument(
        "--synchronous",
        choices=("NORMAL", "FULL"),
        help="queue: SQLite synchronous setting (default: the service's SQLITE_SYNCHRONOUS default)",
    )
    parser.add_argument("--latency-jobs", type=int, default=300, help="latency: jobs (300)")
    parser.add_argument(
        "--latency-gap", type=float, default=0.02, help="latency: seconds between jobs (0.02)"
    )
    parser.add_argument("--spawn-jobs", type=int, default=1000, help="spawn: jobs (1,000)")
    parser.add_argument(
        "--spawn-concurrency", type=int, default=8, help="spawn: DISPATCHER_CONCURRENCY (8)"
    )
    parser.add_argument("--spawn-rounds", type=int, default=5, help="spawn: alternating rounds (5)")
    parser.add_argument("--slack-commands", type=int, default=100, help="slack: commands (100)")
    parser.add_argument(
        "--webhooks", type=int, default=5000, help="webhooks: signed deliveries (5,000)"
    )
    parser.add_argument(
        "--webhook-clients", type=int, default=4, help="webhooks: client processes (4)"
    )
    parser.add_argument(
        "--web-workers", type=int, help="webhooks: WEB_WORKERS (default: the setting's default)"
    )
    parser.add_argument(
        "--web-threads", type=int, help="webhooks: WEB_THREADS (default: the setting's default)"
    )
    parser.add_argument("--sweep-bmcs", type=int, default=1024, help="sweep: emulated BMCs (1,024)")
    parser.add_argument("--sweep-fanout", type=int, default=64, help="sweep: fan-out (64)")
    parser.add_argument("--sweep-rounds", type=int, default=3, help="sweep: alternating rounds (3)")
    parser.add_argument("--ssh-hosts", type=int, default=64, help="ssh: hosts (64)")
    plan = postgres_queue.Plan()
    parser.add_argument(
        "--pg-quick",
        action="store_true",
        help="postgres: a smoke run with small counts (for CI; the figures are not to be trusted)",
    )
    parser.add_argument(
        "--pg-jobs",
        type=int,
        help=f"postgres: jobs per throughput run ({plan.jobs:,}; {postgres_queue.QUICK.jobs} quick)",
    )
    parser.add_argument(
        "--pg-cycle-jobs", type=int, help=f"postgres: queue cycle jobs ({plan.cycle_jobs:,})"
    )
    parser.add_argument(
        "--pg-latency-jobs", type=int, help=f"postgres: latency jobs per side ({plan.latency_jobs})"
    )
    parser.add_argument(
        "--pg-concurrency",
        type=int,
        help=f"postgres: DISPATCHER_CONCURRENCY and procrastinate's ({plan.concurrency})",
    )
    parser.add_argument(
        "--pg-rounds", type=int, help=f"postgres: rounds against procrastinate ({plan.rounds})"
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        metavar="N",
        help="run the chosen benchmarks N times over and judge each target by the median of the "
        "N runs (or the worst, where every run must clear it), printing the spread (1)",
    )
    parser.add_argument(
        "--tmpdir",
        type=Path,
        help="where the temporary folder goes (default: the system's, usually /tmp)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary folder (logs, databases)"
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="before latency, spawn, slack and postgres: wait up to this long for the file system to "
        "leave its slow state after recent deletions (300; 0: do not wait)",
    )
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error(f"--repeat must be 1 or more, not {args.repeat}")
    unknown = [n for n in args.names if n not in NAMES]
    if unknown:
        parser.error(f"unknown benchmark {unknown[0]!r}; choose from {', '.join(NAMES)}")
    return args


def postgres_plan(args: argparse.Namespace) -> postgres_queue.Plan:
    """The postgres benchmark's counts: the defaults (or the quick ones), then any options."""
    plan = postgres_queue.QUICK if args.pg_quick else postgres_queue.Plan()
    given = {
        "jobs": args.pg_jobs,
        "cycle_jobs": args.pg_cycle_jobs,
        "latency_jobs": args.pg_latency_jobs,
        "concurrency": args.pg_concurrency,
        "rounds": args.pg_rounds,
    }
    return dataclasses.replace(plan, **{k: v for k, v in given.items() if v is not None})


def settle(folder: Path, limit: float) -> None:
    """Wait, up to `limit` seconds, until creating a job's files costs its normal time.

    Right after thousands of files were deleted (a test run, or this program's previous
    run cleaning up), a journal-less ext4 takes milliseconds per new file for a few
    minutes; figures taken then measure that, not STAT bot. Two good probes in a row
    are asked for, as one can land in a block group the deletions missed.
    """
    deadline = time.monotonic() + limit
    folder.mkdir(exist_ok=True)
    good = 0
    waited = False
    while True:
        cost = file_cost(Path(tempfile.mkdtemp(dir=folder)), 200)
        good = good + 1 if cost <= SETTLED_US else 0
        if good >= 2:
            if waited:
                print(f"file system settled: {cost:,.0f} \u00b5s per job's files\n", flush=True)
            return
        left = deadline - time.monotonic()
        if good == 0 and left <= 0:
            print(
                f"file system still slow ({cost:,.0f} \u00b5s per job's files) after "
                f"{limit:g} s: going on; the figures below are disturbed\n",
                flush=True,
            )
            return
        if good == 0 and not waited:
            waited = True
            print(
                f"file system slow right now ({cost:,.0f} \u00b5s per job's files, normal is "
                f"under {SETTLED_US:,.0f}): waiting up to {limit:g} s for it to settle "
                "(--settle 0 to skip)",
                flush=True,
            )
        time.sleep(min(2.0 if good else SETTLE_PROBE_EVERY, max(left, 0.0)))


def main(argv: list[str]) -> int:
    args = parse(argv)
    names = [n for n in NAMES if n in args.names] if args.names else list(NAMES)
    runs: dict[str, Callable[[Path], tuple[str, list[Figure]]]] = {
        "queue": lambda home: queue_cycle.run(
            home, jobs=args.queue_jobs, synchronous=args.synchronous
        ),
        "latency": lambda home: latency.run(home, jobs=args.latency_jobs, gap=args.latency_gap),
        "spawn": lambda home: spawn.run(
            home,
            jobs=args.spawn_jobs,
            concurrency=args.spawn_concurrency,
            rounds=args.spawn_rounds,
        ),
        "slack": lambda home: slack.run(home, count=args.slack_commands),
        "webhooks": lambda home: webhooks.run(
            home,
            count=args.webhooks,
            clients=args.webhook_clients,
            workers=args.web_workers,
            threads=args.web_threads,
        ),
        "sweep": lambda home: sweep.run(
            home, bmcs=args.sweep_bmcs, fanout=args.sweep_fanout, rounds=args.sweep_rounds
        ),
        "ssh": lambda home: ssh_fanout.run(home, hosts=args.ssh_hosts),
        "postgres": lambda home: postgres_queue.run(home, plan=postgres_plan(args)),
    }
    top = Path(tempfile.mkdtemp(prefix="stat-bot-bench-", dir=args.tmpdir))
    facts = machine()
    print(
        f"STAT bot benchmarks on {facts['cpus']} x {facts['cpu']}, {facts['memory']}, "
        f"Linux {facts['kernel']}, Python {facts['python']}, SQLite {facts['sqlite']}; "
        f"load average {facts['load']}; in {top} ({file_system(top)})\n",
        flush=True,
    )
    crashed: list[str] = []
    repeats = Repeats()
    try:
        for run in range(1, args.repeat + 1):
            if args.repeat > 1:
                print(f"=== run {run} of {args.repeat} ===\n", flush=True)
            for name in names:
                home = top / f"{name}-{run}"
                home.mkdir()
                if name in FILE_BOUND and args.settle > 0:
                    settle(top / "settle", args.settle)
                started = time.monotonic()
                try:
                    title, figures = runs[name](home)
                except BenchmarkSkipError as skipped:
                    print(f"{name}: skipped: {skipped}\n", flush=True)
                    continue
                except Exception:
                    crashed.append(name)
                    print(f"{name}: could not run\n{traceback.format_exc()}", file=sys.stderr)
                    continue
                print(f"{title} [{time.monotonic() - started:.1f} s]")
                print_figures(figures)
                repeats.add(name, figures)
                # Each benchmark's folder stays until the whole run is over: deleting its
                # thousands of files would slow the next benchmark's file creation for a
                # minute or two (BENCHMARKS.md, "The file system").
    finally:
        if args.keep:
            print(f"kept {top}")
        else:
            shutil.rmtree(top, ignore_errors=True)
    judged = repeats.summary()
    if args.repeat > 1 and judged:
        print(f"=== {args.repeat} runs: each target judged by the median (or the worst) ===\n")
        for name in dict.fromkeys(n for n, _, _ in judged):
            print(name)
            print_figures([f for n, f, _ in judged if n == name])
    if judged:
        summary = ", ".join(f"{name} {f.label} {f.verdict}" for name, f, _ in judged)
        print(f"summary: {summary}")
    if crashed:
        print(f"could not run: {', '.join(sorted(set(crashed)))}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
