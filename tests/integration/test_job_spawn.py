"""How a job's process starts (`Runner.start`): in its workspace folder, in a session of its
own, with /dev/null, its two log files and no other descriptor (none of the service's,
nor any it inherited), the default actions of the signals Python ignores, and bash's own
line numbers.

The 2026-12-04 session tried `os.posix_spawn` instead of Popen (about 45 µs less of the
dispatcher's loop a job): the first test here caught it passing descriptors the service
had inherited without close-on-exec on to every job, which Popen's `close_fds` closes.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from stat_bot.dispatcher import runner as runner_module
from stat_bot.dispatcher.runner import Runner, RunningJob
from stat_bot.jobs.config import parse_config
from stat_bot.jobs.model import JobStatus
from stat_bot.report.messages import Outcome
from stat_bot.settings import Settings
from tests.unit.helpers import make_job, runner_settings

pytestmark = pytest.mark.skipif(not runner_module.pidfd_usable(), reason="needs pidfd_open")

# What the job reports about its own shell ($$), one fact a line. `ls` runs in a child of
# that shell, so the descriptors listed are the shell's; `true` keeps bash from replacing
# itself with the last command.
INSPECT = (
    "pwd -P; "
    "echo stdin $(readlink /proc/$$/fd/0); "
    "echo ids $$ $(cut -d' ' -f5,6 /proc/$$/stat); "
    "grep SigIgn /proc/$$/status; "
    "echo fds; ls /proc/$$/fd; "
    "echo job $STAT_BOT_JOB_ID; true"
)
CONFIG = parse_config(
    {
        "t": {
            "jobs": {
                "inspect": {"run_args_template": INSPECT},
                "typo": {"run_args_template": "nosuchcommand-stat-bot-test"},
                "pipe": {"run_args_template": "yes | head -n 1; echo $PIPESTATUS"},
            }
        }
    }
)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return runner_settings(tmp_path)


async def run(runner: Runner, job_type: str, job_id: int) -> tuple[RunningJob, Outcome]:
    job = make_job(id=job_id, namespace="t", job_type=job_type, status=JobStatus.RUNNING)
    running = await runner.start(job, CONFIG.job("t", job_type), CONFIG.namespaces["t"].spec)
    return running, await asyncio.wait_for(running.wait(), 30)


def stdout(running: RunningJob) -> list[str]:
    """The lines the job wrote to its stdout file."""
    return (running.log_dir / "stdout").read_text().splitlines()


def test_a_job_starts_in_its_folder_as_a_session_leader_with_only_its_three_descriptors(
    settings: Settings,
):
    running, outcome = asyncio.run(run(Runner(settings), "inspect", 7))
    assert outcome.status is JobStatus.SUCCEEDED
    lines = stdout(running)
    assert lines[0] == str((settings.workspace_dir / "t").resolve())
    assert lines[1] == "stdin /dev/null"
    pid, pgrp, session = lines[2].split()[1:]
    assert pid == pgrp == session == str(running.pid)  # its own session and process group
    ignored = int(lines[3].split()[1], 16)
    for restored in (signal.SIGPIPE, signal.SIGXFSZ):  # ignored by Python, not by the job
        assert not ignored & (1 << (restored - 1))
    fds = lines[lines.index("fds") + 1 : lines.index("job 7")]
    assert fds == ["0", "1", "2"]


def test_a_shell_error_names_the_commands_own_first_line(settings: Settings):
    _, outcome = asyncio.run(run(Runner(settings), "typo", 8))
    assert outcome.status is JobStatus.FAILED
    assert outcome.exit_code == 127
    assert "line 1: nosuchcommand-stat-bot-test: command not found" in outcome.stderr_tail


def test_a_job_writing_to_a_closed_pipe_dies_of_sigpipe_as_in_a_terminal(settings: Settings):
    running, _ = asyncio.run(run(Runner(settings), "pipe", 9))
    assert stdout(running) == ["y", str(128 + signal.SIGPIPE)]


def test_a_workspace_folder_removed_between_jobs_is_made_again(settings: Settings):
    async def go() -> tuple[Outcome, Outcome, RunningJob]:
        runner = Runner(settings)
        _, first = await run(runner, "inspect", 10)
        shutil.rmtree(settings.workspace_dir / "t")
        running, second = await run(runner, "inspect", 11)
        return first, second, running

    first, second, running = asyncio.run(go())
    assert first.status is second.status is JobStatus.SUCCEEDED
    assert stdout(running)[0] == str((settings.workspace_dir / "t").resolve())


def test_a_bash_that_cannot_be_run_is_an_error_at_the_start(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    runner = Runner(settings)
    gone = tmp_path / "bin" / "bash"
    monkeypatch.setattr(runner, "_bash", str(gone))
    with pytest.raises(FileNotFoundError):
        asyncio.run(run(runner, "inspect", 12))


def test_a_service_without_a_stdout_still_gives_each_job_its_own_files(tmp_path: Path):
    """With the service's descriptor 1 closed, the next files opened (a job's logs) land on
    it: each still reaches the job as its own descriptor, none crossed or lost."""
    script = (
        "import asyncio, os, sys\n"
        "os.close(1)\n"
        "from pathlib import Path\n"
        "from stat_bot.dispatcher.runner import Runner\n"
        "from stat_bot.settings import load_settings\n"
        "from tests.integration.test_job_spawn import run, stdout\n"
        "home = Path(sys.argv[1])\n"
        "settings = load_settings(state_dir=home / 'var', workspace_dir=home / 'workspace',"
        " job_configs=home / 'job_configs.py', _env_file=None)\n"
        "running, outcome = asyncio.run(run(Runner(settings), 'inspect', 13))\n"
        "sys.stderr.write('\\n'.join(stdout(running)))\n"
    )
    (tmp_path / "workspace").mkdir()
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    fds = lines[lines.index("fds") + 1 : lines.index("job 13")]
    assert fds == ["0", "1", "2"]
    assert lines[0] == str((tmp_path / "workspace" / "t").resolve())
