"""A schedule that `requires` a variable does not fire while it is unset: no job, no history row.

The shipped active-tickets report requires TRAC_URL, so a site without Trac gets neither an
hourly empty report nor an hourly row in `jobs`.
"""

from __future__ import annotations

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
