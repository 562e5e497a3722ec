"""The public status page's content (incidents/status_page.py): components, states, no leaks.

Incidents are made the way the service makes them (Queue.open_incident / update_incident on
the test's SQLite queue) and the page is built from what the queue gives back.
"""

from __future__ import annotations

import json

import pytest

from stat_bot.incidents.model import EntryKind, Incident, IncidentDraft, TimelineEntry
from stat_bot.incidents.status_page import (
    build_status_page,
    components_of,
    iso,
    nodes_of,
    plain_text,
    worst,
)
from stat_bot.queue import Queue

NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z
DAY = 86400.0

SECRET_DESCRIPTION = "GPFS hangs on login nodes, see ticket 4711 <@U0SECRET|grace>"
SECRET_CHANNEL = "inc-20270115-gpfs-hang-zebra"
SECRET_USER, SECRET_USER_NAME = "U0SECRETUSER", "adalovelace"


def open_incident(
    queue: Queue,
    *,
    xnames: tuple[str, ...] = (),
    status: str = "investigating",
    at: float = NOW - 3600,
    description: str = SECRET_DESCRIPTION,
    channel_name: str = SECRET_CHANNEL,
) -> Incident:
    return queue.open_incident(
        IncidentDraft(
            channel_id="C0SECRETCHAN",
            channel_name=channel_name,
            description=description,
            status=status,
            opened_by=SECRET_USER,
            opened_by_name=SECRET_USER_NAME,
            xnames=xnames,
            tickets=(4711,),
        ),
        entries=[
            TimelineEntry(EntryKind.OPENED, "opened", user=SECRET_USER, user_name=SECRET_USER_NAME)
        ],
        now=at,
    )


def resolve(queue: Queue, incident: Incident, at: float) -> Incident:
    return queue.update_incident(
        incident.id,
        version=incident.version,
        changes={"status": "resolved", "resolved_at": at, "roles": {"commander": SECRET_USER}},
        entries=[TimelineEntry(EntryKind.RESOLVED, "resolved", user=SECRET_USER)],
        now=at,
    )


def page(queue: Queue, *, details: bool = False, days: float = 7.0, now: float = NOW) -> dict:
    built = build_status_page(
        queue.incidents(), title="Cluster status", details=details, resolved_days=days, now=now
    )
    return built.data()


# -- components -----------------------------------------------------------------------------


def test_a_node_gives_its_cabinet_and_chassis_and_invalid_text_is_skipped() -> None:
    assert components_of(["x1000c0s0b0n0"]) == ("x1000", "x1000c0")
    assert components_of(["x1000c1s7b1"]) == ("x1000", "x1000c1")  # a blade's BMC
    assert components_of(["x1000c0"]) == ("x1000", "x1000c0")
    assert components_of(["x1000"]) == ("x1000",)
    assert components_of(["x1000m0p1"]) == ("x1000",)  # a cabinet PDU: no chassis
    assert components_of(["nid001234", "", "x1000c100", "X9000C3S0B0N1 "]) == (
        "x9000",
        "x9000c3",
    )
    # Natural order, each once.
    assert components_of(["x1000c10s0b0n0", "x1000c2s0b0n0", "x1000c2", "x3000c0"]) == (
        "x1000",
        "x1000c2",
        "x1000c10",
        "x3000",
        "x3000c0",
    )
    assert nodes_of(["x1000c0", "x1000c0s1b0n1", "bogus", "x1000c0s0b0n0"]) == (
        "x1000c0s0b0n0",
        "x1000c0s1b0n1",
    )


def test_the_overall_state_is_the_worst_open_status() -> None:
    assert worst([]) == "operational"
    assert worst(["monitoring", "identified"]) == "identified"
    assert worst(["monitoring", "investigating", "identified"]) == "investigating"
    assert worst(["monitoring", "major-outage"]) == "major-outage"  # unknown: the worst


def test_plain_text_drops_slack_markup_and_user_ids() -> None:
    text = plain_text(
        "Ask <@U123|grace> in <#C9|ops>, see <https://x.example/a|the doc> &amp; <!here>"
    )
    assert text == "Ask @grace in #ops, see the doc & @here"
    assert plain_text("<@U123> says\nhi\x00") == "@someone says hi"
    assert len(plain_text("x" * 2000)) == 500


# -- the page ---------------------------------------------------------------------------------


def test_operational_when_no_incident_is_open(queue: Queue) -> None:
    old = open_incident(queue, xnames=("x1000c0",), at=NOW - 20 * DAY)
    resolve(queue, old, NOW - 10 * DAY)  # beyond the 7 days: not shown
    data = page(queue)
    assert data == {
        "title": "Cluster status",
        "state": "operational",
        "summary": "All systems operational",
        "updated_at": "2027-01-15T08:00:00Z",
        "components": [],
        "incidents": [],
    }


def test_open_incidents_first_then_resolved_within_the_window(queue: Queue) -> None:
    resolved = resolve(
        queue, open_incident(queue, xnames=("x3000c1s0b0n0",), at=NOW - 2 * DAY), NOW - DAY
    )
    monitoring = open_incident(
        queue, xnames=("x1000c0s0b0n0", "x1000c1"), status="monitoring", at=NOW - 600
    )
    investigating = open_incident(queue, xnames=("x1000c0s1b0n0",), at=NOW - 7200)
    data = page(queue)
    assert data["state"] == "investigating"
    assert data["summary"] == "Investigating: 2 open incidents"
    assert [i["id"] for i in data["incidents"]] == [monitoring.id, investigating.id, resolved.id]
    first, second, third = data["incidents"]
    assert first == {
        "id": monitoring.id,
        "title": f"Incident #{monitoring.id}",
        "status": "monitoring",
        "open": True,
        "opened_at": iso(NOW - 600),
        "resolved_at": None,
        "components": ["x1000", "x1000c0", "x1000c1"],
    }
    assert third["status"] == "resolved"
    assert third["open"] is False
    assert third["resolved_at"] == "2027-01-14T08:00:00Z"
    assert third["components"] == ["x3000", "x3000c1"]
    # Only open incidents make a component affected; each shows the worst status on it.
    assert data["components"] == [
        {"name": "x1000", "kind": "cabinet", "state": "investigating"},
        {"name": "x1000c0", "kind": "chassis", "state": "investigating"},
        {"name": "x1000c1", "kind": "chassis", "state": "monitoring"},
    ]
    assert second["status"] == "investigating"
    # A window of 0 days drops the resolved one.
    assert [i["id"] for i in page(queue, days=0)["incidents"]] == [monitoring.id, investigating.id]


def test_nothing_internal_appears_without_details(queue: Queue) -> None:
    incident = open_incident(queue, xnames=("x1000c0s0b0n0", "x1000c0s5b1"))
    resolve(queue, open_incident(queue, xnames=("x1200c3s0b0n1",), at=NOW - DAY), NOW - 60)
    text = json.dumps(page(queue))
    for secret in (
        "GPFS",
        "login nodes",
        "4711",
        "grace",
        "U0SECRET",
        SECRET_USER,
        SECRET_USER_NAME,
        SECRET_CHANNEL,
        "C0SECRETCHAN",
        "commander",
        "s0b0n0",
        "x1000c0s",
        "x1200c3s",
        "description",
        "nodes",
    ):
        assert secret not in text, secret
    assert f'"title": "Incident #{incident.id}"' in text
    assert '"x1000c0"' in text
    assert '"x1200c3"' in text


def test_details_add_the_description_as_plain_text_and_the_nodes(queue: Queue) -> None:
    open_incident(
        queue,
        xnames=("x1000c0s0b0n0", "x1000c0", "not-an-xname"),
        description="&lt;b&gt;GPFS</b> hangs for <@U77|grace> &amp; co\n(see <https://wiki.example/x|wiki>)",
    )
    (incident,) = page(queue, details=True)["incidents"]
    assert incident["description"] == "<b>GPFS</b> hangs for @grace & co (see wiki)"
    assert incident["nodes"] == ["x1000c0s0b0n0"]
    assert incident["components"] == ["x1000", "x1000c0"]
    text = json.dumps(page(queue, details=True))
    for secret in ("U77", SECRET_USER, SECRET_CHANNEL, "not-an-xname"):
        assert secret not in text, secret


@pytest.mark.parametrize(
    ("status", "shown"),
    [
        ("Identified", "identified"),
        ("major-outage", "major-outage"),
        ("waiting on <@U0SECRET> from vendor", "open"),  # free text is never shown
        ("operational", "open"),  # an open incident is never "operational"
    ],
)
def test_an_open_status_is_shown_only_as_a_plain_word(
    queue: Queue, status: str, shown: str
) -> None:
    open_incident(queue, status=status)
    data = page(queue)
    assert data["incidents"][0]["status"] == shown
    assert data["state"] == shown
