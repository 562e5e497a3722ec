"""The Acknowledge button under an alert in the on-call channel (stat_bot/oncall/messages.py).

The first click acknowledges the alert (Queue.acknowledge_alert) and says who in the
alert's thread; a later click, by anyone, changes nothing and is told, to the clicker
alone, who acknowledged it and when.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

import structlog
from slack_bolt import App
from slack_sdk import WebClient

from stat_bot.oncall.messages import ACK_ACTION, acknowledged_text
from stat_bot.queue.base import Queue
from stat_bot.report.messages import Message

log = structlog.get_logger(__name__)


def register(
    app: App,
    client: WebClient,
    queue: Queue,
    *,
    post: Callable[[str, str | None, Message], None],
    tz: Any,
) -> None:
    def ack_now(ack: Any) -> None:
        ack()

    def on_ack(body: dict[str, Any]) -> None:
        user = (body.get("user") or {}).get("id")
        channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get(
            "channel_id"
        )
        message = body.get("message") or {}
        thread_ts = message.get("thread_ts") or message.get("ts")
        value = str(((body.get("actions") or [{}])[0]).get("value") or "")
        bound = log.bind(user=user, channel=channel, alert=value)
        if not user or not channel or not value.isdigit():
            bound.warning("an acknowledge click without a user, channel or alert; ignored")
            return
        try:
            done = queue.acknowledge_alert(int(value), user)
            if done is None:
                said = f"Alert {value} is no longer stored."
                client.chat_postEphemeral(channel=channel, user=user, text=said)
                return
            alert, new = done
            if new:
                post(channel, thread_ts, Message(acknowledged_text(alert, f"<@{user}>")))
                bound.info("alert acknowledged")
                return
            when = datetime.fromtimestamp(alert.acknowledged_at or 0, tz).strftime("%a %H:%M")
            by = alert.acknowledged_by or "someone"
            who = f"<@{by}>" if by.startswith(("U", "W")) and by.isalnum() else by
            client.chat_postEphemeral(
                channel=channel, user=user, text=f"Already acknowledged by {who} at {when}."
            )
        except Exception:
            reference = uuid.uuid4().hex[:8]
            bound.exception("acknowledge failed", reference=reference)
            with contextlib.suppress(Exception):
                client.chat_postEphemeral(
                    channel=channel,
                    user=user,
                    text=f"Sorry, something went wrong inside STAT bot (reference `{reference}`).",
                )

    app.action(ACK_ACTION)(ack=ack_now, lazy=[on_ack])
