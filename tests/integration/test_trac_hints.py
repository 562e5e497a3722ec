"""TracClient's hints come from status codes and permission names, not from Trac's English.

A Trac of its own (tests/trac_fixtures.TracServer) with a small plugin that makes it
behave as a broken or a translated site would, on request: a marker file in the
environment turns `/login` into a 500 (Trac's own internal-error page) or makes the
query page refuse in French, naming the permission as Trac always does.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from stat_bot.integrations.trac import TracError, TracLoginError, TracPermissionError
from tests.trac_fixtures import TracServer, require_trac

pytestmark = pytest.mark.trac

PLUGIN = '''
import os
from trac.core import Component, implements
from trac.perm import PermissionError
from trac.web.api import IRequestFilter


class SiteTrouble(Component):
    """Misbehave as a marker file in the environment asks."""

    implements(IRequestFilter)

    def _marked(self, name):
        return os.path.exists(os.path.join(self.env.path, name))

    def pre_process_request(self, req, handler):
        if req.path_info == "/login" and self._marked("broken-login"):
            raise RuntimeError("the session table is damaged")
        if req.path_info == "/query" and self._marked("french"):
            raise PermissionError(
                msg="Les privileges TICKET_VIEW sont requis pour effectuer cette operation."
            )
        return handler

    def post_process_request(self, req, template, data, metadata):
        return template, data, metadata
'''


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TracServer]:
    require_trac()
    server = TracServer(tmp_path_factory.mktemp("trac-hints"))
    server.build()
    (server.env_dir / "plugins" / "site_trouble.py").write_text(PLUGIN)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _marker(site: TracServer, name: str) -> Path:
    return site.env_dir / name


def test_a_500_at_login_is_reported_as_trac_failing(site: TracServer):
    marker = _marker(site, "broken-login")
    marker.touch()
    try:
        with pytest.raises(TracError) as caught:
            site.client().login()
    finally:
        marker.unlink()
    message = str(caught.value)
    assert not isinstance(caught.value, TracLoginError)
    assert f"Trac at {site.url} failed at /login (HTTP 500)" in message
    assert "basic auth" not in message
    assert site.password not in message
    site.client().login()  # and fine once Trac is


def test_a_permission_refusal_in_another_language_still_names_the_permission(site: TracServer):
    marker = _marker(site, "french")
    marker.touch()
    try:
        with pytest.raises(TracPermissionError) as caught:
            site.client().query(status="!closed")
    finally:
        marker.unlink()
    assert caught.value.permission == "TICKET_VIEW"
    assert f"permission add {site.user} TICKET_VIEW" in str(caught.value)
    assert "Les privileges TICKET_VIEW sont requis" in str(caught.value)
