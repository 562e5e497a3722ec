"""A command's answer is posted from threads of its own, not from the Socket Mode workers.

A command's listener runs on one of the Socket Mode handler's worker threads (8 of
them). What makes the command count - recording its event and enqueueing its job -
is local and takes about a millisecond. Posting the answer is a Web API round trip
per reaction or message: 50-300 ms to Slack, and in a burst Slack answers
`reactions.add` with 429 and slack-sdk's retry handler sleeps out the Retry-After.
Done on the worker, eight such waits stop all event handling: the next commands'
jobs wait behind the reactions of earlier ones. Even against the local emulator,
the answer (urllib, a new connection per call) was over half of a command's CPU in
the bot, spent while the burst's later commands waited for theirs.

So the listener hands the answer over and returns. Each answer is one task: the
reaction, then the messages, in that order, as before; a failure gets the same :x:
and apology as a failure of the command itself. A few threads post them, fewer than
the workers, so under a burst the answers trail the enqueues a little rather than
competing with them. `close` waits for every answer handed over: a stop (SIGTERM)
loses none. A process killed outright loses the answers not yet posted, as before
it lost those of commands still being handled; the jobs are queued either way.
"""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import structlog
from slack_sdk import WebClient

from stat_bot.bot.chat import Answer, Asker
from stat_bot.report.slack import ChannelDirectory, post

log = structlog.get_logger(__name__)

REPLY_THREADS = 4


class Replies:
    """Posts commands' answers in the background; `close` waits for those handed over."""

    def __init__(
        self, client: WebClient, channels: ChannelDirectory, *, threads: int = REPLY_THREADS
    ) -> None:
        self._client = client
        self._channels = channels
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="bot-reply")

    def send(self, asker: Asker, ts: str, answer: Answer, command: str) -> None:
        """Post `answer` to the command message `ts` (reaction) and its thread; returns at once."""
        self._pool.submit(self._send, asker, ts, answer, command)

    def _send(self, asker: Asker, ts: str, answer: Answer, command: str) -> None:
        try:
            if answer.reaction:
                self._client.reactions_add(
                    channel=asker.channel, timestamp=ts, name=answer.reaction
                )
            for message in answer.messages:
                post(self._client, self._channels, asker.channel, asker.thread_ts, message)
            log.info(
                "command answered",
                user=asker.user_id,
                channel=asker.channel,
                command=command,
                messages=len(answer.messages),
            )
        except Exception:
            command_failed(self._client, asker, ts, command)

    def close(self) -> None:
        """Wait until every answer handed over has been posted (or has failed)."""
        self._pool.shutdown(wait=True)


def command_failed(client: WebClient, asker: Asker, ts: str, command: str) -> None:
    """Log the exception being handled with a reference, and apologise with it; never raises.

    For a command that failed in its listener or while its answer was posted alike.
    """
    reference = uuid.uuid4().hex[:8]
    log.exception(
        "command failed",
        user=asker.user_id,
        channel=asker.channel,
        command=command,
        reference=reference,
    )
    apologise(client, asker, ts, reference)


def apologise(client: WebClient, asker: Asker, ts: str, reference: str) -> None:
    """An :x: on the command and a short note in its thread; never raises."""
    try:
        client.reactions_add(channel=asker.channel, timestamp=ts, name="x")
        client.chat_postMessage(
            channel=asker.channel,
            thread_ts=asker.thread_ts,
            text=f"Sorry, something went wrong inside STAT bot while handling that "
            f"(reference `{reference}`); the details are in its logs.",
        )
    except Exception as error:
        log.warning("could not report a failed command", error=repr(error), reference=reference)
