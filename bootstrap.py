#!/usr/bin/env python3
"""Set up and run STAT bot from a fresh checkout, needing nothing but python3.

    python3 bootstrap.py run      # create .venv, install the locked dependencies, start STAT bot
    python3 bootstrap.py test     # create .venv, install, lint, and run the whole test suite
    python3 bootstrap.py bench    # the benchmarks (see BENCHMARKS.md)
    python3 bootstrap.py lock     # regenerate the lock files from pyproject.toml

Extra arguments after `test` go to pytest; after `run`, to `stat-bot run`.
The virtual environment is rebuilt when a lock file changes, and made again when
another interpreter runs this script than the one its pyvenv.cfg names.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / "bin"
LOCKS = {"run": ROOT / "requirements.lock", "dev": ROOT / "requirements-dev.lock"}
# Debian packages the tests need for their real peers (servers started by the tests themselves):
# chromium for the dashboard's browser tests (Playwright drives it; never `playwright install`).
# openssl for the test Trac's htpasswd lines; a real sshd for SSH checks and `fab deploy`;
# Debian's slurmctld (with munge) for drain and resume; postgresql for the PostgreSQL
# backend's tests (the machine's cluster on 127.0.0.1:5432, and initdb / pg_ctl for the
# clusters the restart and crash tests start themselves).
TEST_APT_PACKAGES: list[str] = [
    "chromium",
    "openssl",
    "openssh-server",
    "openssh-client",
    "slurmctld",
    "slurm-client",
    "munge",
    "postgresql",
]


def say(message: str) -> None:
    print(f"bootstrap: {message}", file=sys.stderr, flush=True)


def run(*args: str | Path, **kwargs: object) -> None:
    subprocess.run([str(a) for a in args], check=True, **kwargs)  # type: ignore[call-overload]


def made_by(venv: Path) -> str | None:
    """The interpreter a virtual environment was created from (its pyvenv.cfg), if it says."""
    try:
        lines = (venv / "pyvenv.cfg").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        key, _, value = line.partition("=")
        if key.strip() == "executable" and value.strip():
            return value.strip()
    return None


def same_interpreter(made_with: str | None, running: str) -> bool:
    """Whether two paths name one interpreter (symlinks resolved: python3 -> python3.11)."""
    return made_with is None or os.path.realpath(made_with) == os.path.realpath(running)


def made_for_this_interpreter(venv: Path, made_with: str | None) -> bool:
    """Whether `venv`, made by `made_with`, belongs to the interpreter running this script."""
    if Path(sys.prefix).resolve() == venv.resolve():
        return True  # running inside it, even as a copied (`--copies`) interpreter
    running = {sys.executable, getattr(sys, "_base_executable", sys.executable)}
    return any(same_interpreter(made_with, path) for path in running)


def make_venv() -> None:
    """`.venv` from the interpreter running this script, made again if another one made it.

    So `/usr/bin/python3 bootstrap.py bench` measures the distribution's build even where
    `python3` once meant another (the build changes STAT bot's CPU figures: BENCHMARKS.md,
    "The interpreter"). The old `.venv` comes back if the new one cannot be made, and
    nothing half-made is left where the next run would take it for a finished one.
    """
    old = None
    if (BIN / "python").exists():
        made_with = made_by(VENV)
        if made_for_this_interpreter(VENV, made_with):
            return
        say(f"{VENV} was made by {made_with}; making it again for {sys.executable}")
        old = VENV.with_name(VENV.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        VENV.rename(old)
    say(f"creating {VENV}")
    try:
        create_venv()
    except BaseException:
        shutil.rmtree(VENV, ignore_errors=True)
        if old is not None:
            old.rename(VENV)
            say(f"kept the {VENV} there was")
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def create_venv() -> None:
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


def port_answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def start_postgres() -> None:
    """Start the machine's PostgreSQL cluster for the tests if nothing answers on 5432.

    Only where TEST_DATABASE_URL is unset (it names another server) and we are root.
    A cluster created here trusts local and loopback logins and has the `test` database
    the tests' default URL names. Never fails the run: without a server the PostgreSQL
    tests skip, loudly (and fail under CI=1), which is their decision, not ours.
    """
    if os.environ.get("TEST_DATABASE_URL") or port_answers(5432):
        return
    if os.geteuid() == 0 and shutil.which("pg_ctlcluster"):
        clusters, versions = (
            sorted(os.listdir(d), key=float) if os.path.isdir(d) else []
            for d in ("/etc/postgresql", "/usr/lib/postgresql")
        )
        version = (clusters or versions or [""])[-1]
        created = False
        if version and not clusters:
            say(f"creating the PostgreSQL {version} cluster `main` (trust auth)")
            created = not subprocess.run(
                ["pg_createcluster", version, "main", "--", "--auth=trust"]
            ).returncode
        if version:
            say(f"starting PostgreSQL {version} main")
            start = ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"]
            subprocess.run(start)
            deadline = time.monotonic() + 30
            while not port_answers(5432) and time.monotonic() < deadline:
                time.sleep(0.5)
        if created and port_answers(5432):
            subprocess.run(["runuser", "-u", "postgres", "--", "createdb", "test"])
    if not port_answers(5432):
        say(
            "!!! NO POSTGRESQL on 127.0.0.1:5432 and TEST_DATABASE_URL is unset: "
            "the PostgreSQL tests will be SKIPPED (they fail under CI=1) !!!"
        )


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
    start_postgres()
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
