#!/usr/bin/env python3
"""Set up and run STAT bot from a fresh checkout, needing nothing but python3.

    python3 bootstrap.py run      # create .venv, install the locked dependencies, start STAT bot
    python3 bootstrap.py test     # create .venv, install, lint, and run the whole test suite
    python3 bootstrap.py bench    # the benchmarks (see BENCHMARKS.md)
    python3 bootstrap.py lock     # regenerate the lock files from pyproject.toml

Extra arguments after `test` go to pytest; after `run`, to `stat-bot run`.
The virtual environment is rebuilt only when a lock file changes.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / "bin"
LOCKS = {"run": ROOT / "requirements.lock", "dev": ROOT / "requirements-dev.lock"}
# Debian packages the tests need for their real peers (servers started by the tests themselves):
# chromium for the dashboard's browser tests (Playwright drives it; never `playwright install`).
# openssl for the test Trac's htpasswd lines; a real sshd for SSH checks and `fab deploy`;
# Debian's slurmctld (with munge) for drain and resume.
TEST_APT_PACKAGES: list[str] = [
    "chromium",
    "openssl",
    "openssh-server",
    "openssh-client",
    "slurmctld",
    "slurm-client",
    "munge",
]


def say(message: str) -> None:
    print(f"bootstrap: {message}", file=sys.stderr, flush=True)


def run(*args: str | Path, **kwargs: object) -> None:
    subprocess.run([str(a) for a in args], check=True, **kwargs)  # type: ignore[call-overload]


def make_venv() -> None:
    if (BIN / "python").exists():
        return
    say(f"creating {VENV}")
    try:
        run(sys.executable, "-m", "venv", VENV)
    except subprocess.CalledProcessError:
        # Debian's python3 lacks ensurepip until python3-venv is installed.
        if shutil.which("apt-get") and os.geteuid() == 0:
            say("installing python3-venv with apt-get")
            run("apt-get", "update", "-q")
            run("apt-get", "install", "-y", "-q", "python3-venv")
            shutil.rmtree(VENV, ignore_errors=True)
            run(sys.executable, "-m", "venv", VENV)
        else:
            sys.exit(
                "bootstrap: `python3 -m venv` failed; install your distribution's python3-venv package"
            )


def install(kind: str) -> None:
    """Install the locked dependencies (kind: run or dev) unless already installed."""
    make_venv()
    lock = LOCKS[kind]
    digest = hashlib.sha256(lock.read_bytes() + (ROOT / "pyproject.toml").read_bytes()).hexdigest()
    stamp = VENV / f".installed-{kind}"
    if stamp.exists() and stamp.read_text() == digest:
        return
    say(f"installing {lock.name}")
    pip = [BIN / "python", "-m", "pip", "--disable-pip-version-check", "-q"]
    run(*pip, "install", "--require-hashes", "--no-deps", "-r", lock)
    run(*pip, "install", "--no-deps", "-e", ROOT)
    stamp.write_text(digest)


def apt_install(packages: list[str]) -> None:
    missing = [
        p for p in packages if subprocess.run(["dpkg", "-s", p], capture_output=True).returncode
    ]
    if not missing:
        return
    if not shutil.which("apt-get") or os.geteuid() != 0:
        sys.exit(f"bootstrap: the tests need these Debian packages: {' '.join(missing)}")
    say(f"installing {' '.join(missing)} with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run("apt-get", "update", "-q", env=env)
    run("apt-get", "install", "-y", "-q", "--no-install-recommends", *missing, env=env)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("run", "test", "bench", "lock"):
        print(__doc__, file=sys.stderr)
        return 2
    command, rest = argv[0], argv[1:]
    os.chdir(ROOT)
    if command == "lock":
        make_venv()
        run(BIN / "python", "-m", "pip", "install", "-q", "uv")
        common = [
            "pip",
            "compile",
            "pyproject.toml",
            "--generate-hashes",
            "--python-version",
            "3.11",
            "-q",
        ]
        run(BIN / "uv", *common, "-o", LOCKS["run"])
        run(BIN / "uv", *common, "--extra", "dev", "-o", LOCKS["dev"])
        return 0
    if command == "run":
        install("run")
        os.execv(BIN / "stat-bot", [str(BIN / "stat-bot"), "run", *rest])
    install("dev")
    if command == "bench":
        os.execv(BIN / "python", [str(BIN / "python"), "-m", "benchmarks", *rest])
    apt_install(TEST_APT_PACKAGES)
    say("ruff check and format")
    lint = subprocess.run([BIN / "ruff", "check", "."]).returncode
    lint |= subprocess.run([BIN / "ruff", "format", "--check", "."]).returncode
    if lint:
        say("lint failed: run `.venv/bin/ruff check --fix . && .venv/bin/ruff format .`")
        return 1
    # Two workers (pytest-xdist): most tests wait on real processes and servers, so the
    # suite takes about half as long on this project's two cores; `-n 0` runs it serially.
    workers = (
        []
        if any(a == "-n" or a.startswith(("-n", "--numprocesses")) for a in rest)
        else ["-n", "2"]
    )
    return subprocess.run([BIN / "python", "-m", "pytest", *workers, *rest]).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
