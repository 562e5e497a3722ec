"""Login throttling and logout through the real server: `stat-bot web` (gunicorn, two workers).

Each request is its own connection, so the kernel spreads them over both workers: the
throttle must count in the queue they share, and logout must end the session for both.
"""

from __future__ import annotations

import re
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from http.cookiejar import CookieJar
from pathlib import Path

import pytest

from stat_bot.queue.sqlite import SQLiteQueue
from stat_bot.web.users import UserStore
from tests.conftest import STAT_BOT, subprocess_env, write_configs
from tests.web_fixtures import WEB_PASSWORD, WEB_USER, csrf_from

READY = re.compile(r"web server at (http://[\d.]+:\d+)/")
CONFIG = {"demo": {"jobs": {"hello": {"run_args_template": "echo hi"}}}}


@dataclass
class Web:
    home: Path
    url: str


@pytest.fixture
def web(tmp_path: Path) -> Iterator[Web]:
    (tmp_path / "workspace").mkdir()
    write_configs(tmp_path / "job_configs.py", CONFIG)
    UserStore(tmp_path / "var" / "web-users").set(WEB_USER, WEB_PASSWORD)
    env = subprocess_env(tmp_path)
    env.update(WEB_WORKERS="2", WEB_THREADS="2", WEB_LOGIN_LIMIT_USER="3 per minute")
    log = tmp_path / "web.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            [STAT_BOT, "web", "--port", "0"], env=env, cwd=tmp_path, stdout=out, stderr=out
        )
    try:
        deadline = time.monotonic() + 30
        while not (match := READY.search(log.read_text(errors="replace"))):
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        yield Web(tmp_path, match.group(1))
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Browser:
    """A cookie jar and urllib: each request a new connection (urllib sends Connection: close)."""

    def __init__(self, url: str, jar: CookieJar | None = None) -> None:
        self.url = url
        self.jar = jar or CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.jar), NoRedirect()
        )

    def open(self, path: str, form: dict[str, str] | None = None) -> tuple[int, dict, str]:
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        try:
            with self.opener.open(self.url + path, data=data, timeout=20) as response:
                return response.status, dict(response.headers), response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read().decode()

    def login(self, password: str) -> tuple[int, dict, str]:
        _, _, page = self.open("/login")
        form = {"username": WEB_USER, "password": password, "csrf_token": csrf_from(page)}
        return self.open("/login", form)


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        return None


def test_failed_logins_are_throttled_across_workers_and_logout_ends_the_session(web: Web):
    browser = Browser(web.url)
    for _ in range(3):
        assert browser.login("wrong password")[0] == 401
    status, headers, page = browser.login(WEB_PASSWORD)
    assert status == 429
    assert 0 < int(headers["Retry-After"]) <= 60
    assert "Too many failed logins" in page
    queue = SQLiteQueue(web.home / "var" / "stat-bot.sqlite3")
    try:
        assert queue.throttle_clear() >= 1  # the counts are in the shared queue database
    finally:
        queue.close()
    assert browser.login(WEB_PASSWORD)[0] == 302
    copy = Browser(web.url, CookieJar())
    for cookie in browser.jar:
        copy.jar.set_cookie(cookie)
    for _ in range(4):  # over new connections, whichever worker answers
        assert copy.open("/api/jobs")[0] == 200
    _, _, dashboard = browser.open("/")
    assert browser.open("/logout", {"csrf_token": csrf_from(dashboard)})[0] == 302
    for _ in range(4):
        assert copy.open("/api/jobs")[0] == 401
