"""A schedule that `requires` a variable does not fire while it is unset: no job, no history row.

The shipped active-tickets report requires TRAC_URL, so a site without Trac gets neither an
hourly empty report nor an hourly row in `jobs`.
"""

from __future__ import annotations

import json
import os
import time

import pytest

from stat_bot.jobs.config import ConfigError, parse_config
from stat_bot.jobs.model import JobStatus
from tests.integration.conftest import wait_status

CONFIG = {
    "t": {
        "jobs": {
            "tick": {"run_args_template": "true", "coalesce": False, "report_success": False},
            "needs": {"run_args_template": "true", "coalesce": False, "report_success": False},
        },
        "schedules": [
            {"cron": "* * * * * *", "job_type": "tick", "name": "control"},
            {
                "cron": "* * * * * *",
                "job_type": "needs",
                "name": "needs-site",
                "requires": ["SITE_THING"],
            },
        ],
    }
}


def _count(queue, job_type: str) -> int:
    return sum(1 for j in queue.jobs(limit=10000) if j.job_type == job_type)


def test_a_schedule_waits_for_the_variable_it_requires(configure, queue, start_dispatcher):
    configure(CONFIG)
    dispatcher = start_dispatcher(SITE_THING="")
    deadline = time.monotonic() + 30
    while _count(queue, "tick") < 3:  # the control schedule fired three times meanwhile
        assert time.monotonic() < deadline, dispatcher.stderr()
        time.sleep(0.1)
    assert _count(queue, "needs") == 0
    assert dispatcher.terminate() == 0, dispatcher.stderr()

    start_dispatcher(SITE_THING="here")
    deadline = time.monotonic() + 30
    while _count(queue, "needs") == 0:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    (job,) = [j for j in queue.jobs(limit=10000) if j.job_type == "needs"][-1:]
    wait_status(queue, job.id, JobStatus.SUCCEEDED)


def test_a_bad_variable_name_is_refused_with_the_reason():
    bad = {
        "t": {**CONFIG["t"], "schedules": [{**CONFIG["t"]["schedules"][1], "requires": ["A-B"]}]}
    }
    with pytest.raises(ConfigError) as caught:
        parse_config(bad)
    assert "'A-B' is not an environment variable name such as TRAC_URL" in str(caught.value)


def test_status_says_what_a_schedule_waits_for(configure, cli, queue, start_dispatcher):
    configure(CONFIG)
    start_dispatcher(SITE_THING="")  # stores the schedules
    deadline = time.monotonic() + 30
    while len(queue.schedules()) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    text = cli("status", env={"SITE_THING": ""}).stdout
    (row,) = [line for line in text.splitlines() if "t.needs-site" in line]
    assert row.rstrip().endswith("waits for SITE_THING")
    data = {
        s["key"]: s
        for s in json.loads(cli("status", "--json", env={"SITE_THING": ""}).stdout)["schedules"]
    }
    assert data["t.needs-site"]["waits_for"] == ["SITE_THING"]
    assert data["t.needs-site"]["next_fire_at"] is None
    assert data["t.control"]["waits_for"] == []
    text = cli("status", env={"SITE_THING": "here"}).stdout
    (row,) = [line for line in text.splitlines() if "t.needs-site" in line]
    assert "waits for" not in row


def test_the_schedules_page_says_what_a_schedule_waits_for(configure, queue, logged_in):
    from stat_bot.dispatcher.schedules import config_rows

    assert "SITE_THING" not in os.environ
    queue.sync_schedules(config_rows(configure(CONFIG)))
    html = logged_in.get("/schedules").get_data(as_text=True)
    assert "waits for SITE_THING" in html
    assert html.count("waits for") == 1  # the control schedule has a time


def test_check_config_names_what_a_schedule_requires(configure, cli):
    configure(CONFIG)
    result = cli("check-config")
    assert "schedule t.needs-site: '* * * * * *' -> needs (requires SITE_THING)" in result.stdout
    data = json.loads(cli("check-config", "--json").stdout)
    schedules = {s["key"]: s for s in data["namespaces"]["t"]["schedules"]}
    assert schedules["t.needs-site"]["requires"] == ["SITE_THING"]
    assert "requires" not in schedules["t.control"]
