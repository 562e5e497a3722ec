"""Runbooks in chat: the Helpful / Not helpful buttons under an alert's steps, and the
search (`@stat-bot runbook <words>` through ChatCommands, `/runbook <words>` here).

A click records the clicker's rating of that answer (one per person: a second click
changes it) and is acknowledged to the clicker alone (ephemeral; a DM for someone who
is not a member of the channel), with the counts so far; the channel sees nothing, so
ratings do not clutter the alert's thread.
"""

from __future__ import annotations

import uuid
from typing import Any

import structlog
from slack_bolt import App
from slack_sdk import WebClient

from stat_bot.oncall.runbook_messages import HELPFUL_ACTION, NOT_HELPFUL_ACTION, runbook_search
from stat_bot.queue.base import Queue

log = structlog.get_logger(__name__)


def rate(queue: Queue, ref: str, user: str, helpful: bool) -> str:
    """Record the rating; what the clicker is told."""
    answer = queue.runbook_answer(ref=ref)
    if answer is None:
        return "That runbook answer is no longer known to STAT bot; nothing was recorded."
    counts = queue.rate_runbook(answer.id, user, helpful)
    if counts is None:
        return "That runbook answer is no longer known to STAT bot; nothing was recorded."
    yes, no = counts
    said = "helpful" if helpful else "not helpful"
    return (
        f"Thanks: recorded that this runbook was {said} to you ({yes} helpful, {no} not "
        "helpful so far). Click the other button to change your rating."
    )


def register(app: App, client: WebClient, queue: Queue) -> None:
    def ack_now(ack: Any) -> None:
        ack()

    def clicked(body: dict[str, Any], helpful: bool) -> None:
        user = (body.get("user") or {}).get("id")
        channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get(
            "channel_id"
        )
        ref = str(((body.get("actions") or [{}])[0]).get("value") or "")
        if not user or not channel or not ref.startswith("runbook:"):
            log.warning("a runbook rating click without a user, channel or answer; ignored")
            return
        try:
            text = rate(queue, ref, user, helpful)
            log.info("runbook rated", user=user, ref=ref, helpful=helpful)
        except Exception:
            reference = uuid.uuid4().hex[:8]
            log.exception("runbook rating failed", reference=reference, user=user)
            text = (
                "Sorry, something went wrong inside STAT bot recording that (reference "
                f"`{reference}`); the details are in its logs."
            )
        try:
            client.chat_postEphemeral(channel=channel, user=user, text=text)
            return
        except Exception as error:  # not a member of the (public) channel: a DM then
            log.info("rating acknowledged by DM", reason=repr(error)[:200])
        try:
            client.chat_postMessage(channel=user, text=text)
        except Exception as error:
            log.warning("rating not acknowledged to the clicker", error=repr(error))

    def on_helpful(body: dict[str, Any]) -> None:
        clicked(body, helpful=True)

    def on_not_helpful(body: dict[str, Any]) -> None:
        clicked(body, helpful=False)

    def on_slash(body: dict[str, Any], respond: Any) -> None:
        """`/runbook <words...>`: the search, shown to the one who typed it."""
        text = str(body.get("text") or "")
        try:
            answer = runbook_search(queue, text)
        except Exception:
            reference = uuid.uuid4().hex[:8]
            log.exception("runbook search failed", reference=reference)
            answer = f"Sorry, something went wrong inside STAT bot (reference `{reference}`)."
        respond(text=answer, response_type="ephemeral")

    app.command("/runbook")(ack=ack_now, lazy=[on_slash])
    app.action(HELPFUL_ACTION)(ack=ack_now, lazy=[on_helpful])
    app.action(NOT_HELPFUL_ACTION)(ack=ack_now, lazy=[on_not_helpful])
