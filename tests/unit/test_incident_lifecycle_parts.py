"""Channel names, the `/incident` text, durations and the postmortem draft: the pure parts."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stat_bot.bot.incidents import parse_open
from stat_bot.incidents import naming
from stat_bot.incidents.model import EntryKind, Incident, TimelineEntry
from stat_bot.incidents.postmortem import draft, durations, human, page_name
from stat_bot.incidents.service import IncidentError

UTC = ZoneInfo("UTC")
AT = 1_795_000_000.0  # 2026-11-18 11:06:40 UTC
SLACK_NAME = r"^[a-z0-9_-]{1,80}$"


def test_channel_names_follow_janus() -> None:
    assert naming.channel_name(naming.slug("GPFS hangs on Login nodes!"), AT, UTC) == (
        "inc-202611181106-gpfs-hangs-on-login-nodes"
    )
    assert (
        naming.channel_name(naming.slug("www down"), AT, UTC, suffix=2)
        == "inc-202611181106-www-down-2"
    )
    assert naming.channel_name("", AT, UTC) == "inc-202611181106-incident"
    assert naming.auto_slug().startswith("auto-")
    assert len(naming.auto_slug()) == len("auto-") + 6


@given(st.text(max_size=300), st.integers(min_value=0, max_value=99))
def test_any_description_gives_a_name_slack_accepts(description: str, suffix: int) -> None:
    import re

    name = naming.channel_name(naming.slug(description), AT, UTC, suffix)
    assert re.match(SLACK_NAME, name), name
    assert not name.endswith("-") or suffix


def test_open_text_takes_options_anywhere() -> None:
    assert parse_open("gpfs hangs --xname x1000c0s0b0n0 --ticket 12 on io nodes") == (
        "gpfs hangs on io nodes",
        ["x1000c0s0b0n0"],
        [12],
    )
    assert parse_open("two --xname x1000c0s0b0n0,x1000c0s1b0n0 --ticket #3,4") == (
        "two",
        ["x1000c0s0b0n0", "x1000c0s1b0n0"],
        [3, 4],
    )
    with pytest.raises(IncidentError, match="`--ticket` needs a value"):
        parse_open("x --ticket")
    with pytest.raises(IncidentError, match="not a ticket number"):
        parse_open("x --ticket abc")
    assert parse_open("it's broken") == (
        "it's broken",
        [],
        [],
    )  # an apostrophe is not a quote error


def incident(**overrides: object) -> Incident:
    values: dict[str, object] = {
        "id": 7, "channel_id": "C1", "channel_name": "inc-x", "description": "GPFS {{{hang}}} [[macro]]",
        "status": "resolved", "opened_by": "U1", "opened_by_name": "ada", "opened_at": AT,
        "resolved_at": AT + 3900, "roles": {"commander": "U2"}, "xnames": ("x1000c0s0b0n0",), "tickets": (12,),
        "jobs": (), "control_outbox": None, "digest_outbox": None, "postmortem": None, "archived_at": None,
        "version": 3, "updated_at": AT,
    }  # fmt: skip
    values.update(overrides)
    return Incident(**values)  # type: ignore[arg-type]


def entries() -> list[TimelineEntry]:
    return [
        TimelineEntry(EntryKind.OPENED, "opened", "U1", "ada", at=AT),
        TimelineEntry(
            EntryKind.ROLE, "commander", "U2", at=AT + 120, data={"role": "commander", "user": "U2"}
        ),
        TimelineEntry(EntryKind.STATUS, "status", "U2", at=AT + 600, data={"status": "identified"}),
        TimelineEntry(EntryKind.NOTE, "restarted mmfsd }}} on io1", "U2", "bob", at=AT + 700),
        TimelineEntry(EntryKind.RESOLVED, "resolved", "U2", at=AT + 3900),
    ]


def test_durations_come_from_the_timeline() -> None:
    found = durations(incident(), entries(), "identified")
    assert (found.to_first_role, found.to_identified, found.to_resolved) == (120.0, 600.0, 3900.0)
    assert human(found.to_resolved) == "1h 5m"
    assert human(None) == "not reached"
    assert human(42) == "42s"
    reopened = [*entries(), TimelineEntry(EntryKind.REOPENED, "re-opened", at=AT + 4000)]
    assert durations(incident(), reopened, "identified").to_resolved is None


def test_the_draft_keeps_slack_text_literal_and_holds_every_section() -> None:
    text = draft(
        incident(),
        entries(),
        durations(incident(), entries(), "identified"),
        tz=UTC,
        role_names={"commander": "Incident commander"},
    )
    assert text.startswith("= Incident 7: {{{GPFS")
    for heading in (
        "== Summary ==",
        "== Roles ==",
        "== Linked tickets ==",
        "== Affected hardware ==",
        "== Jobs run ==",
        "== What was changed ==",
        "== Timeline ==",
        "== Root cause ==",
        "== Follow-up actions ==",
    ):
        assert heading in text
    assert " * #12" in text
    assert " * Incident commander: U2" in text
    assert "Time to resolved: 1h 5m" in text
    # A `}}}` typed in Slack cannot close the literal block and let markup run.
    assert "{{{restarted mmfsd } } } on io1}}}" in text
    assert page_name("Incidents", incident(), UTC) == "Incidents/2026-11-18-7"
