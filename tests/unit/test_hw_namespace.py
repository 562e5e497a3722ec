"""The hw namespace as shipped: its commands, its schedule, and what its jobs are handed."""

from __future__ import annotations

from pathlib import Path

import pytest

from stat_bot.jobs.config import load_config
from stat_bot.jobs.matching import MatchError, match_command
from stat_bot.settings import load_settings
from stat_bot.tasks import TaskUsageError, tasks
from stat_bot.tasks.hw import HwTaskError, redfish_password, split_ticket, ssh_wanted
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def shipped():
    return load_config(ROOT / "job_configs.py")


@pytest.mark.parametrize(
    ("text", "job_type", "args"),
    [
        ("hw check x1000c0s0b0n0", "check", {"target": "x1000c0s0b0n0"}),
        ("hw check", "check", {"target": "all"}),
        ("hw sweep x1000c0", "sweep", {"target": "x1000c0"}),
        ("hw show nid[000001-000004]", "show", {"target": "nid[000001-000004]"}),
        ("hw sel x1000c0s0b0n0 5", "sel", {"target": "x1000c0s0b0n0", "count": "5"}),
        ("hw power x1000c0 off", "power", {"target": "x1000c0", "action": "off"}),
        ("hw power x1000c0 status", "power-status", {"target": "x1000c0"}),
    ],
)
def test_commands_match_their_jobs(shipped, text: str, job_type: str, args: dict[str, str]):
    match = match_command(shipped, text)
    assert (match.job_type, match.args) == (job_type, args)


def test_a_power_action_must_be_named(shipped):
    with pytest.raises(MatchError, match=r"\[action\] must be one of on, off, restart"):
        match_command(shipped, "hw power x1000c0 reboot")


def test_the_daily_sweep_waits_for_an_inventory(shipped):
    assert shipped.waiting_schedules({})["hw.daily-sweep"] == ["HW_INVENTORY"]
    assert "hw.daily-sweep" not in shipped.waiting_schedules({"HW_INVENTORY": "/x.csv"})


def test_the_hw_tasks_are_registered():
    known = tasks()
    assert {"hw-show", "hw-check", "hw-sweep"} <= set(known)


def test_jobs_get_the_services_absolute_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A job runs in workspace/<namespace>/: relative paths would point elsewhere there."""
    monkeypatch.chdir(tmp_path)
    settings = load_settings(
        state_dir=Path("var"), hw_inventory=Path("site/inventory.csv"), job_configs=Path("j.py")
    )
    env = settings.job_environment()
    assert env["STATE_DIR"] == str(tmp_path / "var")
    assert env["DATABASE_URL"] == f"sqlite:///{tmp_path / 'var' / 'stat-bot.sqlite3'}"
    assert env["JOB_CONFIGS"] == str(tmp_path / "j.py")
    assert env["HW_INVENTORY"] == str(tmp_path / "site" / "inventory.csv")
    assert "HW_INVENTORY" not in load_settings(state_dir=Path("var")).job_environment()


def test_the_redfish_password_comes_from_its_file_when_not_given(tmp_path: Path):
    secret = tmp_path / "password"
    secret.write_text("from-file\nsecond line ignored\n")
    assert redfish_password(load_settings(redfish_password_file=secret)) == "from-file"
    given = load_settings(redfish_password="given", redfish_password_file=secret)
    assert redfish_password(given) == "given"
    with pytest.raises(HwTaskError, match=r"REDFISH_PASSWORD_FILE .* cannot be read"):
        redfish_password(load_settings(redfish_password_file=tmp_path / "missing"))


def test_ssh_checks_run_only_when_ssh_and_a_checks_file_are_there(tmp_path: Path):
    (tmp_path / "hw").mkdir()
    assert not ssh_wanted(load_settings(workspace_dir=tmp_path, ssh_user="ops"))
    (tmp_path / "hw" / "ssh_checks.yaml").write_text("checks: []\n")
    assert ssh_wanted(load_settings(workspace_dir=tmp_path, ssh_user="ops"))
    assert not ssh_wanted(load_settings(workspace_dir=tmp_path))


def test_a_check_asked_by_a_ticket_names_it():
    assert split_ticket(["x1000c0", "--ticket", "12"]) == (["x1000c0"], 12)
    assert split_ticket(["--ticket=#7", "x1000c0"]) == (["x1000c0"], 7)
    with pytest.raises(TaskUsageError, match="ticket number"):
        split_ticket(["x1000c0", "--ticket", "soon"])
