"""TracClient against a real tracd (tests/trac_fixtures.py): login, query, read, write, errors.

One tracd serves the whole session, so each test makes its own tickets with its
own xname prefix and only looks at those.
"""

from __future__ import annotations

import itertools
import logging
import re
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stat_bot.integrations.trac import (
    TicketNotFoundError,
    TracClient,
    TracError,
    TracLoginError,
    TracPermissionError,
    TracRejectedError,
    TracUnreachableError,
)
from tests.trac_fixtures import TracServer

pytestmark = pytest.mark.trac

TRICKY = 'Kühlung ⚠ node «x1000c0s0b0n0», "quoted", a,b'
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
_racks = itertools.count(9100)  # far from the x1000c0... other tests use


@pytest.fixture
def rack() -> str:
    """An xname prefix no other test in the session uses (x9100c7, x9101c7, ...)."""
    return f"x{next(_racks)}c7"


def new_ticket(client: TracClient, xname: str, **fields: str) -> int:
    values = {"summary": f"PSU fault on {xname}", "type": "defect", "priority": "major"}
    values.update(fields)
    return client.create(xname=xname, **values)


# --- login and reachability ------------------------------------------------------------


def test_login_refused_with_a_wrong_password(tracd: TracServer) -> None:
    client = tracd.client(tracd.user, "not-the-password")
    with pytest.raises(TracLoginError) as caught:
        client.query(status="!closed")
    message = str(caught.value)
    assert tracd.user in message
    assert "TRAC_PASSWORD" in message
    assert "not-the-password" not in message
    assert "not-the-password" not in repr(client)


def test_no_password_or_cookie_in_the_logs(
    tracd: TracServer, rack: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="stat_bot.integrations.trac")
    client = tracd.client()
    number = new_ticket(client, rack)
    client.comment(number, "logged?")
    client.ticket(number)
    cookies = [c.value for c in client._cookies if c.value]
    assert len(cookies) >= 2  # trac_auth, trac_form_token (and trac_session)
    assert "POST /ticket/" in caplog.text
    for secret in [tracd.password, *cookies]:
        assert secret not in caplog.text


def test_unreachable_url_fails_fast_naming_it() -> None:
    port = socket.socket()
    port.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{port.getsockname()[1]}/stat"
    port.close()  # nothing listens there now
    client = TracClient(url, "statbot", "secret-pw", timeout=5)
    started = time.monotonic()
    with pytest.raises(TracUnreachableError) as caught:
        client.ticket(1)
    assert time.monotonic() - started < 2
    assert url in str(caught.value)
    assert caught.value.url == url
    assert "secret-pw" not in str(caught.value)


def test_a_trac_that_never_answers_times_out_with_the_setting_named() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)  # the kernel accepts the connection; nobody ever answers
        url = f"http://127.0.0.1:{server.getsockname()[1]}/stat"
        started = time.monotonic()
        with pytest.raises(TracUnreachableError) as caught:
            TracClient(url, None, None, timeout=0.5).query()
        elapsed = time.monotonic() - started
    assert 0.4 < elapsed < 3
    assert "TRAC_TIMEOUT" in str(caught.value)


def test_trac_stopped_mid_run_is_a_clear_error(tracd: TracServer) -> None:
    client = tracd.client()
    assert client.priorities()  # logged in and talking
    with tracd.stopped():
        with pytest.raises(TracUnreachableError) as caught:
            client.query(status="!closed")
        assert tracd.url in str(caught.value)
    assert isinstance(client.query(status="!closed"), list)  # the same client, once it is back


def test_a_wrong_trac_url_says_what_the_url_should_be(tracd: TracServer) -> None:
    client = TracClient(tracd.url.rsplit("/", 1)[0] + "/nosuch", tracd.user, tracd.password)
    with pytest.raises(TracError, match="environment's URL"):
        client.query()


# --- create, read, change --------------------------------------------------------------


def test_create_with_xname_reads_back_fields_and_history(tracd: TracServer, rack: str) -> None:
    client = tracd.client()
    number = client.create(
        summary="Node does not boot",
        type="defect",
        priority="critical",
        description="BMC shows POST code 0x55.",
        xname=f"{rack}s0b0n0",
    )
    ticket = client.ticket(number)
    assert ticket.id == number
    assert ticket.url == f"{tracd.url}/ticket/{number}"
    assert ticket.fields["summary"] == "Node does not boot"
    assert ticket.fields["type"] == "defect"
    assert ticket.fields["priority"] == "critical"
    assert ticket.fields["xname"] == f"{rack}s0b0n0"
    assert ticket.fields["description"] == "BMC shows POST code 0x55."
    assert ticket.fields["status"] == "new"
    assert ticket.fields["reporter"] == tracd.user
    assert ISO_UTC.match(ticket.fields["time"])
    assert ticket.fields["changetime"] == ticket.fields["time"]
    assert ticket.changes == []
    assert ticket.comments == []


def test_create_with_an_owner(tracd: TracServer, rack: str) -> None:
    client = tracd.client()
    number = new_ticket(client, rack, owner="alice")
    assert client.ticket(number).fields["owner"] == "alice"


def test_comment_assign_and_close_appear_in_the_history(tracd: TracServer, rack: str) -> None:
    client = tracd.client()
    number = new_ticket(client, f"{rack}s1b0n0")
    client.comment(number, "Reseated the DIMMs.\nvia STAT bot for @carol")
    client.assign(number, "alice", comment="Assigned to alice.")
    client.update(number, xname=f"{rack}s1b0n1", comment="It was the neighbour.")
    client.close(number, "fixed", comment="Closed as fixed.")

    ticket = client.ticket(number)
    assert ticket.fields["status"] == "closed"
    assert ticket.fields["resolution"] == "fixed"
    assert ticket.fields["owner"] == "alice"
    assert ticket.fields["xname"] == f"{rack}s1b0n1"
    assert [(c.cnum, c.field, c.old, c.new) for c in ticket.changes] == [
        (1, "comment", "1", "Reseated the DIMMs.\nvia STAT bot for @carol"),
        (2, "owner", "", "alice"),
        (2, "status", "new", "assigned"),
        (2, "comment", "2", "Assigned to alice."),
        (3, "xname", f"{rack}s1b0n0", f"{rack}s1b0n1"),
        (3, "comment", "3", "It was the neighbour."),
        (4, "resolution", "", "fixed"),
        (4, "status", "assigned", "closed"),
        (4, "comment", "4", "Closed as fixed."),
    ]
    assert {c.author for c in ticket.changes} == {tracd.user}
    assert all(ISO_UTC.match(c.time) for c in ticket.changes)
    times = [c.time for c in ticket.changes]
    assert times == sorted(times)
    assert times[0] >= ticket.fields["time"]
    assert ticket.fields["changetime"] == times[-1]
    assert [c.new for c in ticket.comments][-1] == "Closed as fixed."


def test_a_description_change_is_in_the_history(tracd: TracServer, rack: str) -> None:
    client = tracd.client()
    number = new_ticket(client, rack, description="first")
    client.update(number, description="second")
    ticket = client.ticket(number)
    assert ticket.fields["description"] == "second"
    assert [(c.field, c.new) for c in ticket.changes] == [("description", "modified")]


def test_query_by_status_xname_prefix_and_owner(tracd: TracServer, rack: str) -> None:
    client = tracd.client()
    node = new_ticket(client, f"{rack}s0b0n0", owner="alice")
    blade = new_ticket(client, f"{rack}s0b1", priority="blocker")
    closed = new_ticket(client, f"{rack}s1b0n0")
    other = new_ticket(client, f"{rack}1s0b0n0")  # a different cabinet chassis: c01 != c0
    client.close(closed, "fixed")

    def ids(rows: list[dict[str, str]]) -> list[int]:
        return [int(r["id"]) for r in rows]

    begins = client.query(xname=f"^{rack}s", status="!closed")
    assert ids(begins) == [blade, node]  # by priority: blocker first
    assert ids(client.query(xname=f"^{rack}s")) == [blade, node, closed]
    assert set(ids(client.query(xname=f"~{rack}"))) == {node, blade, closed, other}
    assert ids(client.query(xname=f"^{rack}s", status="closed")) == [closed]
    assert ids(client.query(xname=f"^{rack}s", owner="alice")) == [node]
    assert ids(client.query(xname=f"^{rack}s", status=["new", "closed"], order="id")) == [
        node,
        blade,
        closed,
    ]
    assert ids(client.query(xname=f"^{rack}s", order="id", desc=True, max_rows=2)) == [
        closed,
        blade,
    ]
    row = begins[1]
    assert row["owner"] == "alice"
    assert row["xname"] == f"{rack}s0b0n0"
    assert row["status"] == "new"
    assert ISO_UTC.match(row["time"])
    assert ISO_UTC.match(row["changetime"])
    assert set(row) == {
        "id",
        "summary",
        "status",
        "type",
        "priority",
        "owner",
        "reporter",
        "xname",
        "time",
        "changetime",
    }
    only = client.query(columns=["summary"], xname=f"^{rack}s0b1")
    assert only == [{"id": str(blade), "summary": f"PSU fault on {rack}s0b1"}]


def test_the_site_s_choices(tracd: TracServer) -> None:
    client = tracd.client()
    assert client.types() == ["defect", "enhancement", "task"]
    assert "major" in client.priorities()
    assert "fixed" in client.resolutions()
    assert client.fields()["xname"]["label"] == "XName"


# --- what Trac refuses -----------------------------------------------------------------


def test_missing_permissions_are_named(tracd: TracServer, rack: str) -> None:
    number = new_ticket(tracd.client(), rack)
    viewer = tracd.client(tracd.viewer, tracd.viewer_password)
    assert viewer.ticket(number).fields["xname"] == rack  # TICKET_VIEW is enough to read
    with pytest.raises(TracPermissionError) as caught:
        new_ticket(viewer, rack)
    assert caught.value.permission == "TICKET_CREATE"
    assert "TICKET_CREATE" in str(caught.value)
    assert tracd.viewer in str(caught.value)
    with pytest.raises(TracPermissionError) as caught:
        viewer.comment(number, "me too")
    assert caught.value.permission == "TICKET_APPEND"
    with pytest.raises(TracPermissionError) as caught:
        viewer.close(number)
    assert caught.value.permission == "TICKET_MODIFY"
    assert tracd.client().ticket(number).changes == []  # nothing was written


def test_anonymous_access_asks_for_a_login(tracd: TracServer) -> None:
    with pytest.raises(TracPermissionError) as caught:
        TracClient(tracd.url, None, None).query(status="!closed")
    assert caught.value.permission == "TICKET_VIEW"
    assert "TRAC_USER" in str(caught.value)


def test_ticket_not_found(tracd: TracServer) -> None:
    client = tracd.client()
    for call in (
        lambda: client.ticket(999_999),
        lambda: client.comment(999_999, "hello"),
        lambda: client.close(999_999),
    ):
        with pytest.raises(TicketNotFoundError) as caught:
            call()
        assert caught.value.ticket_id == 999_999
        assert "#999999" in str(caught.value)
    with pytest.raises(TracRejectedError, match="not a ticket number"):
        client.ticket("twelve")  # type: ignore[arg-type]


def test_a_refused_field_value_quotes_trac(tracd: TracServer, rack: str) -> None:
    client = tracd.client()
    with pytest.raises(TracRejectedError) as caught:
        new_ticket(client, rack, priority="urgent-ish", type="hardware")
    message = str(caught.value)
    assert 'The ticket field priority is invalid: "urgent-ish" is not a valid value' in message
    assert 'The ticket field type is invalid: "hardware" is not a valid value' in message
    assert client.query(xname=f"~{rack}") == []  # nothing was created

    number = new_ticket(client, rack)
    with pytest.raises(TracRejectedError) as caught:
        client.close(number, "solved")
    assert 'The ticket field resolution is invalid: "solved" is not a valid value' in str(
        caught.value
    )
    assert client.ticket(number).fields["status"] == "new"
    with pytest.raises(
        TracRejectedError, match="summary is invalid: Tickets must contain a summary"
    ):
        client.create(summary="", type="defect", priority="major")


def test_unknown_fields_are_refused_not_ignored(tracd: TracServer, rack: str) -> None:
    client = tracd.client()
    with pytest.raises(TracRejectedError, match="no ticket field hostname"):
        new_ticket(client, rack, hostname="nid001")
    with pytest.raises(TracRejectedError, match="no ticket field stauts"):
        client.query(stauts="!closed")
    with pytest.raises(TracRejectedError, match="no ticket field age"):
        client.query(columns=["summary", "age"])


def test_closing_a_closed_ticket_says_so(tracd: TracServer, rack: str) -> None:
    client = tracd.client()
    number = new_ticket(client, rack)
    client.close(number, "fixed")
    with pytest.raises(TracRejectedError, match=f"#{number} is closed"):
        client.close(number, "fixed")
    with pytest.raises(TracRejectedError, match=f"#{number} is closed"):
        client.assign(number, "alice")
    with pytest.raises(TracRejectedError, match="needs some text"):
        client.comment(number, "  ")


# --- text round trip -------------------------------------------------------------------


def test_commas_quotes_newlines_and_unicode_round_trip(tracd: TracServer, rack: str) -> None:
    client = tracd.client()
    description = f'{TRICKY}\nsecond line, "also quoted"\n\n; third, after a blank line\n'
    comment = f'{TRICKY}\nZeile 2: «Grüße» ⚡ 日本語\n"a","b",c\r\nlast line'
    number = client.create(
        summary=TRICKY, type="task", priority="minor", description=description, xname=rack
    )
    client.comment(number, comment)

    [row] = client.query(columns=["summary", "xname", "description"], xname=f"^{rack}")
    assert row["summary"] == TRICKY
    assert row["description"].replace("\r\n", "\n") == description
    ticket = client.ticket(number)
    assert ticket.fields["summary"] == TRICKY
    assert ticket.fields["description"].replace("\r\n", "\n") == description
    [read_back] = ticket.comments
    assert read_back.new == comment.replace("\r\n", "\n")
    assert client.raw_comment(number, read_back.cnum) == comment.replace("\r\n", "\n")


def test_wiki_markup_in_comments_reads_as_shown_or_raw(tracd: TracServer, rack: str) -> None:
    client = tracd.client()
    number = new_ticket(client, rack)
    client.comment(number, "Seen on ''two'' nodes:\n * nid001\n * nid002\n\n{{{\n  raw  text\n}}}")
    [shown] = client.ticket(number).comments
    assert shown.new == "Seen on two nodes:\n\n* nid001\n* nid002\n\n  raw  text"
    assert client.raw_comment(number, shown.cnum).startswith("Seen on ''two'' nodes:\n * nid001")


# --- dates -----------------------------------------------------------------------------


@pytest.fixture
def site_date_format(tracd: TracServer) -> Iterator[None]:
    """The site's default date format unset (Trac's locale format) for one test."""
    tracd.set_option("trac", "default_date_format", "")
    try:
        yield
    finally:
        tracd.set_option("trac", "default_date_format", "iso8601")


def test_times_are_iso_even_when_the_site_shows_another_format(
    tracd: TracServer, rack: str, site_date_format: None
) -> None:
    tracd.add_user("datefmt", "datefmt-pw", "TICKET_VIEW", "TICKET_CREATE")
    client = tracd.client("datefmt", "datefmt-pw")
    number = new_ticket(client, rack)
    [row] = client.query(xname=f"^{rack}")
    assert ISO_UTC.match(row["time"]), row
    assert ISO_UTC.match(client.ticket(number).fields["time"])
    # A second client of the same user finds the preference already set.
    [again] = tracd.client("datefmt", "datefmt-pw").query(xname=f"^{rack}")
    assert again["time"] == row["time"]


# --- settings --------------------------------------------------------------------------


def test_from_environment_reads_the_password_file(tracd: TracServer, tmp_path: Path) -> None:
    secret = tmp_path / "trac-password"
    secret.write_text(tracd.password + "\n")
    client = TracClient.from_environment(
        {
            "TRAC_URL": tracd.url + "/",
            "TRAC_USER": tracd.user,
            "TRAC_PASSWORD_FILE": str(secret),
            "TRAC_TIMEOUT": "3.5",
        }
    )
    assert client.url == tracd.url
    assert client.timeout == 3.5
    assert client.priorities()


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({}, "TRAC_URL is not set"),
        ({"TRAC_URL": "trac.example.org/stat"}, "TRAC_URL must be"),
        ({"TRAC_URL": "http://t/stat", "TRAC_USER": "bot"}, "TRAC_PASSWORD is not set"),
        (
            {"TRAC_URL": "http://t/stat", "TRAC_USER": "bot", "TRAC_PASSWORD_FILE": "/nonexistent"},
            "TRAC_PASSWORD_FILE '/nonexistent' cannot be read",
        ),
        (
            {
                "TRAC_URL": "http://t/stat",
                "TRAC_USER": "bot",
                "TRAC_PASSWORD": "pw",
                "TRAC_TIMEOUT": "soon",
            },
            "TRAC_TIMEOUT must be a number",
        ),
        (
            {
                "TRAC_URL": "http://t/stat",
                "TRAC_USER": "bot",
                "TRAC_PASSWORD": "pw",
                "TRAC_TIMEOUT": "0",
            },
            "TRAC_TIMEOUT must be a number",
        ),
    ],
)
def test_from_environment_names_what_is_missing(env: dict[str, str], named: str) -> None:
    with pytest.raises(TracError, match=re.escape(named)):
        TracClient.from_environment(env)


def test_from_environment_without_a_user_is_anonymous() -> None:
    client = TracClient.from_environment({"TRAC_URL": "http://trac.example.org/stat"})
    assert client.user is None
    assert client.timeout == 10.0


# --- JSON-RPC --------------------------------------------------------------------------


@pytest.fixture
def jsonrpc(tracd: TracServer) -> Iterator[None]:
    """The JSON-RPC stand-in (tests/trac_jsonrpc_stub.py) loaded into tracd for one test."""
    stub = Path(__file__).resolve().parents[1] / "trac_jsonrpc_stub.py"
    installed = tracd.env_dir / "plugins" / stub.name
    shutil.copy(stub, installed)
    tracd.set_option("components", "trac_jsonrpc_stub.*", "enabled")  # reloads the environment
    try:
        yield
    finally:
        installed.unlink()
        tracd.set_option("components", "trac_jsonrpc_stub.*", "disabled")


def test_json_rpc_gives_the_raw_values_when_the_site_has_it(
    tracd: TracServer, rack: str, jsonrpc: None
) -> None:
    client = tracd.client()
    number = new_ticket(client, rack, description="old text")
    client.comment(number, "Seen on ''two'' nodes")
    client.update(number, description="new text", comment="Clarified.")
    client.assign(number, "alice")
    ticket = client.ticket(number)
    assert [(c.cnum, c.field, c.old, c.new) for c in ticket.changes] == [
        (1, "comment", "1", "Seen on ''two'' nodes"),  # the wiki text, not its rendering
        (2, "description", "old text", "new text"),  # the values, not "modified"
        (2, "comment", "2", "Clarified."),
        (3, "owner", "", "alice"),
        (3, "status", "new", "assigned"),
    ]
    assert {c.author for c in ticket.changes} == {tracd.user}
    assert all(ISO_UTC.match(c.time) for c in ticket.changes)
