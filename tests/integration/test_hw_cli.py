"""The hw tasks and inventory from a terminal, as an admin setting a site up meets them."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import ROOT

BROKEN_INVENTORY = (
    "xname,bmc,hostname,nid,system\n"
    "x1000c0s0b0n0,,nid1,1,\n"  # 2: no bmc
    "x1000c0s0b0n0,10.0.0.1,nid2,2,\n"  # 3: duplicate xname
    "x1000c0q0,10.0.0.2,nid3,abc,\n"  # 4: not an xname, and a nid that is not a number
    "x1000c0s1b0n0,10.0.0.3,nid2,x,\n"  # 5: a nid that is not a number, duplicate hostname
)


def shipped(home: Path, **extra: str) -> dict[str, str]:
    return {
        "JOB_CONFIGS": str(ROOT / "job_configs.py"),
        "WORKSPACE_DIR": str(ROOT / "workspace"),
        "STATE_DIR": str(home / "var"),
        **extra,
    }


def test_check_config_lists_every_inventory_problem_with_its_line(cli, home):
    inventory = home / "inventory.csv"
    inventory.write_text(BROKEN_INVENTORY)
    result = cli("check-config", env=shipped(home, HW_INVENTORY=str(inventory)))
    assert result.returncode == 1
    shown = [line.strip() for line in (result.stdout + result.stderr).splitlines()]
    assert f"HW_INVENTORY {inventory}: 6 problem(s):" in shown
    for line, words in (
        (2, "x1000c0s0b0n0 has no bmc"),
        (3, "duplicate xname x1000c0s0b0n0 (first on line 2)"),
        (4, "'x1000c0q0' is not an xname"),
        (4, "nid 'abc' is not a number"),
        (5, "nid 'x' is not a number"),
        (5, "duplicate hostname nid2 (first on line 3)"),
    ):
        assert any(s.startswith(f"- {inventory}:{line}: {words}") for s in shown), (line, words)
    assert "Traceback" not in result.stderr


def test_task_list_and_usage_of_the_hw_tasks(cli, home):
    listed = cli("task", "--list", env=shipped(home))
    assert listed.returncode == 0, listed.stderr
    for usage in ("hw-check [TARGET] [--ticket N]", "hw-show [TARGET]", "hw-sweep [TARGET]"):
        assert usage in listed.stdout
    for args, words in (
        (("hw-check", "--now"), "no option '--now'"),
        (("hw-sweep", "x1000c0", "-v"), "no option '-v'"),
        (("hw-check", "--ticket"), "--ticket needs a ticket number"),
        (("hw-check", "--ticket", "abc"), "--ticket needs a ticket number, not 'abc'"),
    ):
        done = cli("task", *args, env=shipped(home))
        assert done.returncode == 2, (args, done.stderr)
        assert words in done.stderr
        assert f"usage: stat-bot task {args[0]} [TARGET]" in done.stderr
        assert "Traceback" not in done.stderr
    unknown = cli("task", "hw-chek", env=shipped(home))
    assert unknown.returncode == 2
    assert "no task 'hw-chek'; the tasks are: hw-check, hw-show, hw-sweep" in unknown.stderr


def test_an_unknown_option_in_a_job_is_answered_in_the_thread(cli, home):
    """`hw check --now` typed in chat runs as a job: a mistake for the asker, not a failure."""
    done = cli("task", "hw-check", "--now", env=shipped(home, STAT_BOT_JOB_ID="7"))
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["text"] == "no option '--now': a target is an xname, a hostname or nids"


def test_a_target_typed_as_a_mention_is_quoted_not_repeated(cli, home):
    """`@stat-bot hw check @channel` reaches the bot as `<!channel>`: the answer (and the text
    notifications show) names it without notifying the channel."""
    done = cli("task", "hw-check", "<!channel>", env=shipped(home, STAT_BOT_JOB_ID="7"))
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert "<!channel>" not in done.stdout
    assert answer["text"].startswith("'&lt;' is not an xname, hostname or nid")
