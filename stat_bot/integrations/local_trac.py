"""Local mode's own Trac: a throwaway Trac 1.6 environment with sample tickets, served on loopback.

`stat-bot run` without Slack tokens and without TRAC_URL starts one (as HPC-STAT's
standalone script starts Trac beside its web app), so `@stat-bot trac active`
answers and ticket changes show in the chat, with nothing to install or configure.
It is what a STAT site's Trac has: ISO 8601 dates, the custom fields `xname` and
`hostname`, an account for STAT bot with exactly the rights DEPLOY.md asks a site
to grant, and the notification plugin from contrib/trac/ pointed at the local web
server's `/trac`.

The environment is built afresh at every start (about 0.3 s, in the process that
then serves it: no `trac-admin` runs), so a session starts from the same sample
tickets every time. The htpasswd entry is made here with Trac's own `md5crypt`
(Apache's `$apr1$` form, which `tracd --basic-auth` reads), so no Apache tools or
openssl are needed. The password arrives as an argument, never from a file it
writes elsewhere, and is never printed or logged.

Serving is `tracd` itself (trac.web.standalone), run in this process: the caller
(`stat-bot local-trac`) arms the lifeline first, so the server stops when `stat-bot
run` is gone, even after a SIGKILL.
"""

from __future__ import annotations

import secrets
import shutil
import string
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

ENV_NAME = "stat"
REALM = "STAT"
# Tickets for the trac commands; wiki pages for incident postmortems.
BOT_PERMISSIONS = (
    "TICKET_VIEW",
    "TICKET_CREATE",
    "TICKET_MODIFY",
    "WIKI_VIEW",
    "WIKI_CREATE",
    "WIKI_MODIFY",
)
# Custom fields a STAT site's Trac carries: the component name and the host it is.
CUSTOM_FIELDS = {"xname": "XName", "hostname": "Hostname"}
PLUGINS = Path(__file__).resolve().parents[2] / "contrib" / "trac"
SALT_ALPHABET = string.ascii_letters + string.digits + "./"


# Runbooks in the wiki, under the default RUNBOOK_TRAC_PREFIX: local mode indexes them
# at start, so the demo alert `NodeDown` gets these steps in its thread.
SAMPLE_WIKI = {
    "Runbooks/NodeDown": """= NodeDown: a node stopped answering =
A compute node stopped answering (ping, slurmd): alert `NodeDown`, with the node's
`xname` label. Work from the BMC inwards.

 1. Check it from its BMC: `@stat-bot hw check <xname>` (the alert's xname label).
 2. Drain it before touching it: `@stat-bot hw drain <xname> "NodeDown: investigating"`.
 3. Read the SEL for thermal or power events: `@stat-bot hw sel <xname>`.
 4. Hung at the console: power cycle it, `@stat-bot hw power <xname> cycle` (asks to confirm).
 5. Back and `hw check` passes: `@stat-bot hw resume <xname>`; note it in the node's ticket.

== Escalation ==
Open a ticket (`@stat-bot trac create`) with the xname and the SEL lines; call the vendor
for a node that fails twice in a week.
""",
    "Runbooks/SlurmNodeDrained": """= Slurm node drained =
 1. Read why: `@stat-bot hw slurm <xname>`; a STAT#ticket reason belongs to that ticket.
 2. `Kill task failed`: look for processes in D state; often a file system hang.
 3. Fixed and `@stat-bot hw check <xname>` passes: `@stat-bot hw resume <xname>`.
""",
}


@dataclass(frozen=True, slots=True)
class SampleTicket:
    summary: str
    type: str
    priority: str
    xname: str
    hostname: str
    owner: str = ""
    status: str = "new"
    resolution: str = ""
    description: str = ""


SAMPLE_TICKETS = (
    SampleTicket(
        "Node down: no response to ping",
        "defect",
        "critical",
        "x1000c0s0b0n0",
        "nid000001",
        description="Found by the morning sweep. The BMC answers; the node does not.",
    ),
    SampleTicket(
        "Fan 3 failed on chassis",
        "defect",
        "major",
        "x1000c0",
        "",
        owner="ada",
        status="assigned",
        description="Chassis controller reports fan 3 at 0 RPM.",
    ),
    SampleTicket(
        "Replace DIMM 4 (correctable errors)",
        "task",
        "minor",
        "x1000c0s1b0n1",
        "nid000004",
        description="EDAC counts climbing since Monday; replace at the next maintenance.",
    ),
    SampleTicket(
        "Cooling loop pressure low",
        "defect",
        "major",
        "x1001",
        "",
        owner="grace",
        status="closed",
        resolution="fixed",
        description="Topped up; back to nominal.",
    ),
)


def htpasswd_line(name: str, password: str) -> str:
    """`name:$apr1$...`, as Apache's `htpasswd -m` or `openssl passwd -apr1` make it."""
    from trac.util import md5crypt

    salt = "".join(secrets.choice(SALT_ALPHABET) for _ in range(8))
    return f"{name}:{md5crypt(password, salt, '$apr1$')}"


def _quiet_trac() -> None:
    # Trac 1.6 imports pkg_resources, which warns on every start.
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated")


@dataclass(frozen=True, slots=True)
class LocalTrac:
    """Where the local Trac lives and how it is reached."""

    root: Path  # a folder of its own under STATE_DIR, emptied at every build
    host: str
    port: int
    user: str
    password: str
    notify_url: str | None = None  # STAT bot's /trac, for the plugin
    notify_secret: str | None = None  # TRAC_WEBHOOK_SECRET

    @property
    def env_dir(self) -> Path:
        return self.root / ENV_NAME

    @property
    def htpasswd(self) -> Path:
        return self.root / "htpasswd"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/{ENV_NAME}"

    def build(self) -> None:
        """A fresh environment: settings, the bot's account, sample tickets, then the plugin.

        The plugin is copied last, so making the sample tickets sends no notifications.
        """
        _quiet_trac()
        from trac.env import Environment
        from trac.perm import PermissionSystem

        if self.root.exists():
            shutil.rmtree(self.root)
        self.root.mkdir(parents=True)
        self.root.chmod(0o700)  # the htpasswd entry and the plugin's secret are in here
        options = [
            ("project", "name", "STAT (local)"),
            ("project", "descr", "STAT bot's local-mode Trac: sample tickets, thrown away"),
            ("trac", "default_date_format", "iso8601"),
            ("trac", "base_url", self.url),
            ("logging", "log_type", "file"),
            ("logging", "log_level", "WARNING"),
        ]
        for name, label in CUSTOM_FIELDS.items():
            options += [("ticket-custom", name, "text"), ("ticket-custom", f"{name}.label", label)]
        if self.notify_url:
            options += [("stat_bot", "url", self.notify_url), ("stat_bot", "timeout", "2")]
        if self.notify_secret:
            options.append(("stat_bot", "secret", self.notify_secret))
        env = Environment(str(self.env_dir), create=True, options=options)
        try:
            permissions = PermissionSystem(env)
            for permission in BOT_PERMISSIONS:
                permissions.grant_permission(self.user, permission)
            self._add_samples(env)
        finally:
            env.shutdown()
        self.htpasswd.write_text(htpasswd_line(self.user, self.password) + "\n")
        self.htpasswd.chmod(0o600)
        for plugin in sorted(PLUGINS.glob("*.py")) if PLUGINS.is_dir() else []:
            shutil.copy2(plugin, self.env_dir / "plugins" / plugin.name)

    @staticmethod
    def _add_samples(env: object) -> None:
        from trac.ticket.model import Ticket
        from trac.wiki.model import WikiPage

        for name, text in SAMPLE_WIKI.items():
            page = WikiPage(env, name)
            page.text = text
            page.save("stat-bot-sample", "A sample runbook (local mode)")

        for sample in SAMPLE_TICKETS:
            ticket = Ticket(env)
            for name in ("summary", "type", "priority", "xname", "hostname", "owner"):
                ticket[name] = getattr(sample, name)
            ticket["description"] = sample.description
            ticket["reporter"] = "stat-bot-sample"
            ticket["status"] = sample.status
            ticket["resolution"] = sample.resolution
            ticket.insert()

    def serve(self) -> None:
        """Run tracd in this process until it is signalled (SIGTERM's default ends it)."""
        _quiet_trac()
        from trac.web import standalone

        sys.argv = [
            "tracd",
            "--hostname",
            self.host,
            "--port",
            str(self.port),
            f"--basic-auth={ENV_NAME},{self.htpasswd},{REALM}",
            str(self.env_dir),
        ]
        standalone.main()
