"""The weekly handoff as the dispatcher runs it: `stat-bot task oncall-handoff`, a real
subprocess on the test's backend, mailing a real SMTP server (aiosmtpd: STARTTLS and
AUTH required, a self-signed certificate given as SMTP_CA_FILE) and reading a real Trac."""

from __future__ import annotations

import email
import email.policy
import subprocess
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from stat_bot.hardware.health import NodeHealth, State
from stat_bot.incidents.model import EntryKind, IncidentDraft, TimelineEntry
from stat_bot.jobs.model import JobRequest, JobStatus, Source
from stat_bot.queue.alert_model import AlertEvent, AlertStatus
from stat_bot.queue.base import NodeHealthRow, Queue
from stat_bot.queue.runbook_model import RunbookAnswerDraft, RunbookPageDraft, RunbookSectionDraft
from tests.conftest import STAT_BOT
from tests.smtp_fixtures import PASSWORD, SmtpServer, free_port
from tests.trac_fixtures import TracServer

ROOT = Path(__file__).resolve().parents[2]
DAY = 86400.0


def seed(queue: Queue) -> None:
    """Two alerts over the week: NodeDown fires 3 times (critical), DiskFull once (warning)."""
    now = queue.now()

    def fire(
        fp: str,
        title: str,
        service: str,
        severity: str,
        at: float,
        status: AlertStatus = AlertStatus.FIRING,
    ) -> None:
        queue.record_alerts([AlertEvent("alertmanager", fp, title, status, at, service, severity)])

    for days_ago in (5, 3, 1):
        fire("n1", "NodeDown: <!channel> x1000c0s0b0n0", "slurm", "critical", now - days_ago * DAY)
        fire(
            "n1",
            "NodeDown: <!channel> x1000c0s0b0n0",
            "slurm",
            "critical",
            now - days_ago * DAY + 600,
            AlertStatus.RESOLVED,
        )
    # NodeDown's latest firing was answered by a runbook section, rated by two people
    node_down = queue.alert_by_key("alertmanager", "n1")
    assert node_down is not None
    url = "https://wiki.example/Runbooks/NodeDown"
    section = RunbookSectionDraft("nd", "NodeDown: a node stopped answering", "1. Drain it", url)
    queue.store_runbook_page(RunbookPageDraft("site", url, url, "NodeDown", "h1", (section,)))
    (hit,) = queue.search_runbooks("NodeDown stopped answering", limit=1)
    answer = queue.record_runbook_answer(
        RunbookAnswerDraft(
            node_down.id, node_down.fire_count, hit.section_id, hit.title, url, hit.score, "t",
        )
    )  # fmt: skip
    assert answer is not None
    queue.rate_runbook(answer.id, "U1", True)
    queue.rate_runbook(answer.id, "U2", False)
    fire("d1", "DiskFull: /scratch", "lustre", "warning", now - 2 * DAY)
    disk = queue.alert_by_key("alertmanager", "d1")
    assert disk is not None
    queue.acknowledge_alert(disk.id, "U123", at=now - 2 * DAY + 300)
    queue.record_alerts(
        [AlertEvent("alertmanager", "old", "Ancient", AlertStatus.FIRING, now - 30 * DAY)]
    )
    # a job that failed this week
    job = queue.enqueue(JobRequest("hw", "check", {"target": "x1"}, source=Source.SCHEDULE)).job
    (claimed,) = queue.claim("w1", 1)
    queue.finish(claimed.id, JobStatus.FAILED, 3)
    assert job is not None
    # an incident opened and resolved 3 h 20 min later, one still open
    resolved = queue.open_incident(
        IncidentDraft(channel_id="C1", channel_name="inc-gpfs", description="GPFS hangs",
                      status="investigating", opened_by="U1", opened_by_name="ada"),
        entries=[TimelineEntry(EntryKind.OPENED, "opened")], now=now - 2 * DAY,
    )  # fmt: skip
    queue.update_incident(
        resolved.id, version=None,
        changes={"status": "resolved", "resolved_at": now - 2 * DAY + 12000},
        entries=[TimelineEntry(EntryKind.RESOLVED, "resolved")],
    )  # fmt: skip
    # two sweeps of all nodes: x1000c0s0b0n0 turned critical in the last one
    for state in (State.OK, State.CRITICAL):
        health = NodeHealth("x1000c0s0b0n0", state=state)
        row = NodeHealthRow(health.xname, state.value, now, health.to_dict())
        queue.record_sweep("all", now - 60, now, [row])


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [STAT_BOT, "task", "oncall-handoff", *args],
        env=env, capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip


@pytest.fixture
def env(cli_env: dict[str, str], home: Path) -> dict[str, str]:
    (home / "job_configs.py").write_text((ROOT / "job_configs.py").read_text())
    return {k: v for k, v in cli_env.items() if not k.startswith(("SMTP_", "TRAC_", "HANDOFF_"))}


def parts(message: EmailMessage) -> tuple[str, str, bytes, str]:
    assert message.get_content_type() == "multipart/alternative"
    plain, related = message.get_payload()  # type: ignore[misc]
    assert plain.get_content_type() == "text/plain"
    assert related.get_content_type() == "multipart/related"
    html_part, image = related.get_payload()
    assert html_part.get_content_type() == "text/html"
    assert image.get_content_type() == "image/png"
    cid = image["Content-ID"].strip("<>")
    return plain.get_content(), html_part.get_content(), image.get_content(), cid


@pytest.mark.trac
def test_the_handoff_is_mailed_with_its_chart_and_numbers(
    queue: Queue, env: dict[str, str], smtp_server: SmtpServer, tracd: TracServer
) -> None:
    seed(queue)
    client = tracd.client()
    ticket = client.create(summary="Handoff test: PSU warning", type="defect", priority="major")
    result = run({**env, **smtp_server.environ(), **tracd.environ()})
    assert result.returncode == 0, result.stderr
    # the Slack text answers the asker (the job's report), escaped
    assert "fired 4 times" in result.stdout
    assert "&lt;!channel&gt;" in result.stdout
    assert "<!channel>" not in result.stdout
    assert "*Failed jobs (1):*" in result.stdout
    assert f"#{ticket}>" in result.stdout
    (received,) = smtp_server.messages
    assert sorted(received.rcpt_tos) == ["lead@example.org", "oncall@example.org"]
    assert smtp_server.logins == ["handoff"]
    message = email.message_from_bytes(received.data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    assert message["Subject"] == "On-call handoff: the last 7 days"
    plain, html, png, cid = parts(message)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert f'src="cid:{cid}"' in html
    assert "Alerts fired 4 times." in plain
    assert "By service: slurm: 3, lustre: 1" in plain
    assert "By severity: critical: 3, warning: 1" in plain
    assert " 1. NodeDown: <!channel> x1000c0s0b0n0 (slurm, critical): 3x" in plain
    assert (
        "runbook: NodeDown: a node stopped answering https://wiki.example/Runbooks/NodeDown "
        "(1 helpful, 1 not helpful)"
    ) in plain
    assert "Time to acknowledge: median 5 min, p90 5 min." in plain
    assert "Time to resolve: median 10 min, p90 10 min." in plain
    assert "Ancient" not in plain
    assert f"opened #{ticket} Handoff test: PSU warning" in plain
    assert "Failed jobs (1):" in plain
    assert "Incidents (1):" in plain
    assert "#1 GPFS hangs: opened" in plain
    assert "resolved after 3 h 20 min" in plain
    assert "Last sweep (all, " in plain
    assert "1 new problem" in plain
    assert "x1000c0s0b0n0 ok -> critical" in plain
    assert "hw check: failed" in plain
    assert "NodeDown: &lt;!channel&gt;" in html
    assert "<!channel>" not in html
    assert "<td>3</td>" in html


def test_a_wrong_password_says_so_and_never_shows_it(
    queue: Queue, env: dict[str, str], smtp_server: SmtpServer
) -> None:
    wrong = "Wr0ng-pa55word-xyz"
    result = run({**env, **smtp_server.environ(SMTP_PASSWORD=wrong)})
    assert result.returncode == 1
    assert "refused the login of 'handoff'" in result.stderr
    assert "SMTP_PASSWORD" in result.stderr
    for secret in (wrong, PASSWORD):
        assert secret not in result.stderr + result.stdout
    assert smtp_server.messages == []
    # Trac unset: the summary says so instead of failing
    assert "Trac is not configured (TRAC_URL)" in result.stdout


def test_an_unreachable_server_fails_the_job_and_sends_nothing(
    queue: Queue, env: dict[str, str], smtp_server: SmtpServer
) -> None:
    result = run({**env, **smtp_server.environ(SMTP_PORT=str(free_port()))})
    assert result.returncode == 1
    assert "cannot reach the SMTP server 127.0.0.1:" in result.stderr
    assert PASSWORD not in result.stderr + result.stdout
    assert smtp_server.messages == []


def test_an_untrusted_certificate_is_refused(
    queue: Queue, env: dict[str, str], smtp_server: SmtpServer
) -> None:
    result = run({**env, **smtp_server.environ(SMTP_CA_FILE="")})
    assert result.returncode == 1
    assert "certificate is not trusted" in result.stderr
    assert "SMTP_CA_FILE" in result.stderr
    assert smtp_server.messages == []


def test_scheduled_it_posts_to_the_handoff_channel(queue: Queue, env: dict[str, str]) -> None:
    seed(queue)
    result = run({**env, "ONCALL_CHANNEL": "#oncall", "HANDOFF_CHANNEL": "#handoff"}, "--post")
    assert result.returncode == 0, result.stderr
    assert "posted to #handoff" in result.stdout
    (item,) = [i for i in queue.outbox_items() if i.kind == "handoff"]
    assert item.channel == "#handoff"
    assert "fired 4 times" in item.payload


def test_a_bad_week_is_refused_with_the_form_to_use(queue: Queue, env: dict[str, str]) -> None:
    result = run(env, "--week", "2026-48")
    assert result.returncode == 2
    assert "write it as 2026-W48" in result.stderr


def test_a_server_without_starttls_gets_nothing_when_it_is_required(
    queue: Queue, env: dict[str, str], smtp_server: SmtpServer
) -> None:
    """A plain server (no STARTTLS offered): refused before the login, nothing sent."""
    from aiosmtpd.controller import Controller

    received: list[bytes] = []

    class Keep:
        async def handle_DATA(self, _s: object, _e: object, envelope: Any) -> str:  # noqa: N802
            received.append(envelope.content)
            return "250 ok"

    port = free_port()
    plain = Controller(Keep(), hostname="127.0.0.1", port=port)
    plain.start()
    try:
        result = run({**env, **smtp_server.environ(SMTP_PORT=str(port))})
    finally:
        plain.stop()
    assert result.returncode == 1
    assert "does not offer STARTTLS, and SMTP_STARTTLS is on" in result.stderr
    assert PASSWORD not in result.stderr + result.stdout
    assert received == []
