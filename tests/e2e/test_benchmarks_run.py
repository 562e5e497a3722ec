"""Every benchmark runs to its figures, at small counts.

The benchmarks are not part of the suite's timing (their targets are judged by hand on a
quiet machine, BENCHMARKS.md), but code they share with the service changes under them:
a helper that came to return its event loop's share beside its rate left the PostgreSQL
benchmark crashing unnoticed, and the SSH fan-out found a thread-safety fault in the
runner. Small counts keep this to about a minute; the figures are not judged.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.peers import require
from tests.postgres_fixtures import server_problem
from tests.sshd_fixtures import require_sshd

ROOT = Path(__file__).resolve().parents[2]

SMALL = [
    "--queue-jobs", "300",
    "--latency-jobs", "20",
    "--spawn-jobs", "60", "--spawn-rounds", "1",
    "--slack-commands", "10",
    "--webhooks", "200",
    "--sweep-bmcs", "16", "--sweep-rounds", "1",
    "--ssh-hosts", "4",
    "--pg-quick", "--pg-jobs", "40", "--pg-cycle-jobs", "40",
    "--pg-latency-jobs", "10", "--pg-rounds", "1",
    "--settle", "0",
]  # fmt: skip

# The start of each benchmark's title line, in the order they run.
TITLES = [
    "queue cycle: 300 jobs",
    "dispatch latency: 20 jobs",
    "spawn throughput: 60 `true` jobs",
    "Slack commands: 10 mentions",
    "GitHub webhooks: 200 signed push deliveries",
    "sweep: check_nodes over 16 emulated BMCs",
    "SSH fan-out: `uptime` on 4 hosts",
    "PostgreSQL (issue 12)",
]


def test_every_benchmark_runs_to_its_figures(tmp_path: Path):
    require(server_problem(), "PostgreSQL (set TEST_DATABASE_URL)")
    require_sshd()
    process = subprocess.Popen(
        [sys.executable, "-m", "benchmarks", *SMALL, "--tmpdir", str(tmp_path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # Python turns SIGINT into KeyboardInterrupt only where it is not ignored, and a
        # shell ignores it in what it starts in the background (as CI may start pytest).
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        stdout, stderr = process.communicate(timeout=900)
    except subprocess.TimeoutExpired:
        # Ctrl-C, so each benchmark's `finally` stops the servers it started.
        process.send_signal(signal.SIGINT)
        try:
            stdout, stderr = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            stdout, stderr = process.communicate()
        pytest.fail(f"the benchmarks took over 15 minutes:\n{(stdout + stderr)[-4000:]}")
    output = stdout + stderr
    assert process.returncode == 0, output[-4000:]
    failed = re.findall(r"^(\w+): (?:could not run|skipped:)", output, re.MULTILINE)
    assert not failed, output[-4000:]
    lines = stdout.splitlines()
    found = [next((i for i, line in enumerate(lines) if line.startswith(t)), -1) for t in TITLES]
    missing = [t for t, i in zip(TITLES, found, strict=True) if i < 0]
    assert not missing, f"no figures from: {missing}\n{stdout[-3000:]}"
    assert found == sorted(found)
    summary = [line for line in lines if line.startswith("summary: ")]
    assert summary, output[-2000:]
    assert "PASS" in summary[-1] or "MISS" in summary[-1]
    assert list(tmp_path.iterdir()) == [], "the benchmarks left their temporary folder"
