"""A real Trac 1.6 for the tests: built in a temporary folder, served by `tracd` on loopback.

`tracd` (session-scoped) builds one Trac environment per test session - about a
second - with what a STAT site has: ISO 8601 dates, the custom field `xname`,
htpasswd users made with `openssl passwd -apr1`, and the plugins from
contrib/trac/ in ENV/plugins. It installs nothing: `trac==1.6` is a declared test
dependency (requirements-dev.lock). Users, with random passwords:

- `tracd.user` ("statbot"): TICKET_VIEW, TICKET_CREATE, TICKET_MODIFY, WIKI_VIEW,
  WIKI_CREATE, WIKI_MODIFY (local_trac.BOT_PERMISSIONS) - exactly what the notes ask a
  site to grant STAT bot's account, so the tests prove that is enough;
- `tracd.viewer`: TICKET_VIEW only, and WIKI_VIEW as everyone (permission errors);
- `tracd.admin_user`: TRAC_ADMIN.
Anonymous users may not view tickets and logged-in users get no ticket or wiki
writing rights by default, so a missing permission shows.

Without trac installed the tests that use it are skipped, unless the CI variable is
set: there they fail, because CI must run them.
"""

from __future__ import annotations

import configparser
import contextlib
import importlib.util
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from stat_bot.integrations.local_trac import BOT_PERMISSIONS, ENV_NAME, PLUGINS, REALM
from stat_bot.integrations.trac import TracClient
from stat_bot.settings import PROXY_VARIABLES
from tests.peers import free_port, require

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
START_TIMEOUT = 30.0
# What a STAT site's Trac is like is said once, by local mode's own Trac (the product):
# the environment's name and realm, the bot account's rights, the plugins' folder.
# Trac 1.6 imports pkg_resources, which warns on every start.
QUIET = "ignore:pkg_resources is deprecated"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "trac: needs the real tracd of tests/trac_fixtures.py")


def missing_trac() -> str | None:
    """Why a real Trac cannot be run here, or None when it can."""
    if importlib.util.find_spec("trac") is None:
        return "trac is not installed (pip install -r requirements-dev.lock)"
    for tool in ("tracd", "trac-admin"):
        if not (BIN / tool).exists():
            return f"{BIN / tool} is missing (pip install -r requirements-dev.lock)"
    if shutil.which("openssl") is None:
        return "openssl is not installed (it makes the htpasswd entries)"
    return None


def require_trac() -> None:
    require(missing_trac(), "Trac")


def htpasswd_line(name: str, password: str) -> str:
    """`name:$apr1$...` as Apache's htpasswd makes it; the password goes in on stdin."""
    digest = subprocess.run(
        ["openssl", "passwd", "-apr1", "-stdin"],
        input=password,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return f"{name}:{digest}"


def trac_environ() -> dict[str, str]:
    """Ours without proxies (the plugin must reach STAT bot on loopback directly)."""
    env = {k: v for k, v in os.environ.items() if k not in PROXY_VARIABLES}
    env["PYTHONWARNINGS"] = QUIET
    return env


class TracServer:
    """One Trac environment and the `tracd` serving it."""

    def __init__(self, root: Path, port: int | None = None) -> None:
        self.root = root
        self.env_dir = root / ENV_NAME
        self.htpasswd = root / "htpasswd"
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/{ENV_NAME}"
        self.user, self.password = "statbot", secrets.token_urlsafe(12)
        self.viewer, self.viewer_password = "viewer", secrets.token_urlsafe(12)
        self.admin_user, self.admin_password = "tracadmin", secrets.token_urlsafe(12)
        self.process: subprocess.Popen[bytes] | None = None
        self.startup_seconds = 0.0

    # --- building -----------------------------------------------------------------------

    def build(self) -> None:
        """trac-admin initenv with STAT's settings, users, permissions and plugins."""
        config = self.root / "initial.ini"
        config.write_text(
            "[trac]\n"
            "default_date_format = iso8601\n"
            f"base_url = {self.url}\n"
            "[ticket-custom]\n"
            "xname = text\n"
            "xname.label = XName\n"
            "[logging]\n"
            "log_type = file\n"
            "log_level = INFO\n"
        )
        self.admin("initenv", ENV_NAME, "sqlite:db/trac.db", f"--config={config}")
        self.htpasswd.write_text("")
        commands = [
            "permission remove authenticated TICKET_CREATE TICKET_MODIFY WIKI_CREATE WIKI_MODIFY",
            "permission remove anonymous TICKET_VIEW",
        ]
        for name, password, permissions in (
            (self.user, self.password, BOT_PERMISSIONS),
            (self.viewer, self.viewer_password, ("TICKET_VIEW",)),
            (self.admin_user, self.admin_password, ("TRAC_ADMIN",)),
        ):
            self._add_htpasswd(name, password)
            commands.append(f"permission add {name} {' '.join(permissions)}")
        self.admin_batch(commands)
        plugins = self.env_dir / "plugins"
        for plugin in sorted(PLUGINS.glob("*.py")) if PLUGINS.is_dir() else []:
            shutil.copy2(plugin, plugins / plugin.name)

    def admin(self, *args: str) -> str:
        """Run `trac-admin ENV ARGS...`; its output (raises with the output if it fails)."""
        result = subprocess.run(
            [str(BIN / "trac-admin"), str(self.env_dir), *args],
            capture_output=True,
            text=True,
            env=trac_environ(),
            timeout=60,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"trac-admin {' '.join(args)} failed:\n{result.stdout}{result.stderr}"
            )
        return result.stdout

    def admin_batch(self, commands: list[str]) -> str:
        """Several trac-admin commands in one process (each start costs ~0.2 s)."""
        result = subprocess.run(
            [str(BIN / "trac-admin"), str(self.env_dir)],
            input="\n".join(commands) + "\n",
            capture_output=True,
            text=True,
            env=trac_environ(),
            timeout=60,
        )
        if result.returncode != 0 or "Error:" in result.stdout + result.stderr:
            raise RuntimeError(f"trac-admin {commands} failed:\n{result.stdout}{result.stderr}")
        return result.stdout

    def _add_htpasswd(self, name: str, password: str) -> None:
        with self.htpasswd.open("a") as file:
            file.write(htpasswd_line(name, password) + "\n")

    def add_user(self, name: str, password: str, *permissions: str) -> None:
        """A new login (tracd re-reads the htpasswd file when it changes) with permissions."""
        self._add_htpasswd(name, password)
        if permissions:
            self.admin("permission", "add", name, *permissions)

    # --- trac.ini -----------------------------------------------------------------------

    @property
    def ini_path(self) -> Path:
        return self.env_dir / "conf" / "trac.ini"

    def _edit_ini(self, section: str, values: dict[str, str | None]) -> None:
        """Set (None: remove) options; Trac reloads the environment on its next request."""
        parser = configparser.RawConfigParser()
        parser.optionxform = str  # type: ignore[assignment,method-assign]
        parser.read(self.ini_path, encoding="utf-8")
        if not parser.has_section(section):
            parser.add_section(section)
        for name, value in values.items():
            if value is None:
                parser.remove_option(section, name)
            else:
                parser.set(section, name, value)
        before = self.ini_path.stat().st_mtime_ns
        temporary = self.ini_path.with_suffix(".tmp")
        with temporary.open("w", encoding="utf-8") as file:
            parser.write(file)
        os.replace(temporary, self.ini_path)
        if self.ini_path.stat().st_mtime_ns <= before:  # Trac compares modification times
            os.utime(self.ini_path, ns=(before + 1_000_000, before + 1_000_000))

    def set_option(self, section: str, name: str, value: str | None) -> None:
        self._edit_ini(section, {name: value})

    def get_option(self, section: str, name: str) -> str | None:
        parser = configparser.RawConfigParser()
        parser.optionxform = str  # type: ignore[assignment,method-assign]
        parser.read(self.ini_path, encoding="utf-8")
        return parser.get(section, name, fallback=None)

    def set_notify(self, url: str | None, secret: str | None, timeout: float | None = None) -> None:
        """Point contrib/trac's plugin at a STAT bot `/trac` URL (None: remove the setting)."""
        self._edit_ini(
            "stat_bot",
            {"url": url, "secret": secret, "timeout": None if timeout is None else str(timeout)},
        )

    # --- serving ------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        started = time.monotonic()
        log = (self.root / "tracd.out").open("ab")
        self.process = subprocess.Popen(
            [
                str(BIN / "tracd"),
                "-b",
                "127.0.0.1",
                "-p",
                str(self.port),
                f"--basic-auth={ENV_NAME},{self.htpasswd},{REALM}",
                str(self.env_dir),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=trac_environ(),
            start_new_session=True,
        )
        log.close()
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        deadline = started + START_TIMEOUT
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"tracd exited ({self.process.returncode}):\n{self.output()}")
            try:
                with opener.open(f"{self.url}/wiki", timeout=2) as reply:
                    if reply.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"tracd did not answer in {START_TIMEOUT:g} s:\n{self.output()}")
            time.sleep(0.05)
        self.startup_seconds = time.monotonic() - started

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    @contextlib.contextmanager
    def stopped(self) -> Iterator[TracServer]:
        """tracd down for the block (connections refused), up again after it."""
        self.stop()
        try:
            yield self
        finally:
            self.start()

    def output(self) -> str:
        path = self.root / "tracd.out"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def log_text(self) -> str:
        """Trac's own log (ENV/log/trac.log): plugin warnings land here."""
        path = self.env_dir / "log" / "trac.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # --- clients ------------------------------------------------------------------------

    def client(
        self, user: str | None = None, password: str | None = None, *, timeout: float = 10.0
    ) -> TracClient:
        """A client for `user` (default: the bot's account)."""
        if user is None:
            user, password = self.user, self.password
        return TracClient(self.url, user, password, timeout=timeout)

    def environ(self) -> dict[str, str]:
        """TRAC_* variables for a STAT bot (its jobs) using this Trac as the bot's account."""
        return {
            "TRAC_URL": self.url,
            "TRAC_USER": self.user,
            "TRAC_PASSWORD": self.password,
            "TRAC_TIMEOUT": "10",
        }


@pytest.fixture(scope="session")
def tracd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TracServer]:
    """A real tracd for the whole session, on a free loopback port; stopped at the end."""
    require_trac()
    server = TracServer(tmp_path_factory.mktemp("trac"))
    started = time.monotonic()
    try:
        server.build()
        server.start()
        server.startup_seconds = time.monotonic() - started
        yield server
    finally:
        server.stop()


@pytest.fixture
def trac_client(tracd: TracServer) -> TracClient:
    """A fresh client logged in (lazily) as the bot's account."""
    return tracd.client()


@pytest.fixture
def tracd_down(tracd: TracServer) -> Iterator[TracServer]:
    """tracd stopped for this test ("Trac went away mid-run"), started again afterwards."""
    with tracd.stopped():
        yield tracd
