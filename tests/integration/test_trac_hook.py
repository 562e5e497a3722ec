"""`POST /trac`: signed Trac ticket events are posted to the STAT channel and queue their rules' jobs.

The real app (Flask test client) on a real SQLite queue and a real job_configs.py;
messages go through the app's own Slack poster into the Slack emulator. Events have
the plugin's shape (tests/trac_events.py); the plugin itself, inside a real Trac, is
tested in test_trac_plugin.py and tests/e2e/test_trac_plugin.py.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from structlog.testing import capture_logs

from stat_bot.integrations.slack_emulator import (
    APP_TOKEN,
    BOT_TOKEN,
    EmulatorClient,
    EmulatorThread,
)
from stat_bot.jobs.config import JobConfigs
from stat_bot.jobs.model import Job, JobStatus, Source
from stat_bot.queue import Queue
from stat_bot.settings import Settings
from tests import trac_events as te
from tests.peers import free_port

COUNTER = "trac_requests"
SIGNATURE = "X-Trac-Signature-256"

RAW: dict[str, Any] = {
    "hw": {
        "description": "hardware checks",
        "jobs": {
            "check": {"run_args_template": "echo check {node}"},
            "closed": {"run_args_template": "echo {what}", "coalesce": False},
        },
        "trac_rules": [
            {"event": "created", "when": {"xname": True}, "job_type": "check",
             "args": {"node": "{xname}"}},
            {"event": "changed", "changed": ["status"], "when": {"status": "closed"},
             "job_type": "closed", "args": {"what": "#{ticket} closed by {author}"},
             "delay_seconds": 30, "channel": "#hw"},
        ],
    },
}  # fmt: skip


def deliver(
    client: FlaskClient,
    body: Any = None,
    *,
    raw: bytes | None = None,
    secret: str = te.SECRET,
    headers: dict[str, str | None] | None = None,
) -> Any:
    """POST an event as the plugin does; `headers` values replace its own, None removes one."""
    body = te.event() if body is None and raw is None else body
    data = te.encode(body) if raw is None else raw
    event_id = body.get("id") if isinstance(body, dict) else None
    sent: dict[str, str | None] = {**te.headers(data, event_id, secret), **(headers or {})}
    return client.post("/trac", data=data, headers={k: v for k, v in sent.items() if v})


def all_jobs(queue: Queue) -> list[Job]:
    return sorted(queue.jobs(limit=1000), key=lambda j: j.id)


def posts(emulator_client: EmulatorClient) -> list[dict[str, Any]]:
    return [m for m in emulator_client.messages("general") if m.get("bot_id")]


def fields_of(message: dict[str, Any]) -> dict[str, str]:
    section = message["blocks"][0]
    return dict(f["text"].split("\n", 1) for f in section["fields"])


@pytest.fixture
def make_app(
    make_web_app: Callable[..., Flask],
    make_settings: Callable[..., Settings],
    configure: Callable[[dict[str, Any]], JobConfigs],
    slack_emulator: EmulatorThread,
) -> Callable[..., Flask]:
    """An app whose Slack is the emulator and whose STAT channel is #general."""
    configure(RAW)

    def make(**overrides: Any) -> Flask:
        values: dict[str, Any] = {
            "trac_webhook_secret": te.SECRET,
            "slack_bot_token": BOT_TOKEN,
            "slack_app_token": APP_TOKEN,
            "slack_api_url": slack_emulator.api_url,
            "stat_channel": "general",
        }
        values.update(overrides)
        return make_web_app(make_settings(**values))

    return make


@pytest.fixture
def client(make_app: Callable[..., Flask]) -> FlaskClient:
    return make_app().test_client()


# --- a good event ------------------------------------------------------------------------


def test_a_new_ticket_is_posted_to_the_stat_channel_and_queues_its_check(
    client, emulator_client, queue
):
    body = te.event()
    response = deliver(client, body)
    assert response.status_code == 200, response.json
    answer = response.json
    (job,) = all_jobs(queue)
    assert answer["ok"] is True
    assert answer["posted"] is True
    assert (answer["event"], answer["ticket"], answer["id"]) == ("created", 12, body["id"])
    assert answer["channel"] == "general"
    assert answer["jobs"] == [
        {"id": job.id, "namespace": "hw", "job_type": "check", "start_after": job.start_after}
    ]
    # The job: the rule's args from the ticket, who asked, where it reports.
    assert (job.namespace, job.job_type, job.args) == ("hw", "check", {"node": "x1000c0s0b0n0"})
    assert job.user == "trac alice"
    assert job.source == Source.WEBHOOK
    assert job.channel == "general"
    assert job.status == JobStatus.QUEUED
    # The message: STATtoSlackBot's summary and fields, and the link to the ticket.
    (message,) = posts(emulator_client)
    assert message["ts"] == answer["ts"]
    assert message["text"].startswith(
        "STAT ticket #12 created: Node will not boot | type Hardware, priority High, "
        "xname x1000c0s0b0n0, action new, by alice"
    )
    assert message["text"].endswith("| https://trac.example.org/stat/ticket/12")
    section = message["blocks"][0]
    assert section["text"]["text"] == (
        "*STAT ticket <https://trac.example.org/stat/ticket/12|#12> created:* Node will not boot"
    )
    assert fields_of(message) == {
        "*Type*": "Hardware",
        "*Priority*": "High",
        "*XName*": "x1000c0s0b0n0",
        "*Action*": "new",
        "*By*": "alice",
        "*Owner*": "-",
    }
    assert message["blocks"][-1] == {
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": f"Queued: `hw check` #{job.id}"}],
    }
    assert queue.counters(COUNTER) == {"posted": 1}


def test_closing_a_ticket_says_so_with_the_comment_and_queues_the_close_rule(
    client, emulator_client, queue
):
    body = te.event(
        "changed",
        fields={"status": "closed", "resolution": "fixed", "owner": "bob", "priority": "Low"},
        old_values={"status": "assigned", "resolution": "", "priority": "High"},
        comment="Reseated the DIMM.\nBoots again <3",
        author="bob",
    )
    response = deliver(client, body)
    assert response.status_code == 200, response.json
    (message,) = posts(emulator_client)
    assert "STAT ticket #12 changed: Node will not boot" in message["text"]
    assert "action assigned → closed (fixed), by bob" in message["text"]
    assert fields_of(message)["*Action*"] == "assigned → closed (fixed)"
    assert fields_of(message)["*Owner*"] == "bob"
    texts = [b["text"]["text"] for b in message["blocks"] if b["type"] == "section"]
    assert "*Changed:* priority: High → Low" in texts
    assert "*Comment:*\n>Reseated the DIMM.\n>Boots again &lt;3" in texts
    (job,) = all_jobs(queue)
    assert (job.job_type, job.args) == ("closed", {"what": "#12 closed by bob"})
    assert job.channel == "#hw"
    assert job.user == "trac bob"
    assert job.start_after - job.created_at == pytest.approx(30, abs=1)


def test_a_comment_on_a_closed_ticket_is_posted_but_queues_nothing(client, emulator_client, queue):
    body = te.event(
        "changed", fields={"status": "closed", "resolution": "fixed"}, comment="Thanks!"
    )
    response = deliver(client, body)
    assert response.status_code == 200
    assert response.json["jobs"] == []
    assert all_jobs(queue) == []
    (message,) = posts(emulator_client)
    assert fields_of(message)["*Action*"] == "commented"
    assert message["blocks"][-1]["text"]["text"] == "*Comment:*\n>Thanks!"


def test_a_new_ticket_without_an_xname_queues_no_check(client, emulator_client, queue):
    response = deliver(client, te.event(fields={"xname": ""}))
    assert response.status_code == 200
    assert response.json["jobs"] == []
    assert all_jobs(queue) == []
    (message,) = posts(emulator_client)
    assert fields_of(message)["*XName*"] == "-"
    assert "xname -," in message["text"]


def test_a_deleted_ticket_is_posted(client, emulator_client):
    response = deliver(client, te.event("deleted", author=""))
    assert response.status_code == 200
    (message,) = posts(emulator_client)
    assert message["text"].startswith("STAT ticket #12 deleted: Node will not boot")
    assert fields_of(message)["*Action*"] == "deleted"
    assert fields_of(message)["*By*"] == "-"


def test_trac_text_is_escaped_so_it_cannot_ping_or_fake_links(client, emulator_client):
    body = te.event(
        fields={"summary": "<!channel> & <https://evil.example|click>", "xname": "<@U0>"},
        author="<!here>",
        comment="see <https://evil.example|here>",
    )
    assert deliver(client, body).status_code == 200
    (message,) = posts(emulator_client)
    everything = json.dumps(message["blocks"]) + message["text"]
    assert "<!channel>" not in everything
    assert "<!here>" not in everything
    assert "<https://evil" not in everything
    assert "&lt;!channel&gt; &amp; &lt;https://evil.example|click&gt;" in message["text"]
    assert fields_of(message)["*By*"] == "&lt;!here&gt;"


@pytest.mark.parametrize(
    ("link", "shown"),
    [
        ("", "*STAT ticket #12 created:*"),
        ("javascript:alert(1)", "*STAT ticket #12 created:*"),
        ("https://trac.example.org/x|y", "*STAT ticket #12 created:*"),
        ("http://trac.local/stat/ticket/12", "*STAT ticket <http://trac.local/stat/ticket/12|#12>"),
    ],
)
def test_only_a_plain_http_link_is_linked(client, emulator_client, link, shown):
    assert deliver(client, te.event(link=link)).status_code == 200
    (message,) = posts(emulator_client)
    assert message["blocks"][0]["text"]["text"].startswith(shown)


def test_without_a_link_from_trac_the_link_is_made_from_trac_url(make_app, emulator_client):
    client = make_app(trac_url="http://trac.local:8000/stat/").test_client()
    assert deliver(client, te.event(link="")).status_code == 200
    (message,) = posts(emulator_client)
    assert message["blocks"][0]["text"]["text"].startswith(
        "*STAT ticket <http://trac.local:8000/stat/ticket/12|#12> created:*"
    )


def test_long_values_are_cut_to_what_slack_shows(client, emulator_client):
    body = te.event(fields={"summary": "s" * 1000}, comment="c" * 10_000)
    assert deliver(client, body).status_code == 200
    (message,) = posts(emulator_client)
    for block in message["blocks"]:
        if block["type"] == "section":
            assert len(block["text"]["text"]) <= 3000
    assert "s" * 299 + "…" in message["text"]


# --- refusals ----------------------------------------------------------------------------

BODY = te.event()
DATA = te.encode(BODY)
SIGNATURE_CASES: dict[str, tuple[dict[str, str | None], bytes | None]] = {
    "wrong secret": ({SIGNATURE: te.sign("not the secret", DATA)}, None),
    "missing header": ({SIGNATURE: None}, None),
    "no sha256= prefix": ({SIGNATURE: te.sign(te.SECRET, DATA).removeprefix("sha256=")}, None),
    "sha1 scheme": ({SIGNATURE: "sha1=" + "0" * 40}, None),
    "body altered": (
        {SIGNATURE: te.sign(te.SECRET, DATA)},
        DATA.replace(b"Node will not boot", b"Node will not boot!"),
    ),
    "non-ASCII signature": ({SIGNATURE: "sha256=é" + "0" * 63}, None),
}


@pytest.mark.parametrize("case", list(SIGNATURE_CASES))
def test_a_bad_signature_is_refused_and_nothing_happens(case, client, emulator_client, queue):
    headers, raw = SIGNATURE_CASES[case]
    response = client.post(
        "/trac",
        data=raw or DATA,
        headers={
            k: v for k, v in {**te.headers(DATA, BODY["id"]), **headers}.items() if v is not None
        },
    )
    assert response.status_code == 403, response.json
    assert response.json["field"] == SIGNATURE
    assert SIGNATURE in response.json["error"]
    assert all_jobs(queue) == []
    assert posts(emulator_client) == []
    assert queue.counters(COUNTER) == {"bad_signature": 1}
    # Nothing was recorded either: the genuine event still goes through.
    assert deliver(client, BODY).json["posted"] is True


def test_refusals_say_what_to_fix(client):
    wrong = deliver(client, te.event(), secret="nope")
    assert "must be the same as TRAC_WEBHOOK_SECRET" in wrong.json["error"]
    missing = deliver(client, te.event(), headers={SIGNATURE: None})
    assert "no X-Trac-Signature-256 header" in missing.json["error"]


def test_without_a_secret_notifications_are_off(make_app, emulator_client, queue):
    client = make_app(trac_webhook_secret=None).test_client()
    with capture_logs() as logs:
        response = deliver(client, te.event())
    assert response.status_code == 403
    assert "disabled until TRAC_WEBHOOK_SECRET is set" in response.json["error"]
    assert all_jobs(queue) == []
    assert posts(emulator_client) == []
    assert queue.counters(COUNTER) == {"disabled": 1}
    (refused,) = [e for e in logs if e["event"] == "trac event refused"]
    assert refused["result"] == "disabled"


def test_a_replayed_event_is_acknowledged_and_nothing_happens_twice(client, emulator_client, queue):
    body = te.event()
    first = deliver(client, body)
    again = deliver(client, body)
    assert first.status_code == again.status_code == 200
    assert again.json == {
        "ok": True,
        "event": "created",
        "ticket": 12,
        "id": body["id"],
        "duplicate": True,
        "posted": False,
        "jobs": [],
    }
    assert len(posts(emulator_client)) == 1
    assert len(all_jobs(queue)) == 1
    assert queue.counters(COUNTER) == {"posted": 1, "duplicate": 1}


def test_a_replay_under_a_new_event_id_header_is_refused(client, emulator_client, queue):
    """The replay key is the id inside the signed body; the header cannot change it."""
    body = te.event()
    assert deliver(client, body).status_code == 200
    again = deliver(client, body, headers={"X-Trac-Event-Id": "a-fresh-id"})
    assert again.status_code == 400
    assert again.json["field"] == "X-Trac-Event-Id"
    assert "does not match the event's signed 'id'" in again.json["error"]
    without = deliver(client, body, headers={"X-Trac-Event-Id": None})
    assert without.json["duplicate"] is True
    assert len(posts(emulator_client)) == 1
    assert len(all_jobs(queue)) == 1


@pytest.mark.parametrize(
    ("raw", "status", "fragment"),
    [
        (b"{not json", 400, "the body is not JSON"),
        (b"[1, 2]", 400, "the body must be a JSON object (a ticket event), not an array"),
        (te.encode(te.event("edited")), 400, "'event' must be one of created, changed, deleted"),
        (te.encode({**te.event(), "ticket": "12"}), 400, "'ticket' must be the ticket's number"),
        (te.encode({**te.event(), "fields": []}), 400, "'fields' must be an object"),
    ],
)
def test_a_signed_body_that_is_not_an_event_is_a_400(
    client, emulator_client, queue, raw, status, fragment
):
    response = deliver(client, raw=raw)
    assert response.status_code == status
    assert fragment in response.json["error"]
    assert response.json["field"] == "body"
    assert all_jobs(queue) == []
    assert posts(emulator_client) == []
    assert queue.counters(COUNTER) == {"bad_request": 1}


def test_a_form_body_is_a_415(client, queue):
    response = deliver(client, raw=b"a=1", headers={"Content-Type": "text/plain"})
    assert response.status_code == 415
    assert "not application/json" in response.json["error"]


def test_a_body_over_web_max_body_is_a_413(make_app, queue):
    client = make_app(web_max_body=2048).test_client()
    response = deliver(client, te.event(comment="x" * 4000))
    assert response.status_code == 413
    assert "WEB_MAX_BODY" in response.json["error"]
    assert queue.counters(COUNTER) == {"too_large": 1}


def test_get_is_a_json_405(client):
    response = client.get("/trac")
    assert response.status_code == 405
    assert response.is_json


# --- Slack trouble -----------------------------------------------------------------------


def test_slack_down_still_records_the_event_and_queues_jobs(client, emulator_client, queue):
    emulator_client.server_error(count=5, methods=["chat.postMessage"])
    body = te.event()
    with capture_logs() as logs:
        started = time.monotonic()
        response = deliver(client, body)
        took = time.monotonic() - started
    assert response.status_code == 200
    assert response.json["posted"] is False
    assert response.json["reason"].startswith("Slack refused a message to general")
    assert took < 5, f"took {took:.1f} s: the plugin waits only a couple of seconds"
    assert len(all_jobs(queue)) == 1
    (logged,) = [e for e in logs if e["event"] == "trac event"]
    assert (logged["result"], logged["log_level"]) == ("not_posted", "warning")
    assert logged["reason"] == response.json["reason"]
    assert te.SECRET not in repr(logs)
    assert BOT_TOKEN not in repr(logs)
    assert queue.counters(COUNTER) == {"not_posted": 1}
    # Recorded: the plugin's event is not posted twice when Slack is back.
    assert deliver(client, body).json["duplicate"] is True
    assert posts(emulator_client) == []


def test_unreachable_slack_answers_quickly(make_app, queue):
    client = make_app(slack_api_url=f"http://127.0.0.1:{free_port()}/api/").test_client()
    started = time.monotonic()
    response = deliver(client, te.event())
    assert time.monotonic() - started < 5
    assert response.status_code == 200
    assert "could not be reached" in response.json["reason"]
    assert len(all_jobs(queue)) == 1


def test_without_stat_channel_the_jobs_are_queued_and_the_answer_says_why_not_posted(
    make_app, emulator_client, queue
):
    response = deliver(make_app(stat_channel=None).test_client(), te.event())
    assert response.status_code == 200
    assert response.json["posted"] is False
    assert "STAT_CHANNEL is not set" in response.json["reason"]
    assert len(all_jobs(queue)) == 1
    assert posts(emulator_client) == []


def test_without_slack_tokens_the_answer_says_what_to_set(make_app, queue):
    client = make_app(slack_bot_token=None, slack_app_token=None).test_client()
    response = deliver(client, te.event())
    assert response.status_code == 200
    assert response.json["posted"] is False
    assert "SLACK_BOT_TOKEN" in response.json["reason"]


def test_a_channel_the_bot_is_not_in_says_to_invite_it(make_app, emulator_client):
    emulator_client.add_channel("stat-tickets", members=[])
    response = deliver(make_app(stat_channel="stat-tickets").test_client(), te.event())
    assert response.json["posted"] is False
    assert "invite the bot to stat-tickets or change STAT_CHANNEL" in response.json["reason"]


# --- metrics and check-config --------------------------------------------------------------


def test_metrics_count_results(client):
    deliver(client, te.event())
    deliver(client, te.event(), secret="forged")
    text = client.get("/metrics").get_data(as_text=True)
    assert 'stat_bot_trac_requests_total{result="posted"} 1.0' in text
    assert 'stat_bot_trac_requests_total{result="bad_signature"} 1.0' in text


def test_check_config_lists_trac_rules(configure, cli):
    configure(RAW)
    result = cli("check-config")
    assert result.returncode == 0, result.stderr
    assert "trac rule #1 (created -> check): POST /trac" in result.stdout
    assert "trac rule #2 (changed -> closed): POST /trac" in result.stdout
    data = json.loads(cli("--json", "check-config").stdout)
    assert data["namespaces"]["hw"]["trac_rules"][0] == {
        "event": "created",
        "when": {"xname": True},
        "job_type": "check",
        "args": {"node": "{xname}"},
    }


@pytest.mark.parametrize(
    ("xname", "fragment"),
    [("x1000c0s0b0n0\u0000; reboot", "NUL byte"), ("'" * 30_000, "126,976")],
    ids=["NUL byte", "beyond one argument's limit"],
)
def test_args_no_job_could_run_with_are_refused_and_nothing_recorded(
    client, emulator_client, queue, xname, fragment
):
    event = te.event(fields={"xname": xname})
    response = deliver(client, event)
    assert response.status_code == 400, response.json
    assert response.json["error"].startswith("not queued: ")
    assert fragment in response.json["error"]
    assert all_jobs(queue) == []
    assert posts(emulator_client) == []
    # Not recorded as delivered: the plugin's retry with a usable ticket goes through.
    fixed = {**event, "fields": {**event["fields"], "xname": "x1000c0s0b0n0"}}
    assert deliver(client, fixed).status_code == 200
    assert len(all_jobs(queue)) == 1
