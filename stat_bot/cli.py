"""`stat-bot`: run the service and drive the queue from a terminal, no Slack needed.

Every command prints a readable table or sentence by default and JSON with
`--json`. Mistakes in what was typed exit 2 with a sentence saying what to
change; "not found" and failed jobs exit 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import getpass
import json
import sys
import threading
import time
from datetime import datetime
from typing import Any, NoReturn

import click

from stat_bot.jobs.model import Job, JobStatus
from stat_bot.views import job_dict, job_table

EPILOG_EXAMPLES = "\b\nExamples:\n"


def _fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"stat-bot: {message}", err=True)
    raise SystemExit(code)


class OneLineErrors(click.Group):
    """Every failure a command did not handle itself ends as one `stat-bot: ...` line.

    A full, read-only, corrupt or missing database, a file that cannot be read: the
    person at the terminal gets what went wrong and where, never a traceback. An
    unexpected error (a bug) says so in one line too; LOG_LEVEL=DEBUG shows the traceback.
    """

    def invoke(self, ctx: click.Context) -> Any:
        from stat_bot.queue.base import QueueError

        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit):
            raise
        except KeyboardInterrupt:
            _fail("interrupted", 130)
        except QueueError as error:
            _fail(str(error))
        except OSError as error:
            _fail(str(error))
        except Exception as error:
            import sqlite3

            if isinstance(error, sqlite3.Error):
                from stat_bot.queue.sqlite import describe

                _fail(f"the queue database: {describe(error)}")
            context = ctx.obj if isinstance(ctx.obj, Context) else None
            if context is not None and context.debug:
                import traceback

                traceback.print_exc()
            _fail(
                f"unexpected error: {type(error).__name__}: {error} "
                "(set LOG_LEVEL=DEBUG to see where; please report it)"
            )


class Context:
    """Lazily built services, so `--help` and `check-config` need no database."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self._settings: Any = None
        self._configs: Any = None
        self._queue: Any = None
        # Only the commands that start the service (and `db migrate`) may create the
        # database; the others say it is missing instead of making an empty one.
        self.create_db = False

    @property
    def debug(self) -> bool:
        return self._settings is not None and self._settings.log_level == "DEBUG"

    @property
    def settings(self) -> Any:
        if self._settings is None:
            from stat_bot import log
            from stat_bot.settings import settings_or_exit

            self._settings = settings_or_exit()
            log.configure(self._settings.log_level, self._settings.log_format)
        return self._settings

    @property
    def configs(self) -> Any:
        if self._configs is None:
            from stat_bot.jobs.config import ConfigError, load_config

            try:
                self._configs = load_config(self.settings.job_configs)
            except ConfigError as error:
                first = f"{error.source}: {error.problems[0]}" if error.problems else str(error)
                more = len(error.problems) - 1
                also = f" (and {more} more problem(s))" if more > 0 else ""
                _fail(f"{first}{also}; `stat-bot check-config` lists every problem", 2)
        return self._configs

    def config_file(self) -> Any:
        """job_configs.py for a long-running part (dispatcher, bot): re-read when it changes."""
        from stat_bot.jobs.config import ConfigError
        from stat_bot.jobs.config_file import ConfigFile

        try:
            return ConfigFile(self.settings.job_configs)
        except ConfigError as error:
            _fail(f"{error}\nRun `stat-bot check-config` after fixing it.", 2)

    @property
    def queue(self) -> Any:
        if self._queue is None:
            from stat_bot.queue import QueueError, open_queue

            try:
                self._queue = open_queue(self.settings, create=self.create_db)
            except QueueError as error:
                _fail(str(error), 1)
        return self._queue

    def output(self, data: Any, text: str) -> None:
        click.echo(
            json.dumps(data, indent=2, default=_json_value, ensure_ascii=False)
            if self.as_json
            else text
        )


def _json_value(value: Any) -> Any:
    """What JSON cannot hold as is: a file's bytes as its text (base64 if not UTF-8), else str."""
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            import base64

            return {"base64": base64.b64encode(value).decode()}
    return str(value)


pass_ctx = click.make_pass_decorator(Context)


@click.group(
    cls=OneLineErrors,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=EPILOG_EXAMPLES
    + "  stat-bot run                       # the service (local mode without Slack tokens)\n"
    '  stat-bot exec "system hello Ada"   # try a command without the queue\n'
    '  stat-bot enqueue "system uptime"   # queue it for the dispatcher\n'
    "  stat-bot status\n"
    "  stat-bot logs 12 stderr --tail",
)
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.version_option(package_name="stat-bot")
@click.pass_context
def main(ctx: click.Context, as_json: bool) -> None:
    """STAT bot: a ChatOps job queue for HPC system triage.

    Settings come from the environment and an optional `environment` file;
    see environment-sample for every variable.
    """
    ctx.obj = Context(as_json)


# -- running the service ---------------------------------------------------------------


def _run_dispatcher(ctx: Context) -> None:
    from stat_bot.dispatcher.service import Dispatcher
    from stat_bot.lifeline import watch_parent
    from stat_bot.report.notifiers import ConsoleNotifier, Notifier

    notifier: Notifier
    if ctx.settings.slack_configured:
        from stat_bot.report.slack import SlackNotifier

        notifier = SlackNotifier(ctx.settings)
    else:
        notifier = ConsoleNotifier()
    ctx.create_db = True
    dispatcher = Dispatcher(ctx.settings, ctx.config_file(), ctx.queue, notifier)
    watch_parent()
    asyncio.run(dispatcher.run())


@main.command(
    epilog=EPILOG_EXAMPLES
    + "  stat-bot run                 # local mode unless SLACK_*_TOKEN are set\n"
    "  stat-bot run --no-console    # print the conversation instead of offering a prompt",
)
@click.option(
    "--console/--no-console",
    default=None,
    help="Offer the local-mode chat prompt here (default: when this is a terminal).",
)
@pass_ctx
def run(ctx: Context, console: bool | None) -> None:
    """Start the service: the dispatcher, the Slack bot and the web server, each a process.

    Without SLACK_BOT_TOKEN and SLACK_APP_TOKEN this is local mode: a local Slack
    emulator starts too, and you chat with the bot here (or from another terminal
    with `stat-bot console`, or the dashboard's chat console). The dashboard is at
    WEB_HOST:WEB_PORT (WEB_PORT=0: any free port). Stops on Ctrl-C or SIGTERM.
    """
    import os

    from stat_bot.local_slack import write_local_slack_file
    from stat_bot.supervisor import (
        Supervisor,
        SupervisorError,
        choose_local_trac_port,
        choose_web_port,
        free_loopback_port,
        local_alert_token,
        local_mail_dir,
        local_mail_environment,
        local_mode_environment,
        local_redfish_environment,
        local_redfish_file,
        local_redfish_inventory,
        local_trac_environment,
        web_url,
    )

    settings, configs = ctx.settings, ctx.configs
    ctx.create_db = True
    ctx.queue  # noqa: B018 - create and migrate the database before the parts start
    local = not settings.slack_configured
    interactive = local and (sys.stdin.isatty() if console is None else console)
    log_path = settings.logs_dir / "service.log"
    output = None
    if interactive:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        output = log_path.open("ab")
    supervisor = Supervisor(settings, output=output)
    supervisor.install_signal_handlers()
    env = dict(os.environ)
    me = [sys.executable, "-m", "stat_bot"]
    # The web server's port is chosen here and handed down, so this banner can say where it is.
    web_port, port_note = choose_web_port(settings, local=local)
    env["WEB_PORT"] = str(web_port)
    # Local mode brings its own Trac unless TRAC_URL names one (integrations/local_trac.py).
    trac_port, trac_note = (
        choose_local_trac_port(settings) if local and not settings.trac_url else (None, None)
    )
    trac_url = settings.trac_url
    try:
        url = None
        if local:
            url = supervisor.start_emulator(
                env, settings.local_slack_port, alert_events=bool(settings.alert_channels)
            )
            env = local_mode_environment(env, url)
            write_local_slack_file(settings, url)
            _local_oncall_channel(url, env["ONCALL_CHANNEL"])
        trac = None
        if trac_port is not None:
            env = local_trac_environment(env, settings, web_port, trac_port)
            trac_url = env["TRAC_URL"]
            settings.logs_dir.mkdir(parents=True, exist_ok=True)
            with (settings.logs_dir / "local-trac.log").open("ab") as trac_log:
                trac = supervisor.start(
                    "local Trac", [*me, "local-trac"], env, stdout=trac_log, stderr=trac_log
                )
        # Local mode brings a Redfish emulator with a demo chassis unless HW_INVENTORY names
        # a site's nodes (integrations/redfish_emulator), so `hw check` answers out of the box.
        if local and settings.hw_inventory is None:
            import json
            import secrets

            password = secrets.token_urlsafe(18)
            inventory = local_redfish_inventory(settings)
            control = supervisor.start_local_redfish(env, inventory, password)
            env = local_redfish_environment(env, settings, password)
            local_redfish_file(settings).write_text(
                json.dumps({"control": control, "inventory": str(inventory), "pid": os.getpid()})
            )
            redfish_line = (
                f"  hardware:   16 demo nodes x1000c0s[0-7]b0n[0-1] on a local Redfish emulator "
                f"(two unhealthy); HW_INVENTORY={inventory}\n"
            )
        else:
            redfish_line = f"  hardware:   HW_INVENTORY={settings.hw_inventory or 'not set'}\n"
        # Local mode keeps mail (the weekly handoff) in STATE_DIR/mail unless SMTP_HOST is set.
        mail_line = f"  mail:       SMTP_HOST={settings.smtp_host or 'not set (no mail)'}\n"
        if local and not settings.smtp_host:
            mail_port = free_loopback_port()
            mail_dir = local_mail_dir(settings)
            settings.logs_dir.mkdir(parents=True, exist_ok=True)
            with (settings.logs_dir / "local-mail.log").open("ab") as mail_log:
                sink = supervisor.start(
                    "local mail sink",
                    [sys.executable, "-m", "stat_bot.integrations.mail_sink",
                     "--dir", str(mail_dir), "--port", str(mail_port)],
                    env, stdout=mail_log, stderr=mail_log,
                )  # fmt: skip
            supervisor.wait_listening(
                "local mail sink", sink, "127.0.0.1", mail_port, hint="see local-mail.log"
            )
            env = local_mail_environment(env, mail_port)
            mail_line = (
                f"  mail:       kept in {mail_dir}/*.eml by a local mail sink "
                f"(`@stat-bot oncall handoff` mails there)\n"
            )
        alert_line = ""
        if local:
            env, token_file = local_alert_token(settings, env)
            if token_file is not None:
                alert_line = (
                    f"  alerts:     POST {web_url(settings.web_host, web_port)}alerts/alertmanager "
                    f'with -H "Authorization: Bearer $(cat {token_file})"\n'
                )
        supervisor.start("Slack bot", [*me, "bot"], env)
        supervisor.start("dispatcher", [*me, "dispatcher"], env)
        web = supervisor.start("web server", [*me, "web"], env)
        supervisor.wait_listening("web server", web, settings.web_host, web_port)
        if trac is not None and trac_port is not None:
            supervisor.wait_listening(
                "local Trac",
                trac,
                "127.0.0.1",
                trac_port,
                hint=f"Set LOCAL_TRAC_PORT=0 for any free port; see {settings.logs_dir}/local-trac.log",
            )
    except SupervisorError as error:
        supervisor.stop()
        _fail(str(error))
    if local:
        _queue_runbook_index(ctx)
    namespaces = ", ".join(configs.namespaces) or "(none)"
    dashboard = f"  dashboard: {web_url(settings.web_host, web_port)}\n" + (
        f"    ({port_note})\n" if port_note else ""
    )
    if not _web_users(settings).names():
        dashboard += (
            "    no dashboard users yet: create one with `.venv/bin/stat-bot web-user add NAME`\n"
        )
    if not local:
        click.echo(
            f"STAT bot {_version()} connected to Slack at {settings.slack_api_url}\n"
            + dashboard
            + f"  database:   {settings.database_shown}\n  namespaces: {namespaces}\n"
            "  stop with Ctrl-C.",
            err=True,
        )
        raise SystemExit(supervisor.wait())
    if trac_port is not None:
        trac_line = f"  Trac:       {trac_url} (local, sample tickets, rebuilt each start)\n"
        trac_line += f"    ({trac_note})\n" if trac_note else ""
    else:
        trac_line = f"  Trac:       {trac_url or 'none (set TRAC_URL)'}\n"
    click.echo(
        f"STAT bot {_version()} - local mode: no Slack workspace is configured "
        f"(SLACK_BOT_TOKEN, SLACK_APP_TOKEN), so a local Slack runs at {url}.\n"
        + dashboard
        + trac_line
        + redfish_line
        + mail_line
        + alert_line
        + "  incidents:  `/incident <description>` opens one; digest in #incidents; public "
        + f"status page {web_url(settings.web_host, web_port)}status\n"
        + f"  database:   {settings.database_shown}\n  namespaces: {namespaces}\n"
        + (f"  the service's logs go to {log_path}\n" if interactive else "")
        + "  chat from another terminal:  .venv/bin/stat-bot console\n"
        '  or queue a job:              .venv/bin/stat-bot enqueue "system hello Ada"\n'
        "  to connect a real workspace, set SLACK_BOT_TOKEN and SLACK_APP_TOKEN (DEPLOY.md).\n"
        "  stop with Ctrl-C.",
        err=True,
    )
    from stat_bot.console import Console
    from stat_bot.integrations.slack_emulator.client import EmulatorClient

    chat = Console(EmulatorClient(str(url)))
    if interactive:
        threading.Thread(
            target=chat.run,
            kwargs={"on_quit": supervisor.stopping.set, "since_now": False},
            daemon=True,
        ).start()
    else:
        # The emulator is new: all it holds happened since start, so show it from the start.
        threading.Thread(target=chat.follow, kwargs={"since_now": False}, daemon=True).start()
    status = supervisor.wait()
    chat.stop.set()
    raise SystemExit(status)


def _local_oncall_channel(url: str, name: str) -> None:
    """Local mode's on-call channel, with the bot and the admin in it (alerts go there)."""
    from stat_bot.integrations.slack_emulator.client import EmulatorClient, EmulatorError
    from stat_bot.integrations.slack_emulator.workspace import ADMIN_USER_ID, BOT_USER_ID

    with contextlib.suppress(EmulatorError):  # a channel of that name is there already
        EmulatorClient(url).add_channel(name.lstrip("#"), members=[BOT_USER_ID, ADMIN_USER_ID])


def _queue_runbook_index(ctx: Context) -> None:
    """Local mode reads its runbooks (the local Trac's wiki, runbooks/) at once, not at the
    schedule's next hour, so the first alert already finds its steps."""
    from stat_bot.jobs.model import Source
    from stat_bot.jobs.requests import build_request

    namespace = ctx.configs.namespaces.get("oncall")
    if namespace is None or "runbook-index" not in namespace.spec.jobs:
        return
    request = build_request(namespace, "runbook-index", source=Source.CLI, user="local-mode")
    ctx.queue.enqueue(request)


@main.command(
    "local-trac",
    hidden=True,
    epilog=EPILOG_EXAMPLES + "  stat-bot local-trac   # as `stat-bot run` starts it, with TRAC_*",
)
@pass_ctx
def local_trac(ctx: Context) -> None:
    """Local mode's own Trac: built afresh and served until `stat-bot run` stops.

    Started by `stat-bot run` (no Slack tokens, no TRAC_URL), which hands it the
    TRAC_* settings and LOCAL_TRAC_PORT it chose; not meant to be run by hand.
    """
    from stat_bot.integrations.local_trac import LocalTrac
    from stat_bot.lifeline import watch_parent
    from stat_bot.supervisor import local_trac_dir, web_url

    settings = ctx.settings
    if not (settings.trac_url and settings.trac_user and settings.trac_password):
        _fail("local-trac is started by `stat-bot run` in local mode, not by hand", 2)
    if not settings.local_trac_port:
        _fail("local-trac needs LOCAL_TRAC_PORT (`stat-bot run` sets it)", 2)
    watch_parent()
    secret = settings.trac_webhook_secret
    trac = LocalTrac(
        root=local_trac_dir(settings),
        host="127.0.0.1",
        port=settings.local_trac_port,
        user=settings.trac_user,
        password=settings.trac_password.get_secret_value(),
        notify_url=web_url(settings.web_host, settings.web_port) + "trac",
        notify_secret=secret.get_secret_value() if secret else None,
    )
    trac.build()
    trac.serve()


@main.command(
    epilog=EPILOG_EXAMPLES + "  stat-bot console\n  stat-bot console --user guest",
)
@click.option("--user", default="admin", show_default=True, help="Who you are in the local Slack.")
@click.option("--url", help="The local Slack's URL (default: the one `stat-bot run` started).")
@pass_ctx
def console(ctx: Context, user: str, url: str | None) -> None:
    """Chat with the bot in local mode: type `@stat-bot system hello Ada`.

    Joins the local Slack that `stat-bot run` started without Slack tokens.
    """
    from stat_bot.console import Console
    from stat_bot.integrations.slack_emulator.client import EmulatorClient
    from stat_bot.local_slack import read_local_slack_url

    url = url or read_local_slack_url(ctx.settings)
    if not url:
        _fail("no local mode is running here: start `stat-bot run` without Slack tokens first", 1)
    Console(EmulatorClient(url), user=user).run()


@main.command(
    epilog=EPILOG_EXAMPLES
    + "  stat-bot bot\n  SLACK_API_URL=http://127.0.0.1:3011/api/ stat-bot bot"
)
@pass_ctx
def bot(ctx: Context) -> None:
    """Run the Slack bot alone: answer mentions and direct messages in socket mode.

    Needs SLACK_BOT_TOKEN and SLACK_APP_TOKEN (DEPLOY.md explains the Slack app
    set-up). Waits for an unreachable Slack for up to SLACK_CONNECT_TIMEOUT seconds.
    """
    from stat_bot.bot.service import BotStartError, run_bot
    from stat_bot.lifeline import watch_parent

    watch_parent()
    ctx.create_db = True
    try:
        run_bot(ctx.settings, ctx.config_file(), ctx.queue)
    except BotStartError as error:
        if error.exit_status == 0:
            click.echo(f"stat-bot: {error}", err=True)
            raise SystemExit(0) from None
        _fail(str(error), error.exit_status)


@main.command(epilog=EPILOG_EXAMPLES + "  stat-bot web\n  WEB_PORT=9000 WEB_WORKERS=4 stat-bot web")
@click.option("--port", type=click.IntRange(0, 65535), help="Port (default: WEB_PORT; 0: any).")
@pass_ctx
def web(ctx: Context, port: int | None) -> None:
    """Run the web server alone (gunicorn): webhooks, the STAT relay, health, metrics, dashboard.

    Binds WEB_HOST:WEB_PORT with WEB_WORKERS processes. Dashboard users come from
    `stat-bot web-user add NAME`; there is no default user. Stops on SIGTERM or Ctrl-C.
    """
    from stat_bot.lifeline import watch_parent
    from stat_bot.web.server import serve

    settings = ctx.settings
    if port is not None:
        settings = settings.model_copy(update={"web_port": port})
    ctx.create_db = True
    ctx.queue  # noqa: B018 - create and migrate the database before the workers fork

    def ready(host: str, bound: int) -> None:
        click.echo(f"stat-bot: web server at http://{host}:{bound}/", err=True)
        if not _web_users(settings).names():
            click.echo(
                "stat-bot: no dashboard users yet: create one with `stat-bot web-user add NAME`",
                err=True,
            )

    watch_parent()
    serve(settings, on_ready=ready)


def _web_users(settings: Any) -> Any:
    from stat_bot.web.users import UserError, UserStore

    env = settings.web_users.get_secret_value() if settings.web_users else ""
    try:
        return UserStore(settings.web_users_file, env)
    except UserError as error:
        _fail(str(error), 2)


@main.group(
    "web-user",
    epilog=EPILOG_EXAMPLES + "  stat-bot web-user add alice\n  stat-bot web-user list",
)
def web_user() -> None:
    """Manage dashboard users (the WEB_USERS_FILE; passwords are stored only as hashes)."""


def _read_password(from_stdin: bool) -> str:
    from stat_bot.web.users import MIN_PASSWORD, UserError, hash_password

    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    # The rule before the question, so nobody types a password twice to be told it is short.
    click.echo(f"Choose a password of at least {MIN_PASSWORD} characters.", err=True)
    first = getpass.getpass("Password: ")
    try:
        hash_password(first)  # refused now, before "Again:"
    except UserError as error:
        _fail(f"{error}; nothing was changed", 2)
    if getpass.getpass("Again: ") != first:
        _fail("the two passwords differ; nothing was changed", 2)
    return first


@web_user.command(
    "add",
    epilog=EPILOG_EXAMPLES
    + "  stat-bot web-user add alice\n  printf '%s\\n' \"$PW\" | stat-bot web-user add alice --password-stdin",
)
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin's first line.")
@pass_ctx
def web_user_add(ctx: Context, name: str, password_stdin: bool) -> None:
    """Add a dashboard user, or set a new password for one (at least 8 characters)."""
    from stat_bot.web.users import UserError, check_name

    try:
        check_name(name)
        store = _web_users(ctx.settings)
        new = store.set(name, _read_password(password_stdin))
    except UserError as error:
        _fail(f"{error}; nothing was changed", 2)
    click.echo(f"{'added' if new else 'changed the password of'} {name} in {store.path}")


@web_user.command("remove", epilog=EPILOG_EXAMPLES + "  stat-bot web-user remove alice")
@click.argument("name")
@pass_ctx
def web_user_remove(ctx: Context, name: str) -> None:
    """Remove a dashboard user from the users file (their sessions end too)."""
    store = _web_users(ctx.settings)
    if not store.remove(name):
        _fail(f"no user {name!r} in {store.path}", 1)
    click.echo(f"removed {name} from {store.path}")


@web_user.command("list")
@pass_ctx
def web_user_list(ctx: Context) -> None:
    """List dashboard users (from WEB_USERS and the users file)."""
    names = _web_users(ctx.settings).names()
    if ctx.as_json:
        click.echo(json.dumps(names))
    elif names:
        click.echo("\n".join(names))
    else:
        click.echo("no dashboard users: add one with `stat-bot web-user add NAME`")


@web_user.command("hash", epilog=EPILOG_EXAMPLES + "  stat-bot web-user hash alice")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin's first line.")
def web_user_hash(name: str, password_stdin: bool) -> None:
    """Print NAME:HASH for WEB_USERS, for deployments that keep users in the environment."""
    from stat_bot.web.users import UserError, check_name, hash_password

    try:
        click.echo(f"{check_name(name)}:{hash_password(_read_password(password_stdin))}")
    except UserError as error:
        _fail(str(error), 2)


@main.command(epilog=EPILOG_EXAMPLES + "  stat-bot dispatcher")
@pass_ctx
def dispatcher(ctx: Context) -> None:
    """Run the dispatcher alone: claim queued jobs, run them, report, fire schedules.

    Stops on SIGTERM or Ctrl-C, giving running jobs SHUTDOWN_GRACE seconds.
    """
    _run_dispatcher(ctx)


@main.group(epilog=EPILOG_EXAMPLES + "  stat-bot db migrate")
def db() -> None:
    """The queue database (DATABASE_URL)."""


@db.command("migrate", epilog=EPILOG_EXAMPLES + "  stat-bot db migrate")
@pass_ctx
def db_migrate(ctx: Context) -> None:
    """Create the database if there is none, and bring its schema up to date.

    The service does this when it starts; other commands never create a database.
    """
    ctx.create_db = True
    version = ctx.queue.migrate()
    ctx.output(
        {"database": ctx.settings.database_shown, "schema_version": version},
        f"{ctx.settings.database_shown}: schema version {version}",
    )


@db.command("check", epilog=EPILOG_EXAMPLES + "  stat-bot db check")
@pass_ctx
def db_check(ctx: Context) -> None:
    """Say whether the database answers and its schema is the one this STAT bot expects.

    Exits 0 when it is up to date, 1 when it cannot be reached or needs `stat-bot db
    migrate` (an older schema) or a newer STAT bot (a newer schema). Changes nothing.
    """
    from stat_bot.queue import QueueError, open_queue

    try:
        queue = open_queue(ctx.settings, migrate=False, create=False)
        have, want = queue.schema_version(), queue.expected_schema_version()
    except QueueError as error:
        _fail(str(error), 1)
    where = ctx.settings.database_shown
    if have == want:
        state, text, code = "current", f"{where}: schema version {have}, up to date", 0
    elif have is None or have < want:
        state, code = "behind", 1
        text = (
            f"{where}: schema version {have or 0}, this STAT bot needs {want}: "
            "run `stat-bot db migrate`"
        )
    else:
        state, code = "newer", 1
        text = f"{where}: schema version {have} is newer than this STAT bot ({want}): upgrade it"
    ctx.output({"database": where, "schema_version": have, "expected": want, "state": state}, text)
    raise SystemExit(code)


@db.command(
    "copy",
    epilog=EPILOG_EXAMPLES + "  stat-bot db copy --from sqlite:///var/stat-bot.sqlite3 "
    "--to postgresql://statbot@db.example.org/statbot",
)
@click.option("--from", "source", required=True, metavar="URL", help="The database to read.")
@click.option("--to", "target", required=True, metavar="URL", help="The database to fill.")
@pass_ctx
def db_copy(ctx: Context, source: str, target: str) -> None:
    """Copy a site's queue (history, schedules and their web overrides, suppressions,
    deliveries, counters, the outbox, confirmations, hardware state) into another database.

    Both are migrated to this STAT bot's schema first (the target is created if it is a
    new SQLite file). Rows keep their ids; a row already in the target is brought up to
    date, so the copy can be run again (a first run while the service works, a last one
    once it is stopped) and the target ends as the source is. Stop the service before
    the last run, so nothing changes under it. Prints each table's rows in the source
    and in the target. Put passwords in ~/.pgpass rather than in the URLs: the command
    line is visible to other users of the host.
    """
    from stat_bot.queue import QueueError, open_queue
    from stat_bot.queue.copy import NOT_COPIED, copy_queue
    from stat_bot.settings import shown_url

    if source == target:
        _fail("--from and --to name the same database", 2)
    try:
        queues = [
            open_queue(ctx.settings.model_copy(update={"database_url": url}), create=create)
            for url, create in ((source, False), (target, True))
        ]
        results = copy_queue(*queues)
    except QueueError as error:
        _fail(str(error), 1)
    lines = [f"{'table':<18} {'source':>8} {'target':>8} {'added':>8}"]
    lines += [f"{r.table:<18} {r.source:>8} {r.target_after:>8} {r.added:>8}" for r in results]
    lines.append(f"not copied (each process makes its own): {', '.join(NOT_COPIED)}")
    ctx.output(
        {
            "from": shown_url(source),
            "to": shown_url(target),
            "tables": [
                {"table": r.table, "source": r.source, "target": r.target_after, "added": r.added}
                for r in results
            ],
        },
        f"copied {shown_url(source)} -> {shown_url(target)}\n" + "\n".join(lines),
    )


def _json_after_command(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        ctx.find_object(Context).as_json = True  # type: ignore[union-attr]


def _accept_json_after_every_command(group: click.Group) -> None:
    """`stat-bot jobs --json` as well as `stat-bot --json jobs`: people type it either way."""
    for command in group.commands.values():
        if isinstance(command, click.Group):
            _accept_json_after_every_command(command)
        elif not any("--json" in getattr(p, "opts", ()) for p in command.params):
            command.params.append(
                click.Option(
                    ["--json"],
                    is_flag=True,
                    expose_value=False,
                    callback=_json_after_command,
                    help="Print machine-readable JSON (also accepted before the command).",
                )
            )


def _version() -> str:
    from stat_bot import __version__

    return __version__


# -- trying and queueing commands ------------------------------------------------------


def _match(ctx: Context, text: str) -> Any:
    from stat_bot.jobs.matching import MatchError, match_command

    try:
        return match_command(ctx.configs, text)
    except MatchError as error:
        _fail(str(error), 2)


@main.command(
    "exec",
    epilog=EPILOG_EXAMPLES + '  stat-bot exec "system hello Ada"\n  stat-bot exec "system disk"',
)
@click.argument("command")
@pass_ctx
def exec_(ctx: Context, command: str) -> None:
    """Run COMMAND now, through the same runner as the dispatcher, and print its report.

    The queue is not used: this is for trying a job config. Exits with 0 when
    the job succeeds, 1 when it fails.
    """
    from stat_bot.dispatcher.runner import Runner
    from stat_bot.report.messages import build_report
    from stat_bot.report.notifiers import ConsoleNotifier

    match = _match(ctx, command)
    if match.command.spec.action != "schedule_job":
        _fail(
            f"`{command}` is a {match.command.spec.action} command; use `stat-bot enqueue` for it.",
            2,
        )
    spec = ctx.configs.job(match.namespace, match.job_type)
    namespace = ctx.configs.namespaces[match.namespace].spec
    now = time.time()
    job = Job(
        id=0, namespace=match.namespace, job_type=match.job_type, args=match.args, channel=None,
        thread_ts=None, user=getpass.getuser(), source="cli", status=JobStatus.RUNNING,
        created_at=now, start_after=now, started_at=now, finished_at=None, attempts=1,
        max_retries=0, concurrency=1, worker_id=None, heartbeat_at=None, pid=None, exit_code=None,
        log_dir=None, cancel_requested=False, report_state="pending", report_error=None,
        is_im=False, note=None,
    )  # fmt: skip
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    log_dir = ctx.settings.logs_dir / "exec" / match.namespace / match.job_type / stamp

    async def go() -> Any:
        running = await Runner(ctx.settings).start(job, spec, namespace, log_dir=log_dir)
        return await running.wait()

    outcome = asyncio.run(go())
    report = build_report(job, spec, outcome)
    if ctx.as_json:
        ctx.output(
            {
                "status": str(outcome.status),
                "exit_code": outcome.exit_code,
                "log_dir": outcome.log_dir,
                "messages": [dataclasses.asdict(m) for m in (report.messages if report else [])],
            },
            "",
        )
    elif report is not None:
        ConsoleNotifier(sys.stdout, headers=False).deliver(report)
    raise SystemExit(0 if outcome.status is JobStatus.SUCCEEDED else 1)


@main.command(
    epilog=EPILOG_EXAMPLES + '  stat-bot enqueue "system hello Ada"\n'
    '  stat-bot enqueue --channel "#stat" "system disk"\n'
    '  stat-bot --json enqueue "system uptime"',
)
@click.argument("command")
@click.option(
    "--channel", help="Where the report goes (a Slack channel once the bot is configured)."
)
@click.option("--thread", "thread_ts", help="Thread timestamp to reply in.")
@click.option("--user", default=None, help="Who is asking (default: your login name).")
@pass_ctx
def enqueue(
    ctx: Context, command: str, channel: str | None, thread_ts: str | None, user: str | None
) -> None:
    """Match COMMAND and carry out its action: usually, queue a job for the dispatcher.

    A job type with `confirm` is offered instead (to CHANNEL, else the logs channel):
    answer it with `stat-bot confirm CODE` or the offer's buttons."""
    from stat_bot.actions import ActionError, Requester, perform, site_inventory
    from stat_bot.jobs.model import Source

    match = _match(ctx, command)
    requester = Requester(
        user=user or getpass.getuser(), channel=channel, thread_ts=thread_ts, source=Source.CLI
    )
    spec = match.command.spec
    try:
        guarded = spec.action == "schedule_job" and bool(
            ctx.configs.job(match.namespace, spec.job_type).exclusive
        )
        result = perform(
            match,
            ctx.configs,
            ctx.queue,
            requester,
            ctx.settings.tz,
            now=ctx.queue.now(),
            inventory=site_inventory(ctx.settings.hw_inventory) if guarded else None,
            confirm_expiry=ctx.settings.hw_confirm_expiry,
        )
    except ActionError as error:
        _fail(f"`{command}`: {error}", 2)  # as the bot says it in chat
    data: dict[str, Any] = {"message": result.text, **result.data}
    if result.job is not None:
        data["job"] = job_dict(result.job)
        data["coalesced"] = bool(result.enqueued and result.enqueued.coalesced)
    ctx.output(data, result.text)


@main.command(
    "confirm",
    epilog=EPILOG_EXAMPLES + "  stat-bot confirm K7Q2MX\n  stat-bot confirm K7Q2MX --cancel",
)
@click.argument("code")
@click.option("--cancel", is_flag=True, help="Cancel the offer instead: nothing is queued.")
@pass_ctx
def confirm_(ctx: Context, code: str, cancel: bool) -> None:
    """Answer the offer CODE of a guarded job (as its Confirm or Cancel button does).

    Whoever can run this on the server may answer any offer; the job records
    `cli:<login>` as who confirmed it. Exit status 1 when nothing was queued or cancelled.
    """
    from stat_bot.actions import decide

    by = f"cli:{getpass.getuser()}"
    result = decide(ctx.queue, code, confirm=not cancel, by=by, by_name=by, now=ctx.queue.now())
    data: dict[str, Any] = {"message": result.text, **result.data}
    if result.job is not None:
        data["job"] = job_dict(result.job)
    ctx.output(data, result.text)
    done = result.job is not None or (cancel and result.text.startswith("Cancelled"))
    if not done:
        raise SystemExit(1)


# -- looking at the queue ----------------------------------------------------------------


@main.command(epilog=EPILOG_EXAMPLES + "  stat-bot status\n  stat-bot --json status")
@pass_ctx
def status(ctx: Context) -> None:
    """Running and queued jobs, suppressions, next schedule fires, and dispatchers.

    Every dispatcher is listed with its host and pid; one whose heartbeat is older than
    LOST_AFTER by the database's clock is marked STALE (the others take it for dead).
    """
    from stat_bot.views import StatusView

    waiting = ctx.configs.waiting_schedules(ctx.settings.job_environment())
    view = StatusView.read(
        ctx.queue, ctx.settings.tz, waiting=waiting, lost_after=ctx.settings.lost_after
    )
    ctx.output(view.data(), view.text(ctx.settings.tz))


@main.command(
    epilog=EPILOG_EXAMPLES
    + "  stat-bot jobs\n  stat-bot jobs -n system -s failed -s timed_out\n  stat-bot --json jobs -l 5",
)
@click.option("-n", "--namespace", help="Only this namespace.")
@click.option(
    "-s", "--status", "statuses", multiple=True,
    type=click.Choice([s.value for s in JobStatus]), help="Only these statuses (repeatable).",
)  # fmt: skip
@click.option("-l", "--limit", default=30, show_default=True, type=click.IntRange(1, 10000))
@pass_ctx
def jobs(ctx: Context, namespace: str | None, statuses: tuple[str, ...], limit: int) -> None:
    """Job history, newest first."""
    if namespace and namespace not in ctx.configs.namespaces:
        _fail(f"no namespace {namespace!r}; namespaces: {', '.join(ctx.configs.namespaces)}", 2)
    found = ctx.queue.jobs(
        namespace=namespace, statuses=[JobStatus(s) for s in statuses], limit=limit
    )
    ctx.output([job_dict(j) for j in found], job_table(found) if found else "No jobs match.")


@main.command(
    epilog=EPILOG_EXAMPLES + "  stat-bot logs 12\n  stat-bot logs 12 stderr --head -n 50",
)
@click.argument("job_id", type=int)
@click.argument("stream", type=click.Choice(["stdout", "stderr"]), default="stdout")
@click.option("--head", "end", flag_value="head", help="The first lines.")
@click.option("--tail", "end", flag_value="tail", default=True, help="The last lines (default).")
@click.option("--all", "end", flag_value="all", help="The whole file.")
@click.option("-n", "--lines", default=40, show_default=True, type=click.IntRange(1, 100000))
@pass_ctx
def logs(ctx: Context, job_id: int, stream: str, end: str, lines: int) -> None:
    """Print a job's stdout or stderr (the last lines by default)."""
    from stat_bot.views import ViewError, read_log

    try:
        view = read_log(ctx.queue, job_id, stream, end, lines)  # type: ignore[arg-type]
    except ViewError as error:
        _fail(str(error))
    ctx.output(view.data(), "\n".join(view.lines) if view.lines else f"({stream} is empty)")


@main.command(epilog=EPILOG_EXAMPLES + "  stat-bot cancel 12")
@click.argument("job_id", type=int)
@pass_ctx
def cancel(ctx: Context, job_id: int) -> None:
    """Cancel job JOB_ID: a queued job never starts; a running one is stopped (its process group)."""
    from stat_bot.queue.base import CancelOutcome
    from stat_bot.views import cancel_text

    result = ctx.queue.request_cancel(job_id)
    ctx.output({"job_id": job_id, "outcome": str(result.outcome)}, cancel_text(job_id, result))
    if result.outcome in (CancelOutcome.NOT_FOUND, CancelOutcome.ALREADY_FINISHED):
        raise SystemExit(1)


@main.command(
    "task",
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
    epilog=EPILOG_EXAMPLES + "  stat-bot task --list",
)
@click.argument("name", required=False)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.option("--list", "list_tasks", is_flag=True, help="List the built-in tasks.")
@click.option(
    "--job-id",
    type=int,
    envvar="STAT_BOT_JOB_ID",
    help="The job running this task (set by the dispatcher).",
)
@pass_ctx
def task_(
    ctx: Context, name: str | None, args: tuple[str, ...], list_tasks: bool, job_id: int | None
) -> None:
    """Run a built-in task: a job that needs STAT bot's own state (job_configs.py names
    them as `stat-bot task NAME ...`)."""
    from stat_bot.tasks import TaskContext, TaskUsageError, tasks

    known = tasks()
    if list_tasks or not name:
        lines = [f"  {t.usage:<40} {t.help}" for t in known.values()]
        ctx.output(
            [{"name": t.name, "usage": t.usage, "help": t.help} for t in known.values()],
            "Built-in tasks:\n" + ("\n".join(lines) or "  (none)"),
        )
        if not name and not list_tasks:
            raise SystemExit(2)
        return
    if name not in known:
        _fail(f"no task {name!r}; the tasks are: {', '.join(known) or '(none)'}", 2)
    context = TaskContext(ctx.settings, ctx.configs, lambda: ctx.queue, job_id)
    try:
        code = known[name].function(context, list(args))
    except TaskUsageError as error:
        _fail(f"{error}\nusage: stat-bot task {known[name].usage}", 2)
    raise SystemExit(code)


def _check_inventory(ctx: Context) -> dict[str, Any] | None:
    """HW_INVENTORY, when set: every problem with its line number, or its node count."""
    from stat_bot.hardware.inventory import InventoryError, load_inventory

    path = ctx.settings.hw_inventory
    if path is None:
        return None
    try:
        inventory = load_inventory(path)
    except InventoryError as error:
        if ctx.as_json:
            ctx.output({"ok": False, "file": str(path), "problems": error.problems}, "")
        else:
            click.echo(f"HW_INVENTORY {path}: {len(error.problems)} problem(s):", err=True)
            for problem in error.problems:
                click.echo(f"  - {problem}", err=True)
        raise SystemExit(1) from None
    return {"file": str(path), "nodes": len(inventory)}


def _check_templates(ctx: Context) -> dict[str, Any]:
    """The incident templates (TEMPLATES_DIRECTORY or the shipped ones): the mistake, or a count."""
    from stat_bot.incidents.templates import TemplateError
    from stat_bot.incidents.templates import load as load_templates

    try:
        templates = load_templates(ctx.settings.templates_directory)
    except TemplateError as error:
        if ctx.as_json:
            ctx.output({"ok": False, "templates": str(error)}, "")
        else:
            click.echo(f"incident templates: {error}", err=True)
        raise SystemExit(1) from None
    return {
        "directory": str(templates.directory),
        "roles": [r.key for r in templates.roles],
        "statuses": list(templates.statuses),
    }


@main.command(
    "check-config",
    epilog=EPILOG_EXAMPLES
    + "  stat-bot check-config\n  JOB_CONFIGS=other.py stat-bot check-config",
)
@pass_ctx
def check_config(ctx: Context) -> None:
    """Validate job_configs.py (and HW_INVENTORY when set): a summary of namespaces, commands,
    schedules and webhook rules, or every mistake with where it is."""
    from stat_bot.jobs.config import (
        ConfigError,
        alert_rule_label,
        hw_rule_label,
        load_config,
        trac_rule_label,
        webhook_label,
    )

    path = ctx.settings.job_configs
    try:
        configs = load_config(path)
    except ConfigError as error:
        if ctx.as_json:
            ctx.output({"ok": False, "file": str(path), "problems": error.problems}, "")
        else:
            click.echo(f"{path}: {len(error.problems)} problem(s):", err=True)
            for problem in error.problems:
                click.echo(f"  - {problem}", err=True)
        raise SystemExit(1) from None
    inventory = _check_inventory(ctx)
    templates = _check_templates(ctx)
    summary = {
        "ok": True,
        "file": str(path),
        "inventory": inventory,
        "incident_templates": templates,
        "namespaces": {
            name: {
                "description": ns.spec.description,
                "restricted": ns.spec.restricted,
                "jobs": list(ns.spec.jobs),
                "commands": [c.usage for c in ns.commands],
                "schedules": [
                    {"key": s.key, "cron": s.spec.cron, "job": s.job_type}
                    | ({"requires": list(s.spec.requires)} if s.spec.requires else {})
                    for s in ns.schedules
                ],
                "webhooks": [rule.model_dump(exclude_defaults=True) for rule in ns.spec.webhooks],
                "trac_rules": [
                    rule.model_dump(exclude_defaults=True) for rule in ns.spec.trac_rules
                ],
                "hw_rules": [rule.model_dump() for rule in ns.spec.hw_rules],
            }
            for name, ns in configs.namespaces.items()
        },
    }
    lines = [f"{path}: OK, {len(configs.namespaces)} namespace(s)"]
    if inventory:
        lines.append(f"{inventory['file']}: OK, {inventory['nodes']} node(s)")
    lines.append(
        f"incident templates {templates['directory']}: OK, roles "
        f"{', '.join(templates['roles'])}; statuses {', '.join(templates['statuses'])}"
    )
    for name, ns in configs.namespaces.items():
        lock = " (restricted)" if ns.spec.restricted else ""
        lines.append(f"\n{name}{lock}: {ns.spec.description}")
        lines.append(f"  jobs: {', '.join(ns.spec.jobs) or '(none)'}")
        for c in ns.commands:
            lines.append(f"  {c.usage:<44} {c.spec.help}")
        for s in ns.schedules:
            needs = f" (requires {', '.join(s.spec.requires)})" if s.spec.requires else ""
            lines.append(f"  schedule {s.key}: '{s.spec.cron}' -> {s.job_type}{needs}")
        for index, rule in enumerate(ns.spec.webhooks):
            lines.append(f"  {webhook_label(index, rule)}: POST /github/{name}")
        for index, trac_rule in enumerate(ns.spec.trac_rules):
            lines.append(f"  {trac_rule_label(index, trac_rule)}: POST /trac")
        for index, hw_rule in enumerate(ns.spec.hw_rules):
            covers = ", ".join(hw_rule.xnames)
            lines.append(f"  {hw_rule_label(index, hw_rule)} for {covers}")
        for index, alert_rule in enumerate(ns.spec.alert_rules):
            sources = "|".join(alert_rule.source) or "any source"
            lines.append(f"  {alert_rule_label(index, alert_rule)}: {alert_rule.status}, {sources}")
    ctx.output(summary, "\n".join(lines))


_accept_json_after_every_command(main)
