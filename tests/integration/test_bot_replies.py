"""bot/replies.py against the Slack emulator: a command's answer goes out after the listener
returns, reaction first and messages in order, and `close` waits for every answer."""

from __future__ import annotations

import time
from typing import Any

from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

from stat_bot.bot.chat import Answer, Asker
from stat_bot.bot.replies import Replies
from stat_bot.integrations.slack_emulator import GENERAL_CHANNEL_ID, EmulatorClient
from stat_bot.report.messages import Message
from stat_bot.report.slack import ChannelDirectory


def reactions(message: dict[str, Any]) -> list[str]:
    return [r["name"] for r in message.get("reactions", [])]


def test_answers_are_posted_in_order_and_close_waits_for_all(
    emulator_client: EmulatorClient, slack_web_client: WebClient
) -> None:
    commands = [emulator_client.post("admin", "general", f"command {i}")[1] for i in range(20)]
    replies = Replies(slack_web_client, ChannelDirectory(slack_web_client), threads=2)
    for i, ts in enumerate(commands):
        asker = Asker("U0ADMIN", GENERAL_CHANNEL_ID, ts)
        answer = Answer([Message(f"first {i}"), Message(f"second {i}")], reaction="eyes")
        replies.send(asker, ts, answer, f"command {i}")
    replies.close()  # no waiting here: close returns once all twenty are out

    for i, ts in enumerate(commands):
        thread = emulator_client.messages("general", thread_ts=ts)
        assert reactions(thread[0]) == ["eyes"]
        assert [m["text"] for m in thread[1:]] == [f"first {i}", f"second {i}"]


def test_send_returns_before_slack_answers(
    emulator_client: EmulatorClient, slack_web_client: WebClient
) -> None:
    """The listener's thread is not held while Slack is slow (here: one 429, Retry-After 1 s)."""
    ts = emulator_client.post("admin", "general", "slow one")[1]
    client = WebClient(
        token=slack_web_client.token,
        base_url=slack_web_client.base_url,
        retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=1)],
    )
    emulator_client.rate_limit(count=1, retry_after=1, methods=["reactions.add"])
    replies = Replies(client, ChannelDirectory(client))
    began = time.monotonic()
    replies.send(Asker("U0ADMIN", GENERAL_CHANNEL_ID, ts), ts, Answer(reaction="eyes"), "x")
    assert time.monotonic() - began < 0.5
    assert reactions(emulator_client.messages("general", thread_ts=ts)[0]) == []
    replies.close()
    assert time.monotonic() - began >= 1.0  # close waited out the Retry-After
    assert reactions(emulator_client.messages("general", thread_ts=ts)[0]) == ["eyes"]


def test_a_failed_answer_gets_the_apology(
    emulator_client: EmulatorClient, slack_web_client: WebClient
) -> None:
    ts = emulator_client.post("admin", "general", "doomed")[1]
    emulator_client.server_error(count=1, status=500, methods=["chat.postMessage"])
    replies = Replies(slack_web_client, ChannelDirectory(slack_web_client))
    answer = Answer([Message("never shown")], reaction="eyes")
    replies.send(Asker("U0ADMIN", GENERAL_CHANNEL_ID, ts), ts, answer, "doomed")
    replies.close()

    thread = emulator_client.messages("general", thread_ts=ts)
    assert reactions(thread[0]) == ["eyes", "x"]
    assert "something went wrong inside STAT bot" in thread[-1]["text"]
    assert all("never shown" not in m["text"] for m in thread[1:])
