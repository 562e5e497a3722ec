"""One loading rule for every process: job_configs.py is read again when it changes.

A real `stat-bot dispatcher` subprocess, `stat-bot enqueue` subprocesses (which load
the file fresh), the bot's command handler and the web app, all on one real SQLite
queue and one job_configs.py that the test edits while they run.
"""

from __future__ import annotations

import json
from pathlib import Path

from stat_bot.bot.chat import Asker, ChatCommands
from stat_bot.jobs.config_file import ConfigFile
from stat_bot.jobs.model import JobRequest, JobStatus
from tests.conftest import write_configs
from tests.integration.conftest import wait_status, wait_until
from tests.unit.test_chat import Directory


def config(*job_types: str) -> dict:
    return {
        "t": {
            "jobs": {
                j: {"run_args_template": f"echo {j}", "report_stdout": True} for j in job_types
            },
            "slack": [{"command": j, "job_type": j} for j in job_types],
        }
    }


def enqueue(cli, text: str) -> int:
    result = cli("--json", "enqueue", text)
    assert result.returncode == 0, result.stderr
    return int(json.loads(result.stdout)["job"]["id"])


def test_a_job_type_added_to_the_file_runs_without_restarting_the_dispatcher(
    configure, home: Path, cli, queue, start_dispatcher
):
    configure(config("one"))
    dispatcher = start_dispatcher()
    wait_status(queue, enqueue(cli, "t one"), JobStatus.SUCCEEDED)

    write_configs(home / "job_configs.py", config("one", "two"))
    two = wait_status(queue, enqueue(cli, "t two"), JobStatus.SUCCEEDED)
    assert two.exit_code == 0
    assert "t two" in dispatcher.stdout()  # the console notifier printed its report

    # A broken edit: the dispatcher says so once and runs what it knew.
    write_configs(home / "job_configs.py", "raw_config = {\n")
    queued = queue.enqueue(JobRequest("t", "two"))  # as a web worker queued it before the edit
    wait_status(queue, queued.job.id, JobStatus.SUCCEEDED)
    refused = wait_until(
        lambda: [e for e in dispatcher.events() if "does not load" in e.get("event", "")],
        what="the dispatcher to say the file does not load",
    )
    assert refused[0]["level"] == "error"
    assert refused[0]["problems"] == ["line 1: syntax error: '{' was never closed"]
    assert "keeping the last good configuration" in refused[0]["event"]

    # Fixed, with a type removed and one added: both seen at once.
    write_configs(home / "job_configs.py", config("one", "three"))
    wait_status(queue, enqueue(cli, "t three"), JobStatus.SUCCEEDED)
    gone = queue.enqueue(JobRequest("t", "two"))
    failed = wait_status(queue, gone.job.id, JobStatus.FAILED)
    assert failed.note == "job type 't two' is not in job_configs.py"

    assert dispatcher.proc.poll() is None  # one process all along
    assert len([e for e in dispatcher.events() if "does not load" in e.get("event", "")]) == 1
    reloads = [
        e for e in dispatcher.events() if e.get("event") == "job_configs.py changed; loaded again"
    ]
    assert [e["version"] for e in reloads] == [1, 2]


def test_the_bot_and_the_web_server_see_an_edit_at_once(
    configure, home: Path, settings, queue, make_web_app
):
    configure(config("one"))
    chat = ChatCommands(settings, ConfigFile(settings.job_configs), queue, Directory())
    app = make_web_app()
    asker = Asker("U0ADMIN", "C0GENERAL", "1700000000.000100")
    chat.handle("t two", asker)  # not a command yet
    assert queue.jobs() == []
    write_configs(home / "job_configs.py", config("one", "two"))
    chat.handle("t two", asker)
    (job,) = [j for j in queue.jobs() if j.job_type == "two"]
    assert job.channel == "C0GENERAL"
    with app.app_context():
        from stat_bot.web.services import services

        assert services().configs.has_job("t", "two")
