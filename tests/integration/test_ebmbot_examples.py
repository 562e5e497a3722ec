"""ebmbot's documented job configs, unchanged, behave as its README says when run by STAT bot."""

from __future__ import annotations

import time

from stat_bot.actions import Requester, perform
from stat_bot.jobs.matching import match_command
from stat_bot.jobs.model import JobStatus, Source
from tests.integration.conftest import wait_status

# The three runnable examples from ebmbot's "Configuring jobs", merged into one dict.
EBMBOT_EXAMPLES = {
    "example": {
        "jobs": {
            "hello": {"run_args_template": "echo Hello", "report_stdout": True},
            "hello_to": {"run_args_template": "echo Hello {name}", "report_stdout": True},
            "do_python": {
                "run_args_template": "python3 do_job.py --some-arg {some_arg}",
                "report_stdout": True,
            },
        },
        "slack": [
            {
                "command": "say hello",
                "help": "Says hello",
                "action": "schedule_job",
                "job_type": "hello",
                "delay_seconds": 1,
            },
            {
                "command": "say hello [name]",
                "help": "Says hello to [name]",
                "action": "schedule_job",
                "job_type": "hello_to",
            },
            {
                "command": "do python [some_arg]",
                "help": "Runs a python script with --some-arg [some_arg]",
                "action": "schedule_job",
                "job_type": "do_python",
            },
        ],
    }
}

DO_JOB = """\
import argparse, os, sys
parser = argparse.ArgumentParser()
parser.add_argument("--some-arg")
args = parser.parse_args()
# PYTHONPATH is the workspace folder, so sibling modules import; WRITEABLE_DIR is writable.
import helper
open(os.path.join(os.environ["WRITEABLE_DIR"], "ran"), "w").write(args.some_arg)
print(helper.shout(args.some_arg))
"""


def test_ebmbot_readme_examples_run_and_report(home, configure, queue, settings, thread_dispatcher):
    configs = configure(EBMBOT_EXAMPLES)
    (home / "workspace" / "example").mkdir()
    (home / "workspace" / "example" / "do_job.py").write_text(DO_JOB)
    (home / "workspace" / "helper.py").write_text("def shout(s):\n    return s.upper() + '!'\n")
    dispatcher = thread_dispatcher(configs)
    requester = Requester(user="U1", channel="C1", thread_ts="1.2", source=Source.SLACK)

    def run(text: str):
        result = perform(
            match_command(configs, text),
            configs,
            queue,
            requester,
            settings.tz,
            now=time.time(),
        )
        assert result.job is not None
        return wait_status(queue, result.job.id, JobStatus.SUCCEEDED, timeout=20)

    delayed = run("example say hello")
    assert delayed.started_at - delayed.created_at >= 1.0, "delay_seconds: 1 is honoured"
    run("example say hello Bob")
    python_job = run("example do python 'it works'")
    assert (settings.writeable_dir / "ran").read_text() == "it works"

    reports = dispatcher.notifier.wait_for(3)
    by_job = {r.job_id: r for r in reports}
    texts = {job_id: [m.text for m in r.messages] for job_id, r in by_job.items()}
    assert texts[delayed.id] == ["Hello"]
    assert ["Hello Bob"] in texts.values()
    assert texts[python_job.id] == ["IT WORKS!"]
    # Reports go back where the command came from.
    assert all((r.channel, r.thread_ts) == ("C1", "1.2") for r in reports)
