"""The `trac` namespace against a real tracd: the shipped job_configs.py and workspace/trac.

Most commands go through `stat-bot --json exec`, which matches the chat command in
the real job_configs.py, runs its template with the dispatcher's runner (shell
quoting, `python3`, the job environment) and builds the report the bot would post.
Attribution to a Slack user is checked by running the script with the variables
the dispatcher sets for a chat command. tracd is the session's (tests/trac_fixtures.py),
shared with other tests, so every test works on xnames of its own random cabinet.
"""

from __future__ import annotations

import ast
import csv
import io
import json
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import STAT_BOT, subprocess_env
from tests.trac_fixtures import TracServer, require_trac

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "workspace" / "trac" / "trac_cmd.py"

pytestmark = pytest.mark.trac


def cabinet() -> str:
    """An xname cabinet no other test uses: x2000 .. x8999."""
    return f"x{random.randint(2000, 8999)}"


def exec_env(home: Path, trac: TracServer, **extra: str) -> dict[str, str]:
    env = subprocess_env(home)
    env.update(trac.environ())
    env.update(JOB_CONFIGS=str(ROOT / "job_configs.py"), WORKSPACE_DIR=str(ROOT / "workspace"))
    env.update(extra)
    return env


def bot_exec(home: Path, trac: TracServer, command: str, **extra: str) -> dict[str, Any]:
    """`stat-bot --json exec COMMAND`: status, exit code and the report's messages."""
    result = subprocess.run(
        [STAT_BOT, "--json", "exec", command],
        env=exec_env(home, trac, **extra),
        cwd=home,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.stdout, result.stderr
    report = json.loads(result.stdout)
    assert result.returncode == (0 if report["status"] == "succeeded" else 1)
    return report


def script(trac: TracServer, *argv: str, **extra: str) -> subprocess.CompletedProcess[str]:
    """trac_cmd.py as a chat command's job runs it: from Slack user U0TEST."""
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(ROOT / "workspace"),
        "STAT_BOT_SOURCE": "slack",
        "STAT_BOT_USER": "U0TEST",
        "STAT_BOT_TIMEZONE": "UTC",
        **trac.environ(),
        **extra,
    }
    return subprocess.run(
        [sys.executable, str(SCRIPT), *argv],
        env=env,
        cwd=SCRIPT.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )


def blocks_text(report: dict[str, Any]) -> str:
    parts = []
    for message in report["messages"]:
        parts.append(message["text"])
        for block in message.get("blocks") or []:
            if "text" in block:
                parts.append(block["text"]["text"])
            for item in block.get("fields", []) + block.get("elements", []):
                parts.append(item["text"])
    return "\n".join(parts)


def created_id(report: dict[str, Any]) -> int:
    text = blocks_text(report)
    assert ":ticket: Created <" in text, text
    return int(text.split("/ticket/", 1)[1].split("|", 1)[0])


def active_ids(report: dict[str, Any]) -> set[int]:
    """Tickets an active listing names: linked in its blocks, and in its CSV when long.

    tracd is shared with other tests, so how many tickets are active is not ours to know.
    """
    text = blocks_text(report)
    ids = {int(part.split("|#", 1)[0]) for part in text.split("/ticket/")[1:] if "|#" in part}
    for message in report["messages"]:
        if message.get("file"):
            content = ast.literal_eval(message["file"]["content"]).decode()
            ids |= {int(row["id"]) for row in csv.DictReader(io.StringIO(content))}
    return ids


def link(trac: TracServer, number: int) -> str:
    return f"<{trac.url}/ticket/{number}|#{number}>"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    (tmp_path / "workspace").mkdir()
    return tmp_path


# --- the ticket's life through the commands ----------------------------------------------


def test_a_new_ticket_shows_in_active_xname_owner_and_search(home: Path, tracd: TracServer):
    cab = cabinet()
    token = f"tok{random.randint(10**6, 10**7)}"
    new = bot_exec(
        home, tracd, f'trac new defect critical {cab}c0s0b0n0 PSU 2 "failed" {token}, ünïcode'
    )
    assert new["status"] == "succeeded"
    number = created_id(new)
    ticket = tracd.client().ticket(number)
    assert ticket.fields["summary"] == f'PSU 2 "failed" {token}, ünïcode'
    assert (ticket.fields["type"], ticket.fields["priority"]) == ("defect", "critical")
    assert ticket.fields["xname"] == f"{cab}c0s0b0n0"
    assert "via STAT bot for" in ticket.fields["description"]
    # A ticket on a neighbouring chassis (c01) that "contains" the text but is not below c0.
    other = tracd.client().create(
        summary="other chassis", type="task", priority="minor", xname=f"{cab}c01s0b0n0"
    )

    active = bot_exec(home, tracd, "trac active")
    assert "*By priority*" in blocks_text(active)
    assert "*By type*" in blocks_text(active)
    assert number in active_ids(active)

    partial = blocks_text(bot_exec(home, tracd, f"trac xname {cab}c0"))
    assert f"Tickets for {cab}c0" in partial
    assert f'{link(tracd, number)} PSU 2 "failed" {token}, ünïcode · `{cab}c0s0b0n0`' in partial
    assert link(tracd, number) in partial
    assert link(tracd, other) not in partial
    whole = blocks_text(bot_exec(home, tracd, f"trac xname {cab.upper()}"))  # any case
    assert link(tracd, number) in whole
    assert link(tracd, other) in whole

    found = blocks_text(bot_exec(home, tracd, f"trac search {token}"))
    assert f"Tickets matching “{token}”: 1" in found
    assert link(tracd, number) in found


def test_comment_assign_and_close_are_signed_with_the_slack_user(home: Path, tracd: TracServer):
    cab = cabinet()
    owner = f"tech{random.randint(1000, 9999)}"
    number = tracd.client().create(
        summary="Fan noise", type="defect", priority="major", xname=f"{cab}c0s1b0n0"
    )

    said = script(tracd, "comment", str(number), 'Swapped the fan, "B" side; ünï\n<ok> & done')
    assert said.returncode == 0, said.stderr
    assert ":speech_balloon: Commented on" in said.stdout
    assigned = script(tracd, "assign", str(number), owner)
    assert assigned.returncode == 0, assigned.stderr

    ticket = tracd.client().ticket(number)
    assert ticket.fields["owner"] == owner
    assert ticket.fields["status"] == "assigned"
    texts = [c.new for c in ticket.comments]
    assert 'Swapped the fan, "B" side; ünï' in texts[0]
    assert "<ok> & done" in texts[0]
    assert all("(via STAT bot for Slack user U0TEST)" in t for t in texts)
    assert f"Assigned to {owner}." in texts[1]

    mine = blocks_text(bot_exec(home, tracd, f"trac owner {owner}"))
    assert f"Open tickets of {owner}" in mine
    assert link(tracd, number) in mine

    detail = blocks_text(bot_exec(home, tracd, f"trac ticket {number}"))
    assert f"#{number} Fan noise" in detail
    assert f"*Owner*\n{owner}" in detail
    assert "&lt;ok&gt; &amp; done" in detail  # escaped for mrkdwn
    assert "via STAT bot for Slack user U0TEST" in detail

    closed = bot_exec(home, tracd, f"trac close {number}")  # resolution defaults to fixed
    assert ":lock: Closed" in blocks_text(closed)
    assert "as *fixed*" in blocks_text(closed)
    ticket = tracd.client().ticket(number)
    assert (ticket.fields["status"], ticket.fields["resolution"]) == ("closed", "fixed")
    assert "(via STAT bot for" in ticket.comments[-1].new

    assert number not in active_ids(bot_exec(home, tracd, "trac active"))
    history = blocks_text(bot_exec(home, tracd, f"trac xname {cab}c0"))
    assert "*Closed in the last 30 days (1)*" in history
    assert "_closed: fixed_" in history
    assert blocks_text(bot_exec(home, tracd, f"trac owner {owner}")).endswith(
        f"{owner} owns no open tickets."
    )


def test_owner_nobody_lists_the_open_tickets_without_an_owner(home: Path, tracd: TracServer):
    cab = cabinet()
    client = tracd.client()
    # Blocker: listed first (by priority) however many unowned tickets other tests made.
    unowned = client.create(summary="Nobody's", type="task", priority="blocker", xname=f"{cab}c0")
    owned = client.create(
        summary="Someone's", type="task", priority="blocker", xname=f"{cab}c1", owner="ada"
    )
    listing = blocks_text(bot_exec(home, tracd, "trac owner nobody"))
    assert "Open tickets nobody owns" in listing
    assert link(tracd, unowned) in listing
    assert link(tracd, owned) not in listing
    assert link(tracd, owned) in blocks_text(bot_exec(home, tracd, "trac owner ada"))


def test_a_long_listing_attaches_every_ticket_as_csv_intact(home: Path, tracd: TracServer):
    cab = cabinet()
    client = tracd.client()
    summaries = {}
    for n in range(23):
        summary = f'Node {n}, "quoted" — ✓ ü <{n}> & more'
        number = client.create(
            summary=summary, type="task", priority="minor", xname=f"{cab}c0s{n}b0n0"
        )
        summaries[str(number)] = summary

    report = bot_exec(home, tracd, f"trac xname {cab}")
    first, attached = report["messages"]
    assert "23 tickets: the first 20 are shown, all 23 are in the attached" in blocks_text(report)
    assert first["file"] is None
    assert attached["file"]["filename"] == f"tickets-{cab}.csv"
    content = attached["file"]["content"]
    rows = list(csv.DictReader(io.StringIO(content)))
    assert {r["id"]: r["summary"] for r in rows} == summaries
    assert all(r["url"] == f"{tracd.url}/ticket/{r['id']}" for r in rows)


# --- errors: one clear line, the job fails ----------------------------------------------


def test_a_missing_ticket_is_answered_naming_it(home: Path, tracd: TracServer):
    # The asker's mistake: an answer in their thread, not a failed job for tech support.
    report = bot_exec(home, tracd, "trac ticket 999999")
    assert report["status"] == "succeeded"
    text = blocks_text(report)
    assert ":warning: Trac has no ticket #999999" in text
    assert "failed" not in text


def test_a_value_trac_refuses_is_quoted(home: Path, tracd: TracServer):
    number = tracd.client().create(
        summary="Refused", type="task", priority="minor", xname=f"{cabinet()}c0"
    )
    report = bot_exec(home, tracd, f"trac close {number} nonsense")
    assert report["status"] == "succeeded"
    text = blocks_text(report)
    assert ":warning:" in text
    assert '"nonsense" is not a valid value' in text
    assert "(this Trac's resolutions: fixed, invalid, wontfix, duplicate, worksforme)" in text
    assert tracd.client().ticket(number)["status"] != "closed"

    report = bot_exec(home, tracd, f"trac new bug major {cabinet()}c0 Wrong type")
    assert report["status"] == "succeeded"
    text = blocks_text(report)
    assert 'The ticket field type is invalid: "bug" is not a valid value' in text
    assert "(this Trac's types: defect, enhancement, task)" in text


def test_the_report_is_quietly_not_made_without_trac_url(home: Path, tracd: TracServer):
    result = script(tracd, "active-report", TRAC_URL="")
    assert result.returncode == 0
    assert result.stdout == ""
    assert "TRAC_URL is not set" in result.stderr


def test_a_wrong_password_says_to_check_it(tracd: TracServer):
    result = script(tracd, "active", TRAC_PASSWORD="wrong")
    assert result.returncode == 1
    assert result.stdout == ""
    assert "refused the login of 'statbot'" in result.stderr
    assert "TRAC_PASSWORD" in result.stderr
    assert "wrong" not in result.stderr


@pytest.mark.parametrize("command", ["trac active", "trac ticket 1", "trac owner nobody"])
def test_without_trac_url_the_answer_says_what_to_set(home: Path, tracd: TracServer, command: str):
    # An answer in the asker's thread, not a failed job reposted to tech support.
    report = bot_exec(home, tracd, command, TRAC_URL="")
    assert report["status"] == "succeeded"
    assert "Trac is not set up: set TRAC_URL" in blocks_text(report)


def test_trac_stopped_is_a_clear_error(home: Path, tracd_down: TracServer):
    report = bot_exec(home, tracd_down, "trac active")
    assert report["status"] == "failed"
    text = blocks_text(report)
    assert f"Trac at {tracd_down.url} is unreachable" in text
    assert "Traceback" not in text


def test_the_config_refuses_a_bad_ticket_number_before_any_job(home: Path, tracd: TracServer):
    result = subprocess.run(
        [STAT_BOT, "exec", "trac ticket twelve"],
        env=exec_env(home, tracd),
        cwd=home,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "whole number" in result.stdout + result.stderr


# --- the scheduled report -----------------------------------------------------------------


@pytest.fixture(scope="module")
def empty_trac(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TracServer]:
    """A Trac with no tickets at all, for the report's "nothing active" case."""
    require_trac()
    server = TracServer(tmp_path_factory.mktemp("empty-trac"))
    try:
        server.build()
        server.start()
        yield server
    finally:
        server.stop()


def test_the_report_says_briefly_that_nothing_is_active(home: Path, empty_trac: TracServer):
    report = bot_exec(home, empty_trac, "trac active")
    assert [m["blocks"] for m in report["messages"]] == [
        [
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": ":white_check_mark: No active tickets."},
            }
        ]
    ]


def test_the_scheduled_report_stays_quiet_when_asked_and_nothing_is_active(
    empty_trac: TracServer,
):
    quiet = script(empty_trac, "active-report", TRAC_REPORT_WHEN_EMPTY="false")
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "", "")
    brief = script(empty_trac, "active-report")
    assert "No active tickets." in brief.stdout
    wrong = script(empty_trac, "active-report", TRAC_REPORT_WHEN_EMPTY="maybe")
    assert wrong.returncode == 2
    assert "TRAC_REPORT_WHEN_EMPTY must be true or false" in wrong.stderr


def test_the_scheduled_report_lists_tickets_whatever_the_setting(tracd: TracServer):
    number = tracd.client().create(
        summary="Still open", type="task", priority="minor", xname=f"{cabinet()}c0"
    )
    report = script(tracd, "active-report", TRAC_REPORT_WHEN_EMPTY="false")
    assert report.returncode == 0, report.stderr
    assert "Active tickets: " in report.stdout
    assert f"{tracd.url}/ticket/{number}" in report.stdout  # listed, or in the CSV when many
