"""SSH fan-out: one check (`uptime`) on 64 hosts, STAT bot's runner against ClusterShell's clush.

Both reach the same loopback sshd (64 names through one ssh_config `Host n*` block), as the
same user with the same key; the sshd only offers curve25519 key exchange, so both use it.
clush opens fresh connections every run (it has no other mode); the runner is measured on
fresh connections (a new SshRunner) and again on the connections it kept. Rounds alternate
clush and the runner so a change in the machine's speed hits both alike; medians are shown.

    python -m benchmarks ssh            # or: python -m benchmarks.ssh_fanout [--hosts 64]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import VENV_BIN, BenchmarkError, Figure, print_figures
from stat_bot.hardware.ssh_checks import load_checks, run_ssh_checks
from stat_bot.integrations.ssh import SshRunner
from tests.sshd_fixtures import SshServer, start_sshd

ROOT = Path(__file__).resolve().parents[1]
KEX = "curve25519-sha256"
COMMAND = "uptime"


def clush_once(server: SshServer, hosts: int) -> float:
    width = max(2, len(str(hosts)))
    nodes = f"n[{1:0{width}d}-{hosts:0{width}d}]"
    options = f"-F {server.ssh_config_file} -oKexAlgorithms={KEX}"
    command = [str(VENV_BIN / "clush"), "-S", "-f", str(hosts), "-w", nodes, "-o", options]
    started = time.perf_counter()
    answer = subprocess.run([*command, COMMAND], capture_output=True, text=True, timeout=300)
    seconds = time.perf_counter() - started
    lines = [line for line in answer.stdout.splitlines() if "load average" in line]
    if answer.returncode != 0 or len(lines) != hosts:
        raise BenchmarkError(
            f"clush: exit {answer.returncode}, {len(lines)} of {hosts} answered: "
            f"{answer.stderr.strip()[:500]}"
        )
    return seconds


def runner_sweep(runner: SshRunner, names: list[str], command: str = COMMAND) -> float:
    started = time.perf_counter()
    results = runner.run_many(names, command, fanout=len(names))
    seconds = time.perf_counter() - started
    bad = [r.error or r.stderr for r in results.values() if not r.ok]
    if bad:
        raise BenchmarkError(f"runner: {len(bad)} of {len(names)} hosts failed: {bad[0]}")
    return seconds


def run(home: Path, hosts: int = 64, rounds: int = 5) -> tuple[str, list[Figure]]:
    checks = load_checks(ROOT / "workspace" / "hw" / "ssh_checks.yaml")
    clush: list[float] = []
    first: list[float] = []
    kept: list[float] = []
    checks_first: list[float] = []
    checks_kept: list[float] = []
    extra = [f"KexAlgorithms {KEX},{KEX}@libssh.org"]
    with start_sshd(parent=None, extra_config=extra) as server:
        names = server.names(hosts)
        config = server.config(timeout=60.0)
        for _round in range(rounds):
            clush.append(clush_once(server, hosts))
            with SshRunner(config) as runner:
                first.append(runner_sweep(runner, names))
                kept.append(runner_sweep(runner, names))
        check_failures: list[str] = []
        with SshRunner(config) as runner:
            for _round in range(max(1, rounds // 2)):
                for kind in (checks_first, checks_kept):
                    started = time.perf_counter()
                    outcome = run_ssh_checks(names, checks, runner, fanout=hosts)
                    kind.append(time.perf_counter() - started)
                    failed = [v for v in outcome.values() if not isinstance(v, list)]
                    check_failures.extend(str(v) for v in failed)
                runner.close()
    clush_s, first_s, kept_s = (statistics.median(v) for v in (clush, first, kept))
    title = (
        f"SSH fan-out: `{COMMAND}` on {hosts} hosts (one loopback sshd, {KEX}), "
        f"median of {rounds} alternating rounds"
    )
    figures = [
        Figure(f"clush -S -f {hosts} (reference)", clush_s, " s", digits=2),
        Figure("runner, new connections", first_s, " s", digits=2),
        Figure(
            "runner new / clush",
            first_s / clush_s,
            "x",
            target=1.0,
            higher_is_better=False,
            digits=2,
            note="issue 11: faster than clush (DESIGN.md's ceiling: 1.5x)",
        ),
        Figure("runner, kept connections", kept_s, " s", digits=2),
        Figure(
            "new / kept connections",
            first_s / kept_s,
            "x",
            target=3.0,
            digits=1,
            note="second sweep on kept connections",
        ),
        Figure(
            f"all {len(checks)} shipped checks, new connections",
            statistics.median(checks_first),
            " s",
            digits=2,
            note="one session a host (information)",
        ),
        Figure(
            f"all {len(checks)} shipped checks, kept connections",
            statistics.median(checks_kept),
            " s",
            digits=2,
            note="information",
        ),
        Figure(
            "hosts whose checks could not run",
            len(check_failures),
            "",
            target=0,
            higher_is_better=False,
            note=check_failures[0][:120] if check_failures else "",
        ),
    ]
    return title, figures


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ssh_fanout")
    parser.add_argument("--hosts", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    title, figures = run(Path("."), hosts=args.hosts, rounds=args.rounds)
    print(title)
    print_figures(figures)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
