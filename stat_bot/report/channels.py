"""Slack channels for incidents: create, describe, invite, look up, archive.

These calls need their answer at once (the new channel's id, a name clash), so
unlike messages they do not go through the outbox; the WebClient retries
rate limits and outages by itself (report/slack.py's handlers), and a failure
comes back as ChannelError in words a person can act on.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import structlog
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from stat_bot.report.slack import SLACK_CALL_ERRORS, slack_error

log = structlog.get_logger(__name__)

MAX_CLASHES = 20
MAX_TOPIC = 250


class ChannelError(Exception):
    """A channel call failed; the text says what to do (a missing scope, an outage)."""


@dataclass(frozen=True)
class Created:
    id: str
    name: str


def _code(error: SlackApiError) -> str:
    return str(error.response.get("error") or "") if error.response is not None else ""


class IncidentChannels:
    """The channel calls the incident service makes, on the bot's token."""

    def __init__(self, client: WebClient) -> None:
        self.client = client

    def create(self, names: Iterable[str]) -> Created:
        """The first of `names` Slack accepts (the next one after each name_taken)."""
        last = ""
        for count, name in enumerate(names):
            if count >= MAX_CLASHES:
                break
            last = name
            try:
                channel = self.client.conversations_create(name=name, is_private=False)["channel"]
                return Created(channel["id"], channel.get("name", name))
            except SlackApiError as error:
                if _code(error) == "name_taken":
                    continue
                raise ChannelError(self._why(error, f"creating #{name}")) from None
            except SLACK_CALL_ERRORS as error:
                raise ChannelError(slack_error(error, f"creating #{name}")) from None
        raise ChannelError(
            f"every name up to #{last} is taken; give the incident another description"
        )

    def describe(self, channel: str, *, topic: str, purpose: str) -> None:
        """Topic and purpose; a failure is logged, not fatal (the channel exists by now)."""
        for method, value in (
            (self.client.conversations_setTopic, {"topic": topic[:MAX_TOPIC]}),
            (self.client.conversations_setPurpose, {"purpose": purpose[:MAX_TOPIC]}),
        ):
            try:
                method(channel=channel, **value)
            except SLACK_CALL_ERRORS as error:
                log.warning(
                    "incident channel not described",
                    channel=channel,
                    error=slack_error(error, "it"),
                )

    def invite(self, channel: str, users: Iterable[str]) -> list[str]:
        """Invite people (one call); those Slack refused are logged and left out."""
        wanted = sorted({u for u in users if u})
        if not wanted:
            return []
        try:
            self.client.conversations_invite(channel=channel, users=",".join(wanted))
            return wanted
        except SlackApiError as error:
            if _code(error) == "already_in_channel":
                return wanted
            log.warning(
                "invitation refused", channel=channel, error=slack_error(error, "the invitation")
            )
        except SLACK_CALL_ERRORS as error:
            log.warning(
                "invitation failed", channel=channel, error=slack_error(error, "the invitation")
            )
        # One refused user (a deactivated account) must not keep the rest out.
        invited = []
        for user in wanted:
            try:
                self.client.conversations_invite(channel=channel, users=user)
                invited.append(user)
            except SlackApiError as error:
                if _code(error) == "already_in_channel":
                    invited.append(user)
            except SLACK_CALL_ERRORS:
                pass
        return invited

    def group_members(self, handle: str) -> list[str]:
        """The members of a user group given by handle (without @); [] if there is none."""
        handle = handle.removeprefix("@")
        try:
            groups = self.client.usergroups_list().get("usergroups", [])
            found = [g for g in groups if g.get("handle") == handle or g.get("name") == handle]
            if not found:
                log.warning("no such user group to invite", group=handle)
                return []
            return list(
                self.client.usergroups_users_list(usergroup=found[0]["id"]).get("users", [])
            )
        except SLACK_CALL_ERRORS as error:
            log.warning("user group not read", group=handle, error=slack_error(error, "the group"))
            return []

    def message_text(self, channel: str, ts: str) -> str | None:
        """The text of one message (for an incident opened or noted by a reaction)."""
        try:
            found = self.client.conversations_history(
                channel=channel, latest=ts, inclusive=True, limit=1
            )
            messages = found.get("messages") or []
            if messages and messages[0].get("ts") == ts:
                return str(messages[0].get("text") or "")
            # A reply: Slack answers with its thread (the parent first), so look for it.
            replies = self.client.conversations_replies(
                channel=channel, ts=ts, oldest=ts, inclusive=True
            )
            for message in replies.get("messages") or []:
                if message.get("ts") == ts:
                    return str(message.get("text") or "")
        except SLACK_CALL_ERRORS as error:
            log.warning(
                "message not read", channel=channel, error=slack_error(error, "the message")
            )
        return None

    def is_public(self, channel: str) -> bool:
        """Whether a conversation is a public channel (False when Slack cannot say)."""
        try:
            info = self.client.conversations_info(channel=channel)["channel"]
        except SLACK_CALL_ERRORS as error:
            log.warning("channel not looked up", channel=channel, error=slack_error(error, "it"))
            return False
        return bool(info.get("is_channel")) and not (
            info.get("is_private") or info.get("is_im") or info.get("is_mpim")
        )

    def archive(self, channel: str) -> str | None:
        """Archive a channel; None when done (or already done), else why not."""
        try:
            self.client.conversations_archive(channel=channel)
        except SlackApiError as error:
            if _code(error) in ("already_archived", "is_archived"):
                return None
            return self._why(error, "archiving the channel")
        except SLACK_CALL_ERRORS as error:
            return slack_error(error, "archiving the channel")
        return None

    @staticmethod
    def _why(error: SlackApiError, what: str) -> str:
        code = _code(error)
        if code == "missing_scope":
            needed = error.response.get("needed") if error.response is not None else None
            return f"Slack refused {what}: the app lacks the {needed or 'needed'} scope; reinstall it with the manifest"
        if code == "restricted_action":
            return f"Slack refused {what}: the workspace does not let apps create channels"
        return slack_error(error, what)
