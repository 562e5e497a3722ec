"""Every setting STAT bot reads, in one place.

Settings come from the process environment, then from an optional `environment`
(or `.env`) file in the working directory. Nothing else in the service reads
`os.environ`: other modules take a `Settings` object, so tests can build one
with overrides and every variable is documented in `environment-sample`.
"""

from __future__ import annotations

import contextlib
import os
import sys
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qsl, unquote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dotenv import dotenv_values
from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_FILES = ("environment", ".env")

# Variables the service itself needs that a job has no business seeing. Jobs
# inherit the rest of the environment (ebmbot's behaviour), minus these.
SERVICE_SECRETS = frozenset(
    {
        "SLACK_BOT_TOKEN",
        "SLACK_APP_TOKEN",
        "SLACK_SIGNING_SECRET",
        "GITHUB_WEBHOOK_SECRET",
        "TRAC_WEBHOOK_SECRET",
        "WEB_SECRET_KEY",
        "WEB_USERS",
        "STAT_RELAY_TOKEN",
        "ALERTMANAGER_TOKEN",
        "ALERTMANAGER_BASIC_AUTH",
        "PAGERDUTY_WEBHOOK_SECRET",
    }
)

# A proxy set for reaching the outside world also catches connections to a local
# Slack (the emulator), and breaks its websocket; these are dropped for loopback.
PROXY_VARIABLES = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
)


# DATABASE_URL's accepted forms; stat_bot.queue.open_queue picks the backend by scheme.
DATABASE_URL_FORMS = ("sqlite:///", "postgresql://", "postgres://")


class SettingsError(Exception):
    """A setting is missing or malformed; the message names it and what is expected."""


SECRET_URL_PARAMETERS = ("password", "sslpassword")


def url_secrets(url: str) -> list[str]:
    """Every secret a database URL carries (its password, as typed and decoded, and
    libpq's password parameters), longest first, for scrubbing from any text."""
    found: list[str] = []
    with contextlib.suppress(ValueError):
        parts = urlsplit(url)
        with contextlib.suppress(ValueError):
            if parts.password:
                found += [parts.password, unquote(parts.password)]
        for name, value in parse_qsl(parts.query, keep_blank_values=True):
            if name.lower() in SECRET_URL_PARAMETERS and value:
                found.append(value)
    if "@" in url and "://" in url:  # what a URL that does not parse may hold
        userinfo = url.split("://", 1)[1].rsplit("@", 1)[0]
        if ":" in userinfo:
            found.append(userinfo.split(":", 1)[1])
    return sorted({s for s in found if s}, key=len, reverse=True)


def scrubbed(text: str, url: str) -> str:
    """`text` with every secret of `url` replaced by ***."""
    for secret in url_secrets(url):
        text = text.replace(secret, "***")
    return text


def shown_url(url: str) -> str:
    """A database URL as messages and logs may show it: its secrets replaced by ***."""
    return scrubbed(url, url)


class Settings(BaseSettings):
    """STAT bot's configuration. Field names are the variable names, lower-cased."""

    model_config = SettingsConfigDict(
        env_file=ENV_FILES,
        env_file_encoding="utf-8",
        case_sensitive=False,
        extra="ignore",
        validate_default=True,
        env_ignore_empty=True,
    )

    state_dir: Path = Field(Path("var"), description="Folder for the database, logs and scratch")
    database_url: str = Field(
        "",
        description="sqlite:///PATH (default: sqlite:///STATE_DIR/stat-bot.sqlite3) or "
        "postgresql://USER[:PASSWORD]@HOST[:PORT]/DB for a queue shared by several hosts",
    )
    database_pool_size: int = Field(
        10, ge=2, le=200, description="PostgreSQL: connections per process at most (2 or more)"
    )
    database_connect_timeout: float = Field(
        10.0, gt=0, le=600, description="PostgreSQL: seconds a call waits for a connection"
    )
    logs_dir: Path | None = Field(None, description="Per-job stdout/stderr folders")
    log_spares: int = Field(
        64, ge=0, le=100_000, description="Empty job log folders made ahead while idle (0: none)"
    )
    writeable_dir: Path | None = Field(None, description="Where jobs may write files")
    workspace_dir: Path = Field(Path("workspace"), description="Namespace script folders")
    job_configs: Path = Field(Path("job_configs.py"), description="The job configuration file")

    sqlite_synchronous: Literal["NORMAL", "FULL"] = "NORMAL"
    dispatcher_concurrency: int = Field(8, ge=1, le=1024)
    dispatcher_poll_interval: float = Field(0.5, gt=0, le=60)
    heartbeat_interval: float = Field(5.0, gt=0, le=3600)
    lost_after: float = Field(30.0, gt=0)
    job_timeout: float = Field(3600.0, ge=0)
    kill_grace: float = Field(5.0, ge=0, le=600)
    shutdown_grace: float = Field(30.0, ge=0)
    stop_write_timeout: float = Field(
        10.0, ge=0, description="At shutdown, give up retrying a job's unwritten end after this"
    )
    history_days: int = Field(90, ge=1)
    timezone: str = Field("UTC")

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["auto", "console", "json"] = "auto"

    # Slack. Without both tokens STAT bot runs in local mode (its own Slack emulator).
    slack_bot_token: SecretStr | None = Field(None, description="xoxb-... bot token")
    slack_app_token: SecretStr | None = Field(None, description="xapp-... app-level token")
    slack_api_url: str = Field("https://slack.com/api/", description="Web API base URL")
    slack_app_username: str = "stat-bot"
    slack_logs_channel: str | None = Field(None, description="Job start notices go here")
    slack_tech_support_channel: str | None = Field(None, description="Failures reposted here")
    slack_ack_reaction: str = Field("crossed_fingers", pattern=r"^[a-z0-9_+\-']+$")
    progress_after: float = Field(10.0, ge=0, description="0: no progress messages")
    progress_interval: float = Field(5.0, ge=0.2)
    slack_delivery_expiry: float = Field(
        86400.0, gt=0, description="Seconds a message is retried before it is given up"
    )
    slack_delivery_degraded_after: float = Field(
        300.0, gt=0, description="/readyz is not ready while a message waits longer than this"
    )
    slack_retry_max: float = Field(
        30.0, ge=0.1, le=3600, description="Longest wait between tries while Slack is down"
    )
    stat_relay_wait: float = Field(
        3.0, gt=0, le=60, description="Seconds /slack-proxy tries before answering 502"
    )
    slack_join_new_channels: bool = False
    slack_user_cache_seconds: float = Field(3600.0, ge=0)
    local_slack_port: int = Field(0, ge=0, le=65535, description="Local mode's emulator; 0: any")
    local_trac_port: int = Field(
        0, ge=0, le=65535, description="Local mode's own Trac (when TRAC_URL is empty); 0: any"
    )
    slack_connect_timeout: float = Field(300.0, ge=0, description="Give up starting after this")

    # Web server (stat-bot web): webhooks, the STAT relay, health, metrics, the dashboard.
    web_host: str = Field("127.0.0.1", description="Address gunicorn binds to")
    web_port: int = Field(8080, ge=0, le=65535, description="0: any free port")
    web_workers: int = Field(2, ge=1, le=64, description="gunicorn worker processes")
    web_threads: int = Field(4, ge=1, le=256, description="threads per worker")
    web_secret_key: SecretStr | None = Field(
        None, description="Signs session cookies; empty: generated once into STATE_DIR"
    )
    web_users: SecretStr | None = Field(
        None, description="NAME:HASH entries, comma- or space-separated (stat-bot web-user hash)"
    )
    web_users_file: Path | None = Field(None, description="NAME:HASH lines (stat-bot web-user add)")
    web_trusted_user_header: str | None = Field(
        None,
        description="Header a reverse proxy sets to the authenticated user, e.g. X-Remote-User",
    )
    web_proxy_count: int = Field(
        0, ge=0, le=8, description="Reverse proxies in front (X-Forwarded-*)"
    )
    web_secure_cookies: bool | None = Field(None, description="Default: on behind a proxy")
    web_max_body: int = Field(1_048_576, ge=1024, description="Largest request body, bytes")
    web_cors_origins: str = Field("", description="Origins allowed to call the STAT relay")
    web_login_limit_user: str = Field(
        "5 per minute; 20 per hour", description="Failed logins allowed per user name"
    )
    web_login_limit_address: str = Field(
        "20 per minute; 100 per hour", description="Failed logins allowed per client address"
    )
    web_ratelimit_storage: str = Field(
        "queue",
        description="Where login throttling counts: `queue` (the queue database, shared by "
        "every worker) or a `limits` storage URI such as redis://host:6379",
    )
    github_webhook_secret: SecretStr | None = None
    trac_webhook_secret: SecretStr | None = Field(
        None, description="Secret the Trac plugin signs /trac events with (trac.ini [stat_bot])"
    )
    stat_relay_token: SecretStr | None = Field(
        None, description="Bearer token for /slack-proxy and /set-interval from other sites"
    )
    stat_channel: str | None = Field(None, description="Where /slack-proxy posts tickets")
    active_tickets_schedule: str = Field(
        "trac.active-tickets", description="The schedule key /set-interval changes"
    )

    # Trac, for the `trac` namespace's jobs: they read these variables themselves
    # (stat_bot.integrations.trac.TracClient.from_environment); declared here so they
    # are documented and checked at start. TRAC_PASSWORD is deliberately NOT in
    # SERVICE_SECRETS: it is the trac jobs' own credential, and jobs never see those.
    trac_url: str | None = Field(None, description="Trac environment URL: http://host:8000/stat")
    trac_user: str | None = Field(None, description="Trac account STAT bot's jobs log in as")
    trac_password: SecretStr | None = Field(None, description="That account's password")
    trac_password_file: Path | None = Field(None, description="File holding the password")
    trac_timeout: float = Field(10.0, gt=0, le=600, description="Seconds per Trac request")

    # Hardware (the `hw` namespace). Its jobs read these variables themselves, as the trac
    # jobs do; declared here so they are documented and checked at start. REDFISH_PASSWORD
    # is the hw jobs' own credential, so it is not in SERVICE_SECRETS either.
    hw_inventory: Path | None = Field(
        None, description="CSV or YAML file: xname,bmc,hostname,nid,system (one row a node)"
    )
    hw_fanout: int = Field(64, ge=1, le=1024, description="BMCs or hosts asked at once")
    hw_sweep_report_unchanged: bool = Field(
        False, description="A sweep that changed nothing still posts its report"
    )
    hw_confirm_expiry: float = Field(
        600.0, gt=0, le=86400, description="Seconds a Confirm button for an action stays valid"
    )
    redfish_username: str | None = Field(None, description="BMC account for Redfish")
    redfish_password: SecretStr | None = Field(None, description="That account's password")
    redfish_password_file: Path | None = Field(None, description="File holding the password")
    redfish_verify_tls: str = Field(
        "true", description="Check BMC certificates: true, false, or a CA bundle's path"
    )
    redfish_timeout: float = Field(10.0, gt=0, le=300, description="Seconds per BMC request")
    ssh_user: str | None = Field(None, description="User for SSH node checks; empty: current")
    ssh_key_file: Path | None = Field(None, description="Private key for SSH node checks")
    ssh_port: int = Field(22, ge=1, le=65535, description="sshd port on the nodes")
    ssh_known_hosts: Literal["strict", "accept-new", "off"] = Field(
        "strict", description="Host keys: strict (known only), accept-new, off (not checked)"
    )
    ssh_known_hosts_file: Path | None = Field(
        None, description="known_hosts file; empty: ~/.ssh/known_hosts"
    )
    ssh_timeout: float = Field(10.0, gt=0, le=300, description="Seconds to connect and run a check")
    ssh_config_file: Path | None = Field(
        None, description="OpenSSH client config mapping node names to HostName, Port, User"
    )
    slurm_scontrol: str = Field(
        "scontrol",
        description="scontrol to drain and resume nodes (needs SLURM_CONF if not default)",
    )

    # On-call (stat_bot/oncall/): alerts in.
    alertmanager_token: SecretStr | None = Field(
        None, description="Bearer token Alertmanager sends to /alerts/alertmanager"
    )
    alertmanager_basic_auth: SecretStr | None = Field(
        None, description="user:password Alertmanager sends to /alerts/alertmanager (basic auth)"
    )
    pagerduty_webhook_secret: SecretStr | None = Field(
        None, description="The signing secret of the PagerDuty v3 webhook subscription"
    )
    oncall_channel: str | None = Field(
        None, description="Channel where alerts are posted as they fire and resolve"
    )
    oncall_alert_channels: str = Field(
        "",
        description="Channels (ids or names, comma separated) whose paging-tool messages "
        "(PagerDuty's or Alertmanager's Slack app) are read as alerts; empty: none",
    )
    oncall_alert_bots: str = Field(
        "",
        description="Only these apps post alerts there (comma separated bot ids B..., app ids "
        "A... or bot user names); empty: any app's bot but STAT bot's own",
    )

    # On-call runbooks (stat_bot/oncall/runbook_*.py): sources, index and matching.
    runbook_sites: str = Field(
        "", description="Comma-separated start URLs of documentation sites to index"
    )
    runbook_page_limit: int = Field(
        200, ge=1, le=100_000, description="Pages read per site and re-index, at most"
    )
    runbook_max_page_bytes: int = Field(
        2_000_000, ge=1024, description="A larger documentation page is skipped (reported)"
    )
    runbook_fetch_timeout: float = Field(10.0, gt=0, le=600, description="Seconds per page")
    runbook_trac_prefix: str = Field(
        "Runbooks/", description="Trac wiki pages under this name are runbooks; empty: none"
    )
    runbook_directory: Path = Field(
        Path("runbooks"), description="Folder of Markdown runbooks (# headings: sections)"
    )
    runbook_directory_url: str | None = Field(
        None, description="Browsable URL of that folder (links in Slack), e.g. on GitHub"
    )
    runbook_match_threshold: float = Field(
        0.5, ge=0, le=1, description="Score (0-1) a section needs to be posted for an alert"
    )
    # On-call: the weekly handoff (stat_bot/oncall/handoff.py), by mail and to a channel.
    handoff_channel: str | None = Field(
        None, description="Channel the weekly handoff is posted to (default ONCALL_CHANNEL)"
    )
    handoff_mail_to: str = Field("", description="Comma list of addresses the handoff is mailed to")
    smtp_host: str | None = Field(
        None, description="SMTP server for the handoff mail (unset: no mail)"
    )
    smtp_port: int = Field(587, ge=1, le=65535)
    smtp_starttls: bool = Field(True, description="Require STARTTLS (refuse to send without it)")
    smtp_tls: bool = Field(False, description="Implicit TLS from the first byte (SMTPS, port 465)")
    smtp_user: str | None = Field(None, description="SMTP login (unset: no AUTH)")
    # A SecretStr (never shown, redacted in logs) but, like TRAC_PASSWORD, not in
    # SERVICE_SECRETS: the handoff is a job (`stat-bot task oncall-handoff`) that sends the mail.
    smtp_password: SecretStr | None = Field(None, description="That login's password")
    smtp_from: str | None = Field(None, description="From address of the handoff mail")
    smtp_ca_file: Path | None = Field(
        None, description="CA bundle (PEM) to verify the SMTP server by (a private CA)"
    )
    smtp_timeout: float = Field(30.0, gt=0, description="Seconds for each SMTP step")

    # Incidents (stat_bot/incidents/): a channel per incident, roles, a digest, a timeline.
    incidents_digest_channel: str | None = Field(
        None, description="Channel NAME holding one up-to-date message per incident"
    )
    incident_video_link: str | None = Field(
        None, description="Standing video-call link put in every incident channel's topic"
    )
    incident_auto_invite_group: str | None = Field(
        None, description="User group handle (without @) invited to every incident channel"
    )
    incident_open_reaction: str | None = Field(
        None, description="Emoji name whose reaction on any message opens an incident"
    )
    incident_timeline_reaction: str = Field(
        "pushpin",
        description="Emoji name that marks a message in an incident channel for its timeline",
    )
    incident_allowed_users: str = Field(
        "",
        description="Who may change roles and status: Slack user ids and @group handles, "
        "comma separated; empty: anyone in the channel",
    )
    incident_archive_after: float = Field(
        7 * 86400.0,
        ge=0,
        description="Seconds after resolving that the channel is archived; 0: never",
    )
    incident_status_endpoints: str = Field(
        "",
        description="name=URL pairs, comma separated: HTTP status endpoints shown in the "
        "snapshot posted when an incident opens",
    )
    incident_status_timeout: float = Field(
        3.0, gt=0, le=60, description="Seconds each status endpoint may take"
    )
    incident_wiki_prefix: str = Field(
        "Incidents", description="Trac wiki page under which postmortems are written"
    )
    templates_directory: Path | None = Field(
        None,
        description="Folder of incident message templates (JSON Block Kit) and incident.json "
        "(roles, statuses); empty: the shipped ones",
    )
    status_page_enabled: bool = Field(True, description="Serve the public /status page and feed")
    status_page_title: str = Field("System status", description="The status page's title")
    status_page_details: bool = Field(
        False,
        description="Show incidents' descriptions and node names on the public status page "
        "(otherwise only status and affected cabinets/chassis)",
    )
    status_page_resolved_days: float = Field(
        7.0, ge=0, le=365, description="Days a resolved incident stays on the status page"
    )

    @field_validator("log_level", "sqlite_synchronous", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"expected an IANA time zone such as UTC or Europe/Paris, got {value!r}"
            ) from None
        return value

    @field_validator("slack_bot_token", "slack_app_token")
    @classmethod
    def _token_kind(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        prefix = "xoxb-" if info.field_name == "slack_bot_token" else "xapp-"
        if value is not None and not value.get_secret_value().startswith(prefix):
            raise ValueError(f"expected a token starting {prefix} (the value is not shown)")
        return value

    @field_validator("web_login_limit_user", "web_login_limit_address")
    @classmethod
    def _rate_limits(cls, value: str) -> str:
        from limits import parse_many

        try:
            parse_many(value)
        except ValueError:
            raise ValueError(
                f"{value!r} is not a rate limit: write e.g. '5 per minute; 20 per hour'"
            ) from None
        return value

    @field_validator("slack_api_url")
    @classmethod
    def _api_url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError(
                f"expected an http(s) URL such as https://slack.com/api/, got {value!r}"
            )
        return value if value.endswith("/") else value + "/"

    @field_validator("redfish_verify_tls")
    @classmethod
    def _verify_tls(cls, value: str) -> str:
        if value.strip().lower() in ("true", "false", "1", "0", "yes", "no", "on", "off"):
            return value.strip().lower()
        if not Path(value).is_file():
            raise ValueError(
                f"expected true, false or the path of a CA bundle file, got {value!r} "
                "(no such file)"
            )
        return value

    @field_validator("trac_url")
    @classmethod
    def _trac_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("https://", "http://")):
            raise ValueError(
                f"expected the Trac environment's http(s) URL such as "
                f"http://trac.example.org:8000/stat, got {value!r}"
            )
        return value.rstrip("/") if value else value

    @field_validator("runbook_sites")
    @classmethod
    def _runbook_sites(cls, value: str) -> str:
        for url in (u.strip() for u in value.split(",")):
            if url and not url.startswith(("https://", "http://")):
                raise ValueError(
                    f"expected comma-separated http(s) start URLs such as "
                    f"https://docs.example.org/runbooks/, got {url!r}"
                )
        return value

    @property
    def runbook_site_urls(self) -> list[str]:
        """RUNBOOK_SITES as a list, empty entries dropped."""
        return [u.strip() for u in self.runbook_sites.split(",") if u.strip()]

    @field_validator("database_url")
    @classmethod
    def _supported_database(cls, value: str) -> str:
        """The URL's form; which backends are available is the queue's to say (open_queue)."""
        if value and not value.startswith(DATABASE_URL_FORMS):
            raise ValueError(
                f"expected sqlite:///PATH (an absolute or relative file path) or "
                f"postgresql://USER@HOST/DB, got {shown_url(value)!r}"
            )
        return value

    @model_validator(mode="after")
    def _derive_paths(self) -> Settings:
        self.state_dir = self.state_dir.expanduser().absolute()
        if not self.database_url:
            self.database_url = f"sqlite:///{self.state_dir / 'stat-bot.sqlite3'}"
        self.logs_dir = (self.logs_dir or self.state_dir / "logs").expanduser().absolute()
        self.writeable_dir = (
            (self.writeable_dir or self.state_dir / "writeable").expanduser().absolute()
        )
        self.workspace_dir = self.workspace_dir.expanduser().absolute()
        self.web_users_file = (
            (self.web_users_file or self.state_dir / "web-users").expanduser().absolute()
        )
        self.job_configs = self.job_configs.expanduser().absolute()
        self.runbook_directory = self.runbook_directory.expanduser().absolute()
        if (self.slack_bot_token is None) != (self.slack_app_token is None):
            missing = "SLACK_APP_TOKEN" if self.slack_app_token is None else "SLACK_BOT_TOKEN"
            raise ValueError(
                f"{missing} is not set: set both SLACK_BOT_TOKEN and SLACK_APP_TOKEN "
                "to connect to Slack, or neither for local mode"
            )
        return self

    @property
    def slack_configured(self) -> bool:
        """Whether to connect to a real Slack (both tokens set) rather than run local mode."""
        return self.slack_bot_token is not None and self.slack_app_token is not None

    @property
    def alert_channels(self) -> list[str]:
        """ONCALL_ALERT_CHANNELS as a list: channel ids, or names without their #."""
        return [
            c.strip().removeprefix("#") for c in self.oncall_alert_channels.split(",") if c.strip()
        ]

    @property
    def alert_bots(self) -> frozenset[str]:
        """ONCALL_ALERT_BOTS as a set of bot ids, app ids or names (names lower-cased)."""
        return frozenset(
            b.strip().removeprefix("@").lower()
            for b in self.oncall_alert_bots.split(",")
            if b.strip()
        )

    @property
    def cors_origins(self) -> list[str]:
        return [o for o in self.web_cors_origins.replace(",", " ").split() if o]

    @property
    def secure_cookies(self) -> bool:
        """Secure cookies when asked, else whenever a (TLS-terminating) proxy is in front."""
        if self.web_secure_cookies is not None:
            return self.web_secure_cookies
        return self.web_proxy_count > 0

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def database_shown(self) -> str:
        """DATABASE_URL as messages and logs may show it: any password replaced by ***."""
        return shown_url(self.database_url)

    @property
    def sqlite_path(self) -> Path:
        """The database file of a sqlite:/// DATABASE_URL."""
        return Path(self.database_url.removeprefix("sqlite:///")).expanduser().absolute()

    def job_environment(self) -> dict[str, str]:
        """The environment jobs start from: ours plus the env file, less the service's secrets.

        Workspace scripts know nothing of the service, so anything they need
        (paths, site settings) reaches them as variables, as in ebmbot.
        """
        env: dict[str, str] = {}
        for name in ENV_FILES:
            if Path(name).is_file():
                env.update({k: v for k, v in dotenv_values(name).items() if v is not None})
        env.update(os.environ)
        for secret in SERVICE_SECRETS:
            env.pop(secret, None)
        env["PYTHONPATH"] = str(self.workspace_dir)
        if sys.prefix != sys.base_prefix:
            # Run by a virtualenv's Python: jobs see it as activated, so `python3` in a
            # template is this Python, with stat_bot.integrations and its dependencies.
            venv_bin = str(Path(sys.executable).parent)
            env["PATH"] = os.pathsep.join([venv_bin, env.get("PATH", os.defpath)])
        env["WRITEABLE_DIR"] = str(self.writeable_dir)
        env["STAT_BOT_TIMEZONE"] = self.timezone
        # Jobs run in workspace/<namespace>/, so paths relative to the service's folder would
        # point elsewhere there: a built-in task (`stat-bot task`) must open this database
        # and these configs, and a script the same inventory.
        env.update(
            STATE_DIR=str(self.state_dir),
            DATABASE_URL=self.database_url,
            JOB_CONFIGS=str(self.job_configs),
            WORKSPACE_DIR=str(self.workspace_dir),
            LOGS_DIR=str(self.logs_dir),
        )
        if self.hw_inventory is not None:
            env["HW_INVENTORY"] = str(self.hw_inventory.expanduser().absolute())
        env["RUNBOOK_DIRECTORY"] = str(self.runbook_directory)  # the runbook-index task's
        return env


def describe_error(error: ValidationError) -> str:
    """One line per bad variable: its name, what was wrong, what it got (never a secret's value)."""
    lines = []
    for item in error.errors():
        message = item["msg"].removeprefix("Value error, ")
        if not item["loc"]:  # a rule about several variables: the message names them
            lines.append(f"{message}; see environment-sample")
            continue
        name = str(item["loc"][0]).upper()
        got = item.get("input")
        shown = (
            isinstance(got, str | int | float)
            and "got" not in message
            and name not in SERVICE_SECRETS
        )
        lines.append(
            f"setting {name}: {message}{f' (got {got!r})' if shown else ''}; see environment-sample"
        )
    return "\n".join(lines)


def load_settings(**overrides: object) -> Settings:
    """Build settings, turning pydantic's errors into a SettingsError with readable lines."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        raise SettingsError(describe_error(error)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return load_settings()


def settings_or_exit() -> Settings:
    """For entry points: settings, or one line per problem on stderr and exit status 2."""
    try:
        return get_settings()
    except SettingsError as error:
        print(f"stat-bot: {error}", file=sys.stderr)
        raise SystemExit(2) from None
