"""Reports into Slack: the one place that makes Slack Web API calls for reports.

A report goes into the channel and thread its command came from (or the job's
configured channel). Rate limits are waited out as Slack's Retry-After asks,
server and connection errors are retried with backoff (slack-sdk's retry
handlers); what still fails raises DeliveryError, which the dispatcher records
on the job. Failures are also reposted, as a link, to the tech-support channel
unless they came from a direct message, and long jobs get one progress message
in their thread that the final report replaces.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass

import structlog
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)

from stat_bot.jobs.model import Job
from stat_bot.report.messages import Message, Report
from stat_bot.report.notifiers import DeliveryError, Notifier, Progress
from stat_bot.settings import Settings

log = structlog.get_logger(__name__)

MAX_RATE_LIMIT_RETRIES = 20  # each waits as long as Slack's Retry-After says
MAX_SERVER_ERROR_RETRIES = 5
REMEMBERED_JOBS = 2000  # progress messages kept track of at once
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
    return WebClient(
        token=settings.slack_bot_token.get_secret_value(),
        base_url=settings.slack_api_url,
        timeout=30 if retries else 10,
        retry_handlers=handlers if retries else [],
        # A probe's failures are reported by its caller, once per try.
        logger=None if retries else QUIET,
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
                raise DeliveryError(f"no Slack channel named #{name} (is the bot invited to it?)")
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


@dataclass
class _Thread:
    """Where a job's progress message is, so the final report can replace it."""

    channel: str
    ts: str | None = None


class SlackNotifier(Notifier):
    """Delivers reports, start notices and progress to Slack.

    For one job the dispatcher never overlaps `progress` calls, and delivers the
    report only after the last one has returned; so only the table of progress
    messages, shared by all jobs, needs a lock.
    """

    wants_progress = True

    def __init__(self, settings: Settings, client: WebClient | None = None) -> None:
        self.settings = settings
        self.wants_starts = bool(settings.slack_logs_channel)
        self.client = client or web_client(settings)
        self.channels = ChannelDirectory(self.client)
        self._threads: OrderedDict[int, _Thread] = OrderedDict()
        self._lock = threading.Lock()

    # reports ---------------------------------------------------------------------
    def deliver(self, report: Report) -> None:
        channel = report.channel or self.settings.slack_logs_channel
        if not channel:
            raise DeliveryError(
                "no channel to report to: the job came without one and neither its "
                "report_channel, its namespace's default_channel nor SLACK_LOGS_CHANNEL is set"
            )
        try:
            first_ts = self._post_all(report, channel)
        except SlackClientError as error:
            raise DeliveryError(slack_error(error, f"the report to {channel}")) from error
        finally:
            if report.requester is None:
                with self._lock:
                    self._threads.pop(report.job_id, None)
        if report.kind == "failure" and not report.is_im and first_ts and report.requester is None:
            self._repost_to_tech_support(report, channel, first_ts)

    def _post_all(self, report: Report, channel: str) -> str | None:
        """Post every message; the first replaces the job's progress message if it has one."""
        first_ts: str | None = None
        with self._lock:
            own = report.job_id is not None and report.requester is None
            thread = self._threads.get(report.job_id) if own else None
        for index, message in enumerate(report.messages):
            if index == 0 and thread and thread.ts and message.file is None:
                self.client.chat_update(
                    channel=thread.channel, ts=thread.ts, text=message.text, blocks=message.blocks
                )
                first_ts = thread.ts
                continue
            ts = post(self.client, self.channels, channel, report.thread_ts, message)
            first_ts = first_ts or ts
        if thread and thread.ts and report.messages and report.messages[0].file is not None:
            # A file cannot replace a message: leave the progress message saying it ended.
            self.client.chat_update(
                channel=thread.channel, ts=thread.ts, text=f"{report.title}: finished, see below."
            )
        return first_ts

    def _repost_to_tech_support(self, report: Report, channel: str, ts: str) -> None:
        support = self.settings.slack_tech_support_channel
        if not support:
            return
        try:
            link = self.client.chat_getPermalink(
                channel=self.channels.id_of(channel), message_ts=ts
            )
            self.client.chat_postMessage(
                channel=support,
                text=f":rotating_light: {report.title} failed: {link['permalink']}",
                unfurl_links=False,
            )
        except (SlackClientError, DeliveryError) as error:
            # The report itself went out; a missing repost is logged, not a failed delivery.
            log.warning(
                "failure not reposted to tech support", job_id=report.job_id, error=str(error)
            )

    # notices -----------------------------------------------------------------------
    def job_started(self, job: Job) -> None:
        logs = self.settings.slack_logs_channel
        if not logs:
            return
        who = f" for <@{job.user}>" if job.user and job.user.startswith(("U", "W")) else ""
        args = " ".join(f"{k}={v}" for k, v in job.args.items())
        self.client.chat_postMessage(
            channel=logs,
            text=f"Job #{job.id} `{job.namespace} {job.job_type}`{' ' + args if args else ''} "
            f"started ({job.source}{who}).",
            unfurl_links=False,
        )

    def progress(self, progress: Progress) -> None:
        job = progress.job
        if not job.channel:
            return
        text = self._progress_text(progress)
        with self._lock:
            thread = self._threads.get(job.id)
            if thread is None:
                # Jobs that end without a report never free their entry: keep the newest.
                thread = self._threads[job.id] = _Thread(job.channel)
                while len(self._threads) > REMEMBERED_JOBS:
                    self._threads.popitem(last=False)
        if thread.ts is None:
            response = self.client.chat_postMessage(
                channel=job.channel, thread_ts=job.thread_ts, text=text
            )
            thread.channel = response.get("channel") or job.channel
            thread.ts = response.get("ts")
        else:
            self.client.chat_update(channel=thread.channel, ts=thread.ts, text=text)

    @staticmethod
    def _progress_text(progress: Progress) -> str:
        job = progress.job
        elapsed = progress.elapsed
        took = f"{elapsed:.0f} s" if elapsed < 120 else f"{elapsed / 60:.1f} min"
        lines = [
            f":hourglass_flowing_sand: Job #{job.id} `{job.namespace} {job.job_type}` has been running for {took}."
        ]
        if progress.output_tail.strip():
            lines.append(f"Latest output:\n```\n{progress.output_tail[-2500:]}\n```")
        return "\n".join(lines)
