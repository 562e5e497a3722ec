"""The incident lifecycle against a real queue (SQLite and PostgreSQL) and the Slack emulator:
concurrent changes, re-opening, permissions, and a failed open that leaves nothing behind."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from slack_sdk import WebClient

from stat_bot.incidents.model import EntryKind
from stat_bot.incidents.service import Actor, IncidentError, IncidentService
from stat_bot.incidents.templates import load
from stat_bot.integrations.slack_emulator import ADMIN_USER_ID, GUEST_USER_ID, EmulatorThread
from stat_bot.queue.base import OutboxState, Queue
from stat_bot.report.channels import IncidentChannels
from stat_bot.settings import Settings

CONFIG = {
    "incidents": {
        "jobs": {
            name: {"run_args_template": "true"} for name in ("snapshot", "postmortem", "archive")
        }
    }
}
ADA = Actor(ADMIN_USER_ID, "admin")


@pytest.fixture
def service(
    make_settings: Any,
    queue: Queue,
    configure: Any,
    slack_emulator: EmulatorThread,
    slack_web_client: WebClient,
) -> IncidentService:
    configs = configure(CONFIG)
    settings: Settings = make_settings(
        incidents_digest_channel="incidents",
        incident_allowed_users=f"{ADMIN_USER_ID},{GUEST_USER_ID}",
    )
    return IncidentService(
        settings, queue, load(None), IncidentChannels(slack_web_client), lambda: configs
    )


def test_two_people_changing_one_incident_at_once_both_count(
    service: IncidentService, queue: Queue
) -> None:
    incident = service.open("Lustre MDS failover", by=ADA)
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def change(index: int) -> None:
        try:
            start.wait()
            if index % 2:
                service.set_role(
                    incident.id, ["commander", "comms", "tech"][index % 3], GUEST_USER_ID, by=ADA
                )
            else:
                service.note(incident.id, f"note {index}", by=ADA)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=change, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    after = queue.incident(incident.id)
    assert set(after.roles) == {"comms", "commander"}
    texts = [e.text for e in queue.incident_timeline(incident.id)]
    assert "note 0" in texts
    assert "note 2" in texts
    # Every change stores a new version of the two messages opened with it, under their refs.
    control = queue.outbox_find(f"incident:{incident.id}:control")
    digest = queue.outbox_find(f"incident:{incident.id}:digest")
    assert control[0].id == after.control_outbox
    assert digest[0].id == after.digest_outbox
    assert len(control) == len(digest) == 3  # opened, and two role changes (notes edit nothing)


def test_resolve_reopen_resolve_keeps_one_story(service: IncidentService, queue: Queue) -> None:
    incident = service.open("fabric manager down", by=ADA)
    service.set_status(incident.id, "resolved", by=ADA)
    first = queue.incident(incident.id)
    assert first.resolved_at is not None
    assert "re-opened" in service.set_status(incident.id, "investigating", by=ADA)
    assert queue.incident(incident.id).resolved_at is None
    service.set_status(incident.id, "resolved", by=ADA)
    kinds = [e.kind for e in queue.incident_timeline(incident.id)]
    assert kinds.count(EntryKind.RESOLVED) == 2
    assert kinds.count(EntryKind.REOPENED) == 1
    assert "already" in service.set_status(incident.id, "resolved", by=ADA)
    postmortems = [j for j in queue.jobs(limit=50) if j.job_type == "postmortem"]
    assert len(postmortems) >= 1  # queued on each resolve (and merged while one waits)


def test_refusals_change_nothing_and_say_why(service: IncidentService, queue: Queue) -> None:
    incident = service.open("nodes rebooting", by=ADA)
    before = queue.incident(incident.id)
    with pytest.raises(IncidentError, match="only <@U0ADMIN>, <@U0GUEST> may change"):
        service.set_status(incident.id, "monitoring", by=Actor("U0VISITOR"))
    with pytest.raises(IncidentError, match="There is no status `fixed`; choose one of"):
        service.set_status(incident.id, "fixed", by=ADA)
    with pytest.raises(IncidentError, match="There is no role `janitor`"):
        service.set_role(incident.id, "janitor", GUEST_USER_ID, by=ADA)
    with pytest.raises(IncidentError, match="is not an xname"):
        service.link(incident.id, xnames=["node12"], by=ADA)
    with pytest.raises(IncidentError, match="needs a short description"):
        service.open("   ", by=ADA)
    assert queue.incident(incident.id) == before


def test_an_open_that_cannot_be_stored_archives_its_channel(
    service: IncidentService,
    queue: Queue,
    slack_web_client: WebClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("database went away")

    monkeypatch.setattr(queue, "open_incident", broken)
    with pytest.raises(IncidentError, match="could not be stored"):
        service.open("storage outage", by=ADA)
    created = [
        c
        for c in slack_web_client.conversations_list(
            types="public_channel", exclude_archived=False
        )["channels"]
        if c["name"].endswith("-storage-outage")
    ]
    assert len(created) == 1
    assert created[0]["is_archived"]
    assert queue.incidents() == []


def test_a_hostile_description_stays_text(service: IncidentService, queue: Queue) -> None:
    incident = service.open("<!channel> *pwn* <https://evil.example|click> ünïcødé 🚨", by=ADA)
    assert incident.channel_name.endswith(
        "-channel-pwn-https-evil-example-click-unicde"
    )  # ø has no ASCII form
    control = next(i for i in queue.outbox_items(limit=20) if i.id == incident.control_outbox)
    assert "<!channel>" not in control.payload
    assert "&lt;!channel&gt;" in control.payload
    assert control.state is OutboxState.PENDING
