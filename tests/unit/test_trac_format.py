"""The `trac` namespace's formatting: rows and tickets -> Block Kit and CSV (no Trac needed).

workspace/trac/trac_format.py is pure; the blocks it prints go through the real
report code (stat_bot.report.messages) here too, so a shape Slack would refuse or
a file the report could not attach fails a test.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from stat_bot.integrations.trac import Change, Ticket
from stat_bot.jobs.config import JobSpec
from stat_bot.jobs.model import JobStatus
from stat_bot.report.messages import Outcome, build_report
from tests.unit.helpers import make_job

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "workspace" / "trac"))
import trac_cmd
import trac_format as fmt

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
BASE = "http://trac.example/stat"


def url_for(number: int) -> str:
    return f"{BASE}/ticket/{number}"


def iso(delta: timedelta) -> str:
    return (NOW - delta).strftime("%Y-%m-%dT%H:%M:%SZ")


def row(number: int, **fields: str) -> dict[str, str]:
    values = {
        "id": str(number),
        "summary": f"Ticket {number}",
        "status": "new",
        "resolution": "",
        "type": "defect",
        "priority": "major",
        "owner": "alice",
        "reporter": "stat-bot",
        "xname": "x1000c0s0b0n0",
        "time": iso(timedelta(days=2)),
        "changetime": iso(timedelta(hours=1)),
    }
    values.update(fields)
    return values


def texts(blocks: list[dict]) -> str:
    """Every text in some blocks, joined: what a reader would see."""
    found = []
    for block in blocks:
        if "text" in block:
            found.append(block["text"]["text"])
        for item in block.get("fields", []) + block.get("elements", []):
            found.append(item["text"])
    return "\n".join(found)


def assert_slack_limits(blocks: list[dict]) -> None:
    assert len(blocks) <= 50
    for block in blocks:
        if block["type"] == "header":
            assert len(block["text"]["text"]) <= 150
            assert block["text"]["type"] == "plain_text"
        if block["type"] == "section":
            assert "text" in block or "fields" in block
            if "text" in block:
                assert 0 < len(block["text"]["text"]) <= 3000
            assert len(block.get("fields", [])) <= 10


# --- text ---------------------------------------------------------------------------------


def test_escape_turns_slack_markup_into_entities():
    assert fmt.escape("a < b && c > d") == "a &lt; b &amp;&amp; c &gt; d"
    assert fmt.escape("<!channel> <@U1>") == "&lt;!channel&gt; &lt;@U1&gt;"


def test_a_summary_with_markup_cannot_make_a_link_or_a_mention():
    line = fmt.ticket_line(row(7, summary="Fan <!here> & <http://evil|click>"), url_for, NOW)
    assert line.startswith(
        f"<{BASE}/ticket/7|#7> Fan &lt;!here&gt; &amp; &lt;http://evil|click&gt;"
    )
    assert line.count("<") == 1  # only the ticket link is markup


def test_link_keeps_the_url_from_ending_early():
    assert fmt.link("http://t/a|b>c", "x & y") == "<http://t/a%7Cb%3Ec|x &amp; y>"


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (timedelta(seconds=5), "<1 min"),
        (timedelta(minutes=4, seconds=59), "4 min"),
        (timedelta(hours=5, minutes=30), "5 h"),
        (timedelta(hours=47), "47 h"),
        (timedelta(days=12, hours=23), "12 d"),
        (timedelta(seconds=-30), "<1 min"),  # a clock a little ahead of ours
    ],
)
def test_age_is_coarse(delta: timedelta, text: str):
    assert fmt.age(iso(delta), NOW) == text


@pytest.mark.parametrize(
    "value",
    [
        "2026-11-23T12:00:00Z",
        "2026-11-23T13:00:00+01:00",
        "2026-11-23T12:00:00",
        "2026-11-23 12:00:00",
    ],
)
def test_times_in_trac_iso_forms_parse_to_the_same_moment(value: str):
    assert fmt.parse_time(value) == datetime(2026, 11, 23, 12, tzinfo=UTC)
    assert fmt.age(value, NOW) == "2 d"


@pytest.mark.parametrize("value", ["", None, "last Tuesday", "11/23/26"])
def test_an_unreadable_time_says_so(value):
    assert fmt.parse_time(value) is None
    assert fmt.age(value, NOW) == "?"


def test_shorten_cuts_at_a_word_and_flattens_lines():
    assert fmt.shorten("one\ntwo  three", 50) == "one two three"
    cut = fmt.shorten("word " * 40, 30)
    assert len(cut) <= 30
    assert cut.endswith("…")
    assert not cut.endswith(" …")


# --- xnames -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "wanted", "matches"),
    [
        ("x1000c0s0b0n0", "x1000c0s0b0n0", True),
        ("x1000c0s0b0n0", "x1000c0", True),  # a chassis holds its nodes
        ("x1000c0s0b0n0", "x1000", True),  # a cabinet too
        ("x1000c0s0b0n0", "X1000C0", True),  # case
        ("x1000c01s0b0n0", "x1000c0", False),  # chassis 01 is not below chassis 0
        ("x1000c0s10b0n0", "x1000c0s1", False),  # slot 10 is not below slot 1
        ("x1000c0", "x1000c0s0b0n0", False),  # the chassis is above the node, not below
        ("x1001c0s0b0n0", "x1000", False),
        ("x3000c0s1b0n0, x1000c0s0b0n1", "x1000c0", True),  # a list of xnames
        ("x3000c0s1b0n0 x1000c0r7j101", "x1000c0r7", True),
        ("", "x1000c0", False),
        ("x1000c0s0b0n0", "", False),
    ],
)
def test_partial_xnames_match_everything_below_them(field: str, wanted: str, matches: bool):
    assert fmt.xname_matches(field, wanted) is matches


def test_xname_listing_shows_open_and_recently_closed_below_the_xname():
    rows = [
        row(1, xname="x1000c0s0b0n0"),
        row(
            2,
            xname="x1000c0s1b0n1",
            status="closed",
            resolution="fixed",
            changetime=iso(timedelta(days=3)),
        ),
        row(
            3,
            xname="x1000c0s0b0n0",
            status="closed",
            resolution="fixed",
            changetime=iso(timedelta(days=90)),
        ),
        row(4, xname="x1000c01s0b0n0"),  # Trac's "contains" finds it; it is another chassis
        row(5, xname="x1000c0r3b0", status="assigned"),
    ]
    output = fmt.xname_listing("x1000c0", rows, url_for, NOW)
    text = texts(output.blocks)
    assert output.blocks[0]["text"]["text"] == "Tickets for x1000c0"
    assert "*Open (2)*" in text
    assert "*Closed in the last 30 days (1)*" in text
    assert "|#1>" in text
    assert "|#5>" in text
    assert "|#2>" in text
    assert "|#3>" not in text
    assert "|#4>" not in text
    assert "_closed: fixed_" in text  # closed ones say how
    assert output.csv_text is None


def test_xname_listing_with_nothing_says_so():
    output = fmt.xname_listing("x9000c0", [], url_for, NOW)
    assert "No open tickets and none closed in the last 30 days for `x9000c0`" in texts(
        output.blocks
    )


# --- the active-tickets report ------------------------------------------------------------


def test_active_listing_counts_by_priority_in_trac_order_and_by_type():
    rows = [
        row(3, priority="blocker", type="defect"),
        row(1, priority="critical", type="task"),
        row(2, priority="critical", type="defect"),
        row(5, priority="major", type="enhancement"),
        row(4, priority="minor", type="defect", owner="", xname=""),
    ]
    output = fmt.active_listing(rows, url_for, NOW)
    blocks = output.blocks
    assert_slack_limits(blocks)
    assert blocks[0]["text"]["text"] == "Active tickets: 5 tickets"
    by_priority, by_type = (f["text"] for f in blocks[1]["fields"])
    assert by_priority == "*By priority*\nblocker 1 · critical 2 · major 1 · minor 1"
    assert by_type == "*By type*\ndefect 3 · enhancement 1 · task 1"
    text = texts(blocks)
    # In the query's (priority) order, each: link, summary, xname, owner, age.
    assert text.index("|#3>") < text.index("|#1>") < text.index("|#4>")
    assert f"<{BASE}/ticket/3|#3> Ticket 3 · `x1000c0s0b0n0` · alice · 2 d" in text
    assert f"<{BASE}/ticket/4|#4> Ticket 4 · nobody · 2 d" in text


def test_no_active_tickets_is_said_briefly():
    output = fmt.active_listing([], url_for, NOW)
    assert output.to_json() == {
        "blocks": [fmt.section(":white_check_mark: No active tickets.")],
        "text": "No active tickets.",
    }


def test_one_ticket_is_a_ticket():
    assert fmt.active_listing([row(1)], url_for, NOW).blocks[0]["text"]["text"] == (
        "Active tickets: 1 ticket"
    )


def test_a_long_list_shows_the_most_urgent_and_attaches_every_row_as_csv():
    rows = [
        row(n, summary=f'Summary {n}, with "quotes",\nnewlines and ünïcödé ✓' + " pad" * 60)
        for n in range(1, 46)
    ]
    output = fmt.active_listing(rows, url_for, NOW)
    assert_slack_limits(output.blocks)
    text = texts(output.blocks)
    assert "|#20>" in text
    assert "|#21>" not in text
    assert "_… and 25 more_" in text
    assert (
        "45 tickets: the first 20 are shown, all 45 are in the attached active-tickets.csv." in text
    )
    payload = output.to_json()
    assert payload["file"]["filename"] == "active-tickets.csv"
    parsed = list(csv.DictReader(io.StringIO(payload["file"]["content"])))
    assert [p["id"] for p in parsed] == [str(n) for n in range(1, 46)]
    assert parsed[0]["summary"] == rows[0]["summary"]  # commas, quotes, newlines, non-ASCII intact
    assert parsed[44]["url"] == f"{BASE}/ticket/45"
    assert list(parsed[0]) == ["url", *fmt.COLUMNS]


def test_exactly_the_limit_needs_no_file():
    output = fmt.active_listing([row(n) for n in range(1, 21)], url_for, NOW)
    assert output.csv_text is None
    assert "file" not in output.to_json()
    assert "|#20>" in texts(output.blocks)


def test_sections_respect_slacks_limit_and_keep_every_line():
    lines = [f"line {n} " + "x" * 290 for n in range(40)]
    blocks = fmt.sections(lines)
    assert len(blocks) > 1
    assert all(len(b["text"]["text"]) <= 3000 for b in blocks)
    assert "\n".join(b["text"]["text"] for b in blocks) == "\n".join(lines)


def test_a_header_never_exceeds_150_characters():
    output = fmt.listing("T" * 400, [], url_for, NOW, csv_name="x.csv")
    assert len(output.blocks[0]["text"]["text"]) == 150


# --- one ticket ---------------------------------------------------------------------------


def make_ticket(comments: int = 0, **fields: str) -> Ticket:
    values = {
        "summary": "PSU <failed> & fan",
        "description": "Seen on the BMC:\n* PSU 2 <critical>\n" + "long " * 1000,
        "type": "defect",
        "priority": "critical",
        "status": "assigned",
        "owner": "bob",
        "reporter": "stat-bot",
        "xname": "x1000c0s0b0n0",
        "component": "hardware",
        "resolution": "",
        "time": "2026-11-23T12:00:00Z",
        "changetime": "2026-11-25T11:00:00Z",
    }
    values.update(fields)
    changes = [
        Change(f"2026-11-24T0{n}:00:00Z", f"user{n}", "comment", str(n), f"Comment {n} <b>")
        for n in range(1, comments + 1)
    ]
    return Ticket(id=12, fields=values, changes=changes, url=url_for(12))


def test_ticket_detail_shows_fields_description_and_the_last_comments():
    blocks = fmt.ticket_detail(make_ticket(comments=5), NOW, UTC)
    assert_slack_limits(blocks)
    assert blocks[0]["text"]["text"] == "#12 PSU <failed> & fan"  # plain text: shown as typed
    text = texts(blocks)
    assert f"<{BASE}/ticket/12|Open #12 in Trac>" in text
    for expected in (
        "*Status*\nassigned",
        "*Priority*\ncritical",
        "*Owner*\nbob",
        "*XName*\n`x1000c0s0b0n0`",
        "*Component*\nhardware",
        "*Created*\n2026-11-23 12:00 UTC (2 d ago)",
    ):
        assert expected in text
    assert "* PSU 2 &lt;critical&gt;" in text
    description = next(
        b for b in blocks if b.get("text", {}).get("text", "").startswith("*Description*")
    )
    assert description["text"]["text"].endswith("…")
    assert "*Last 3 of 5 comments*" in text
    assert "Comment 2" not in text
    assert "*user5* · 2026-11-24 05:00 UTC\nComment 5 &lt;b&gt;" in text


def test_ticket_detail_of_a_closed_ticket_without_description_or_comments():
    ticket = make_ticket(
        status="closed", resolution="wontfix", description="", xname="", component=""
    )
    text = texts(fmt.ticket_detail(ticket, NOW, UTC))
    assert "*Status*\nclosed (wontfix)" in text
    assert "*Description*\n_(none)_" in text
    assert "*XName*\n-" in text
    assert "Component" not in text
    assert "comments" not in text


def test_ticket_detail_shows_every_custom_field_of_the_site():
    custom = {f"field{n}": f"value {n} <x>" for n in range(8)}
    ticket = make_ticket(hostname="nid000001", rack_row="", **custom, milestone="m1")
    blocks = fmt.ticket_detail(ticket, NOW, UTC)
    assert_slack_limits(blocks)
    text = texts(blocks)
    assert "*Hostname*\nnid000001" in text
    for n in range(8):  # beyond one section's 10 fields: a second section holds the rest
        assert f"*Field{n}*\nvalue {n} &lt;x&gt;" in text
    assert "Rack row" not in text  # empty: not shown
    assert "Milestone" not in text  # Trac's own fields are not "custom"
    assert text.count("*XName*") == 1


def test_done_names_the_change_and_where_the_ticket_stands():
    blocks = fmt.done(":lock:", "Closed", make_ticket(status="closed"), NOW, "as *fixed*")
    assert blocks[0]["text"]["text"] == (
        f":lock: Closed <{BASE}/ticket/12|#12> PSU &lt;failed&gt; &amp; fan\nas *fixed*"
    )
    assert texts(blocks[1:]) == "defect · critical · closed · `x1000c0s0b0n0` · owner bob"
    assert fmt.title(make_ticket()) == "#12 PSU &lt;failed&gt; &amp; fan"


# --- what the report code makes of it ----------------------------------------------------

JOB = make_job(id=9, namespace="trac", job_type="active")


def report_of(stdout: str, **spec: object):
    job_spec = JobSpec(run_args_template="x", report_stdout=True, report_format="blocks", **spec)
    return build_report(JOB, job_spec, Outcome(JobStatus.SUCCEEDED, 0, stdout))


def test_a_long_listing_reports_as_blocks_then_the_csv_file():
    output = fmt.active_listing([row(n) for n in range(1, 31)], url_for, NOW)
    report = report_of(json.dumps(output.to_json()))
    assert report is not None
    assert report.kind == "success"
    first, attached = report.messages
    assert first.blocks == output.blocks
    assert first.text == "Active tickets: 30 tickets"  # what notifications show
    assert first.file is None
    assert attached.file is not None
    assert attached.file.filename == "active-tickets.csv"
    assert attached.file.content.decode() == output.csv_text


def test_a_short_listing_reports_as_one_blocks_message():
    output = fmt.active_listing([row(1)], url_for, NOW)
    report = report_of(json.dumps(output.to_json()))
    assert [(m.text, m.blocks) for m in report.messages] == [
        ("Active tickets: 1 ticket", output.blocks)
    ]


def test_a_plain_list_of_blocks_still_reports_with_the_default_text():
    report = report_of(json.dumps([fmt.section("hi")]))
    assert [m.text for m in report.messages] == ["trac active report"]


@pytest.mark.parametrize(
    "payload",
    [
        {"blocks": [], "file": {"filename": "", "content": "x"}},
        {"blocks": [], "file": {"filename": "a.csv"}},
        {"blocks": [], "file": "a.csv"},
        {"blocks": "nope"},
    ],
)
def test_a_malformed_blocks_object_fails_the_job_saying_why(payload):
    report = report_of(json.dumps(payload))
    assert report.kind == "failure"
    assert "succeeded, but its" in report.messages[0].text


def test_empty_output_with_report_success_off_posts_nothing():
    """The scheduled report's way of staying quiet when nothing is active."""
    assert report_of("", report_success=False) is None
    assert "No output found" in report_of("").messages[0].text


# --- the script's own rules -------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "text"),
    [
        (
            {"STAT_BOT_SOURCE": "slack", "STAT_BOT_USER": "U0ADMIN"},
            "via STAT bot for Slack user U0ADMIN",
        ),
        (
            {"STAT_BOT_SOURCE": "slack", "STAT_BOT_USER": "U0ADMIN", "STAT_BOT_USER_NAME": "ada"},
            "via STAT bot for Slack user @ada (U0ADMIN)",
        ),
        ({"STAT_BOT_SOURCE": "cli", "STAT_BOT_USER": "root"}, "via STAT bot for root (cli)"),
        (
            {"STAT_BOT_SOURCE": "schedule", "STAT_BOT_USER": "schedule trac.x"},
            "via STAT bot for schedule trac.x",
        ),
        ({}, "via STAT bot for an unknown user"),
    ],
)
def test_changes_are_signed_with_who_asked(env: dict[str, str], text: str):
    assert trac_cmd.attribution(env) == text
    assert trac_cmd.signed("Fixed the fan.", env) == f"Fixed the fan.\n\n({text})"
    assert trac_cmd.signed("", env) == f"({text})"


@pytest.mark.parametrize(
    ("value", "wanted"),
    [
        (None, True),
        ("", True),
        ("true", True),
        ("YES", True),
        ("1", True),
        ("false", False),
        ("off", False),
        ("0", False),
    ],
)
def test_report_when_empty_reads_the_usual_spellings(value, wanted):
    env = {} if value is None else {"TRAC_REPORT_WHEN_EMPTY": value}
    assert trac_cmd.report_when_empty(env) is wanted


def test_report_when_empty_refuses_anything_else():
    with pytest.raises(
        trac_cmd.UsageError, match="TRAC_REPORT_WHEN_EMPTY must be true or false, not 'sometimes'"
    ):
        trac_cmd.report_when_empty({"TRAC_REPORT_WHEN_EMPTY": "sometimes"})


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "usage: trac_cmd.py active | active-report | ticket ID"),
        (["frobnicate"], "usage: trac_cmd.py active"),
        (["ticket"], "usage: trac_cmd.py ticket ID"),
        (["comment", "5"], "usage: trac_cmd.py comment ID TEXT"),
        (["owner", " "], "an argument is empty"),
    ],
)
def test_a_wrong_command_line_is_a_usage_error_before_trac_is_asked(argv, message):
    def no_trac(env):
        raise AssertionError("Trac must not be asked")

    status, out, err = trac_cmd.run(argv, {}, no_trac)
    assert (status, out) == (2, "")
    assert message in err


@pytest.mark.parametrize(("text", "number"), [("12", 12), ("#7", 7)])
def test_ticket_numbers(text, number):
    assert trac_cmd.ticket_id(text) == number


@pytest.mark.parametrize("text", ["twelve", "0", "-3"])
def test_bad_ticket_numbers_say_what_was_expected(text):
    with pytest.raises(trac_cmd.UsageError):
        trac_cmd.ticket_id(text)
