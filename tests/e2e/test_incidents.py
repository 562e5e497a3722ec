"""Incidents end to end: the real Bolt app and dispatcher against the Slack emulator and a real
tracd, from opening to postmortem.

Opened by a mention, by `/incident` and by a :rotating_light: reaction; roles claimed
and assigned with the pinned message's button and user select, the status changed
with its select; every change edits the pinned message and the digest; notes and
:pushpin:-marked messages land in the timeline with the linked jobs' results; resolving
writes the postmortem draft into Trac's wiki and archives the channel later; people
outside INCIDENT_ALLOWED_USERS cannot change roles or status.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
from slack_sdk import WebClient

from job_configs import raw_config
from stat_bot.integrations.slack_emulator import (
    ADMIN_USER_ID,
    BOT_TOKEN,
    GUEST_USER_ID,
    INCIDENTS_CHANNEL_ID,
    VISITOR_USER_ID,
    EmulatorThread,
)
from tests.conftest import STAT_BOT
from tests.e2e.slack_service import SlackService, message_text, start_service
from tests.trac_fixtures import TracServer

CONFIG = {
    "incidents": raw_config["incidents"],
    "hw": {
        "description": "A stand-in for hardware checks",
        "jobs": {"check": {"run_args_template": "echo checked {target}", "report_stdout": True}},
        "allowed_users": ["@hpc-admins"],  # a linked check is the asker's job: their rights
        "slack": [{"command": "check [target:target]", "job_type": "check"}],
    },
}
CONFIG["t"] = {
    "description": "A job that fails",
    "jobs": {"fail": {"run_args_template": "false"}},
    "slack": [{"command": "fail", "job_type": "fail"}],
}
NAME = re.compile(r"^inc-\d{12}-")


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, tracd: TracServer) -> Iterator[SlackService]:
    home = tmp_path_factory.mktemp("incidents-e2e")
    for namespace in CONFIG:
        (home / "workspace" / namespace).mkdir(parents=True)
    with EmulatorThread() as emulator:
        running = start_service(
            home,
            emulator,
            CONFIG,
            INCIDENTS_DIGEST_CHANNEL="incidents",
            INCIDENT_AUTO_INVITE_GROUP="hpc-admins",
            INCIDENT_OPEN_REACTION="rotating_light",
            INCIDENT_ALLOWED_USERS=f"@hpc-admins,{GUEST_USER_ID}",
            # Longer than any test takes, so no channel is archived behind a test's back;
            # the archive job is run early by `archive_now` where a test wants it.
            INCIDENT_ARCHIVE_AFTER="600",
            INCIDENT_VIDEO_LINK="https://meet.example.org/hpc-war-room",
            INCIDENT_STATUS_ENDPOINTS=f"trac={tracd.url},nowhere=http://127.0.0.1:9/status",
            INCIDENT_STATUS_TIMEOUT="2",
            **tracd.environ(),
        )
        try:
            yield running
        finally:
            running.stop()
    for name in ("bot", "dispatcher"):
        assert "Traceback" not in running.log_of(name), running.log_of(name)


@pytest.fixture(scope="module")
def web(service: SlackService) -> WebClient:
    """The Web API as the bot sees it (channel info, pins)."""
    return WebClient(token=BOT_TOKEN, base_url=service.emulator.api_url)


def channel_of(answer: dict[str, Any]) -> str:
    found = re.search(r"<#(C[A-Z0-9]+)>", message_text(answer))
    assert found, message_text(answer)
    return found[1]


def control(service: SlackService, channel: str, predicate: Any = None) -> dict[str, Any]:
    """The pinned control message, once `predicate` holds for it."""

    def wanted(m: dict[str, Any]) -> bool:
        return bool(m["pinned_to"]) and (predicate is None or predicate(m))

    return service.slack.wait_for_message(channel, wanted, timeout=30)


def digest(service: SlackService, incident: int, predicate: Any = None) -> dict[str, Any]:
    def wanted(m: dict[str, Any]) -> bool:
        text = message_text(m)
        return f"Incident {incident}:" in text and (predicate is None or predicate(text))

    return service.slack.wait_for_message(INCIDENTS_CHANNEL_ID, wanted, timeout=30)


def said(service: SlackService, channel: str, words: str, timeout: float = 30) -> dict[str, Any]:
    return service.slack.wait_for_message(
        channel, lambda m: m["bot_id"] and words in message_text(m), timeout=timeout
    )


def selected(message: dict[str, Any]) -> str | None:
    for block in message["blocks"]:
        for element in block.get("elements") or []:
            if element.get("action_id") == "incident_status":
                return (element.get("initial_option") or {}).get("value")
    return None


def open_incident(service: SlackService, text: str) -> dict[str, Any]:
    """An incident opened by a mention; each test has its own (xdist may run a module's
    tests on two workers, each with its own service)."""
    where = service.say(f"<@U0BOT> incident open {text}")
    answer = service.reply(where, "is open", timeout=30)
    channel = channel_of(answer)
    return {"channel": channel, "id": service.queue.incident_by_channel(channel).id}


@pytest.fixture
def opened(service: SlackService) -> dict[str, Any]:
    return open_incident(service, "GPFS hangs on login nodes --xname x1000c0s0b0n0 --ticket 12")


def archive_job(service: SlackService, incident: int) -> Any:
    """The `incidents archive` job a resolve queued, INCIDENT_ARCHIVE_AFTER after it."""
    (job,) = [
        j
        for j in service.queue.jobs(limit=200)
        if j.job_type == "archive"
        and j.args == {"incident": str(incident)}
        and not j.status.finished
    ]
    return job


def archive_now(service: SlackService, incident: int) -> str:
    """What the archive job does when its time comes, run now (as the dispatcher runs it)."""
    result = subprocess.run(
        [STAT_BOT, "task", "incident-archive", str(incident)],
        env={**service.env, "INCIDENT_ARCHIVE_AFTER": "1"},
        cwd=service.home,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_opening_by_command_creates_the_channel_and_everything_in_it(
    service: SlackService, opened: dict[str, Any], web: WebClient
) -> None:
    channel, number = opened["channel"], opened["id"]
    info = web.conversations_info(channel=channel)["channel"]
    assert NAME.match(info["name"]), info["name"]
    assert info["name"].endswith("-gpfs-hangs-on-login-nodes")
    assert "GPFS hangs on login nodes" in info["topic"]["value"]
    assert "https://meet.example.org/hpc-war-room" in info["topic"]["value"]
    assert "GPFS hangs on login nodes" in info["purpose"]["value"]
    members = web.conversations_members(channel=channel)["members"]
    assert ADMIN_USER_ID in members  # the opener, and the @hpc-admins group
    pinned = control(service, channel)
    assert f"Incident {number}: investigating" in message_text(pinned)
    assert selected(pinned) == "investigating"
    actions = [
        e.get("action_id")
        for b in pinned["blocks"]
        for e in [b.get("accessory") or {}, *(b.get("elements") or [])]
    ]
    assert "incident_claim-commander" in actions
    assert "incident_assign" in actions
    assert "Incident commander*: _unclaimed_" in message_text(pinned)
    assert "investigating" in message_text(digest(service, number))
    # The jobs it started report in the channel: the site snapshot and the xname's check.
    snapshot = said(service, channel, "*nowhere:* unreachable")  # the report, not its progress
    assert "*Dispatchers:* 1 alive of 1 registered" in message_text(snapshot)
    said(service, channel, "checked x1000c0s0b0n0")
    assert service.queue.incident(number).tickets == (12,)


def test_claim_assign_and_refusals(service: SlackService) -> None:
    """Claim and assign update the pinned message and the digest and DM the holder; someone
    outside INCIDENT_ALLOWED_USERS is told, privately, and changes nothing."""
    incident = open_incident(service, "Slurm controller flapping")
    channel, number = incident["channel"], incident["id"]
    pinned = control(service, channel)
    service.slack.click(GUEST_USER_ID, channel, pinned["ts"], "incident_claim-commander")
    after = control(service, channel, lambda m: f"<@{GUEST_USER_ID}>" in message_text(m))
    assert "Incident commander*: <@" in message_text(after)
    said(service, channel, "is now the *Incident commander* (claimed the role)")
    digest(service, number, lambda text: f"Incident commander: <@{GUEST_USER_ID}>" in text)
    dm = service.slack.wait_for_message(
        "D" + GUEST_USER_ID[1:],
        lambda m: (
            f"incident {number} " in message_text(m) and "Incident commander" in message_text(m)
        ),
        timeout=30,
    )
    assert "You run the incident" in message_text(dm)  # what the role means

    # The first user select is the commander's: the admin hands the role to someone else,
    # who is invited to the channel.
    service.slack.click(
        ADMIN_USER_ID, channel, pinned["ts"], "incident_assign", select_user="visitor"
    )
    control(
        service, channel, lambda m: f"Incident commander*: <@{VISITOR_USER_ID}>" in message_text(m)
    )
    said(
        service,
        channel,
        f"<@{VISITOR_USER_ID}> is now the *Incident commander* (assigned by <@{ADMIN_USER_ID}>)",
    )
    assert service.queue.incident(number).roles == {"commander": VISITOR_USER_ID}
    previous = [
        e.data.get("previous") for e in service.queue.incident_timeline(number) if e.kind == "role"
    ]
    assert previous == [None, GUEST_USER_ID]  # who held it before is in the timeline

    # The visitor holds a role but is not in INCIDENT_ALLOWED_USERS: no changes.
    before = service.queue.incident(number)
    service.slack.click(VISITOR_USER_ID, channel, pinned["ts"], "incident_claim-tech")
    refusal = service.slack.wait_for_ephemeral(
        lambda e: "only @hpc-admins" in (e.get("text") or ""), user=VISITOR_USER_ID, timeout=30
    )
    assert refusal["channel"] == channel
    where = service.say("<@U0BOT> incident status monitoring", user="visitor", channel=channel)
    assert "nothing was changed" in message_text(service.reply(where, "only"))
    where = service.say("<@U0BOT> incident link x1000c0s1b0n0", user="visitor", channel=channel)
    assert "nothing was changed" in message_text(service.reply(where, "only"))
    after = service.queue.incident(number)
    assert (after.roles, after.status, after.xnames) == (before.roles, before.status, ())


def test_an_incident_from_status_to_postmortem_and_reopened(
    service: SlackService, tracd: TracServer, web: WebClient
) -> None:
    """Status select, notes and marked messages make the timeline (with the linked jobs'
    results); resolving writes the postmortem into Trac's wiki; re-opening is recorded and
    keeps the channel, whose archiving waits INCIDENT_ARCHIVE_AFTER."""
    incident = open_incident(service, "Lustre MDS failover --xname x1000c0s0b0n0 --ticket 12")
    channel, number = incident["channel"], incident["id"]
    pinned = control(service, channel)
    service.slack.click(
        ADMIN_USER_ID, channel, pinned["ts"], "incident_status", option="identified"
    )
    control(service, channel, lambda m: selected(m) == "identified")
    digest(service, number, lambda text: "Status: *identified*" in text)
    said(service, channel, "set the status to *identified*")

    where = service.say("<@U0BOT> incident note restarted mmfsd on io[1-4]", channel=channel)
    service.wait_reaction(where, "memo")
    evidence = service.say("waiters on nsd3 cleared after the restart", channel=channel)
    service.slack.react(ADMIN_USER_ID, channel, evidence[1], "pushpin")
    service.wait_reaction(evidence, "white_check_mark")

    where = service.say("<@U0BOT> incident help", channel=channel)
    manual = message_text(service.reply(where, "incident status"))
    assert "`incident role <role> @someone`" in manual
    assert "`commander`, `comms`, `tech`" in manual
    assert "`incident help` lists the rest" in message_text(
        service.reply(service.say("<@U0BOT> help"), "Namespaces")
    )
    said(service, channel, "checked x1000c0s0b0n0")  # the linked check's report
    said(service, channel, "*nowhere:* unreachable")  # the snapshot's
    deadline = time.monotonic() + 30
    while not all(
        (j := service.queue.get(job_id)) and j.status.finished
        for job_id in service.queue.incident(number).jobs
    ):
        assert time.monotonic() < deadline, "the linked jobs did not finish"
        time.sleep(0.1)
    where = service.say("<@U0BOT> incident timeline", channel=channel)
    timeline = message_text(service.reply(where, f"Incident {number}"))
    for line in (
        "opened: Lustre MDS failover",
        "status: investigating → identified",
        "restarted mmfsd on io[1-4]",
        "waiters on nsd3 cleared after the restart",
        "`hw check` succeeded",
        "`incidents snapshot` succeeded",
    ):
        assert line in timeline, timeline

    where = service.say("<@U0BOT> incident resolve", channel=channel)
    assert "Time to first role claimed" in message_text(service.reply(where, "resolved"))
    said(service, channel, f"Incident {number} is resolved.")
    link = said(service, channel, "Postmortem draft:", timeout=60)
    url = re.search(r"(http://\S+/wiki/Incidents/\S+)", message_text(link))
    assert url, message_text(link)
    name = url[1].split("/wiki/", 1)[1].rstrip(">")
    page = tracd.client().wiki_page(name)
    assert page is not None
    assert f"= Incident {number}: {{{{{{Lustre MDS failover}}}}}} =" in page.text
    assert "restarted mmfsd on io[1-4]" in page.text
    assert " * #12" in page.text
    assert "x1000c0s0b0n0" in page.text
    digest(service, number, lambda text: "Postmortem:" in text and "resolved" in text)
    resolved_at = service.queue.incident(number).resolved_at
    assert resolved_at is not None

    # Re-opened before its archive job's time: the job, when it runs, keeps the channel.
    assert archive_job(service, number).start_after == pytest.approx(resolved_at + 600, abs=5)
    where = service.say("<@U0BOT> incident status investigating", channel=channel)
    assert "re-opened" in message_text(service.reply(where, "re-opened"))
    assert "was re-opened: its channel stays" in archive_now(service, number)
    assert not web.conversations_info(channel=channel)["channel"].get("is_archived")
    kinds = [e.kind for e in service.queue.incident_timeline(number)]
    assert "reopened" in kinds


def test_slash_command_opens_and_resolving_archives_later(
    service: SlackService, web: WebClient
) -> None:
    answer = service.slack.command(
        GUEST_USER_ID, "general", "/incident", "www down --xname x1000c0s3b0n0", wait_ack=True
    )
    assert answer["acked"]
    reply = service.slack.wait_for_ephemeral(
        lambda e: "is open" in (e.get("text") or ""), user=GUEST_USER_ID, timeout=30
    )
    channel = channel_of(reply)
    assert web.conversations_info(channel=channel)["channel"]["name"].endswith("-www-down")
    members = web.conversations_members(channel=channel)["members"]
    assert GUEST_USER_ID in members  # the opener
    assert ADMIN_USER_ID in members  # INCIDENT_AUTO_INVITE_GROUP's member
    assert VISITOR_USER_ID not in members
    # The digest's Join button brings anyone in.
    number = service.queue.incident_by_channel(channel).id
    entry = digest(service, number)
    service.slack.click(VISITOR_USER_ID, INCIDENTS_CHANNEL_ID, entry["ts"], "incident_join")
    deadline = time.monotonic() + 30
    while VISITOR_USER_ID not in web.conversations_members(channel=channel)["members"]:
        assert time.monotonic() < deadline, "the Join button did not invite"
        time.sleep(0.1)
    # Its snapshot names the configured status endpoint (the test Trac answers 200).
    said(service, channel, "*trac:* HTTP 200")
    # The guest may not use `hw`: the linked check is not run for them, and that is said.
    said(
        service, channel, "Not started: Sorry <@U0GUEST>, `hw` commands are limited to @hpc-admins"
    )
    assert not [j for j in service.queue.jobs(limit=100) if j.args.get("target") == "x1000c0s3b0n0"]
    empty = service.slack.command(ADMIN_USER_ID, "general", "/incident", "   ")
    assert empty
    service.slack.wait_for_ephemeral(
        lambda e: "needs a short description" in (e.get("text") or ""),
        user=ADMIN_USER_ID,
        timeout=30,
    )
    where = service.say("<@U0BOT> incident resolve", channel=channel)
    service.reply(where, "resolved")
    assert archive_job(service, number).start_after > time.time() + 500
    assert "is being archived" in archive_now(service, number)
    deadline = time.monotonic() + 60
    while not web.conversations_info(channel=channel)["channel"].get("is_archived"):
        assert time.monotonic() < deadline, "the channel was never archived"
        time.sleep(0.2)
    # An archived incident is not re-opened (its channel could hold nothing more).
    where = service.say(f"<@U0BOT> incident {number} status investigating")
    assert "cannot be re-opened" in message_text(service.reply(where, "archived"))


def test_a_reaction_opens_an_incident_with_the_message_as_its_first_entry(
    service: SlackService, web: WebClient
) -> None:
    where = service.say("Lustre OSTs on oss3 went read-only <!channel>")
    service.slack.react(ADMIN_USER_ID, where[0], where[1], "rotating_light")
    answer = service.reply(where, "is open", timeout=30)
    channel = channel_of(answer)
    name = web.conversations_info(channel=channel)["channel"]["name"]
    assert re.match(r"^inc-\d{12}-auto-[0-9a-f]{6}$", name), name
    incident = service.queue.incident_by_channel(channel)
    texts = [e.text for e in service.queue.incident_timeline(incident.id)]
    assert any("Lustre OSTs on oss3 went read-only" in t for t in texts), texts
    # Someone else's :rotating_light: on the same message opens nothing more.
    before = len(service.queue.incidents())
    service.slack.react(GUEST_USER_ID, where[0], where[1], "rotating_light", wait_ack=True)
    # Nor does one in a private channel: its words stay there.
    private = service.slack.add_channel("secret-ops", is_private=True, members=["admin", "U0BOT"])
    secret = service.say("the root password is in vault 7", channel=private["id"])
    service.slack.react(ADMIN_USER_ID, secret[0], secret[1], "rotating_light", wait_ack=True)
    time.sleep(3)  # what a wrongly opened incident would need to show
    assert len(service.queue.incidents()) == before
    # Marking one message twice puts it in the timeline once.
    evidence = service.say("oss3 remounted read-write", channel=channel)
    service.slack.react(ADMIN_USER_ID, channel, evidence[1], "pushpin")
    service.wait_reaction(evidence, "white_check_mark")
    service.slack.react(GUEST_USER_ID, channel, evidence[1], "pushpin", wait_ack=True)
    time.sleep(2)
    marked = [
        e for e in service.queue.incident_timeline(incident.id) if e.data.get("ts") == evidence[1]
    ]
    assert len(marked) == 1


def test_a_failed_jobs_report_opens_an_incident_about_it(
    service: SlackService, web: WebClient
) -> None:
    where = service.say("<@U0BOT> t fail")
    report = service.reply(where, "failed with exit status 1", timeout=30)
    job = service.job_for(where)
    service.slack.click(ADMIN_USER_ID, where[0], report["ts"], "incident_open", wait_ack=True)
    answer = service.reply(where, "is open", timeout=30)
    channel = channel_of(answer)
    incident = service.queue.incident_by_channel(channel)
    assert incident.description == f"job #{job.id} t fail failed"
    assert job.id in incident.jobs
    assert web.conversations_info(channel=channel)["channel"]["name"].endswith(
        f"-job-{job.id}-t-fail-failed"
    )
    where = service.say("<@U0BOT> incident timeline", channel=channel)
    assert f"job #{job.id} `t fail` failed, exit 1" in message_text(
        service.reply(where, "Incident")
    )
