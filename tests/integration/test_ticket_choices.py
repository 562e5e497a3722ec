"""The dashboard's ticket form offers the site's own types and priorities, read from its Trac.

A real tracd (tests/trac_fixtures.py) for the site's lists; a closed port for a Trac that
cannot be reached, where the form falls back to HPC-STAT's lists and says why.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask

from stat_bot.settings import Settings
from stat_bot.web.ticket_choices import FALLBACK_PRIORITIES, FALLBACK_TYPES
from tests.trac_fixtures import TracServer, free_port
from tests.web_fixtures import WebSession

pytestmark = pytest.mark.trac


def _session(
    make_web_app: Callable[..., Flask],
    make_settings: Callable[..., Settings],
    web_user: tuple[str, str],
    **settings: Any,
) -> WebSession:
    session = WebSession(make_web_app(make_settings(**settings)).test_client())
    assert session.login(*web_user).status_code == 302
    return session


def _options(html: str, name: str) -> list[str]:
    block = html.split(f'<select id="{name}"', 1)[1].split("</select>", 1)[0]
    return [part.split('"', 1)[0] for part in block.split('<option value="')[2:]]


def test_the_form_offers_and_the_relay_accepts_the_sites_choices(
    make_web_app, make_settings, web_user, tracd: TracServer
):
    web = _session(
        make_web_app,
        make_settings,
        web_user,
        trac_url=tracd.url,
        trac_user=tracd.user,
        trac_password=tracd.password,
        stat_channel="general",
    )
    html = web.get("/ticket").get_data(as_text=True)
    assert _options(html, "type") == tracd.client().types() == ["defect", "enhancement", "task"]
    assert _options(html, "priority") == tracd.client().priorities()
    assert "choices-note" not in html
    body = {
        "summary": "x",
        "type": "enhancement",
        "priority": "trivial",
        "xname": "x1",
        "action": "new",
    }
    refused = web.post_json("/slack-proxy", {**body, "type": "nonsense"})
    assert refused.status_code == 400
    assert "defect, enhancement, task" in refused.get_json()["errors"]["type"]
    answer = web.post_json("/slack-proxy", body)  # no Slack here: past validation is enough
    assert "type" not in (answer.get_json() or {}).get("errors", {})


def test_an_unreachable_trac_gives_hpc_stats_lists_with_the_reason_quickly(
    make_web_app, make_settings, web_user
):
    url = f"http://127.0.0.1:{free_port()}/stat"  # nothing listens there
    web = _session(make_web_app, make_settings, web_user, trac_url=url)
    started = time.monotonic()
    html = web.get("/ticket").get_data(as_text=True)
    assert time.monotonic() - started < 10
    assert _options(html, "type") == list(FALLBACK_TYPES)
    assert _options(html, "priority") == list(FALLBACK_PRIORITIES)
    assert "Types and priorities are HPC-STAT's, because Trac could not be asked" in html
    assert url in html
