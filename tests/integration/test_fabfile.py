"""`fab` against a real sshd on loopback: deploy this checkout's HEAD, roll back, status, backup.

The host is the test sshd, logged in to as the plain test user, deploying into a temporary
base folder. The venv reuses this checkout's .venv packages (`venv_from`), so no download;
the release itself is still installed into its own venv and `stat-bot db migrate` really
runs. Readiness is a loopback HTTP server the test switches between 200 and 503, and the
restart command appends to a file, so both are seen from the outside.
"""

from __future__ import annotations

import os
import pwd
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.sshd_fixtures import SshServer

ROOT = Path(__file__).resolve().parents[2]
FAB = str(Path(sys.executable).parent / "fab")
VENV = Path(sys.prefix)


class Readiness(ThreadingHTTPServer):
    """/readyz stand-in: answers `status` (200 or 503) with a small JSON body."""

    status = 200


class ReadyHandler(BaseHTTPRequestHandler):
    server: Readiness

    def do_GET(self) -> None:
        ready = self.server.status == 200
        body = b'{"ready": true}' if ready else b'{"ready": false, "missing": ["dispatcher"]}'
        self.send_response(self.server.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        return


@dataclass
class Site:
    base: Path
    env: dict[str, str]
    sshd: SshServer
    ready: Readiness

    def fab(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = [FAB, "-r", str(ROOT), "-S", str(self.sshd.ssh_config_file), "-H", "127.0.0.1"]
        started = time.monotonic()
        answer = subprocess.run(
            [*command, *args], env=self.env, capture_output=True, text=True, timeout=300
        )
        print(f"fab {' '.join(args)}: {time.monotonic() - started:.1f} s")
        return answer

    def current(self) -> str:
        return os.readlink(self.base / "current").removeprefix("releases/")

    def restarts(self) -> list[str]:
        path = self.base / "restarts.log"
        return path.read_text().split() if path.exists() else []


def head() -> str:
    return subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()


def runs_as(user: str, *command: str) -> subprocess.CompletedProcess[str]:
    prefix = ["runuser", "-u", user, "--"] if os.geteuid() == 0 else []
    return subprocess.run([*prefix, *command], capture_output=True, text=True, cwd="/")


@pytest.fixture
def site(sshd: SshServer) -> Iterator[Site]:
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    packages = VENV / "lib" / version / "site-packages"
    probe = runs_as(
        sshd.user,
        "python3",
        "-c",
        f"import sys; sys.path.append({str(packages)!r}); import fabric; "
        f"print('python%d.%d' % sys.version_info[:2])",
    )
    if probe.returncode or probe.stdout.strip() != version:
        pytest.skip(
            f"SKIPPED FAB DEPLOY TEST: the test user's python3 cannot reuse {packages} "
            f"({probe.stdout.strip() or probe.stderr.strip()[-200:]}); it needs {version} and "
            "read access to this checkout's .venv"
        )
    base = Path(tempfile.mkdtemp(prefix="stat-bot-deploy-"))
    base.chmod(0o755)
    shared = base / "shared"
    shared.mkdir()
    (shared / "environment").write_text(f"STATE_DIR={shared / 'var'}\nLOG_FORMAT=json\n")
    if os.geteuid() == 0:
        account = pwd.getpwnam(sshd.user)
        for path in (base, shared, shared / "environment"):
            os.chown(path, account.pw_uid, account.pw_gid)
    ready = Readiness(("127.0.0.1", 0), ReadyHandler)
    threading.Thread(target=ready.serve_forever, daemon=True).start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FABRIC_")}
    env.update(
        FABRIC_STATBOT_BASE_DIR=str(base),
        FABRIC_STATBOT_VENV_FROM=str(VENV),
        FABRIC_STATBOT_READY_URL=f"http://127.0.0.1:{ready.server_port}/readyz",
        FABRIC_STATBOT_READY_TIMEOUT="3",
        FABRIC_STATBOT_RESTART_COMMAND=f"readlink {base}/current >> {base}/restarts.log",
    )
    try:
        yield Site(base=base, env=env, sshd=sshd, ready=ready)
    finally:
        ready.shutdown()
        ready.server_close()
        shutil.rmtree(base, ignore_errors=True)


def test_fab_list_shows_the_deploy_tasks():
    listed = subprocess.run([FAB, "-r", str(ROOT), "--list"], capture_output=True, text=True)
    assert listed.returncode == 0, listed.stderr
    tasks = [line.split()[0] for line in listed.stdout.splitlines()[1:] if line.strip()]
    assert {"deploy", "rollback", "status", "logs", "backup"} <= set(tasks)


def test_a_task_without_a_host_says_how_to_give_one():
    answer = subprocess.run([FAB, "-r", str(ROOT), "status"], capture_output=True, text=True)
    assert answer.returncode == 1
    assert "give the host: fab -H user@host TASK" in answer.stderr


@pytest.mark.timeout(600)  # four deploys, each building a venv, on a busy machine
def test_deploy_rollback_status_and_backup(site: Site):
    sha = head()
    # 1. A first deploy: the release, its venv, the database migrated, current switched.
    first = site.fab("deploy")
    assert first.returncode == 0, first.stdout + first.stderr
    name = site.current()
    assert name.endswith(f"-{sha[:10]}")
    release = site.base / "releases" / name
    assert (release / "REVISION").read_text().strip() == sha
    assert (release / "environment").resolve() == site.base / "shared" / "environment"
    where = runs_as(
        site.sshd.user,
        str(release / ".venv/bin/python"),
        "-c",
        "import stat_bot; print(stat_bot.__file__)",
    )
    assert where.stdout.strip().startswith(str(release / ".venv" / "lib")), where
    database = site.base / "shared" / "var" / "stat-bot.sqlite3"
    with sqlite3.connect(database) as conn:
        version = conn.execute("SELECT max(version) FROM schema_version").fetchone()[0]
    assert version >= 1
    assert f"schema version {version}" in first.stdout
    assert site.restarts() == [f"releases/{name}"]
    assert "ready: 200" in first.stdout

    # 2. status names the current release, its commit, and what /readyz said.
    status = site.fab("status")
    assert status.returncode == 0, status.stdout + status.stderr
    assert f"current: {name} ({sha})" in status.stdout
    assert f" * {name}" in status.stdout
    assert "ready: 200" in status.stdout

    # The units' journal: read with journalctl on the host (here: no entries for them).
    logs = site.fab("logs", "--lines", "5")
    if shutil.which("journalctl"):
        assert logs.returncode == 0, logs.stdout + logs.stderr
        assert "-- No entries --" in logs.stdout or "stat-bot" in logs.stdout
    else:
        assert logs.returncode == 1
        assert "no journalctl on the host" in logs.stderr

    # 3. backup: an online copy, checked, in backups/.
    backup = site.fab("backup")
    assert backup.returncode == 0, backup.stdout + backup.stderr
    copies = sorted((site.base / "backups").glob("stat-bot-2*.sqlite3"))
    assert len(copies) == 1
    assert f"to {copies[0]}" in backup.stdout
    assert "integrity ok" in backup.stdout
    with sqlite3.connect(copies[0]) as conn:
        assert conn.execute("SELECT max(version) FROM schema_version").fetchone()[0] == version

    # 4. A deploy whose readiness fails rolls back by itself.
    site.ready.status = 503
    failed = site.fab("deploy")
    assert failed.returncode == 1
    assert "not ready after 3 s: 503" in failed.stdout
    assert f"rolled back to releases/{name}" in failed.stderr
    assert site.current() == name
    bad = [p.name for p in (site.base / "releases").iterdir() if p.name != name]
    assert len(bad) == 1
    assert (site.base / "releases" / bad[0] / ".failed").exists()
    assert site.restarts() == [f"releases/{name}", f"releases/{bad[0]}", f"releases/{name}"]
    assert len(list((site.base / "backups").glob("stat-bot-pre-deploy-*.sqlite3"))) == 1

    # 5. A good deploy, then `rollback` goes back past the failed one to the first.
    site.ready.status = 200
    third = site.fab("deploy")
    assert third.returncode == 0, third.stdout + third.stderr
    newest = site.current()
    assert newest not in (name, bad[0])
    back = site.fab("rollback")
    assert back.returncode == 0, back.stdout + back.stderr
    assert site.current() == name
    assert site.restarts()[-1] == f"releases/{name}"
    status = site.fab("status")
    assert f" * {name}" in status.stdout
    assert f"   {bad[0]}  (failed)" in status.stdout
    assert f"   {newest}\n" in status.stdout


def test_deploying_a_ref_that_is_not_a_commit_says_so(site: Site):
    answer = site.fab("deploy", "--ref", "no-such-ref")
    assert answer.returncode == 1
    assert "'no-such-ref' is not a commit of" in answer.stderr
    assert not (site.base / "current").exists()
