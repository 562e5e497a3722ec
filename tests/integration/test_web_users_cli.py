"""Dashboard users from the command line: `stat-bot web-user`, and the file the web app reads."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from stat_bot.settings import Settings
from stat_bot.web.services import secret_key
from stat_bot.web.users import UserError, UserStore, parse_entries
from tests.conftest import STAT_BOT

PASSWORD = "a long enough secret"


@pytest.fixture
def user_cli(cli_env: dict[str, str], home: Path):
    def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [STAT_BOT, "web-user", *args],
            cwd=home,
            env=cli_env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=30,
        )

    return run


def test_add_list_change_remove(user_cli, settings: Settings):
    added = user_cli("add", "alice", "--password-stdin", stdin=PASSWORD + "\n")
    assert added.returncode == 0, added.stderr
    assert added.stdout.startswith("added alice")
    path = settings.web_users_file
    assert path is not None
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert PASSWORD not in path.read_text()
    store = UserStore(path)
    assert store.verify("alice", PASSWORD)
    assert not store.verify("alice", PASSWORD + "x")

    changed = user_cli("add", "alice", "--password-stdin", stdin="another password\n")
    assert changed.returncode == 0
    assert "changed the password" in changed.stdout
    assert store.verify("alice", "another password")  # re-read: the file changed
    assert not store.verify("alice", PASSWORD)

    assert user_cli("list").stdout.split() == ["alice"]
    assert user_cli("remove", "alice").returncode == 0
    assert store.names() == []
    missing = user_cli("remove", "alice")
    assert missing.returncode == 1
    assert "no user 'alice'" in missing.stderr


@pytest.mark.parametrize(
    ("name", "password", "message"),
    [
        ("bad name", PASSWORD, "user name 'bad name' is not allowed"),
        ("bob", "short", "too short"),
    ],
)
def test_bad_names_and_passwords_are_refused_and_nothing_is_written(
    user_cli, settings: Settings, name: str, password: str, message: str
):
    result = user_cli("add", name, "--password-stdin", stdin=password + "\n")
    assert result.returncode == 2
    assert message in result.stderr
    assert "nothing was changed" in result.stderr
    assert settings.web_users_file is not None
    assert not settings.web_users_file.exists()


def test_hash_gives_an_entry_for_web_users(user_cli, make_settings):
    result = user_cli("hash", "carol", "--password-stdin", stdin=PASSWORD + "\n")
    assert result.returncode == 0, result.stderr
    entry = result.stdout.strip()
    assert entry.startswith("carol:")
    assert PASSWORD not in entry
    settings = make_settings(web_users=entry)
    store = UserStore(Path("/nonexistent/users"), settings.web_users.get_secret_value())
    assert store.verify("carol", PASSWORD)


def test_list_says_how_to_add_the_first_user(user_cli):
    result = user_cli("list")
    assert result.returncode == 0
    assert "stat-bot web-user add NAME" in result.stdout


def test_users_file_errors_name_the_line(tmp_path: Path):
    with pytest.raises(UserError, match=r"users, line 2: expected NAME:HASH"):
        parse_entries("# comment\nalice\n", "users")
    assert parse_entries("a:h1, b:h2\n# c:h3\n", "WEB_USERS") == {"a": "h1", "b": "h2"}


def test_a_malformed_hash_lets_nobody_in(tmp_path: Path):
    path = tmp_path / "users"
    path.write_text("alice:not-a-real-hash\n")
    assert UserStore(path).verify("alice", "anything at all") is False


def test_the_generated_secret_key_is_private_and_stable(make_settings):
    settings = make_settings()
    first = secret_key(settings)
    path = settings.state_dir / "web-secret-key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first) == 64
    assert secret_key(settings) == first
    assert secret_key(make_settings(web_secret_key="configured")) == "configured"
    assert not [p for p in os.listdir(settings.state_dir) if p.startswith(".web-secret-key-")]


def _in_terminal(cli_env: dict[str, str], home: Path, *args: str, answers: list[str]) -> str:
    """Run `stat-bot ARGS` on a pseudo-terminal (as getpass wants), answering each prompt."""
    import pty
    import select
    import time

    pid, fd = pty.fork()
    if pid == 0:
        os.chdir(home)
        os.execve(STAT_BOT, [STAT_BOT, *args], cli_env)
    seen = ""
    try:
        deadline = time.monotonic() + 30
        pending = list(answers)
        while True:
            assert time.monotonic() < deadline, seen
            ready, _, _ = select.select([fd], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(fd, 4096).decode(errors="replace")
                except OSError:
                    break
                if not chunk:
                    break
                seen += chunk
                if pending and seen.rstrip().endswith(":"):
                    # getpass turns echo off with TCSAFLUSH, which drops what was typed
                    # before: answer once it is quiet, as a person would.
                    while select.select([fd], [], [], 0.3)[0]:
                        seen += os.read(fd, 4096).decode(errors="replace")
                    os.write(fd, (pending.pop(0) + "\n").encode())
        os.waitpid(pid, 0)
    finally:
        os.close(fd)
    return seen


def test_the_password_rule_comes_before_the_question(cli_env, home: Path, settings: Settings):
    out = _in_terminal(cli_env, home, "web-user", "add", "carol", answers=["short"])
    assert out.index("at least 8 characters") < out.index("Password:")
    assert "too short" in out
    assert "Again:" not in out  # refused at once, not after typing it twice
    assert settings.web_users_file is not None
    assert not settings.web_users_file.exists()

    out = _in_terminal(cli_env, home, "web-user", "add", "carol", answers=[PASSWORD, PASSWORD])
    assert "added carol" in out
    assert UserStore(settings.web_users_file).verify("carol", PASSWORD)
