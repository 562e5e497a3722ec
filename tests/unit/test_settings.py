"""Settings: defaults, the `environment` file, refusals that name the variable."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from stat_bot.settings import SERVICE_SECRETS, SettingsError, load_settings

VARIABLES = (
    "STATE_DIR",
    "DATABASE_URL",
    "LOGS_DIR",
    "WRITEABLE_DIR",
    "WORKSPACE_DIR",
    "JOB_CONFIGS",
    "SQLITE_SYNCHRONOUS",
    "DISPATCHER_CONCURRENCY",
    "DISPATCHER_POLL_INTERVAL",
    "HEARTBEAT_INTERVAL",
    "LOST_AFTER",
    "JOB_TIMEOUT",
    "KILL_GRACE",
    "SHUTDOWN_GRACE",
    "HISTORY_DAYS",
    "TIMEZONE",
    "LOG_LEVEL",
    "LOG_FORMAT",
    "PYTHONPATH",
    *SERVICE_SECRETS,
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No setting leaks in from the machine running the tests; cwd is an empty folder."""
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_defaults_are_derived_from_state_dir(tmp_path: Path):
    settings = load_settings(state_dir=tmp_path / "state")
    state = tmp_path / "state"
    assert settings.state_dir == state
    assert settings.database_url == f"sqlite:///{state / 'stat-bot.sqlite3'}"
    assert settings.sqlite_path == state / "stat-bot.sqlite3"
    assert settings.logs_dir == state / "logs"
    assert settings.writeable_dir == state / "writeable"


def test_defaults_without_any_variable(tmp_path: Path):
    settings = load_settings()
    assert settings.state_dir == tmp_path / "var"
    assert settings.workspace_dir == tmp_path / "workspace"
    assert settings.job_configs == tmp_path / "job_configs.py"
    assert settings.sqlite_path == tmp_path / "var" / "stat-bot.sqlite3"
    assert settings.dispatcher_concurrency == 8
    assert settings.timezone == "UTC"
    assert settings.log_level == "INFO"
    assert settings.log_format == "auto"
    assert settings.sqlite_synchronous == "NORMAL"


def test_relative_paths_become_absolute(tmp_path: Path):
    settings = load_settings(state_dir="s", logs_dir="l", database_url="sqlite:///d/q.db")
    assert settings.state_dir == tmp_path / "s"
    assert settings.logs_dir == tmp_path / "l"
    assert settings.sqlite_path == tmp_path / "d" / "q.db"


def test_explicit_paths_win_over_derived_ones(tmp_path: Path):
    settings = load_settings(state_dir=tmp_path / "s", writeable_dir=tmp_path / "w")
    assert settings.writeable_dir == tmp_path / "w"
    assert settings.logs_dir == tmp_path / "s" / "logs"


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("STATE_DIR", str(tmp_path / "from-env"))
    monkeypatch.setenv("DISPATCHER_CONCURRENCY", "3")
    monkeypatch.setenv("log_level", "debug")
    monkeypatch.setenv("TIMEZONE", "Europe/Paris")
    settings = load_settings()
    assert settings.state_dir == tmp_path / "from-env"
    assert settings.dispatcher_concurrency == 3
    assert settings.log_level == "DEBUG"
    assert str(settings.tz) == "Europe/Paris"


def test_values_are_read_from_an_environment_file(tmp_path: Path):
    (tmp_path / "environment").write_text(
        "# site settings\nSTATE_DIR=/srv/stat-bot\nTIMEZONE=America/Chicago\nHISTORY_DAYS=7\n"
        "SITE_TRAC_URL=https://trac.example/\n"
    )
    settings = load_settings()
    assert settings.state_dir == Path("/srv/stat-bot")
    assert settings.timezone == "America/Chicago"
    assert settings.history_days == 7


def test_process_environment_wins_over_the_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    (tmp_path / "environment").write_text("HISTORY_DAYS=7\n")
    monkeypatch.setenv("HISTORY_DAYS", "30")
    assert load_settings().history_days == 30


def test_a_malformed_value_in_the_file_is_refused(tmp_path: Path):
    (tmp_path / "environment").write_text("LOG_FORMAT=xml\n")
    with pytest.raises(SettingsError, match="setting LOG_FORMAT"):
        load_settings()


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("DISPATCHER_CONCURRENCY", "lots", "valid integer"),
        ("DISPATCHER_CONCURRENCY", "0", "greater than or equal to 1"),
        ("TIMEZONE", "Mars/Base", "expected an IANA time zone such as UTC or Europe/Paris"),
        ("TIMEZONE", "../../etc/passwd", "expected an IANA time zone"),
        ("DATABASE_URL", "mysql://x", "expected sqlite:///PATH"),
        ("LOG_LEVEL", "loud", "'DEBUG', 'INFO', 'WARNING' or 'ERROR'"),
        ("HEARTBEAT_INTERVAL", "soon", "valid number"),
        ("SQLITE_SYNCHRONOUS", "off", "'NORMAL' or 'FULL'"),
    ],
)
def test_malformed_values_name_the_variable_and_what_is_expected(
    monkeypatch: pytest.MonkeyPatch, variable, value, expected
):
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    (line,) = str(caught.value).splitlines()
    assert line.startswith(f"setting {variable}: ")
    assert expected in line
    assert value.upper() in line.upper()
    assert line.endswith("see environment-sample")


def test_every_bad_variable_gets_its_own_line(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DISPATCHER_CONCURRENCY", "lots")
    monkeypatch.setenv("TIMEZONE", "Mars/Base")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    lines = str(caught.value).splitlines()
    assert len(lines) == 2
    assert {line.split(":")[0] for line in lines} == {
        "setting DISPATCHER_CONCURRENCY",
        "setting TIMEZONE",
    }


def test_job_environment_strips_service_secrets(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    for secret in SERVICE_SECRETS:
        monkeypatch.setenv(secret, "s3cret")
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-s3cret")
    monkeypatch.setenv("SLACK_APP_TOKEN", "xapp-s3cret")
    monkeypatch.setenv("SITE_REDFISH_USER", "admin")
    (tmp_path / "environment").write_text(
        "SLACK_APP_TOKEN=xapp-file\nSITE_TRAC_URL=https://trac.example/\n"
    )
    settings = load_settings(state_dir=tmp_path / "state", workspace_dir=tmp_path / "ws")
    env = settings.job_environment()
    assert not SERVICE_SECRETS & set(env)
    assert not [v for v in env.values() if "s3cret" in v]
    assert env["SITE_REDFISH_USER"] == "admin"
    assert env["SITE_TRAC_URL"] == "https://trac.example/"
    assert env["PYTHONPATH"] == str(tmp_path / "ws")
    assert env["WRITEABLE_DIR"] == str(tmp_path / "state" / "writeable")
    assert env["STAT_BOT_TIMEZONE"] == "UTC"
    # In a virtualenv, jobs see it activated: `python3` is the service's Python.
    venv = [str(Path(sys.executable).parent)] if sys.prefix != sys.base_prefix else []
    assert env["PATH"] == os.pathsep.join([*venv, os.environ["PATH"]])


def test_job_environment_overrides_an_inherited_pythonpath(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    env = load_settings(workspace_dir=tmp_path / "ws").job_environment()
    assert env["PYTHONPATH"] == str(tmp_path / "ws")


def test_slack_tokens_come_in_pairs_and_are_never_echoed(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-only-one")
    with pytest.raises(SettingsError, match="SLACK_APP_TOKEN is not set") as raised:
        load_settings()
    assert "only-one" not in str(raised.value)
    monkeypatch.setenv("SLACK_APP_TOKEN", "xoxb-wrong-kind")
    with pytest.raises(
        SettingsError, match="SLACK_APP_TOKEN: expected a token starting xapp-"
    ) as raised:
        load_settings()
    assert "wrong-kind" not in str(raised.value)
    monkeypatch.setenv("SLACK_APP_TOKEN", "xapp-right")
    settings = load_settings()
    assert settings.slack_configured
    assert "xapp-right" not in repr(settings)


def test_without_tokens_it_is_local_mode():
    settings = load_settings(slack_api_url="http://127.0.0.1:1234/api")
    assert not settings.slack_configured
    assert settings.slack_api_url == "http://127.0.0.1:1234/api/"


def test_a_postgresql_url_passes_the_settings_check_for_the_queue_to_judge():
    settings = load_settings(database_url="postgresql://stat@db.example/stat")
    assert settings.database_url == "postgresql://stat@db.example/stat"


@pytest.mark.parametrize(
    ("url", "secret"),
    [
        ("postgresql://statbot:S3cret-pw@db/statbot", "S3cret-pw"),
        ("postgresql://statbot:a%40b%20c@db/statbot", "a@b c"),  # decoded form too
        ("postgresql://statbot@db/statbot?password=S3cret&sslmode=require", "S3cret"),
        ("postgresql://statbot@db/statbot?sslpassword=KeyPass", "KeyPass"),
        ("postgresql://statbot:my secret@db/statbot", "my secret"),  # libpq refuses, quotes it
        ("postgresql://statbot:pw-1@[::1/statbot", "pw-1"),  # does not parse as a URL
    ],
)
def test_database_urls_are_shown_without_their_secrets(url, secret):
    from stat_bot.settings import scrubbed, shown_url

    assert secret not in shown_url(url)
    assert "***" in shown_url(url)
    assert secret not in scrubbed(f'libpq said: bad token "{secret}" in {url}', url)


def test_a_mistyped_database_url_is_refused_without_its_password():
    from stat_bot.settings import SettingsError

    with pytest.raises(SettingsError, match="postgresq://u:\\*\\*\\*@h/db") as caught:
        load_settings(database_url="postgresq://u:S3CRET@h/db", _env_file=None)
    assert "S3CRET" not in str(caught.value)
