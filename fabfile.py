"""Deploy and operate STAT bot on a host over SSH (Fabric 3): `fab --list` shows the tasks.

    fab -H statbot@bot.example.org deploy                 # this checkout's HEAD
    fab -H statbot@bot.example.org deploy --ref v1.4      # any git ref of this checkout
    fab -H statbot@bot.example.org status                 # current release, units, /readyz
    fab -H statbot@bot.example.org rollback               # back to the release before current
    fab -H statbot@bot.example.org logs --lines 200       # the units' journal
    fab -H statbot@bot.example.org backup                 # SQLite online backup on the host

On the host, under `base_dir`:

    releases/<UTC time>-<sha>/   one folder per deploy: the tree of the ref (`git archive`,
                                 uploaded over SSH, so the host needs no git and no access
                                 to the repository), REVISION, and its own .venv
    current -> releases/...      what the services run (WorkingDirectory=<base_dir>/current)
    shared/environment           linked into every release as `environment` (tokens, STATE_DIR)
    backups/                     `backup` and the automatic pre-migration backups

`deploy` installs the locked dependencies into a new venv (`pip install --require-hashes
-r requirements.lock`, then the release itself), runs `stat-bot db migrate` (after a backup
of the database, if there is one), switches `current` atomically, restarts the units, and
waits for `/readyz`. When the restart or the readiness check fails it rolls back by itself:
`current` goes back to the previous release, which is restarted, and the task fails.

Configuration: fab's config files (`fabric.yaml` beside this file, `~/.fabric.yaml`, or
`/etc/fabric.yaml`) under the key `statbot`, or environment variables FABRIC_STATBOT_<KEY>:

    base_dir         /opt/stat-bot                   where releases/, current, shared/ live
    units            stat-bot-bot stat-bot-dispatcher stat-bot-web   (space-separated)
    restart_command  ""   instead of `systemctl restart <units>` (e.g. for supervisord); empty:
                          systemctl when the host runs systemd (with `sudo -n` unless root),
                          otherwise nothing is restarted (said so)
    ready_url        http://127.0.0.1:8080/readyz     asked from the host itself
    ready_timeout    60   seconds to wait for it
    python           python3   the host's Python (3.11 or newer) for the venv
    venv_from        ""   reuse the packages of this venv on the host instead of downloading
                          the lock file's (offline hosts, tests); the release itself is still
                          installed into its own venv
    keep             5    releases kept (older ones are removed after a good deploy)
    database         ""   the SQLite file `backup` copies; empty: the current release's
                          settings say (STATE_DIR/stat-bot.sqlite3)
"""

from __future__ import annotations

import json
import shlex
import subprocess
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from fabric import Connection, task
from invoke import Collection
from invoke.exceptions import Exit

HERE = Path(__file__).resolve().parent
DEFAULTS = {
    "base_dir": "/opt/stat-bot",
    "units": "stat-bot-bot stat-bot-dispatcher stat-bot-web",
    "restart_command": "",
    "ready_url": "http://127.0.0.1:8080/readyz",
    "ready_timeout": 60,
    "python": "python3",
    "venv_from": "",
    "keep": 5,
    "database": "",
}
FAILED_MARK = ".failed"

# Run on the host with its own python3: poll the URL until 200 (proxies ignored: loopback).
READY_SCRIPT = """
import sys, time, urllib.error, urllib.request
url, limit = sys.argv[1], float(sys.argv[2])
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
deadline, last = time.monotonic() + limit, "no answer"
while True:
    try:
        with opener.open(url, timeout=5) as answer:
            print(f"ready: {answer.status} {answer.read(300).decode(errors='replace')}")
            sys.exit(0)
    except urllib.error.HTTPError as error:
        last = f"{error.code} {error.read(500).decode(errors='replace')}"
    except OSError as error:
        last = str(getattr(error, "reason", error))
    if time.monotonic() >= deadline:
        print(f"not ready after {limit:g} s: {last}")
        sys.exit(1)
    time.sleep(0.5)
"""

# SQLite's online backup (safe while the services write), checked, as JSON.
BACKUP_SCRIPT = """
import json, os, sqlite3, sys
source, target = sys.argv[1], sys.argv[2]
if not os.path.exists(source):
    print(json.dumps({"error": f"no database at {source}"}))
    sys.exit(1)
os.makedirs(os.path.dirname(target), mode=0o700, exist_ok=True)
src = sqlite3.connect(source)
dst = sqlite3.connect(target)
with dst:
    src.backup(dst)
check = dst.execute("PRAGMA integrity_check").fetchone()[0]
try:
    version = dst.execute("SELECT max(version) FROM schema_version").fetchone()[0]
except sqlite3.Error:
    version = None
dst.close()
src.close()
os.chmod(target, 0o600)
print(json.dumps({"path": target, "bytes": os.path.getsize(target), "integrity": check,
                  "schema_version": version}))
sys.exit(0 if check == "ok" else 1)
"""

DATABASE_SCRIPT = (
    "from stat_bot.settings import load_settings; print(load_settings().sqlite_path or '')"
)


def q(value: object) -> str:
    return shlex.quote(str(value))


@dataclass
class Site:
    """The task's configuration and the host's paths, in one place."""

    c: Connection
    base: str
    units: list[str]
    restart_command: str
    ready_url: str
    ready_timeout: float
    python: str
    venv_from: str
    keep: int
    database: str

    @classmethod
    def of(cls, c: Connection) -> Site:
        if not isinstance(c, Connection):
            raise Exit("give the host: fab -H user@host TASK (see the top of fabfile.py)")
        conf = {**DEFAULTS, **dict(c.config.get("statbot", {}))}
        return cls(
            c=c,
            base=str(conf["base_dir"]).rstrip("/") or "/",
            units=str(conf["units"]).split(),
            restart_command=str(conf["restart_command"] or ""),
            ready_url=str(conf["ready_url"]),
            ready_timeout=float(conf["ready_timeout"]),
            python=str(conf["python"]),
            venv_from=str(conf["venv_from"] or ""),
            keep=max(2, int(conf["keep"])),
            database=str(conf["database"] or ""),
        )

    @property
    def releases(self) -> str:
        return f"{self.base}/releases"

    @property
    def current(self) -> str:
        return f"{self.base}/current"

    def run(self, command: str, *, hide: bool = True, warn: bool = False):
        return self.c.run(command, hide=hide, warn=warn, in_stream=False)

    def say(self, words: str) -> None:
        print(f"[{self.c.host}] {words}", flush=True)

    def release_names(self) -> list[str]:
        """Releases that deployed (not failed ones), oldest first."""
        answer = self.run(
            f"cd {q(self.releases)} 2>/dev/null && for d in */; do d=${{d%/}}; "
            f'[ -e "$d/{FAILED_MARK}" ] || echo "$d"; done',
            warn=True,
        )
        return sorted(line for line in answer.stdout.split() if line and line != "*")

    def current_name(self) -> str | None:
        answer = self.run(f"readlink {q(self.current)}", warn=True)
        target = answer.stdout.strip()
        return target.rsplit("/", 1)[-1] if answer.ok and target else None

    def switch(self, name: str) -> None:
        """Point `current` at a release atomically (rename over the old link)."""
        temporary = f"{self.base}/.current-{name}"
        self.run(
            f"ln -sfn releases/{q(name)} {q(temporary)} && mv -Tf {q(temporary)} {q(self.current)}"
        )
        self.say(f"current -> releases/{name}")

    def restart(self) -> bool:
        if self.restart_command:
            command = self.restart_command
        else:
            has_systemd = self.run(
                "[ -d /run/systemd/system ] && command -v systemctl >/dev/null", warn=True
            ).ok
            if not has_systemd:
                self.say("no systemd on the host: nothing restarted (set restart_command)")
                return True
            units = " ".join(q(unit) for unit in self.units)
            command = (
                f'if [ "$(id -u)" = 0 ]; then systemctl restart {units}; '
                f"else sudo -n systemctl restart {units}; fi"
            )
        answer = self.run(f"cd {q(self.current)} && {command}", warn=True)
        if answer.ok:
            self.say(f"restarted: {command if self.restart_command else ' '.join(self.units)}")
            return True
        self.say(
            f"restart failed (exit {answer.exited}): {(answer.stderr or answer.stdout).strip()}"
        )
        return False

    def wait_ready(self, limit: float | None = None) -> bool:
        seconds = self.ready_timeout if limit is None else limit
        answer = self.run(
            f"{q(self.python)} -c {q(READY_SCRIPT)} {q(self.ready_url)} {seconds:g}", warn=True
        )
        self.say(f"{self.ready_url}: {answer.stdout.strip() or answer.stderr.strip()}")
        return answer.ok

    def database_path(self, release: str) -> str | None:
        if self.database:
            return self.database
        answer = self.run(f"cd {q(release)} && .venv/bin/python -c {q(DATABASE_SCRIPT)}", warn=True)
        return (answer.stdout.strip() or None) if answer.ok else None

    def backup(self, database: str, label: str) -> dict[str, object]:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        target = f"{self.base}/backups/stat-bot-{label}{stamp}.sqlite3"
        answer = self.run(
            f"{q(self.python)} -c {q(BACKUP_SCRIPT)} {q(database)} {q(target)}", warn=True
        )
        try:
            return json.loads(answer.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            return {"error": (answer.stderr or answer.stdout).strip() or f"exit {answer.exited}"}


def local_git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(HERE), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


@task(help={"ref": "git ref of this checkout to deploy (default HEAD)"})
def deploy(c, ref="HEAD"):
    """Deploy a git ref as a new release: venv, migrate, switch `current`, restart, wait for /readyz."""
    site = Site.of(c)
    try:
        sha = local_git("rev-parse", "--verify", f"{ref}^{{commit}}")
    except subprocess.CalledProcessError as error:
        raise Exit(f"{ref!r} is not a commit of {HERE}: {error.stderr.strip()}") from None
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    name = f"{stamp}-{sha[:10]}"
    release = f"{site.releases}/{name}"
    previous = site.current_name()
    site.say(f"deploying {ref} ({sha[:10]}) as releases/{name}; current: {previous or 'none'}")
    site.run(f"mkdir -p {q(site.releases)} {q(site.base)}/shared {q(site.base)}/backups")
    if site.run(f"test -e {q(release)}", warn=True).ok:
        raise Exit(f"releases/{name} exists already: deploy again in a second")

    def failed(words: str) -> Exit:
        site.run(f"touch {q(release)}/{FAILED_MARK}", warn=True)
        return Exit(f"deploy of {ref} failed: {words}; current stays {previous or 'unset'}")

    with tempfile.TemporaryDirectory() as folder:
        archive = Path(folder) / f"{name}.tar.gz"
        subprocess.run(
            ["git", "-C", str(HERE), "archive", "--format=tar.gz", "-o", str(archive), sha],
            check=True,
        )
        upload = f"{site.releases}/.upload-{name}.tar.gz"
        c.put(str(archive), upload)
    site.run(
        f"mkdir {q(release)} && tar -xzf {q(upload)} -C {q(release)} && rm -f {q(upload)} "
        f"&& echo {sha} > {q(release)}/REVISION"
    )
    site.run(
        f"[ -e {q(site.base)}/shared/environment ] && "
        f"ln -sfn ../../shared/environment {q(release)}/environment || true"
    )
    site.say("code uploaded")
    if not install(site, release):
        raise failed("installing the dependencies failed (see above)")
    database = site.database_path(release)
    before = None
    if database and site.run(f"test -f {q(database)}", warn=True).ok:
        saved = site.backup(database, "pre-deploy-")
        if "error" in saved:
            raise failed(f"the backup before migrating failed: {saved['error']}")
        before = saved.get("schema_version")
        site.say(f"database backed up to {saved['path']} (schema version {before})")
    migrate = site.run(f"cd {q(release)} && .venv/bin/stat-bot db migrate", warn=True)
    if not migrate.ok:
        raise failed(f"stat-bot db migrate: {(migrate.stderr or migrate.stdout).strip()}")
    site.say(migrate.stdout.strip())
    site.switch(name)
    if site.restart() and site.wait_ready():
        prune(site, keep_also={name, previous})
        site.say(f"deployed releases/{name}")
        return
    site.run(f"touch {q(release)}/{FAILED_MARK}", warn=True)
    if previous is None:
        raise Exit(f"deploy of {ref} failed and there is no earlier release to go back to")
    site.say(f"rolling back to releases/{previous}")
    site.switch(previous)
    site.restart()
    site.wait_ready()
    if before is not None and f"schema version {before}" not in migrate.stdout:
        site.say(
            f"note: {name} migrated the database past schema version {before}; if "
            f"{previous} refuses it, restore the pre-deploy backup in {site.base}/backups"
        )
    raise Exit(f"deploy of {ref} failed; rolled back to releases/{previous}")


def install(site: Site, release: str) -> bool:
    """The release's own venv: the lock file's packages (or venv_from's), then the release."""
    venv = f"{release}/.venv"
    pip = f"{q(venv)}/bin/python -m pip -q --disable-pip-version-check"
    if site.venv_from:
        # Without its own pip and setuptools: the reused ones (from the lock file) build it.
        steps = [f"{q(site.python)} -m venv --without-pip {q(venv)}"]
        # Reuse an existing venv's packages through a .pth line (read-only, no download). Its
        # own python may not be runnable by this user: only its site-packages are read.
        find = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
        version = "import sys; print('python%d.%d' % sys.version_info[:2])"
        steps.append(
            f"to=$({q(venv)}/bin/python -c {q(find)}) && "
            f"from={q(site.venv_from)}/lib/$({q(venv)}/bin/python -c {q(version)})/site-packages "
            '&& { [ -d "$from" ] || { echo "venv_from has no $from: a venv of another Python?"'
            ' >&2; exit 1; }; } && echo "$from" > "$to/_stat_bot_reused.pth"'
        )
        steps.append(f"{pip} install --no-index --no-deps --no-build-isolation {q(release)}")
        site.say(f"venv reusing the packages of {site.venv_from}")
    else:
        steps = [f"{q(site.python)} -m venv {q(venv)}"]
        steps.append(f"{pip} install --require-hashes --no-deps -r {q(release)}/requirements.lock")
        steps.append(f"{pip} install --no-deps --no-build-isolation {q(release)}")
        site.say("venv from requirements.lock")
    for step in steps:
        answer = site.run(step, warn=True)
        if not answer.ok:
            site.say(f"failed: {step}\n{(answer.stderr or answer.stdout).strip()[-2000:]}")
            return False
    return True


def prune(site: Site, keep_also: set[str | None]) -> None:
    names = site.release_names()
    old = [n for n in names[: -site.keep] if n not in keep_also]
    failed = site.run(
        f'cd {q(site.releases)} && for d in */; do [ -e "$d{FAILED_MARK}" ] && echo "${{d%/}}"; '
        "done; true",
        warn=True,
    ).stdout.split()
    # Failed releases are kept only while they are among the newest `keep`.
    newest = set(sorted(names + failed)[-site.keep :])
    old += [n for n in failed if n not in newest and n not in keep_also]
    for name in old:
        site.run(f"rm -rf {q(site.releases)}/{q(name)}", warn=True)
    if old:
        site.say(f"removed old releases: {', '.join(old)}")


@task(help={"to": "release folder name to go back to (default: the one before current)"})
def rollback(c, to=None):
    """Point `current` at the previous release (or --to NAME), restart, wait for /readyz."""
    site = Site.of(c)
    names = site.release_names()
    now = site.current_name()
    if to is None:
        earlier = [n for n in names if now is None or n < now]
        if not earlier:
            raise Exit(f"no release before {now or 'current'} to roll back to")
        to = earlier[-1]
    elif to not in names:
        raise Exit(f"no release {to!r}; releases: {', '.join(names) or 'none'}")
    site.say(f"rolling back from {now or 'none'} to {to}")
    site.switch(to)
    if not (site.restart() and site.wait_ready()):
        raise Exit(f"rolled back to releases/{to}, but it is not ready (see above)")


@task
def status(c):
    """Current release, the releases on the host, the units' states and /readyz."""
    site = Site.of(c)
    now = site.current_name()
    revision = site.run(f"cat {q(site.current)}/REVISION", warn=True).stdout.strip()
    print(f"current: {now or 'none'}" + (f" ({revision})" if revision else ""))
    every = site.run(f"ls -1 {q(site.releases)} 2>/dev/null; true").stdout.split()
    good = set(site.release_names())
    for name in every:
        if name.startswith("."):
            continue
        mark = "*" if name == now else " "
        print(f" {mark} {name}{'' if name in good else '  (failed)'}")
    has_systemd = site.run(
        "[ -d /run/systemd/system ] && command -v systemctl >/dev/null", warn=True
    ).ok
    if has_systemd:
        for unit in site.units:
            state = site.run(f"systemctl is-active {q(unit)}", warn=True).stdout.strip()
            print(f"{unit}: {state}")
    else:
        print("units: no systemd on the host")
    if not site.wait_ready(limit=0):
        raise Exit(1)


@task(help={"lines": "how many lines (default 100)", "follow": "keep following (Ctrl-C stops)"})
def logs(c, lines=100, follow=False):
    """The units' journal on the host (journalctl)."""
    site = Site.of(c)
    if not site.run("command -v journalctl >/dev/null", warn=True).ok:
        raise Exit("no journalctl on the host: read the services' own log files there")
    units = " ".join(f"-u {q(unit)}" for unit in site.units)
    command = f"journalctl {units} -n {int(lines)} --no-pager" + (" -f" if follow else "")
    answer = c.run(command, pty=follow, warn=True)
    if not answer.ok:
        raise Exit(answer.exited)


@task(help={"database": "SQLite file on the host (default: config, else the current settings)"})
def backup(c, database=None):
    """SQLite online backup of the queue on the host, to <base_dir>/backups/stat-bot-<time>.sqlite3."""
    site = Site.of(c)
    path = database or site.database_path(site.current)
    if not path:
        raise Exit("cannot tell where the database is: set statbot.database or deploy first")
    saved = site.backup(path, "")
    if "error" in saved:
        raise Exit(f"backup of {path} failed: {saved['error']}")
    print(
        f"backed up {path} to {saved['path']} ({saved['bytes']} bytes, integrity "
        f"{saved['integrity']}, schema version {saved['schema_version']})"
    )


ns = Collection(deploy, rollback, status, logs, backup)
ns.configure({"statbot": DEFAULTS})
