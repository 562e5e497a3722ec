"""jobs/requests.py: the one builder of JobRequests and its channel rule."""

from __future__ import annotations

import pytest

from stat_bot.jobs.config import parse_config
from stat_bot.jobs.model import Source
from stat_bot.jobs.requests import build_request, report_channel

CONFIGS = parse_config(
    {
        "ns": {
            "default_channel": "#ns",
            "jobs": {
                "limited": {
                    "run_args_template": "echo {x}",
                    "report_channel": "#job",
                    "concurrency": 3,
                    "coalesce": False,
                    "retries": 2,
                },
                "plain": {"run_args_template": "echo"},
            },
        },
        "bare": {"jobs": {"plain": {"run_args_template": "echo"}}},
    }
)


@pytest.mark.parametrize(
    ("namespace", "job_type", "asked", "site", "expected"),
    [
        ("ns", "limited", "#asked", "#site", "#asked"),
        ("ns", "limited", None, "#site", "#job"),
        ("ns", "plain", None, "#site", "#ns"),
        ("bare", "plain", None, "#site", "#site"),
        ("bare", "plain", None, None, None),
        ("bare", "plain", "#asked", "#site", "#asked"),
    ],
)
def test_the_first_channel_set_wins(namespace, job_type, asked, site, expected):
    assert report_channel(CONFIGS.namespaces[namespace], job_type, asked, site) == expected


def test_the_request_carries_the_job_types_limits_and_what_the_source_gave():
    request = build_request(
        CONFIGS.namespaces["ns"],
        "limited",
        source=Source.SLACK,
        args={"x": "1"},
        channel="C1",
        thread_ts="1.2",
        user="U1",
        user_name="ada",
        delay_seconds=5,
        is_im=True,
    )
    assert (request.namespace, request.job_type, request.args) == ("ns", "limited", {"x": "1"})
    assert (request.concurrency, request.coalesce, request.retries) == (3, False, 2)
    assert (request.channel, request.thread_ts, request.user, request.user_name) == (
        "C1",
        "1.2",
        "U1",
        "ada",
    )
    assert (request.source, request.delay_seconds, request.is_im) == (Source.SLACK, 5, True)


def test_defaults_are_the_config_defaults():
    request = build_request(CONFIGS.namespaces["bare"], "plain", source=Source.SCHEDULE)
    assert request.args == {}
    assert (request.concurrency, request.coalesce, request.retries) == (1, True, 0)
    assert request.channel is None
