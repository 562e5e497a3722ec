"""The Bolt app: Slack events in, ChatCommands answers out.

Listens to mentions in channels and to direct messages (where no mention is
needed). The bot's own messages, other bots' and edits are ignored as commands; other
apps' messages in ONCALL_ALERT_CHANNELS are read as alerts (bot/slack_alerts.py). Bolt acks
each event before the listener runs, so Slack never waits on a job being
queued; a command's reaction and messages are then posted from threads of their
own (bot/replies.py), so the next events never wait on them. An exception inside
a listener puts an :x: on the command and a short apology in its thread; the
details go to the log with a reference to match.

Each command is answered once, however many bot processes share the Slack app
and however often Slack delivers it: Slack spreads events over the app's Socket
Mode connections and delivers again, maybe to another process, an event whose ack
it did not get in 3 s (a process frozen or killed with the event on its socket).
Before answering, the bot records the event's `event_id` (the same in every
delivery) in the shared queue's deliveries, in one transaction that only one
process can win (`Queue.accept_delivery`); a delivery that finds it there is
dropped and counted (`stat_bot_slack_events_dropped_total` in /metrics). A process
killed after acking an event but before that record is written loses it: Slack
does not deliver acked events again, and the ack comes first so that Slack never
waits.
"""

from __future__ import annotations

import contextlib
import uuid
from typing import Any

import structlog
from slack_bolt import App
from slack_sdk import WebClient

from stat_bot.bot.alerts import register as register_alerts
from stat_bot.bot.chat import Answer, Asker, ChatCommands, command_text
from stat_bot.bot.incidents import IncidentCommands
from stat_bot.bot.incidents import register as register_incidents
from stat_bot.bot.people import SlackPeople
from stat_bot.bot.replies import Replies, apologise, command_failed
from stat_bot.bot.runbooks import register as register_runbooks
from stat_bot.bot.slack_alerts import SlackAlertListener
from stat_bot.report.confirmations import CANCEL_ACTION, CONFIRM_ACTION
from stat_bot.report.slack import ChannelDirectory, post
from stat_bot.settings import Settings

log = structlog.get_logger(__name__)

# The queue's deliveries source under which answered Slack events are recorded.
EVENT_SOURCE = "slack-event"


def first_delivery(chat: ChatCommands, event_id: str | None) -> bool:
    """Whether this process is the one to answer the event: True exactly once per event_id.

    An event without an id (not from Slack's Events API) is always answered.
    """
    if not event_id:
        return True
    if chat.queue.accept_delivery(EVENT_SOURCE, event_id, []) is not None:
        return True
    log.info("event already answered; this delivery is dropped", event_id=event_id)
    try:
        chat.queue.count("slack_events_dropped", "duplicate")
    except Exception as error:  # a metric must never stop the bot
        log.warning("duplicate event not counted", reason=str(error))
    return False


def create_app(
    settings: Settings,
    chat: ChatCommands,
    client: WebClient,
    *,
    bot_user_id: str,
    people: SlackPeople | None = None,
    bot_id: str | None = None,
    replies: Replies | None = None,
) -> App:
    """A Bolt App for an already verified client (auth.test done by the caller).

    `replies` posts the commands' answers (bot/replies.py); the caller closes it after
    the Socket Mode handler, so that no answer handed over is lost. Without one, the
    app makes its own, closed only when the process exits.
    """
    app = App(
        client=client,
        token_verification_enabled=False,
        ignoring_self_events_enabled=True,
        raise_error_for_unhandled_request=False,
        # Events are acked on arrival (bot/socket_mode.py), so a listener may run in the
        # socket worker's own thread: one thread hand-off less per event.
        process_before_response=True,
        # Checks for HTTP mode; socket-mode requests never need them.
        ssl_check_enabled=False,
        url_verification_enabled=False,
        request_verification_enabled=False,
        logger=None,
    )
    channels = ChannelDirectory(client)
    if replies is None:
        replies = Replies(client, channels)

    def answer(event: dict[str, Any], text: str, event_id: str | None) -> None:
        asker = Asker(
            user_id=event["user"],
            channel=event["channel"],
            thread_ts=event.get("thread_ts") or event["ts"],
            is_im=event.get("channel_type") == "im",
        )
        try:
            if not first_delivery(chat, event_id):
                return
            result: Answer = chat.handle(text, asker)
        except Exception:
            command_failed(client, asker, event["ts"], text)
            return
        # Posted from the replies' own threads: this worker is free for the next event.
        replies.send(asker, event["ts"], result, text)

    def wanted(event: dict[str, Any]) -> bool:
        # Edits, joins, bot posts (ours or another app's) all carry a subtype or a bot_id.
        return not event.get("subtype") and not event.get("bot_id") and "user" in event

    @app.event("app_mention")
    def on_mention(event: dict[str, Any], body: dict[str, Any]) -> None:
        if wanted(event) and event.get("channel_type") != "im":
            text = command_text(event.get("text", ""), bot_user_id)
            answer(event, text, body.get("event_id"))

    alerts = SlackAlertListener(
        settings,
        chat.queue,
        lambda: chat.configs,
        channels,
        bot_user_id=bot_user_id,
        bot_id=bot_id,
    )

    @app.event("message")
    def on_message(event: dict[str, Any], body: dict[str, Any]) -> None:
        # Paging tools' messages in ONCALL_ALERT_CHANNELS are alerts (bot/slack_alerts.py):
        # Bolt runs one listener per event, so they are told apart here.
        if event.get("channel_type") != "im" and alerts.handle(event):
            return
        # In channels a command comes as app_mention (Slack sends both); here only DMs count.
        if wanted(event) and event.get("channel_type") == "im":
            text = command_text(event.get("text", ""), bot_user_id)
            answer(event, text, body.get("event_id"))

    def clicked(body: dict[str, Any], confirm: bool) -> None:
        """A Confirm or Cancel button of a guarded job's offer (report/confirmations.py)."""
        user = (body.get("user") or {}).get("id")
        actions = body.get("actions") or [{}]
        code = str(actions[0].get("value") or "")
        channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get(
            "channel_id"
        )
        message = body.get("message") or {}
        thread_ts = message.get("thread_ts") or message.get("ts")
        bound = log.bind(user=user, channel=channel, code=code, confirm=confirm)
        if not user or not channel:
            bound.warning("a click without a user or channel; ignored")
            return
        try:
            result = chat.decide(code, user, confirm=confirm)
            for answer in result.messages:
                post(client, channels, channel, thread_ts, answer)
            bound.info("button answered")
        except Exception:
            reference = uuid.uuid4().hex[:8]
            bound.exception("button failed", reference=reference)
            with contextlib.suppress(Exception):
                client.chat_postMessage(
                    channel=channel,
                    thread_ts=thread_ts,
                    text=f"Sorry <@{user}>, something went wrong inside STAT bot while handling "
                    f"that click (reference `{reference}`); the details are in its logs.",
                )

    def ack_now(ack: Any) -> None:
        # Slack wants the ack within 3 s; the decision (a queue write, maybe a user-group
        # lookup) runs after it, as a lazy listener on Bolt's own thread.
        ack()

    def on_confirm(body: dict[str, Any]) -> None:
        clicked(body, confirm=True)

    def on_cancel(body: dict[str, Any]) -> None:
        clicked(body, confirm=False)

    app.action(CONFIRM_ACTION)(ack=ack_now, lazy=[on_confirm])
    app.action(CANCEL_ACTION)(ack=ack_now, lazy=[on_cancel])
    register_runbooks(app, client, chat.queue)
    register_alerts(
        app,
        client,
        chat.queue,
        post=lambda channel, thread_ts, message: (
            post(client, channels, channel, thread_ts, message) and None
        ),
        tz=settings.tz,
    )

    if isinstance(chat.incidents, IncidentCommands):
        register_incidents(
            app,
            client,
            chat.incidents,
            first_delivery=lambda event_id: first_delivery(chat, event_id),
            post=lambda channel, thread_ts, message: (
                post(client, channels, channel, thread_ts, message) and None
            ),
        )

    @app.event("channel_created")
    def on_channel_created(event: dict[str, Any]) -> None:
        if settings.slack_join_new_channels:
            channel = event["channel"]
            client.conversations_join(channel=channel["id"])
            log.info("joined a new channel", channel=channel.get("name"))

    @app.event("team_join")
    @app.event("user_change")
    def on_user(event: dict[str, Any]) -> None:
        if people is not None:
            user = event.get("user") or {}
            people.forget(user.get("id") if isinstance(user, dict) else user)

    @app.error
    def on_error(error: Exception, body: dict[str, Any]) -> None:
        event = body.get("event") or {}
        reference = uuid.uuid4().hex[:8]
        log.error("event handling failed", error=repr(error), reference=reference)
        if event.get("channel") and event.get("ts") and event.get("user"):
            asker = Asker(event["user"], event["channel"], event.get("thread_ts") or event["ts"])
            apologise(client, asker, event["ts"], reference)

    return app
