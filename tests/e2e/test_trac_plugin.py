"""The Trac plugin in a real tracd, STAT bot's web server as it runs (gunicorn), Slack emulated.

tracd (tests/trac_fixtures.py) serves an environment with contrib/trac/stat_bot_notify.py
in its plugins folder; `stat-bot web` runs as a subprocess on a test home whose Slack is
the emulator. Tickets are created and changed through Trac's web forms (the Trac client),
and each change must arrive in the STAT channel by way of the plugin and `POST /trac`; a
Trac whose plugin has the wrong secret is refused and nothing is posted.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from stat_bot.integrations.slack_emulator import EmulatorClient, EmulatorThread
from stat_bot.queue.sqlite import SQLiteQueue
from tests.conftest import STAT_BOT, write_configs
from tests.e2e.slack_service import service_env
from tests.trac_fixtures import TracServer

pytestmark = pytest.mark.trac

SECRET = "e2e-trac-secret"
READY = re.compile(r"web server at (http://[\d.]+:\d+)/")
CONFIG = {
    "hw": {
        "jobs": {"check": {"run_args_template": "echo check {node}"}},
        "trac_rules": [
            {"event": "created", "when": {"xname": True}, "job_type": "check",
             "args": {"node": "{xname}"}},
        ],
    }
}  # fmt: skip


@dataclass
class Web:
    """`stat-bot web` running on a test home: its URL, log and queue."""

    home: Path
    url: str
    process: subprocess.Popen[bytes]

    @property
    def log(self) -> str:
        return (self.home / "web.log").read_text(errors="replace")

    def events(self, message: str) -> list[dict[str, Any]]:
        """The web server's JSON log lines whose event is `message`."""
        found = []
        for line in self.log.splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and entry.get("event") == message:
                found.append(entry)
        return found

    @property
    def queue(self) -> SQLiteQueue:
        return SQLiteQueue(self.home / "var" / "stat-bot.sqlite3")


@pytest.fixture
def web(tmp_path: Path, slack_emulator: EmulatorThread, tracd: TracServer) -> Iterator[Web]:
    (tmp_path / "workspace").mkdir()
    write_configs(tmp_path / "job_configs.py", CONFIG)
    env = service_env(
        tmp_path,
        slack_emulator.api_url,
        TRAC_WEBHOOK_SECRET=SECRET,
        STAT_CHANNEL="general",
        TRAC_URL=tracd.url,  # the links, should Trac have no base_url
        WEB_HOST="127.0.0.1",
        WEB_WORKERS="1",
    )
    out = (tmp_path / "web.log").open("ab")
    process = subprocess.Popen(
        [STAT_BOT, "web", "--port", "0"], env=env, cwd=tmp_path, stdout=out, stderr=out
    )
    out.close()
    deadline = time.monotonic() + 30
    log = tmp_path / "web.log"
    while not (match := READY.search(log.read_text(errors="replace"))):
        assert process.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)
    yield Web(tmp_path, match.group(1), process)
    tracd.set_notify(None, None)  # the session's tracd, as the other tests expect it
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise AssertionError("stat-bot web did not stop on SIGTERM") from None


def stat_posts(slack: EmulatorClient) -> list[dict[str, Any]]:
    return [m for m in slack.messages("general") if m.get("bot_id")]


def wait_posts(slack: EmulatorClient, count: int, timeout: float = 15.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while len(found := stat_posts(slack)) < count:
        assert time.monotonic() < deadline, f"{len(found)} of {count} messages: {found}"
        time.sleep(0.05)
    return found


def test_each_ticket_change_in_trac_reaches_the_stat_channel(tracd, web, emulator_client):
    tracd.set_notify(f"{web.url}/trac", SECRET)
    trac = tracd.client()
    number = trac.create(
        summary="Node will not boot, ünïcode",
        type="defect",
        priority="major",
        xname="x1000c0s0b0n0",
        description="Power LED amber.",
    )
    (created,) = wait_posts(emulator_client, 1)
    assert created["text"].startswith(f"STAT ticket #{number} created: Node will not boot, ünïcode")
    assert "xname x1000c0s0b0n0" in created["text"]
    assert f"{tracd.url}/ticket/{number}" in json.dumps(created["blocks"])

    trac.comment(number, "Reseated the DIMM")
    commented = wait_posts(emulator_client, 2)[-1]
    assert "action commented" in commented["text"]
    assert "Reseated the DIMM" in json.dumps(commented["blocks"])

    trac.assign(number, "bob")
    assigned = wait_posts(emulator_client, 3)[-1]
    assert "action new → assigned, by statbot" in assigned["text"]
    assert "*Owner*\nbob" in [f["text"] for f in assigned["blocks"][0]["fields"]]

    trac.close(number, "fixed", "Boots again")
    closed = wait_posts(emulator_client, 4)[-1]
    assert "action assigned → closed (fixed), by statbot" in closed["text"]
    assert "Boots again" in json.dumps(closed["blocks"])

    tracd.admin("ticket", "remove", str(number))  # trac-admin: a process of its own
    deleted = wait_posts(emulator_client, 5)[-1]
    assert deleted["text"].startswith(f"STAT ticket #{number} deleted:")

    (job,) = web.queue.jobs(limit=10)
    assert (job.job_type, job.args) == ("check", {"node": "x1000c0s0b0n0"})
    assert job.user == f"trac {tracd.user}"
    results = [e["result"] for e in web.events("trac event")]
    assert results == ["posted"] * 5


def test_a_trac_with_the_wrong_secret_is_refused(tracd, web, emulator_client):
    tracd.set_notify(f"{web.url}/trac", "not the secret")
    number = tracd.client().create(
        summary="Forged?", type="defect", priority="major", xname="x1000c0"
    )
    deadline = time.monotonic() + 15
    while not (refused := web.events("trac event refused")):
        assert time.monotonic() < deadline, web.log
        time.sleep(0.05)
    (refusal,) = refused
    assert (refusal["status"], refusal["result"]) == (403, "bad_signature")
    time.sleep(1)  # nothing arrives later either
    assert stat_posts(emulator_client) == []
    assert web.queue.jobs(limit=10) == []
    assert "not the secret" not in web.log
    # Trac's log says why, without the secret.
    refused_in_trac = f"STAT bot refused created of ticket #{number}: HTTP 403"
    deadline = time.monotonic() + 10
    while refused_in_trac not in tracd.log_text():
        assert time.monotonic() < deadline, tracd.log_text()[-2000:]
        time.sleep(0.05)
    assert "must be the same as TRAC_WEBHOOK_SECRET" in tracd.log_text()
    assert "not the secret" not in tracd.log_text()
