"""Alerts from Slack: what paging tools' Slack apps post in ONCALL_ALERT_CHANNELS.

PagerDuty's Slack app and Alertmanager's `slack_configs` post alerts as bot messages
(PagerDuty edits its message as the incident is acknowledged and resolved). The bot
listens to messages in the channels ONCALL_ALERT_CHANNELS lists (it must be a member),
reads each bot message with oncall/slack_alerts.py and records the alert like a
webhook's (oncall/intake.py): repeats counted on one alert, a resolution matched to
its firing, alert rules queueing their jobs.

Ignored: people's messages, STAT bot's own, other channels, edits that do not change
an alert's status, and bot messages that are not alerts (logged at debug: a channel
may hold other bots' chatter). Slack may deliver a message event more than once: the
delivery id is the channel and the message's ts (for an edit, the status it reached too),
so each message counts once.

Where STAT bot says something about it: if the watched channel is the on-call channel
itself, a short reply in the paging message's thread (alert #, how often it fired, the
jobs its rules queued), never a second top-level copy of what everyone just saw; the
rules' job reports go to that thread too. From any other channel, the alert is posted to
ONCALL_CHANNEL as a webhook's alert is.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import structlog

from stat_bot.jobs.config import JobConfigs
from stat_bot.oncall.intake import record
from stat_bot.oncall.messages import alert_messages, thread_messages
from stat_bot.oncall.slack_alerts import SlackAlert, read_alert
from stat_bot.queue.alert_model import AlertChange
from stat_bot.queue.base import OutboxMessage, Queue
from stat_bot.report.slack import ChannelDirectory
from stat_bot.settings import Settings

log = structlog.get_logger(__name__)

DELIVERY_SOURCE = "slack-alert"  # the queue's deliveries source of read alert messages
RESOLVE_AGAIN = 60.0  # seconds before a channel name that did not resolve is looked up again


class SlackAlertListener:
    """Reads paging tools' messages in the watched channels into alerts."""

    def __init__(
        self,
        settings: Settings,
        queue: Queue,
        configs: Callable[[], JobConfigs],
        channels: ChannelDirectory,
        *,
        bot_user_id: str,
        bot_id: str | None = None,
    ) -> None:
        self.settings = settings
        self.queue = queue
        self.configs = configs
        self.channels = channels
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.wanted = settings.alert_channels
        self._ids: dict[str, str] = {}  # watched name or id -> id
        self._tried: float = 0.0
        self._lock = threading.Lock()
        if self.wanted:
            # Nothing arrives unless the app subscribes to channel messages: say so once.
            log.info(
                "reading alerts from slack channels",
                channels=self.wanted,
                needs="the app's message.channels and message.groups events (DEPLOY.md)",
            )

    @property
    def enabled(self) -> bool:
        return bool(self.wanted)

    def _id(self, channel: str) -> str | None:
        try:
            return self.channels.id_of(channel)
        except Exception as error:  # unknown name, Slack unreachable: asked again later
            log.warning("alert channel not found", channel=channel, reason=str(error))
            return None

    def watched_ids(self) -> set[str]:
        """The ids of the watched channels that resolved (names are looked up once, and
        again a minute later for those that did not)."""
        with self._lock:
            missing = [c for c in self.wanted if c not in self._ids]
            if missing and (not self._tried or time.monotonic() - self._tried >= RESOLVE_AGAIN):
                self._tried = time.monotonic()
                for channel in missing:
                    found = self._id(channel)
                    if found:
                        self._ids[channel] = found
            return set(self._ids.values())

    def _oncall_id(self) -> str | None:
        channel = self.settings.oncall_channel
        return self._id(channel) if channel else None

    def _from_a_bot(self, message: Mapping[str, Any]) -> bool:
        """Another app's message: has a bot_id (or is a bot_message) and is not ours."""
        bot_id = message.get("bot_id")
        if not bot_id and message.get("subtype") != "bot_message":
            return False  # a person
        if (self.bot_id and bot_id == self.bot_id) or message.get("user") == self.bot_user_id:
            return False
        allowed = self.settings.alert_bots
        if not allowed:
            return True
        # Anyone holding an incoming-webhook URL for a watched channel can post as a bot:
        # with ONCALL_ALERT_BOTS set, only the paging tools named there are read.
        profile = message.get("bot_profile")
        names = [
            bot_id,
            message.get("app_id"),
            message.get("username"),
            profile.get("name") if isinstance(profile, Mapping) else None,
        ]
        return any(isinstance(n, str) and n.lower() in allowed for n in names)

    def handle(self, event: Mapping[str, Any]) -> bool:
        """Whether the event was a message in a watched channel (handled here, whatever it
        said); never raises: the listener goes on with the next event."""
        channel = event.get("channel")
        if not self.enabled or not isinstance(channel, str):
            return False
        try:
            if channel not in self.watched_ids():
                return False
            self._handle(channel, event)
        except Exception:
            log.exception("alert message not recorded", channel=channel, ts=event.get("ts"))
        return True

    def _handle(self, channel: str, event: Mapping[str, Any]) -> None:
        subtype = event.get("subtype")
        edited = subtype == "message_changed"
        message = event.get("message") if edited else event
        if not isinstance(message, Mapping) or subtype not in (
            None,
            "bot_message",
            "message_changed",
        ):
            return
        if not self._from_a_bot(message):
            return
        ts = str(message.get("ts") or "")
        # An edit's own ts (the event's) is when the paging tool changed its message.
        edit_ts = str(event.get("ts") or "") if edited else ""
        read = read_alert(message, edit_ts or None)
        if read is None:
            log.debug(
                "bot message in an alert channel is not an alert we read",
                channel=channel,
                ts=ts,
                bot_id=message.get("bot_id"),
            )
            return
        if read.event is None:
            log.info(
                "alert message noted, no change",
                channel=channel,
                ts=ts,
                tool=read.tool,
                status=read.status_word,
            )
            return
        # An edit is its own delivery (a reopened and again resolved incident is two), and
        # the same edit delivered again is still counted once.
        delivery = f"{channel}:{ts}:{read.status_word}:{edit_ts}" if edited else f"{channel}:{ts}"
        self._record(channel, message, read, delivery)

    def _record(
        self, channel: str, message: Mapping[str, Any], read: SlackAlert, delivery: str
    ) -> None:
        assert read.event is not None
        in_oncall = channel == self._oncall_id()
        thread_ts = str(message.get("thread_ts") or message.get("ts"))
        oncall = self.settings.oncall_channel

        def said(
            changes: list[AlertChange], refusals: Mapping[int, list[str]]
        ) -> list[OutboxMessage]:
            if in_oncall:
                return thread_messages(changes, channel, thread_ts, refusals)
            return alert_messages(changes, oncall, refusals)

        recorded = record(
            self.queue,
            self.configs(),
            [read.event],
            delivery=(DELIVERY_SOURCE, delivery),
            messages=said,
            site_channel=channel if in_oncall else oncall,
            thread_ts=thread_ts if in_oncall else None,
            runbook_threshold=self.settings.runbook_match_threshold,
        )
        if recorded.changes is None:
            log.info(
                "alert message delivered again; counted once", channel=channel, delivery=delivery
            )
            return
        for change in recorded.changes:
            log.info(
                "alert read from slack",
                channel=channel,
                tool=read.tool,
                alert=change.alert.id,
                change=str(change.kind),
                fire_count=change.alert.fire_count,
                jobs=list(change.jobs),
            )
