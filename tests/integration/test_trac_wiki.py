"""TracClient's wiki pages against a real tracd (tests/trac_fixtures.py): read, write, refusals.

One tracd serves the whole session, so each test writes pages under its own name.
"""

from __future__ import annotations

import itertools
import logging
import shutil
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from stat_bot.integrations.trac import (
    TracPermissionError,
    TracRejectedError,
    TracUnreachableError,
    WikiNameError,
    WikiPage,
)
from tests.trac_fixtures import TracServer

pytestmark = pytest.mark.trac

_days = itertools.count(1)
POSTMORTEM = """\
= Postmortem: GPFS hang on x1000c0 =
''Kühlung'' ⚠ «nid000001» — 日本語, "quoted", a,b

 * 09:14 first alert
 * 09:20 drained `x1000c0s0b0n0`

{{{
#!sh
mmdiag --waiters   # <b>not</b> HTML & not ''wiki''
  indented   text, trailing spaces<TRAIL>
}}}

{{{
}}}
|| table || cell ||
[[PageOutline]]
""".replace("<TRAIL>", "   ")


@pytest.fixture
def incident() -> str:
    """A page name no other test in the session uses (Incidents/2026-12-01-t1, ...)."""
    return f"Incidents/2026-12-{next(_days):02d}-t{next(_days)}"


def test_create_read_back_replace_and_same_text_again(tracd: TracServer, incident: str) -> None:
    client = tracd.client()
    assert client.wiki_page(incident) is None

    created = client.write_wiki(incident, "First draft.", comment="opened by STAT bot")
    url = f"{tracd.url}/wiki/{incident}"
    assert created == WikiPage(incident, "First draft.", 1, url)
    assert client.wiki_url(incident) == url
    assert client.wiki_page(incident) == created

    replaced = client.write_wiki(incident, "Second draft.\n", comment="timeline")
    assert replaced == WikiPage(incident, "Second draft.\n", 2, url)
    assert client.wiki_page(incident) == replaced

    again = client.write_wiki(incident, "Second draft.\n", comment="nothing new")
    assert again.version == 2
    assert tracd.client().wiki_page(incident) == replaced  # a fresh client sees version 2


def test_a_nested_page_is_shown_by_trac_at_its_url(tracd: TracServer) -> None:
    client = tracd.client()
    name = "Incidents/2026-12-02-x"
    page = client.write_wiki(name, "Nested.")
    assert page.url == f"{tracd.url}/wiki/Incidents/2026-12-02-x"
    assert client.wiki_page("Incidents") is None  # the parent is not made
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(page.url, timeout=10) as reply:  # anonymous readers see it too
        assert reply.status == 200
        assert "Nested." in reply.read().decode()


def test_wiki_markup_and_unicode_round_trip_exactly(tracd: TracServer, incident: str) -> None:
    client = tracd.client()
    written = client.write_wiki(incident, POSTMORTEM, comment="Postmortem ⚠ «draft»")
    assert written.text == POSTMORTEM
    read = client.wiki_page(incident)
    assert read is not None
    assert read.text == POSTMORTEM
    assert read.version == 1
    crlf = POSTMORTEM.replace("\n", "\r\n")  # as a browser posts it: stored as sent
    assert client.write_wiki(incident, crlf).version == 2
    assert client.wiki_page(incident) == WikiPage(incident, crlf, 2, read.url)


def test_names_with_spaces_and_unicode_are_quoted(tracd: TracServer) -> None:
    client = tracd.client()
    name = "Incidents/Kühlung loop 2 (x1001)"
    page = client.write_wiki(name, "Cooling.")
    assert page.url == f"{tracd.url}/wiki/Incidents/K%C3%BChlung%20loop%202%20(x1001)"
    assert client.wiki_page(name) == page


@pytest.mark.parametrize(
    ("name", "said"),
    [
        ("", "a wiki page name is needed"),
        ("   ", "a wiki page name is needed"),
        ("Incidents/../WikiStart", "has a '..' part"),
        ("..", "has a '..' part"),
        ("Incidents/./x", "has a '.' part"),
        ("Incidents//x", "has an empty part"),
        ("/Incidents/x", "starts or ends with '/': write it as 'Incidents/x'"),
        ("Incidents/x/", "starts or ends with '/'"),
        ("Incidents/x\n", "control character ('\\n')"),
        ("Incidents/\x00x", "control character ('\\x00')"),
        ("Incidents/\tx", "control character"),
        (" Incidents/x", "starts or ends with a space"),
        ("Incidents/ x", "part that starts or ends with a space"),
    ],
)
def test_bad_names_are_refused_without_a_request(
    tracd: TracServer, name: str, said: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="stat_bot.integrations.trac")
    client = tracd.client()
    for call in (
        lambda: client.write_wiki(name, "text"),
        lambda: client.wiki_page(name),
        lambda: client.wiki_url(name),
    ):
        with pytest.raises(WikiNameError) as caught:
            call()
        assert said in str(caught.value)
        assert isinstance(caught.value, TracRejectedError)
    assert "trac: GET" not in caplog.text
    assert "trac: POST" not in caplog.text


def test_a_user_without_wiki_rights_is_told_which_one(tracd: TracServer, incident: str) -> None:
    viewer = tracd.client(tracd.viewer, tracd.viewer_password)
    with pytest.raises(TracPermissionError) as caught:
        viewer.write_wiki(incident, "mine")
    assert caught.value.permission == "WIKI_CREATE"
    assert "WIKI_CREATE" in str(caught.value)
    assert tracd.viewer in str(caught.value)
    assert viewer.wiki_page(incident) is None  # Trac answers 404 to those who cannot create

    page = tracd.client().write_wiki(incident, "the bot's")
    with pytest.raises(TracPermissionError) as caught:
        viewer.write_wiki(incident, "mine")
    assert caught.value.permission == "WIKI_MODIFY"
    assert viewer.wiki_page(incident) == page  # reading needs WIKI_VIEW only


def test_trac_down_is_unreachable_with_no_password_in_the_message(
    tracd: TracServer, incident: str
) -> None:
    client = tracd.client()
    client.write_wiki(incident, "before")
    with tracd.stopped():
        for call in (
            lambda: client.write_wiki(incident, "during"),
            lambda: client.wiki_page(incident),
            lambda: tracd.client().write_wiki(incident, "during"),  # not yet logged in
        ):
            with pytest.raises(TracUnreachableError) as caught:
                call()
            assert tracd.url in str(caught.value)
            assert tracd.password not in str(caught.value)
    page = client.wiki_page(incident)
    assert page is not None
    assert (page.text, page.version) == ("before", 1)


def test_a_page_too_long_is_refused_quoting_trac(tracd: TracServer, incident: str) -> None:
    client = tracd.client()
    with pytest.raises(TracRejectedError, match="The wiki page is too long"):
        client.write_wiki(incident, "x" * 262_145)
    assert client.wiki_page(incident) is None


# --- concurrent edits ------------------------------------------------------------------


@pytest.fixture
def racer(tracd: TracServer) -> Iterator[None]:
    """tests/trac_wiki_racer.py loaded into tracd: real edits between our read and post."""
    plugin = Path(__file__).resolve().parents[1] / "trac_wiki_racer.py"
    installed = tracd.env_dir / "plugins" / plugin.name
    shutil.copy(plugin, installed)
    tracd.set_option("components", "trac_wiki_racer.*", "enabled")  # reloads the environment
    try:
        yield
    finally:
        installed.unlink()
        tracd.set_option("components", "trac_wiki_racer.*", "disabled")


def test_a_concurrent_edit_is_retried_once_on_the_new_version(
    tracd: TracServer, incident: str, racer: None
) -> None:
    client = tracd.client()
    name = f"{incident}/RacedOnce"
    page = client.write_wiki(name, "STAT bot's postmortem")
    assert (page.text, page.version) == ("STAT bot's postmortem", 2)  # 1 is the racer's
    assert client.wiki_page(name) == page


def test_a_page_changed_at_every_try_is_reported(
    tracd: TracServer, incident: str, racer: None
) -> None:
    client = tracd.client()
    name = f"{incident}/AlwaysRaced"
    with pytest.raises(TracRejectedError) as caught:
        client.write_wiki(name, "STAT bot's postmortem")
    message = str(caught.value)
    assert "modified by somebody else" in message  # Trac's own words
    assert name in message
    page = client.wiki_page(name)
    assert page is not None
    assert page.version == 2  # the racer's two edits, none of ours
    assert "STAT bot's postmortem" not in page.text
