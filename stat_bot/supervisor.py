"""`stat-bot run`: every part of the service as its own process, started and stopped together.

The parts are the same commands production runs under systemd (DEPLOY.md), so
`run` on a laptop exercises the real process boundaries: the dispatcher, the
bot, the web server (dashboard, webhooks) and, with no Slack tokens, the local
Slack emulator they talk to instead of Slack. If one part dies the others are stopped and `run` exits non-zero
naming it, rather than limping on half-working.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import structlog

from stat_bot.lifeline import PARENT_VARIABLE
from stat_bot.settings import PROXY_VARIABLES, Settings

log = structlog.get_logger(__name__)

URL = re.compile(r"https?://127\.0\.0\.1:\d+")
LOCAL_BOT_TOKEN = "xoxb-local-emulator"
LOCAL_APP_TOKEN = "xapp-local-emulator"


class SupervisorError(Exception):
    """A part could not be started; the message names it and why."""


@dataclass
class Part:
    name: str
    process: subprocess.Popen[bytes]
    expected_exit: bool = False


@dataclass
class Supervisor:
    """Starts parts, watches them, and stops them all on a signal or when one dies."""

    settings: Settings
    output: IO[bytes] | None = None  # where the parts' logs go; None: this terminal
    parts: list[Part] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)

    def start(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str],
        *,
        stdout: int | IO[bytes] | None = None,
        stderr: IO[bytes] | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start a part (its output to `output`, or to `stdout`/`stderr` if given)."""
        env = {**env, PARENT_VARIABLE: str(os.getpid())}
        try:
            process = subprocess.Popen(
                argv,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=self.output if stdout is None else stdout,
                stderr=self.output if stderr is None else stderr,
                start_new_session=True,  # a Ctrl-C reaches them through us, in order
            )
        except OSError as error:
            raise SupervisorError(f"could not start the {name}: {error}") from error
        self.parts.append(Part(name, process))
        return process

    def start_emulator(self, env: dict[str, str], port: int, *, alert_events: bool = False) -> str:
        """Start the local Slack emulator; its base URL once it is listening. `alert_events`:
        it sends channel messages too, as a workspace set up for ONCALL_ALERT_CHANNELS does."""
        argv = [sys.executable, "-m", "stat_bot.integrations.slack_emulator"]
        argv += ["--host", "127.0.0.1", "--port", str(port)]
        argv += ["--bot-token", LOCAL_BOT_TOKEN, "--app-token", LOCAL_APP_TOKEN]
        argv += ["--alert-events"] if alert_events else []
        process = self.start("local Slack emulator", argv, env, stdout=subprocess.PIPE)
        assert process.stdout is not None
        found: list[str] = []

        def read() -> None:
            assert process.stdout is not None
            for raw in process.stdout:
                line = raw.decode(errors="replace")
                if not found and (m := URL.search(line)):
                    found.append(m[0])
                    break
            # Keep draining so the emulator never blocks on a full pipe.
            for _ in process.stdout:
                pass

        threading.Thread(target=read, name="emulator-stdout", daemon=True).start()
        deadline = time.monotonic() + 20
        while not found:
            if process.poll() is not None:
                raise SupervisorError(
                    f"the local Slack emulator exited at start (status {process.returncode}); "
                    f"is port {port} free? Set LOCAL_SLACK_PORT=0 for any free port"
                )
            if time.monotonic() > deadline:
                raise SupervisorError("the local Slack emulator did not start within 20 s")
            time.sleep(0.02)
        return found[0]

    def start_local_redfish(self, env: dict[str, str], inventory: Path, password: str) -> str:
        """Start local mode's Redfish emulator (the 16-node demo chassis) writing its
        inventory to `inventory`; its control URL once it is ready."""
        argv = [sys.executable, "-m", "stat_bot.integrations.redfish_emulator", "--demo"]
        argv += ["--inventory-out", str(inventory), f"--username={LOCAL_REDFISH_USER}"]
        argv += [f"--password={password}"]  # one argument: a generated one may begin with "-"
        inventory.parent.mkdir(parents=True, exist_ok=True)
        inventory.unlink(missing_ok=True)
        process = self.start("local Redfish emulator", argv, env, stdout=subprocess.PIPE)
        assert process.stdout is not None
        lines: list[str] = []
        ready = threading.Event()

        def read() -> None:
            assert process.stdout is not None
            for raw in process.stdout:
                line = raw.decode(errors="replace").strip()
                if not ready.is_set():
                    lines.append(line)
                    if line == "ready":
                        ready.set()
            # Keep draining so the emulator never blocks on a full pipe.

        threading.Thread(target=read, name="redfish-stdout", daemon=True).start()
        deadline = time.monotonic() + 30
        while not ready.wait(0.02):
            if process.poll() is not None:
                raise SupervisorError(
                    f"the local Redfish emulator exited at start (status {process.returncode}): "
                    + " / ".join(lines[-3:])
                )
            if time.monotonic() > deadline:
                raise SupervisorError("the local Redfish emulator did not start within 30 s")
        control = next((x for x in lines if x.startswith("control: ")), "control: ")
        return control.removeprefix("control: ")

    def wait_listening(
        self,
        name: str,
        process: subprocess.Popen[bytes],
        host: str,
        port: int,
        timeout: float = 30,
        *,
        hint: str = "Set WEB_PORT=0 for any free port",
    ) -> None:
        """Return once `host:port` accepts connections; SupervisorError if the part ends first."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection((connect_host(host), port), timeout=1):
                    return
            except OSError:
                pass
            if process.poll() is not None:
                raise SupervisorError(
                    f"the {name} exited at start (status {process.returncode}); is port {port} "
                    f"free? {hint}"
                )
            if time.monotonic() > deadline:
                raise SupervisorError(
                    f"the {name} did not listen on port {port} within {timeout:g} s"
                )
            time.sleep(0.05)

    def wait(self) -> int:
        """Until a signal (0) or a part's unexpected end (1); then stop everything."""
        status = 0
        while not self.stopping.is_set():
            for part in self.parts:
                code = part.process.poll()
                if code is not None and not part.expected_exit:
                    log.error(f"the {part.name} stopped unexpectedly", exit_status=code)
                    print(
                        f"stat-bot: the {part.name} stopped (exit status {code}); stopping the rest",
                        file=sys.stderr,
                    )
                    status = 1
                    self.stopping.set()
                    break
            self.stopping.wait(0.2)
        self.stop()
        return status

    def stop(self) -> None:
        """SIGTERM every part (the dispatcher gives its jobs SHUTDOWN_GRACE), then SIGKILL."""
        self.stopping.set()
        for part in reversed(self.parts):
            part.expected_exit = True
            if part.process.poll() is None:
                part.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.settings.shutdown_grace + 10
        for part in reversed(self.parts):
            remaining = max(0.1, deadline - time.monotonic())
            try:
                part.process.wait(remaining)
            except subprocess.TimeoutExpired:
                log.warning(f"the {part.name} did not stop in time; killing it")
                part.process.kill()
                part.process.wait()

    def install_signal_handlers(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stopping.set())


def connect_host(host: str) -> str:
    """Where to reach a server bound to `host` from this machine (any-address: loopback)."""
    return "127.0.0.1" if host in ("", "0.0.0.0", "::") else host


def web_url(host: str, port: int) -> str:
    """The dashboard's address as a person on this machine would open it."""
    host = connect_host(host)
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def port_is_free(host: str, port: int) -> bool:
    """Whether a server could listen on `host:port` now.

    Probed as the servers bind (gunicorn, tracd and the emulator all set SO_REUSEADDR),
    so a port held only by TIME_WAIT connections of the previous run counts as free:
    a quick restart keeps its port, and URLs pointing at it (the Trac plugin's) stay valid.
    """
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def choose_web_port(settings: Settings, *, local: bool) -> tuple[int, str | None]:
    """The port `stat-bot web` gets from `run`, chosen here so `run` can say where it is.

    WEB_PORT=0 means any free port. In local mode a busy WEB_PORT (another STAT bot,
    another program) gives way to a free one with a note, rather than stopping the
    newcomer's first run; with a real workspace the configured port is kept, since a
    reverse proxy expects it there.
    """
    from stat_bot.web.server import free_port

    host, port = settings.web_host, settings.web_port
    if port == 0:
        return free_port(host), None
    if local and not port_is_free(host, port):
        chosen = free_port(host)
        return chosen, f"WEB_PORT {port} is in use, so the dashboard took {chosen}"
    return port, None


def choose_local_trac_port(settings: Settings) -> tuple[int, str | None]:
    """Local mode's Trac port: LOCAL_TRAC_PORT, or a free one (with a note if it was busy)."""
    from stat_bot.web.server import free_port

    port = settings.local_trac_port
    if port == 0:
        return free_port("127.0.0.1"), None
    if not port_is_free("127.0.0.1", port):
        chosen = free_port("127.0.0.1")
        return chosen, f"LOCAL_TRAC_PORT {port} is in use, so the local Trac took {chosen}"
    return port, None


def local_mode_environment(env: dict[str, str], url: str) -> dict[str, str]:
    """The parts' environment pointed at the local emulator, with its channels as defaults."""
    env = dict(env)
    env.update(
        SLACK_BOT_TOKEN=LOCAL_BOT_TOKEN,
        SLACK_APP_TOKEN=LOCAL_APP_TOKEN,
        SLACK_API_URL=f"{url}/api/",
    )
    env.setdefault("SLACK_LOGS_CHANNEL", "stat-bot-logs")
    env.setdefault("SLACK_TECH_SUPPORT_CHANNEL", "tech-support")
    env.setdefault("STAT_CHANNEL", "general")  # where the dashboard's STAT ticket form posts
    # Incidents as the README's tour shows them: a digest, the admins invited to each
    # incident channel, and a :rotating_light: reaction on any message opening one.
    env.setdefault("INCIDENTS_DIGEST_CHANNEL", "incidents")
    env.setdefault("INCIDENT_AUTO_INVITE_GROUP", "hpc-admins")
    env.setdefault("INCIDENT_OPEN_REACTION", "rotating_light")
    # On-call: alerts and their runbook steps go to #oncall (local mode makes the channel).
    env.setdefault("ONCALL_CHANNEL", "oncall")
    for name in PROXY_VARIABLES:
        env.pop(name, None)
    return env


LOCAL_TRAC_USER = "statbot"


def local_trac_environment(
    env: dict[str, str], settings: Settings, web_port: int, trac_port: int
) -> dict[str, str]:
    """The parts' environment pointed at local mode's own Trac (see integrations/local_trac.py).

    Trac's address and a new random password for STAT bot's account reach every part
    as TRAC_* settings (the trac jobs inherit them; the password is never printed), and
    the plugin's secret as TRAC_WEBHOOK_SECRET unless one is set already.
    """
    from stat_bot.integrations.local_trac import ENV_NAME

    env = dict(env)
    env.pop("TRAC_PASSWORD_FILE", None)
    env.update(
        TRAC_URL=f"http://127.0.0.1:{trac_port}/{ENV_NAME}",
        TRAC_USER=LOCAL_TRAC_USER,
        TRAC_PASSWORD=secrets.token_urlsafe(18),
        LOCAL_TRAC_PORT=str(trac_port),
        WEB_PORT=str(web_port),
    )
    if settings.trac_webhook_secret is None:
        env["TRAC_WEBHOOK_SECRET"] = secrets.token_urlsafe(24)
    return env


LOCAL_REDFISH_USER = "statbot"


def local_redfish_inventory(settings: Settings) -> Path:
    """Where local mode's Redfish emulator writes the inventory of its demo chassis."""
    return settings.state_dir / "local-hw-inventory.csv"


def local_redfish_file(settings: Settings) -> Path:
    """Where local mode leaves its Redfish emulator's control URL (for tests and curious
    people: `POST /nodes/<xname>` with {"variant": "critical_psu"} breaks a node)."""
    return settings.state_dir / "local-redfish.json"


def local_redfish_environment(
    env: dict[str, str], settings: Settings, password: str
) -> dict[str, str]:
    """The parts' environment pointed at local mode's Redfish emulator: HW_INVENTORY and
    REDFISH_* reach every part, as TRAC_* do for the local Trac (the hw jobs inherit them)."""
    env = dict(env)
    env.pop("REDFISH_PASSWORD_FILE", None)
    env.update(
        HW_INVENTORY=str(local_redfish_inventory(settings)),
        REDFISH_USERNAME=LOCAL_REDFISH_USER,
        REDFISH_PASSWORD=password,
        REDFISH_VERIFY_TLS="false",  # its BMCs speak plain http on loopback
    )
    return env


def local_trac_dir(settings: Settings) -> Path:
    """The local Trac's folder: rebuilt at every start of local mode."""
    return settings.state_dir / "local-trac"


def local_alert_token(
    settings: Settings, env: dict[str, str]
) -> tuple[dict[str, str], Path | None]:
    """Local mode takes Alertmanager's webhook out of the box: with neither
    ALERTMANAGER_TOKEN nor ALERTMANAGER_BASIC_AUTH set, a new random bearer token each
    start, handed to the web server and kept in STATE_DIR/local-alertmanager-token (mode
    600) for curl and the README's examples, never printed. None: the site's own is used."""
    if settings.alertmanager_token or settings.alertmanager_basic_auth:
        return env, None
    path = settings.state_dir / "local-alertmanager-token"
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(token + "\n")
    os.chmod(path, 0o600)  # a file left by an earlier start keeps its mode otherwise
    return {**env, "ALERTMANAGER_TOKEN": token}, path


def local_mail_dir(settings: Settings) -> Path:
    """Where local mode's mail sink keeps the mails it receives (the handoff), as .eml files."""
    return settings.state_dir / "mail"


def free_loopback_port() -> int:
    """A port free on 127.0.0.1 now (for local mode's mail sink)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def local_mail_environment(env: dict[str, str], port: int) -> dict[str, str]:
    """The parts' environment pointed at local mode's mail sink: plain SMTP on loopback,
    no login (the sink takes no other connections), HANDOFF_MAIL_TO kept if set."""
    env = {k: v for k, v in env.items() if k not in ("SMTP_USER", "SMTP_PASSWORD", "SMTP_CA_FILE")}
    env.update(
        SMTP_HOST="127.0.0.1",
        SMTP_PORT=str(port),
        SMTP_STARTTLS="false",
        SMTP_TLS="false",
        SMTP_FROM=env.get("SMTP_FROM") or "stat-bot@localhost",
        HANDOFF_MAIL_TO=env.get("HANDOFF_MAIL_TO") or "oncall@localhost",
    )
    return env
