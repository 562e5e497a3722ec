"""Whatever a person types reaches the job's command as literal text, byte for byte.

Arguments go through the real Runner (`bash -c` with the rendered template),
so quotes, `$()`, backticks, `;`, `&&`, newlines, globs and leading dashes must
arrive as text and never be run.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from stat_bot.dispatcher.runner import Runner
from stat_bot.jobs.config import JobConfigs, parse_config
from stat_bot.jobs.matching import match_command
from stat_bot.jobs.model import Job, JobStatus
from stat_bot.settings import Settings, load_settings

TEMPLATE = "printf '%s' {text}"
RAW_CONFIG = {
    "t": {
        "jobs": {"say": {"run_args_template": TEMPLATE, "report_stdout": True}},
        "slack": [{"command": "say [text...]", "job_type": "say"}],
    }
}

# Characters any text may hold (no NUL: it cannot be in an argument or variable; no lone surrogates).
CHARS = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
NASTY = st.sampled_from(
    [
        "'", '"', "“", "”", "$(", ")", "`", ";", "&&", "||", "|", ">", "<", "\n", "\r", "\t", " ",
        "*", "?", "[a]", "~", "-", "--", "-n", "-e", "$HOME", "${PATH}", "$1", "\\", "%s", "%",
        "{text}", "{}", "!", "#", "ü", "日本語", "😀", "\u202e", "$(touch pwned)", "`touch pwned`",
    ]
)  # fmt: skip
TEXT = st.lists(st.one_of(NASTY, st.text(CHARS, max_size=8)), max_size=12).map("".join)
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
QUOTED_WORD = re.compile(r'"[^"]*"|“[^”]*”|\'[^\']*\'')


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, JobConfigs, Runner]:
    home = tmp_path_factory.mktemp("literal")
    (home / "workspace").mkdir()
    s = load_settings(
        state_dir=home / "var",
        workspace_dir=home / "workspace",
        job_configs=home / "job_configs.py",
        _env_file=None,
    )
    return s, parse_config(RAW_CONFIG), Runner(s)


_ids = itertools.count(1)


def run_job(env: tuple[Settings, JobConfigs, Runner], args: dict[str, str]) -> bytes:
    """Run the `say` job with `args` through the Runner; its stdout."""
    s, configs, runner = env
    now = time.time()
    job = Job(
        id=next(_ids), namespace="t", job_type="say", args=args, channel=None, thread_ts=None,
        user="tester", source="cli", status=JobStatus.RUNNING, created_at=now, start_after=now,
        started_at=now, finished_at=None, attempts=1, max_retries=0, concurrency=1,
        worker_id=None, heartbeat_at=None, pid=None, exit_code=None, log_dir=None,
        cancel_requested=False, report_state="pending", report_error=None, is_im=False, note=None,
    )  # fmt: skip

    async def go() -> Path:
        running = await runner.start(job, configs.job("t", "say"), configs.namespaces["t"].spec)
        outcome = await running.wait()
        assert outcome.status is JobStatus.SUCCEEDED, outcome
        return running.log_dir

    log_dir = asyncio.run(go())
    cwd = s.workspace_dir / "t"
    assert sorted(p.name for p in cwd.iterdir()) == [], "the job created files: text was run"
    return (log_dir / "stdout").read_bytes()


@SETTINGS
@given(text=TEXT)
@example(text="$(touch pwned)")
@example(text="`touch pwned`; touch pwned && touch pwned")
@example(text="-n")
@example(text="--help")
@example(text="*")
@example(text='it\'s "quoted"\nand on two lines')
@example(text="")
def test_runner_passes_arguments_literally(env, text):
    assert run_job(env, {"text": text}) == text.encode()


def _typed_as_is(text: str) -> bool:
    """Text a [text...] placeholder keeps exactly as typed.

    Chat text is tidied by design: surrounding space and one trailing full stop are
    dropped, and a lone quoted word loses its quotes (quotes group words).
    """
    return (
        text == text.strip()
        and text != ""
        and not (text.endswith(".") and not text.endswith(".."))
        and not QUOTED_WORD.fullmatch(text)
    )


@SETTINGS
@given(text=TEXT.filter(_typed_as_is))
@example(text="$(touch pwned) `touch pwned`; touch pwned && touch pwned")
@example(text="-rf *")
@example(text='"two words" and more')
@example(text="line one\nline two")
@example(text="ends with dots..")
def test_chat_text_reaches_the_command_literally(env, text):
    _, configs, _ = env
    match = match_command(configs, f"t say {text}")
    assert match.args == {"text": text}
    assert run_job(env, match.args) == text.encode()


@pytest.mark.parametrize(
    ("typed", "value"),
    [
        ('"two words"', "two words"),
        ("“curly quotes”", "curly quotes"),
        ("'single'", "single"),
        ("  padded  ", "padded"),
        ("a sentence.", "a sentence"),
        ("an ellipsis...", "an ellipsis..."),
    ],
)
def test_chat_text_tidying_is_the_documented_one(env, typed, value):
    _, configs, _ = env
    match = match_command(configs, f"t say {typed}")
    assert match.args == {"text": value}
    assert run_job(env, match.args) == value.encode()
