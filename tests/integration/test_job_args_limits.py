"""Job args that no program could be started with are refused when queued, from the CLI too.

(Chat is covered end to end in tests/e2e/test_slack_security.py, GitHub and Trac in their
webhook tests; each goes through the one check made whenever a JobRequest is built.)
"""

from __future__ import annotations

import pytest

from stat_bot.jobs.config import ConfigError, load_config
from stat_bot.jobs.model import MAX_ARGS_BYTES, ArgsError, JobRequest, check_args
from tests.conftest import write_configs

CONFIG = {
    "demo": {
        "jobs": {
            "say": {"run_args_template": "echo {text}"},
            "tick": {"run_args_template": "echo {n}"},
        },
        "slack": [{"command": "say [text...]", "job_type": "say"}],
    }
}


def test_the_cli_refuses_args_beyond_one_arguments_limit(configure, cli, queue):
    configure(CONFIG)
    result = cli("enqueue", "demo say it " + "'" * 30_000)
    assert result.returncode == 2
    assert "not queued" in result.stderr
    assert f"{MAX_ARGS_BYTES:,}" in result.stderr
    assert "Traceback" not in result.stderr
    assert queue.jobs() == []
    ok = cli("enqueue", "demo say it " + "x" * 30_000)  # as long, but fits once quoted
    assert ok.returncode == 0, ok.stderr
    assert len(queue.jobs()) == 1


@pytest.mark.parametrize(
    "args",
    [{"text": "a\0b"}, {"te\0xt": "a"}, {"text": "'" * (MAX_ARGS_BYTES // 5 + 10)}],
    ids=["NUL in a value", "NUL in a name", "too long once quoted"],
)
def test_every_job_request_is_checked(args):
    with pytest.raises(ArgsError):
        JobRequest("demo", "say", args)
    with pytest.raises(ArgsError):
        check_args(args)


def test_args_that_just_fit_are_accepted():
    text = "x" * (MAX_ARGS_BYTES - 1)  # needs no quotes; one separator byte per arg
    JobRequest("demo", "say", {"text": text})
    with pytest.raises(ArgsError):
        JobRequest("demo", "say", {"text": text + "x"})


def test_a_schedule_with_a_nul_in_its_args_is_a_config_error(home):
    config = {
        "demo": {
            "jobs": {"tick": {"run_args_template": "echo {n}"}},
            "schedules": [{"cron": "* * * * *", "job_type": "tick", "args": {"n": "1\0"}}],
        }
    }
    with pytest.raises(ConfigError, match="NUL byte"):
        load_config(write_configs(home / "job_configs.py", config))
