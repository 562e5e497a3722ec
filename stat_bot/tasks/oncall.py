"""On-call tasks: `stat-bot task oncall-handoff`, the weekly handoff by mail and in Slack.

A task, not a workspace script, since it reads the queue (alerts, incidents, jobs,
sweeps). Asked for in chat, it prints the summary (the job's report answers the asker);
scheduled with `--post`, it puts the summary in HANDOFF_CHANNEL (default ONCALL_CHANNEL)
through the outbox. Either way it mails it when SMTP_HOST and HANDOFF_MAIL_TO are set;
a mail that could not be sent fails the job with the reason, never with the password.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from stat_bot.integrations.smtp import MailError, SmtpConfig, handoff_message, send
from stat_bot.oncall import handoff
from stat_bot.oncall.weeks import WeekError, iso_week, last_seven_days
from stat_bot.report.messages import Message, Report
from stat_bot.report.outbox import outgoing
from stat_bot.settings import Settings
from stat_bot.tasks import TaskContext, TaskUsageError, task
from stat_bot.tasks.hw_loop import trac_client

USAGE = "oncall-handoff [--week 2026-W48] [--post] [--no-mail]"
KIND = "handoff"


def smtp_config(settings: Settings) -> SmtpConfig | None:
    """The mail settings (None: SMTP_HOST not set, no mail)."""
    if not settings.smtp_host:
        return None
    return SmtpConfig(
        host=settings.smtp_host,
        port=settings.smtp_port,
        sender=settings.smtp_from or f"stat-bot@{settings.smtp_host}",
        starttls=settings.smtp_starttls,
        tls=settings.smtp_tls,
        user=settings.smtp_user,
        password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
        ca_file=settings.smtp_ca_file,
        timeout=settings.smtp_timeout,
    )


def recipients(settings: Settings) -> list[str]:
    return [a.strip() for a in settings.handoff_mail_to.split(",") if a.strip()]


def _arguments(args: Sequence[str]) -> tuple[str | None, bool, bool]:
    week, post, mail = None, False, True
    rest = list(args)
    while rest:
        arg = rest.pop(0)
        if arg == "--post":
            post = True
        elif arg == "--no-mail":
            mail = False
        elif arg == "--week" and rest:
            week = rest.pop(0)
        elif arg.startswith("--week="):
            week = arg.partition("=")[2]
        else:
            raise TaskUsageError(f"unknown argument {arg!r}; usage: stat-bot task {USAGE}")
    return week, post, mail


@task("oncall-handoff", USAGE, "The on-call week's summary: to Slack, and by mail if SMTP is set")
def oncall_handoff(ctx: TaskContext, args: Sequence[str]) -> int:
    label, post, mail = _arguments(args)
    settings, queue = ctx.settings, ctx.queue
    try:
        week = iso_week(label, settings.tz) if label else last_seven_days(queue.now(), settings.tz)
    except WeekError as error:
        print(f"--week: {error}", file=sys.stderr)
        return 2
    summary = handoff.gather(queue, week, trac=trac_client(settings))
    text = handoff.slack_text(summary)
    if post:
        channel = settings.handoff_channel or settings.oncall_channel
        if not channel:
            print(
                "Set HANDOFF_CHANNEL (or ONCALL_CHANNEL): the handoff has no channel to go to.",
                file=sys.stderr,
            )
            return 1
        report = Report([Message(text)], kind="info", channel=channel)
        queue.post([outgoing(report, KIND, ref=f"handoff:{week.label}:{int(summary.made_at)}")])
        print(f"Handoff for {week.label} posted to {channel}.")
    else:
        print(text)
    config = smtp_config(settings) if mail else None
    if config is None:
        return 0
    to = recipients(settings)
    message = handoff_message(
        subject=f"On-call handoff: {week.label}",
        sender=config.sender,
        to=to,
        text=handoff.plain_text(summary),
        html=handoff.html_text(summary),
        png=handoff.chart_png(summary),
        cid=handoff.CHART_CID,
    )
    try:
        send(config, message, to)
    except MailError as error:
        print(f"The handoff mail was not sent: {error}", file=sys.stderr)
        return 1
    print(f"Mailed to {', '.join(to)}.", file=sys.stderr if not post else sys.stdout)
    return 0
