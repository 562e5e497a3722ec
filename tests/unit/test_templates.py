"""run_args_template rendering: every value reaches the command as literal text."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from stat_bot.jobs.config import render_template, template_fields

BASH = shutil.which("bash")
pytestmark = pytest.mark.skipif(BASH is None, reason="needs bash")


def bash_output(command: str) -> str:
    result = subprocess.run(
        [BASH or "bash", "-c", command],
        capture_output=True,
        check=True,
        timeout=10,
        env={"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8"},
    )
    return result.stdout.decode("utf-8")


# Anything a person can put in a Slack message, bar the NUL byte (argv cannot hold one)
# and lone surrogates (not encodable).
values = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=30)


@settings(max_examples=50, deadline=None)
@given(value=values)
@example(value="")
@example(value="it's")
@example(value='"; rm -rf / #')
@example(value="$(touch /tmp/pwned) `id` ${HOME} $HOME")
@example(value="a\nb\r\nc")
@example(value="-n")
@example(value="%s %d \\n")
@example(value="*")
@example(value="x1000c0 \u00e9\u00e8 \u2603 \U0001f600")
@example(value="{other}")
def test_value_arrives_as_literal_text(value):
    command = render_template("printf %s {x}", {"x": value})
    assert bash_output(command) == value


def test_several_values_each_stay_one_argument():
    command = render_template(
        "printf '<%s>' {a} {b} {c}", {"a": "one two", "b": "", "c": "three;four"}
    )
    assert bash_output(command) == "<one two><><three;four>"


def test_plain_values_are_left_readable():
    assert render_template("echo Hello {name}", {"name": "Bob"}) == "echo Hello Bob"
    assert render_template("check {node}", {"node": "x1000c0s0b0n0"}) == "check x1000c0s0b0n0"


def test_template_without_fields_is_unchanged():
    assert render_template("uptime", {}) == "uptime"


def test_escaped_braces_stay_literal():
    assert render_template("awk '{{print $1}}' {f}", {"f": "a b"}) == "awk '{print $1}' 'a b'"


def test_template_fields_in_order():
    assert template_fields("do {b} then {a} and {b} again") == ["b", "a", "b"]
    assert template_fields("awk '{{x}}'") == []
