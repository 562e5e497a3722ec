"""`stat-bot` as people run it: subprocesses against a real queue and dispatcher."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest

from stat_bot.cli import main
from stat_bot.jobs.model import JobStatus
from tests.integration.conftest import wait_pid, wait_status
from tests.peers import free_port

CONFIG = {
    "t": {
        "description": "test jobs",
        "jobs": {
            "lines": {
                "run_args_template": "seq 1 10; echo oops-1 >&2; echo oops-2 >&2",
                "report_stdout": True,
            },
            "fail": {"run_args_template": "echo broken >&2; exit 3"},
            "hold": {"run_args_template": "sleep 30"},
            "later": {"run_args_template": "true"},
        },
        "slack": [
            {"command": "lines", "job_type": "lines", "help": "count to ten"},
            {"command": "fail", "job_type": "fail"},
            {"command": "hold", "job_type": "hold"},
            {"command": "later", "job_type": "later", "delay_seconds": 3600},
        ],
        "schedules": [{"cron": "0 3 * * *", "job_type": "later", "name": "nightly"}],
    },
    "u": {
        "jobs": {"ok": {"run_args_template": "echo fine", "report_stdout": True}},
        "slack": [{"command": "ok", "job_type": "ok"}],
    },
}


SUPPRESSIBLE = {
    "t": {
        **CONFIG["t"],
        "slack": [
            *CONFIG["t"]["slack"],
            {
                "command": "quiet from [start_at] to [end_at]",
                "action": "schedule_suppression",
                "job_type": "hold",
            },
        ],
    },
    "u": CONFIG["u"],
}


def _enqueue(cli, text: str) -> int:
    result = cli("--json", "enqueue", text)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["job"]["id"]


# -- help -----------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [None, *sorted(main.commands)])
def test_help_of_every_command_shows_an_example(cli, command):
    args = [command, "--help"] if command else ["--help"]
    result = cli(*args)
    assert result.returncode == 0, result.stderr
    assert "Examples:" in result.stdout
    examples = result.stdout.split("Examples:", 1)[1]
    assert f"stat-bot {command or ''}".strip() in examples


# -- enqueue, logs ------------------------------------------------------------------------


def test_enqueue_then_logs_of_both_streams(configure, cli, queue, start_dispatcher):
    configure(CONFIG)
    start_dispatcher()
    result = cli("enqueue", "t lines")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "Job #1 `t lines` queued."
    job = wait_status(queue, 1, JobStatus.SUCCEEDED)
    assert job.source == "cli"
    assert job.user

    whole = cli("logs", "1")
    assert whole.returncode == 0, whole.stderr
    assert whole.stdout.splitlines() == [str(i) for i in range(1, 11)]
    assert cli("logs", "1", "stdout", "--head", "-n", "3").stdout.splitlines() == ["1", "2", "3"]
    assert cli("logs", "1", "stdout", "--tail", "-n", "2").stdout.splitlines() == ["9", "10"]
    assert cli("logs", "1", "stdout", "-n", "2").stdout.splitlines() == ["9", "10"]  # tail
    assert cli("logs", "1", "stderr").stdout.splitlines() == ["oops-1", "oops-2"]
    assert cli("logs", "1", "stderr", "--head", "-n", "1").stdout.splitlines() == ["oops-1"]

    data = json.loads(cli("--json", "logs", "1", "stdout", "--head", "-n", "3").stdout)
    assert data["job_id"] == 1
    assert data["stream"] == "stdout"
    assert data["lines"] == ["1", "2", "3"]
    assert data["total_lines"] == 10
    assert data["path"] == f"{job.log_dir}/stdout"


def test_logs_refuses_unknown_and_not_yet_started_jobs(configure, cli, queue):
    configure(CONFIG)
    unknown = cli("logs", "42")
    assert unknown.returncode == 1
    assert "no job #42" in unknown.stderr
    later = _enqueue(cli, "t later")
    queued = cli("logs", str(later))
    assert queued.returncode == 1
    assert f"job #{later} is queued and has no logs yet" in queued.stderr
    assert "Traceback" not in unknown.stderr + queued.stderr
    bad_stream = cli("logs", str(later), "stdin")
    assert bad_stream.returncode == 2


def test_enqueue_json_and_refusals(configure, cli, queue):
    configure(CONFIG)
    result = cli("--json", "enqueue", "--channel", "#ops", "--user", "ada", "t lines")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["coalesced"] is False
    assert data["job"]["status"] == "queued"
    assert (data["job"]["channel"], data["job"]["user"]) == ("#ops", "ada")
    assert data["message"] == f"Job #{data['job']['id']} `t lines` queued."

    typo = cli("enqueue", "t lnes")
    assert typo.returncode == 2
    assert "I didn't understand `t lnes`" in typo.stderr
    assert "• `t lines`: count to ten" in typo.stderr  # the closest command is suggested
    unknown_ns = cli("enqueue", "nope lines")
    assert unknown_ns.returncode == 2
    assert "I don't know the namespace 'nope'" in unknown_ns.stderr
    assert [j.id for j in queue.jobs()] == [data["job"]["id"]]  # nothing else was queued


def test_exec_json(configure, cli):
    configure(CONFIG)
    ok = cli("--json", "exec", "u ok")
    assert ok.returncode == 0, ok.stderr
    data = json.loads(ok.stdout)
    assert data["status"] == "succeeded"
    assert data["exit_code"] == 0
    assert data["messages"][0]["text"] == "fine"
    failed = cli("--json", "exec", "t fail")
    assert failed.returncode == 1
    data = json.loads(failed.stdout)
    assert data["status"] == "failed"
    assert data["exit_code"] == 3
    assert "broken" in data["messages"][0]["text"]


def test_exec_failure_points_at_its_log_folder_not_a_queue_job(configure, cli, home):
    configure(CONFIG)
    failed = cli("exec", "t fail")
    assert failed.returncode == 1
    assert "Command `t fail` failed with exit status 3." in failed.stdout
    assert "logs 0" not in failed.stdout
    assert "#0" not in failed.stdout
    folder = failed.stdout.split("Logs: stdout and stderr in ", 1)[1].split()[0]
    assert (home / folder if not folder.startswith("/") else Path(folder)).joinpath(
        "stderr"
    ).read_text() == "broken\n"
    ok = cli("exec", "u ok")
    assert ok.stdout.strip() == "fine"


def test_a_mistake_gets_the_same_words_from_the_cli_as_in_chat(configure, cli, home, queue):
    from stat_bot.jobs.config import parse_config
    from stat_bot.jobs.matching import MatchError, match_command

    configure(CONFIG)
    configs = parse_config(CONFIG)
    for text in ("t lnes", "tt lines", "t lines now"):
        with pytest.raises(MatchError) as caught:
            match_command(configs, text)
        result = cli("enqueue", text)
        assert result.returncode == 2
        assert result.stderr == f"stat-bot: {caught.value}\n"
    # A value the action cannot use: "`<command>`: <why>", as the bot answers in chat.
    configure(SUPPRESSIBLE)
    bad = cli("enqueue", "t quiet from 25:00 to 10:00")
    assert bad.returncode == 2
    assert bad.stderr.startswith(
        "stat-bot: `t quiet from 25:00 to 10:00`: [start_at] must be a time as HH:MM"
    )


@pytest.mark.parametrize(
    "args",
    [("jobs",), ("status",), ("web-user", "list"), ("logs", "1"), ("cancel", "7")],
)
def test_json_is_accepted_after_the_command_too(configure, cli, args):
    configure(CONFIG)
    before = cli("--json", *args)
    after = cli(*args, "--json")
    assert after.returncode == before.returncode, after.stderr
    assert after.stdout == before.stdout
    if before.returncode == 0:
        json.loads(after.stdout)


# -- jobs, status -------------------------------------------------------------------------


def test_jobs_filters_by_namespace_status_and_limit(configure, cli, queue, start_dispatcher):
    configure(CONFIG)
    start_dispatcher()
    lines, fail, ok = _enqueue(cli, "t lines"), _enqueue(cli, "t fail"), _enqueue(cli, "u ok")
    for job_id in (lines, fail, ok):
        wait_status(queue, job_id, {JobStatus.SUCCEEDED, JobStatus.FAILED})

    def ids(*args: str) -> list[int]:
        result = cli("--json", "jobs", *args)
        assert result.returncode == 0, result.stderr
        return [j["id"] for j in json.loads(result.stdout)]

    assert ids() == [ok, fail, lines]
    assert ids("-n", "t") == [fail, lines]
    assert ids("-n", "u") == [ok]
    assert ids("-s", "failed") == [fail]
    assert ids("-s", "failed", "-s", "succeeded", "-n", "t") == [fail, lines]
    assert ids("-l", "1") == [ok]
    assert ids("-n", "t", "-s", "running") == []

    table = cli("jobs", "-n", "t")
    assert table.returncode == 0
    assert "t fail" in table.stdout
    assert "failed" in table.stdout
    assert "u ok" not in table.stdout
    assert cli("jobs", "-s", "running").stdout.strip() == "No jobs match."

    unknown = cli("jobs", "-n", "nope")
    assert unknown.returncode == 2
    assert "no namespace 'nope'" in unknown.stderr
    assert cli("jobs", "-s", "exploded").returncode == 2
    assert cli("jobs", "-l", "0").returncode == 2


def test_status_shows_running_queued_suppressions_schedules_and_dispatchers(
    configure, cli, queue, start_dispatcher
):
    configure(CONFIG)
    dispatcher = start_dispatcher()
    hold = _enqueue(cli, "t hold")
    later = _enqueue(cli, "t later")
    wait_pid(queue, hold)
    now = time.time()
    queue.suppress("u", "ok", now - 60, now + 3600, "ada")

    data = json.loads(cli("--json", "status").stdout)
    assert [j["id"] for j in data["running"]] == [hold]
    assert [j["id"] for j in data["queued"]] == [later]
    assert [(s["namespace"], s["job_type"], s["user"]) for s in data["suppressions"]] == [
        ("u", "ok", "ada")
    ]
    (schedule,) = data["schedules"]
    assert schedule["key"] == "t.nightly"
    assert schedule["cron"] == "0 3 * * *"
    assert schedule["next_fire_at"] > now
    assert [d["pid"] for d in data["dispatchers"]] == [dispatcher.pid]
    (listed,) = data["dispatchers"]
    assert listed["hostname"] == socket.gethostname()
    assert listed["state"] == "alive"
    assert listed["stale"] is False
    assert listed["running"] == 1  # the hold job
    assert 0 <= listed["heartbeat_age"] < 5  # LOST_AFTER in the test environment

    text = cli("status")
    assert text.returncode == 0, text.stderr
    out = text.stdout
    assert "Running (1):" in out
    assert "t hold" in out
    assert "Queued (1):" in out
    assert "t later" in out
    assert "u ok" in out
    assert "ada" in out
    assert "t.nightly" in out
    assert "0 3 * * *" in out
    (nightly,) = [line for line in out.splitlines() if "t.nightly" in line]
    assert " never " in nightly  # it has not fired yet
    assert str(dispatcher.pid) in out
    (row,) = [line for line in out.splitlines() if f" {dispatcher.pid} " in line]
    assert row.startswith(socket.gethostname())
    assert row.rstrip().endswith("alive")
    assert f"1 alive on {socket.gethostname()}" in out


def test_status_lists_every_dispatcher_with_its_host_and_marks_the_stale_ones(
    configure, cli, queue
):
    """Three dispatchers on two hosts, by the database's clock: one stopped beating 60 s ago.

    Nobody recovers here (no dispatcher runs), so the stale one stays listed as it would
    in the LOST_AFTER window before another dispatcher takes its jobs.
    """
    configure(CONFIG)
    now = queue.now()
    queue.register_worker("hosta:101:aaaaaa", "hosta", 101, now=now - 600)
    queue.register_worker("hostb:202:bbbbbb", "hostb", 202, now=now - 300)
    queue.register_worker("hostb:303:cccccc", "hostb", 303, now=now - 900)
    queue.heartbeat("hosta:101:aaaaaa", now=now)
    queue.heartbeat("hostb:202:bbbbbb", now=now - 1)
    queue.heartbeat("hostb:303:cccccc", now=now - 120)
    # LOST_AFTER 60 s (not the tests' 5): the two commands below may take seconds each on a
    # loaded machine, and the live ones must still be seen as live.
    env = {"LOST_AFTER": "60"}

    data = json.loads(cli("--json", "status", env=env).stdout)
    listed = {d["id"]: d for d in data["dispatchers"]}
    assert [(d["hostname"], d["pid"], d["state"]) for d in data["dispatchers"]] == [
        ("hosta", 101, "alive"),
        ("hostb", 202, "alive"),
        ("hostb", 303, "stale"),
    ]
    assert listed["hostb:303:cccccc"]["stale"] is True
    assert 119 <= listed["hostb:303:cccccc"]["heartbeat_age"] < 240
    assert listed["hosta:101:aaaaaa"]["started_at"] == pytest.approx(now - 600)

    out = cli("status", env=env).stdout
    rows = {line.split()[2]: line for line in out.splitlines() if line.startswith("host")}
    assert rows["hostb:303:cccccc"].split()[:2] == ["hostb", "303"]
    assert "2 min ago" in rows["hostb:303:cccccc"]
    assert rows["hostb:303:cccccc"].rstrip().endswith("STALE")
    assert rows["hosta:101:aaaaaa"].rstrip().endswith("alive")
    assert "10 min ago" in rows["hosta:101:aaaaaa"]  # started
    assert "2 alive on hosta, hostb; 1 stale (hostb:303)" in out
    assert "LOST_AFTER (60 s)" in out


def test_status_of_an_empty_queue(configure, cli, queue):
    configure(CONFIG)
    result = cli("status")
    assert result.returncode == 0, result.stderr
    assert "nothing running" in result.stdout
    assert "nothing queued" in result.stdout
    data = json.loads(cli("--json", "status").stdout)
    assert data == {
        "running": [],
        "queued": [],
        "suppressions": [],
        "schedules": [],
        "dispatchers": [],
        "undelivered": {
            "pending": 0,
            "oldest_pending_at": None,
            "failed": 0,
            "expired": 0,
            "last_error": None,
        },
    }
    assert "Undelivered messages:\n  none: every message has been delivered" in result.stdout


# -- check-config ---------------------------------------------------------------------------


def test_check_config_summarises_a_good_file(configure, cli):
    configure(CONFIG)
    result = cli("check-config")
    assert result.returncode == 0, result.stderr
    assert ": OK, 2 namespace(s)" in result.stdout
    assert "t lines" in result.stdout
    assert "count to ten" in result.stdout
    assert "schedule t.nightly: '0 3 * * *' -> later" in result.stdout
    data = json.loads(cli("--json", "check-config").stdout)
    assert data["ok"] is True
    assert data["namespaces"]["t"]["jobs"] == ["lines", "fail", "hold", "later"]
    assert data["namespaces"]["t"]["schedules"] == [
        {"key": "t.nightly", "cron": "0 3 * * *", "job": "later"}
    ]
    assert data["namespaces"]["t"]["webhooks"] == []


def test_incident_templates_are_checked_by_check_config_and_at_the_bot_start(
    configure, cli, tmp_path
):
    """A typo in a site's templates stops `check-config` and the bot, naming file and
    placeholder, before any Slack connection is tried."""
    import shutil

    from stat_bot.incidents.templates import SHIPPED

    configure(CONFIG)
    data = json.loads(cli("--json", "check-config").stdout)
    assert data["incident_templates"]["roles"] == ["commander", "comms", "tech"]
    folder = tmp_path / "templates"
    shutil.copytree(SHIPPED, folder)
    digest = folder / "digest.json"
    digest.write_text(digest.read_text().replace("{age}", "{agee}"))
    env = {"TEMPLATES_DIRECTORY": str(folder)}
    result = cli("check-config", env=env)
    assert result.returncode == 1
    assert f"{digest} uses the unknown placeholder {{agee}}" in result.stderr
    tokens = {
        "SLACK_BOT_TOKEN": "xoxb-x",
        "SLACK_APP_TOKEN": "xapp-x",
        "SLACK_API_URL": "http://127.0.0.1:9/api/",
    }
    result = cli("bot", env={**env, **tokens})
    assert result.returncode != 0
    assert "incident templates:" in result.stderr
    assert "{agee}" in result.stderr
    assert "xoxb-x" not in result.stderr


def test_check_config_lists_webhook_rules(configure, cli):
    configure(
        {
            "site": {
                "jobs": {"deploy": {"run_args_template": "true"}},
                "webhooks": [
                    {"event": "pull_request", "action": "closed", "merged": True,
                     "branch": "default", "job_type": "deploy", "delay_seconds": 60},
                ],
            }
        }
    )  # fmt: skip
    result = cli("check-config")
    assert result.returncode == 0, result.stderr
    assert "webhook #1 (pull_request -> deploy): POST /github/site" in result.stdout
    data = json.loads(cli("--json", "check-config").stdout)
    assert data["namespaces"]["site"]["webhooks"] == [
        {"event": "pull_request", "action": "closed", "merged": True, "branch": "default",
         "job_type": "deploy", "delay_seconds": 60.0},
    ]  # fmt: skip


BROKEN = {
    "t": {
        "jobs": {
            "lines": {"run_args_template": "seq 1 {count}", "timeuot": 5},
            "hold": {"run_args_template": "sleep 30", "concurrency": 0},
        },
        "slack": [{"command": "hold [seconds]", "job_type": "hold"}],
        "schedules": [{"cron": "every day", "job_type": "hold"}],
    },
}


def test_check_config_names_namespace_job_and_key_of_every_mistake(configure, cli, home):
    (home / "job_configs.py").write_text(f"raw_config = {BROKEN!r}\n")
    result = cli("check-config")
    assert result.returncode == 1
    err = result.stderr
    assert "namespace 't', job 'lines': unknown key 'timeuot' (did you mean 'timeout'?)" in err
    assert "namespace 't', job 'hold': key 'concurrency'" in err
    assert "namespace 't', schedule 'every day': key 'cron'" in err
    assert "Traceback" not in err

    data = json.loads(cli("--json", "check-config").stdout)
    assert data["ok"] is False
    assert len(data["problems"]) >= 3
    assert any("unknown key 'timeuot'" in p for p in data["problems"])

    # Every other command refuses to work from a broken file, and says how to check it.
    enqueue = cli("enqueue", "t hold 5")
    assert enqueue.returncode == 2
    assert "stat-bot check-config" in enqueue.stderr
    assert "Traceback" not in enqueue.stderr


def test_check_config_of_a_python_error_and_a_missing_file(cli, home, cli_env):
    (home / "job_configs.py").write_text("raw_config = {\n")
    syntax = cli("check-config")
    assert syntax.returncode == 1
    assert "syntax error" in syntax.stderr
    missing = cli("check-config", env={"JOB_CONFIGS": str(home / "absent.py")})
    assert missing.returncode == 1
    assert "absent.py" in missing.stderr
    assert "JOB_CONFIGS" in missing.stderr
    assert "Traceback" not in syntax.stderr + missing.stderr


# -- settings -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [("status",), ("--json", "jobs"), ("dispatcher",), ("enqueue", "u ok"), ("check-config",)],
)
def test_a_malformed_setting_exits_2_with_one_line(configure, cli, args):
    configure(CONFIG)
    result = cli(*args, env={"DISPATCHER_CONCURRENCY": "lots"})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "DISPATCHER_CONCURRENCY" in lines[0]
    assert "'lots'" in lines[0]
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("args", [("status",), ("enqueue", "u ok"), ("dispatcher",)])
def test_an_unreachable_postgresql_is_one_line_without_the_password(configure, cli, args):
    configure(CONFIG)
    port = free_port()  # nothing listens there
    result = cli(
        *args,
        env={
            "DATABASE_URL": f"postgresql://stat:s3cret-pw@127.0.0.1:{port}/stat",
            "DATABASE_CONNECT_TIMEOUT": "2",
        },
    )
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(
        f"stat-bot: could not write to the queue database at 127.0.0.1:{port}/stat: "
    ), lines[0]
    assert "s3cret" not in result.stderr
    assert result.stdout == ""
