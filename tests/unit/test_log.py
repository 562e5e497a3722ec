"""Logging: credentials are masked in every line, ours and the standard library's."""

from __future__ import annotations

import contextlib
import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st

from stat_bot.log import configure, redact, redact_processor


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """configure() replaces global logging set-up; put the test runner's back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    config = structlog.get_config()
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.configure(**config)


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("token is xoxb-1234-5678-AbCdEf", "1234-5678-AbCdEf"),
        ("app xapp-1-A0B1-99-deadbeef", "1-A0B1-99-deadbeef"),
        ("user xoxp-111-222 and xoxe-abc", "111-222"),
        ("GET https://user:hunter2@trac.example/login", "hunter2"),
        ("redfish://root:p%40ss:w0rd@x1000c0s0b0/", "p%40ss:w0rd"),
        ("https://h/api?password=hunter2&page=1", "hunter2"),
        ("https://h/api?token=abc123", "abc123"),
        ("https://h/api?access_token=abc123&x=1", "abc123"),
        ("client_secret=shh api_key=k3y", "shh"),
        ("Authorization: Bearer eyJhbGciOi.xyz", "eyJhbGciOi.xyz"),
        ("authorization: Basic dXNlcjpwdw==", "dXNlcjpwdw=="),
        ("Authorization: token ghs_16C7e42F292c6912E7710c838347Ae178B4a", "ghs_16C7e42F"),
        ("headers={'Authorization': 'Bearer s3cr3t', 'Accept': '*/*'}", "s3cr3t"),
        ("pushed with ghp_0123456789abcdefghij0123", "0123456789abcdefghij"),
    ],
)
def test_redact_masks_credentials(text, secret):
    masked = redact(text)
    assert secret not in masked
    assert "***" in masked


def test_redact_keeps_the_shape_of_the_text():
    assert redact("token is xoxb-1234-abc.") == "token is xoxb-***."
    assert redact("https://user:pw@host/x") == "https://user:***@host/x"
    assert redact("https://h/x?password=pw&page=2") == "https://h/x?password=***&page=2"
    assert redact("Authorization: Bearer abc") == "Authorization: Bearer ***"
    assert (
        redact("{'Authorization': 'Bearer abc', 'X': 1}")
        == "{'Authorization': 'Bearer ***', 'X': 1}"
    )


@pytest.mark.parametrize(
    "text",
    [
        "job #42 `trac new` succeeded",
        "https://trac.example/ticket/12?version=3",
        "x1000c0s0b0n0 is at 85C",
        "took 1.5 s: user:group ok",
        "tokens remaining: 5",
    ],
)
def test_redact_leaves_ordinary_text_alone(text):
    assert redact(text) == text


@settings(max_examples=100, deadline=None)
@given(
    # Slack tokens are ASCII letters, digits and hyphens.
    secret=st.text(
        st.sampled_from("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-"),
        min_size=8,
        max_size=30,
    ).filter(lambda s: s.strip("-")),
    before=st.sampled_from(["", "error: ", "url=", "(", "'"]),
    after=st.sampled_from(["", " failed", ")", ".", "'", "\n"]),
)
def test_redact_masks_slack_tokens_wherever_they_appear(secret, before, after):
    for prefix in ("xoxb-", "xapp-"):
        assert secret not in redact(f"{before}{prefix}{secret}{after}")


def test_redact_processor_masks_secret_named_keys():
    event = redact_processor(
        None,
        "info",
        {
            "event": "calling trac with https://u:pw@trac/",
            "password": "hunter2",
            "slack_token": "anything",
            "api-key": 12345,
            "Cookie": "trac_auth=abc",
            "headers": {"Authorization": "Bearer x", "Accept": "json"},
            "args": ["xoxb-123-abc", {"secret": "s"}],
            "count": 3,
        },
    )
    assert event == {
        "event": "calling trac with https://u:***@trac/",
        "password": "***",
        "slack_token": "***",
        "api-key": "***",
        "Cookie": "***",
        "headers": {"Authorization": "***", "Accept": "json"},
        "args": ["xoxb-***", {"secret": "***"}],
        "count": 3,
    }


def test_json_output_carries_no_secret(restore_logging):
    stream = io.StringIO()
    configure(fmt="json", stream=stream)
    log = structlog.get_logger("test")
    log.info(
        "posting with xoxb-1111-2222-secretvalue to https://admin:pa55word@trac.example/login",
        url="https://h/api?token=tok3n",
        headers={"Authorization": "Bearer b3arer"},
    )
    log.info("positional %s", "xapp-1-A2-p0sit10nal")
    logging.getLogger("x").warning("library saw xoxb-3333-libsecret")
    logging.getLogger("x").info("formatted %s", "https://u:libpass@h/")
    try:
        raise RuntimeError("connect failed for https://root:excpass@x1000c0s0b0/")
    except RuntimeError:
        log.exception("it broke")
        logging.getLogger("x").exception("library broke")

    output = stream.getvalue()
    for secret in (
        "secretvalue",
        "pa55word",
        "tok3n",
        "b3arer",
        "p0sit10nal",
        "libsecret",
        "libpass",
        "excpass",
    ):
        assert secret not in output
    records = [json.loads(line) for line in output.splitlines()]
    assert [r["event"] for r in records] == [
        "posting with xoxb-*** to https://admin:***@trac.example/login",
        "positional xapp-***",
        "library saw xoxb-***",
        "formatted https://u:***@h/",
        "it broke",
        "library broke",
    ]
    assert records[2]["logger"] == "x"
    assert records[2]["level"] == "warning"
    assert "RuntimeError" in records[4]["exception"]
    assert "https://root:***@x1000c0s0b0/" in records[5]["exception"]


def test_console_output_carries_no_secret(restore_logging):
    stream = io.StringIO()
    configure(fmt="console", stream=stream)
    try:
        raise RuntimeError("connect failed for https://root:excpass@x1000c0s0b0/ xoxb-9-consec")
    except RuntimeError:
        structlog.get_logger().exception("it broke", token="t0ken")
        logging.getLogger("x").exception("library broke")
    output = stream.getvalue()
    assert "it broke" in output
    assert "library broke" in output
    assert output.count("RuntimeError: connect failed for https://root:***@x1000c0s0b0/") == 2
    for secret in ("excpass", "consec", "t0ken"):
        assert secret not in output


def test_level_filters_both_pipelines(restore_logging):
    stream = io.StringIO()
    configure(level="WARNING", fmt="json", stream=stream)
    structlog.get_logger().info("quiet")
    logging.getLogger("x").info("quiet too")
    structlog.get_logger().warning("loud")
    assert [json.loads(line)["event"] for line in stream.getvalue().splitlines()] == ["loud"]


def test_logging_to_a_closed_pipe_drops_lines_instead_of_raising():
    import os

    read_end, write_end = os.pipe()
    stream = os.fdopen(write_end, "w")
    os.close(read_end)  # whoever read our stderr has gone
    try:
        configure("INFO", "json", stream)
        structlog.get_logger("t").info("still running", job_id=1)  # must not raise
        logging.getLogger("t").warning("and the stdlib bridge too")
    finally:
        configure("INFO", "json")
        with contextlib.suppress(OSError):
            stream.close()
