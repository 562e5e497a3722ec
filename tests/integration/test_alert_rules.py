"""Alert rules against the real web app and queue (both backends): an Alertmanager alert
with an xname label queues `hw check <xname>` once per firing, in the alert's own
transaction; a label that is not an xname is refused and said, never run; a PagerDuty
incident meets the rules too; `stat-bot check-config` names a rule's mistakes."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from stat_bot.queue import Queue
from stat_bot.settings import Settings
from tests.conftest import STAT_BOT, subprocess_env, write_configs
from tests.integration.test_alert_webhooks import (
    BEARER,
    PD_SECRET,
    TOKEN,
    alertmanager_payload,
    pagerduty_payload,
    post,
    signed,
)

CONFIG = {
    "hw": {
        "jobs": {
            "check": {"run_args_template": "echo checked {target}", "report_stdout": True},
            "page": {"run_args_template": "echo paged {title}"},
        },
        "slack": [{"command": "check [target:target=all]", "job_type": "check"}],
        "alert_rules": [
            {
                "alertname": ["NodeDown", "BMCUnreachable"],
                "labels": {"xname": True},
                "job_type": "check",
                "args": {"target": "{xname}"},
                "arg_types": {"target": "xname"},
            },
            {
                "source": "pagerduty",
                "title": "re:Lustre",
                "job_type": "page",
                "args": {"title": "{title}"},
                "arg_types": {"title": "str"},
            },
        ],
    }
}


@pytest.fixture
def app(
    make_web_app: Callable[..., Flask], make_settings: Callable[..., Settings], configure: Any
) -> Flask:
    configure(CONFIG)
    settings = make_settings(
        alertmanager_token=TOKEN, pagerduty_webhook_secret=PD_SECRET, oncall_channel="oncall"
    )
    return make_web_app(settings)


def test_an_xname_label_queues_hw_check_once_per_firing(app: Flask, queue: Queue) -> None:
    first = post(app, "/alerts/alertmanager", alertmanager_payload(), BEARER)
    assert first.status_code == 202, first.get_json()
    (alert,) = first.get_json()["alerts"]
    (job_id,) = alert["jobs"]
    job = queue.get(job_id)
    assert job is not None
    assert (job.namespace, job.job_type, dict(job.args)) == (
        "hw",
        "check",
        {"target": "x1000c0s0b0n0"},
    )
    assert job.channel == "oncall"  # ONCALL_CHANNEL: the report goes where the alert went
    (message,) = [i for i in queue.outbox_items() if i.kind == "alert"]
    assert f"queued job #{job_id}" in message.payload
    # Alertmanager's reminder: the same firing, no second check.
    reminder = post(app, "/alerts/alertmanager", alertmanager_payload(), BEARER)
    assert reminder.get_json()["alerts"][0]["jobs"] == []
    post(app, "/alerts/alertmanager", alertmanager_payload("resolved"), BEARER)
    again = post(
        app, "/alerts/alertmanager", alertmanager_payload(starts="2026-12-01T10:00:00Z"), BEARER
    )
    # A new firing asks again; the check still queued takes it in (the job's coalesce).
    assert again.get_json()["alerts"][0]["jobs"] == [job_id]
    assert [j.job_type for j in queue.jobs()] == ["check"]
    assert len([i for i in queue.outbox_items() if f"queued job #{job_id}" in i.payload]) == 2


def test_a_hostile_label_is_refused_and_said(app: Flask, queue: Queue) -> None:
    hostile = alertmanager_payload()
    hostile["alerts"][0]["labels"]["xname"] = "x1000c0s0b0n0; reboot"
    answer = post(app, "/alerts/alertmanager", hostile, BEARER)
    assert answer.status_code == 202  # the alert is real and kept; only its job is refused
    (alert,) = answer.get_json()["alerts"]
    assert alert["jobs"] == []
    (refusal,) = alert["refused"]
    assert refusal.startswith("hw alert rule #1 (NodeDown|BMCUnreachable -> check) not run:")
    assert "[target] must be an xname" in refusal
    assert queue.jobs() == []
    (message,) = [i for i in queue.outbox_items() if i.kind == "alert"]
    assert ":no_entry: hw alert rule #1" in json.loads(message.payload)["messages"][0]["text"]


def test_a_pagerduty_incident_meets_the_rules(app: Flask, queue: Queue) -> None:
    body = json.dumps(pagerduty_payload()).encode()
    answer = post(app, "/alerts/pagerduty", body, {"X-PagerDuty-Signature": signed(body)})
    assert answer.status_code == 202, answer.get_json()
    (job,) = queue.jobs()
    assert (job.job_type, dict(job.args)) == ("page", {"title": "Lustre OSS oss3 unreachable"})
    # The same event delivered again (PagerDuty retries) queues nothing more.
    post(app, "/alerts/pagerduty", body, {"X-PagerDuty-Signature": signed(body)})
    assert len(queue.jobs()) == 1


def test_check_config_names_an_alert_rules_mistakes(tmp_path: Path) -> None:
    broken = json.loads(json.dumps(CONFIG))
    rule = broken["hw"]["alert_rules"][0]
    rule["labels"] = {"xname": "re:(x"}
    rule["args"] = {"target": "{rack}"}
    path = write_configs(tmp_path / "job_configs.py", broken)
    env = subprocess_env(tmp_path)
    env["JOB_CONFIGS"] = str(path)
    done = subprocess.run(
        [STAT_BOT, "check-config"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    out = done.stdout + done.stderr
    where = "namespace 'hw', alert rule #1 (NodeDown|BMCUnreachable -> check)"
    assert f"{where}: key 'labels.xname': 're:(x' is not a regular expression" in out
    assert f"{where}: key 'args.target': {{rack}} is not an alert value" in out
