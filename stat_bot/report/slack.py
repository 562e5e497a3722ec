"""Slack for the outbox: the one place that makes Web API calls for STAT bot's own messages.

`SlackNotifier` makes one attempt per message and says, through DeliveryError,
whether Slack refused it for good (a missing or archived channel) or for now
(unreachable, 5xx, rate limited with Retry-After); report/outbox.py decides when
to try again. The bot's replies to the person who spoke to it use `post` too.
"""

from __future__ import annotations

import http.client
import logging
import threading

import structlog
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)

from stat_bot.report.keep_alive import KeepAliveWebClient
from stat_bot.report.messages import Message, Report
from stat_bot.report.notifiers import DeliveryError, Notifier, Posted
from stat_bot.settings import Settings

log = structlog.get_logger(__name__)

MAX_RATE_LIMIT_RETRIES = 20  # each waits as long as Slack's Retry-After says
MAX_SERVER_ERROR_RETRIES = 5
QUIET = logging.getLogger("stat_bot.slack.probe")
QUIET.setLevel(logging.CRITICAL)


def web_client(settings: Settings, *, retries: bool = True) -> WebClient:
    """A WebClient for the bot token that retries what Slack says to retry.

    `retries=False` gives one attempt per call: for probing at start-up, where
    the caller's own backoff decides how long to wait.
    """
    if settings.slack_bot_token is None:
        raise ValueError("SLACK_BOT_TOKEN is not set")
    handlers = [
        ConnectionErrorRetryHandler(max_retry_count=MAX_SERVER_ERROR_RETRIES),
        RateLimitErrorRetryHandler(max_retry_count=MAX_RATE_LIMIT_RETRIES),
        ServerErrorRetryHandler(max_retry_count=MAX_SERVER_ERROR_RETRIES),
    ]
    return KeepAliveWebClient(
        token=settings.slack_bot_token.get_secret_value(),
        base_url=settings.slack_api_url,
        timeout=30 if retries else 10,
        retry_handlers=handlers if retries else [],
        # A probe's failures are reported by its caller, once per try.
        logger=None if retries else QUIET,
    )


# What a Web API call raises when Slack did not answer as Slack: unreachable (OSError), the
# SDK's own failures, or an answer that is not HTTP at all (http.client.HTTPException: a
# proxy or another service on the configured address). Each is "could not be reached",
# retried like an outage, never a traceback.
SLACK_CALL_ERRORS: tuple[type[Exception], ...] = (
    SlackClientError,
    OSError,
    http.client.HTTPException,
)


def slack_error(error: Exception, what: str) -> str:
    """A one-line reason for a failed call; Slack's error code, never a token."""
    if isinstance(error, SlackApiError):
        code = error.response.get("error") if error.response is not None else None
        status = error.response.status_code if error.response is not None else "?"
        return f"Slack refused {what}: {code or f'HTTP {status}'}"
    return f"Slack could not be reached for {what}: {type(error).__name__}"


class ChannelDirectory:
    """Channel names -> ids (files and permalinks need ids), looked up once and cached."""

    def __init__(self, client: WebClient) -> None:
        self._client = client
        self._ids: dict[str, str] = {}
        self._lock = threading.Lock()

    def id_of(self, channel: str) -> str:
        name = channel.removeprefix("#")
        if not channel.startswith("#") and name[:1] in ("C", "G", "D") and name.isupper():
            return name  # already an id
        with self._lock:
            if name not in self._ids:
                self._refresh()
            if name not in self._ids:
                raise DeliveryError(
                    f"Slack has no channel #{name} that the bot can see: check the channel's "
                    "name, or invite @stat-bot to it if it is private (channel_not_found)",
                    permanent=True,
                )
            return self._ids[name]

    def _refresh(self) -> None:
        cursor = None
        while True:
            page = self._client.conversations_list(
                types="public_channel,private_channel", limit=200, cursor=cursor
            )
            for channel in page.get("channels", []):
                self._ids[channel["name"]] = channel["id"]
            cursor = (page.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                return


def post(
    client: WebClient,
    channels: ChannelDirectory,
    channel: str,
    thread_ts: str | None,
    message: Message,
) -> str | None:
    """Post one message (a file goes up with files_upload_v2); its ts where Slack says it."""
    if message.file is not None:
        response = client.files_upload_v2(
            channel=channels.id_of(channel),
            thread_ts=thread_ts,
            content=message.file.content,
            filename=message.file.filename,
            title=message.file.title or message.file.filename,
            initial_comment=message.text,
        )
        files = response.get("files") or [{}]
        shares = (files[0].get("shares") or {}) if isinstance(files[0], dict) else {}
        for where in shares.values():
            for posts in where.values():
                if posts:
                    return posts[0].get("ts")
        return None
    response = client.chat_postMessage(
        channel=channel,
        thread_ts=thread_ts,
        text=message.text,
        blocks=message.blocks,
        unfurl_links=False,
        unfurl_media=False,
    )
    return response.get("ts")


# Slack's answers that no retry can change, in words that say what to do about them.
PERMANENT = {
    "channel_not_found": "Slack has no channel {channel} that the bot can see: check the "
    "channel's name, or invite @stat-bot to it if it is private",
    "not_in_channel": "the bot is not a member of {channel}: invite it with "
    "`/invite @stat-bot` in that channel",
    "is_archived": "{channel} is archived: unarchive it, or send these reports elsewhere "
    "(the job's report_channel)",
    "channel_is_archived": "{channel} is archived: unarchive it, or send these reports elsewhere "
    "(the job's report_channel)",
    "msg_too_long": "the message is too long for Slack",
    "no_text": "the message has no text",
    "invalid_blocks": "Slack refused the message's blocks (invalid_blocks): fix the job's "
    "Block Kit output",
    "invalid_blocks_format": "Slack refused the message's blocks (invalid_blocks_format): fix "
    "the job's Block Kit output",
    "too_many_attachments": "the message has too many attachments",
    "cannot_reply_to_message": "Slack does not allow replies in the thread of {channel}",
    "restricted_action": "the workspace does not let the bot post in {channel}",
    "restricted_action_read_only_channel": "{channel} is read-only for the bot",
    "restricted_action_thread_only_channel": "{channel} allows posts in threads only",
    "ekm_access_denied": "the workspace's key management denied the post",
    "invalid_arguments": "Slack refused the call's arguments (invalid_arguments)",
    "user_not_found": "Slack has no such user to send it to",
    "cannot_dm_bot": "Slack does not let the bot send a direct message to another bot",
}


# Answers that say Slack (or the whole app) is in trouble, not this message.
OUTAGE_CODES = frozenset(
    {
        "ratelimited", "internal_error", "fatal_error", "service_unavailable",
        "request_timeout", "invalid_auth", "not_authed", "account_inactive", "token_revoked",
        "token_expired", "team_access_not_granted",
    }
)  # fmt: skip


def delivery_error(error: Exception, channel: str) -> DeliveryError:
    """A failed Slack call as the outbox needs it: the reason, and whether to try again."""
    if isinstance(error, DeliveryError):
        return error
    if isinstance(error, SlackApiError) and error.response is not None:
        code = str(error.response.get("error") or "")
        status = error.response.status_code
        if code in PERMANENT:
            words = PERMANENT[code].format(channel=channel)
            return DeliveryError(f"{words} ({code})", permanent=True)
        if 400 <= status < 500 and status not in (408, 429) and not code:
            # A refusal of this request itself, without even a code: it would be refused again.
            return DeliveryError(slack_error(error, f"a message to {channel}"), permanent=True)
        retry_after = None
        if status == 429:
            header = (error.response.headers or {}).get("Retry-After") or (
                error.response.headers or {}
            ).get("retry-after")
            try:
                retry_after = float(header) if header is not None else 1.0
            except ValueError:
                retry_after = 1.0
        return DeliveryError(
            slack_error(error, f"a message to {channel}"),
            retry_after=retry_after,
            outage=status >= 500 or status == 429 or code in OUTAGE_CODES,
        )
    return DeliveryError(
        f"Slack could not be reached for a message to {channel}: {type(error).__name__}",
        outage=True,
    )


class SlackNotifier(Notifier):
    """Sends the outbox's messages to Slack, one call per attempt (the outbox retries).

    Rate limits and outages are not waited out here, since a thread sleeping in a
    retry handler would hold every other message up: they come back as
    DeliveryError with Slack's Retry-After, and the outbox schedules the retry.
    """

    wants_progress = True

    def __init__(self, settings: Settings, client: WebClient | None = None) -> None:
        self.settings = settings
        self.wants_starts = bool(settings.slack_logs_channel)
        self.client = client or web_client(settings, retries=False)
        self.channels = ChannelDirectory(self.client)

    def send(self, report: Report, index: int, *, replace: Posted | None = None) -> Posted:
        if not report.channel:
            raise DeliveryError(
                "no channel to send it to: the job came without one and neither its "
                "report_channel, its namespace's default_channel nor SLACK_LOGS_CHANNEL is set",
                permanent=True,
            )
        channel = report.channel
        message = report.messages[index]
        try:
            repost_of = report.meta.get("repost_of") if index == 0 else None
            if repost_of:
                message = Message(
                    f"{message.text} {self._link_to(repost_of)}", message.blocks, message.file
                )
            if replace is not None and replace.ts and message.file is None:
                try:
                    response = self.client.chat_update(
                        channel=replace.channel or channel,
                        ts=replace.ts,
                        text=message.text,
                        blocks=message.blocks,
                    )
                    return Posted(response.get("channel") or replace.channel, replace.ts)
                except SlackApiError as error:
                    code = error.response.get("error") if error.response is not None else None
                    if code not in (
                        "message_not_found",
                        "cant_update_message",
                        "edit_window_closed",
                    ):
                        raise
                    # Deleted or too old to edit: post it anew instead.
            if message.file is not None:
                ts = post(self.client, self.channels, channel, report.thread_ts, message)
                return Posted(self.channels.id_of(channel), ts)
            response = self.client.chat_postMessage(
                channel=channel,
                thread_ts=report.thread_ts,
                text=message.text,
                blocks=message.blocks,
                unfurl_links=False,
                unfurl_media=False,
            )
            return Posted(response.get("channel"), response.get("ts"))
        except (*SLACK_CALL_ERRORS, DeliveryError) as error:
            raise delivery_error(error, channel) from error

    def _link_to(self, where: dict[str, str]) -> str:
        """A permalink for a repost; words instead when the original is gone."""
        try:
            return str(
                self.client.chat_getPermalink(channel=where["channel"], message_ts=where["ts"])[
                    "permalink"
                ]
            )
        except SlackApiError as error:
            code = error.response.get("error") if error.response is not None else None
            if code in ("message_not_found", "channel_not_found"):
                return "(the original message has been deleted)"
            raise

    def edit(self, where: Posted, text: str) -> None:
        if not where.channel or not where.ts:
            return
        try:
            self.client.chat_update(channel=where.channel, ts=where.ts, text=text)
        except SLACK_CALL_ERRORS as error:
            raise delivery_error(error, where.channel) from error

    def pin(self, where: Posted) -> None:
        if not where.channel or not where.ts:
            return
        try:
            self.client.pins_add(channel=where.channel, timestamp=where.ts)
        except SlackApiError as error:
            code = error.response.get("error") if error.response is not None else None
            if code != "already_pinned":
                raise delivery_error(error, where.channel) from error
        except SLACK_CALL_ERRORS as error:
            raise delivery_error(error, where.channel) from error

    def archive(self, channel: str) -> None:
        try:
            self.client.conversations_archive(channel=channel)
        except SlackApiError as error:
            code = error.response.get("error") if error.response is not None else None
            if code not in ("already_archived", "is_archived"):
                raise delivery_error(error, channel) from error
        except SLACK_CALL_ERRORS as error:
            raise delivery_error(error, channel) from error
