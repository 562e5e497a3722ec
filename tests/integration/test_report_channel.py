"""Where a job reports: one rule (jobs/requests.py) for every source that queues a job.

The rule: the channel the request names, else the job's `report_channel`, else the
namespace's `default_channel`, else STAT_CHANNEL for Trac rules and the active-tickets
schedule. Each source is driven through its real path: a chat command through
`perform` (the bot's and the CLI's), `stat-bot enqueue` as a subprocess, signed
GitHub and Trac deliveries through the Flask app, schedules through the dispatcher's
own firing, on a real SQLite queue.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from stat_bot.actions import Requester, perform
from stat_bot.dispatcher.schedules import config_rows
from stat_bot.dispatcher.service import Dispatcher
from stat_bot.jobs.config import JobConfigs
from stat_bot.jobs.matching import match_command
from stat_bot.jobs.model import Job, Source
from stat_bot.queue import Queue
from stat_bot.report.notifiers import RecordingNotifier
from stat_bot.settings import Settings
from tests import github_payloads as gh
from tests import trac_events as te
from tests.integration.test_github_webhooks import SECRET as GITHUB_SECRET
from tests.integration.test_github_webhooks import deliver as deliver_github
from tests.integration.test_trac_hook import deliver as deliver_trac

STAT = "#stat"
RAW: dict[str, Any] = {
    "ch": {
        "default_channel": "#ns-default",
        "jobs": {
            "rc": {"run_args_template": "echo rc", "report_channel": "#job-rc", "coalesce": False},
            "plain": {"run_args_template": "echo plain", "coalesce": False},
        },
        "slack": [{"command": "rc", "job_type": "rc"}, {"command": "plain", "job_type": "plain"}],
        "webhooks": [
            {"event": "push", "job_type": "rc", "channel": "#rule"},
            {"event": "push", "job_type": "rc"},
            {"event": "push", "job_type": "plain"},
        ],
        "trac_rules": [
            {"event": "created", "job_type": "rc", "channel": "#rule"},
            {"event": "created", "job_type": "rc"},
            {"event": "created", "job_type": "plain"},
        ],
        "schedules": [
            {"cron": "* * * * *", "job_type": "rc", "channel": "#sched", "name": "named"},
            {"cron": "* * * * *", "job_type": "rc", "name": "rc"},
            {"cron": "* * * * *", "job_type": "plain", "name": "plain"},
        ],
    },
    "bare": {  # no default_channel: what is left is the site's channel, for some sources
        "jobs": {"j": {"run_args_template": "echo j", "coalesce": False}},
        "slack": [{"command": "j", "job_type": "j"}],
        "webhooks": [{"event": "push", "job_type": "j"}],
        "trac_rules": [{"event": "created", "job_type": "j"}],
        "schedules": [
            {"cron": "* * * * *", "job_type": "j", "name": "j"},
            {"cron": "* * * * *", "job_type": "j", "name": "tickets"},
        ],
    },
}


def channels(queue: Queue, source: str) -> dict[tuple[str, str], list[str | None]]:
    """Each job type's report channels, in the order the jobs were queued."""
    found: dict[tuple[str, str], list[str | None]] = {}
    for job in sorted(queue.jobs(limit=1000), key=lambda j: j.id):
        assert job.source == source, job
        found.setdefault((job.namespace, job.job_type), []).append(job.channel)
    return found


@pytest.fixture
def site(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(
        stat_channel=STAT,
        github_webhook_secret=GITHUB_SECRET,
        trac_webhook_secret=te.SECRET,
        active_tickets_schedule="bare.tickets",
    )


@pytest.fixture
def configs(configure: Callable[[dict[str, Any]], JobConfigs]) -> JobConfigs:
    return configure(RAW)


def command(configs: JobConfigs, queue: Queue, site: Settings, text: str, **who: Any) -> Job:
    result = perform(
        match_command(configs, text), configs, queue, Requester(**who), site.tz, now=time.time()
    )
    assert result.job is not None, result.text
    return result.job


def test_a_chat_command_reports_where_it_was_typed_whatever_the_config(configs, queue, site):
    for text in ("ch rc", "ch plain", "bare j"):
        job = command(configs, queue, site, text, channel="C0TYPED", source=Source.SLACK)
        assert job.channel == "C0TYPED", text


def test_a_command_from_no_channel_follows_report_then_default_channel(configs, queue, site):
    assert command(configs, queue, site, "ch rc").channel == "#job-rc"
    assert command(configs, queue, site, "ch plain").channel == "#ns-default"
    assert command(configs, queue, site, "bare j").channel is None  # no site channel for it


def test_stat_bot_enqueue_follows_the_same_rule(configs, cli, queue):
    for args in (("ch rc", "--channel", "#cli"), ("ch rc",), ("ch plain",), ("bare j",)):
        result = cli("enqueue", *args)
        assert result.returncode == 0, result.stderr
    assert channels(queue, "cli") == {
        ("ch", "rc"): ["#cli", "#job-rc"],
        ("ch", "plain"): ["#ns-default"],
        ("bare", "j"): [None],
    }


def test_github_rules_follow_the_same_rule(configs, make_web_app, site, queue):
    response = deliver_github(make_web_app(site).test_client(), "push", gh.push(), project="ch")
    assert response.status_code == 202, response.get_json()
    response = deliver_github(make_web_app(site).test_client(), "push", gh.push(), project="bare")
    assert response.status_code == 202, response.get_json()
    assert channels(queue, "webhook") == {
        ("ch", "rc"): ["#rule", "#job-rc"],
        ("ch", "plain"): ["#ns-default"],
        ("bare", "j"): [None],
    }


def test_trac_rules_follow_the_same_rule_with_the_stat_channel_last(
    configs, make_web_app, site, queue
):
    response = deliver_trac(make_web_app(site).test_client(), te.event("created"))
    assert response.status_code == 200, response.get_json()
    assert channels(queue, "webhook") == {
        ("ch", "rc"): ["#rule", "#job-rc"],
        ("ch", "plain"): ["#ns-default"],
        ("bare", "j"): [STAT],
    }


@pytest.mark.asyncio
async def test_schedules_follow_the_same_rule_report_channel_before_default_channel(
    configs, queue, site
):
    # Before the one rule, a schedule put the namespace's default_channel before the
    # job's report_channel (the reverse of commands and webhooks).
    due = float(int(time.time()))
    queue.sync_schedules(config_rows(configs), now=due - 60)  # they existed before `due`
    dispatcher = Dispatcher(site, configs, queue, RecordingNotifier())
    for row in queue.schedules():
        await dispatcher._fire(row.key, row.namespace, row.job_type, row.args, row.channel, due)
    by_user = {j.user: j.channel for j in queue.jobs(limit=100)}
    assert by_user == {
        "schedule ch.named": "#sched",
        "schedule ch.rc": "#job-rc",
        "schedule ch.plain": "#ns-default",
        "schedule bare.j": None,
        "schedule bare.tickets": STAT,  # the active-tickets schedule: the site's channel
    }
