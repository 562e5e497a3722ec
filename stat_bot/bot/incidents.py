"""Incidents in Slack: `/incident`, `@stat-bot incident ...`, the control message's buttons
and selects, the digest's Join button, and reactions.

Everything here only reads what Slack sent and calls incidents/service.py; the
answer goes back to the person who asked (in the thread, or as the slash
command's ephemeral reply). The service's own messages go through the outbox.
"""

from __future__ import annotations

import re
import shlex
import uuid
from collections.abc import Callable
from typing import Any

import structlog
from slack_bolt import App
from slack_sdk import WebClient

from stat_bot.bot.chat import Answer, Asker, People, unescape
from stat_bot.incidents import messages as ids
from stat_bot.incidents.model import EntryKind
from stat_bot.incidents.service import Actor, IncidentError, IncidentService
from stat_bot.incidents.templates import escape_text
from stat_bot.report.channels import ChannelError
from stat_bot.report.messages import Message

log = structlog.get_logger(__name__)

# The queue's deliveries source recording messages that opened an incident by reaction.
OPENED_BY_REACTION = "incident-reaction"
MENTION = re.compile(r"^<@([UW][A-Z0-9]+)(?:\|[^>]*)?>$")
TICKET = re.compile(r"^#?(\d{1,9})$")

HELP = """*Incidents* (a Slack channel per incident, roles, status, a timeline, a postmortem):
`/incident <description> [--xname X] [--ticket N]` or `@{bot} incident open <description> ...`: open one
In an incident's channel (or name it: `incident 7 status monitoring`):
`incident role <role> @someone` / `incident claim <role>`: give or take a role ({roles})
`incident status <status>`: {statuses}; the last resolves it (a postmortem goes to Trac), another re-opens it
`incident note <text>`: add to the timeline (so does a :{pin}: reaction on any message in the channel)
`incident link <xname|#ticket> ...`: link hardware (an `hw check` is posted) or tickets
`incident timeline`, `incident list`"""


class IncidentCommands:
    """Typed incident commands, answered as the rest of the chat commands are."""

    def __init__(
        self, service: IncidentService, people: People, bot_name: str = "stat-bot"
    ) -> None:
        self.service = service
        self.people = people
        self.bot_name = bot_name

    def actor(self, user_id: str) -> Actor:
        try:
            name = self.people.name(user_id)
        except Exception:  # a name is for people to read; never worth failing for
            name = None
        return Actor(user_id, name)

    def help(self) -> str:
        templates = self.service.templates
        return HELP.format(
            bot=self.bot_name,
            roles=", ".join(f"`{r.key}`" for r in templates.roles),
            statuses=", ".join(f"`{s}`" for s in templates.statuses),
            pin=self.service.settings.incident_timeline_reaction,
        )

    def handle(self, words: list[str], asker: Asker) -> Answer:
        try:
            return self._handle(words, asker)
        except (IncidentError, ChannelError) as error:
            return Answer.say(str(error))

    def _handle(self, words: list[str], asker: Asker) -> Answer:
        number = None
        if words and TICKET.match(words[0]) and len(words) > 1:
            number = int(TICKET.match(words[0])[1])  # type: ignore[index]
            words = words[1:]
        verb = words[0].lower() if words else "help"
        rest = words[1:]
        by = self.actor(asker.user_id)
        if verb == "help":
            return Answer.say(self.help())
        if verb == "open":
            description, xnames, tickets = parse_open(" ".join(rest))
            incident = self.service.open(description, by=by, xnames=xnames, tickets=tickets)
            return Answer([ids.opened_message(incident, self.service.templates)])
        if verb == "list":
            return Answer.say(self._list())
        incident = self.service.find(asker.channel, number)
        if verb in ("role", "assign") and len(rest) == 2:
            user = _user(rest[1], asker.user_id)
            return Answer.say(self.service.set_role(incident.id, rest[0], user, by=by))
        if verb == "claim" and len(rest) == 1:
            return Answer.say(self.service.set_role(incident.id, rest[0], asker.user_id, by=by))
        if verb == "status" and len(rest) == 1:
            return Answer.say(self.service.set_status(incident.id, rest[0], by=by))
        if verb == "resolve" and not rest:
            return Answer.say(
                self.service.set_status(incident.id, self.service.templates.resolved_status, by=by)
            )
        if verb == "note" and rest:
            self.service.note(incident.id, " ".join(rest), by=by)
            return Answer.say("Noted in the timeline.", "memo")
        if verb == "link" and rest:
            xnames = [w for w in rest if not TICKET.match(w)]
            tickets = [int(TICKET.match(w)[1]) for w in rest if TICKET.match(w)]  # type: ignore[index]
            return Answer.say(self.service.link(incident.id, xnames=xnames, tickets=tickets, by=by))
        if verb == "timeline" and not rest:
            return Answer.say(self.service.timeline_text(incident))
        return Answer.say(f"I did not understand that incident command.\n{self.help()}")

    def _list(self) -> str:
        found = self.service.queue.incidents(
            resolved_since=self.service.queue.now() - 7 * 86400, limit=20
        )
        if not found:
            return "No open incidents, and none resolved in the last 7 days."
        lines = []
        for incident in found:
            state = "open" if incident.is_open else "resolved"
            lines.append(
                f"{incident.id}. {ids.channel_link(incident)} *{incident.status}* ({state}): "
                + escape_text(incident.description)
            )
        return "\n".join(lines)


def _user(word: str, me: str) -> str:
    if word.lower() == "me":
        return me
    found = MENTION.match(word)
    if not found:
        raise IncidentError(f"`{word}` is not a person: mention them (`@ada`) or say `me`.")
    return found[1]


def parse_open(text: str) -> tuple[str, list[str], list[int]]:
    """A description with `--xname X` and `--ticket N` options anywhere in it."""
    try:
        words = shlex.split(text)
    except ValueError:
        words = text.split()
    description, xnames, tickets = [], [], []
    index = 0
    while index < len(words):
        word = words[index]
        if word in ("--xname", "--ticket"):
            if index + 1 >= len(words):
                raise IncidentError(
                    f"`{word}` needs a value: `{word} {'x1000c0s0b0n0' if word == '--xname' else '12'}`."
                )
            value = words[index + 1]
            if word == "--xname":
                xnames += [v for v in value.split(",") if v]
            else:
                for part in value.split(","):
                    found = TICKET.match(part)
                    if not found:
                        raise IncidentError(f"`--ticket {part}` is not a ticket number.")
                    tickets.append(int(found[1]))
            index += 2
            continue
        description.append(word)
        index += 1
    return " ".join(description), xnames, tickets


def register(
    app: App,
    client: WebClient,
    commands: IncidentCommands,
    *,
    first_delivery: Callable[[str | None], bool],
    post: Callable[[str, str | None, Message], None],
) -> None:
    """The listeners: slash command, buttons and selects, reactions."""
    service = commands.service
    settings = service.settings

    def ack_now(ack: Any) -> None:
        ack()

    def failed(what: str, user: str | None, channel: str | None, thread_ts: str | None) -> None:
        reference = uuid.uuid4().hex[:8]
        log.exception(f"{what} failed", reference=reference, user=user)
        if channel:
            try:
                post(
                    channel,
                    thread_ts,
                    Message(
                        f"Sorry, something went wrong inside STAT bot handling that (reference `{reference}`); the details are in its logs."
                    ),
                )
            except Exception:
                log.warning("could not report a failure", reference=reference)

    # /incident -------------------------------------------------------------------
    def on_slash(body: dict[str, Any], respond: Any) -> None:
        user = body.get("user_id") or ""
        try:
            description, xnames, tickets = parse_open(str(body.get("text") or ""))
            incident = service.open(
                description, by=commands.actor(user), xnames=xnames, tickets=tickets
            )
            message = ids.opened_message(incident, service.templates)
            respond(text=message.text, blocks=message.blocks, response_type="ephemeral")
        except (IncidentError, ChannelError) as error:
            respond(text=str(error), response_type="ephemeral")
        except Exception:
            reference = uuid.uuid4().hex[:8]
            log.exception("slash command failed", reference=reference, user=user)
            respond(
                text=f"Sorry, something went wrong inside STAT bot (reference `{reference}`).",
                response_type="ephemeral",
            )

    app.command("/incident")(ack=ack_now, lazy=[on_slash])

    # the control message ---------------------------------------------------------
    def where(body: dict[str, Any]) -> tuple[str | None, str | None, str | None]:
        user = (body.get("user") or {}).get("id")
        channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get(
            "channel_id"
        )
        message = body.get("message") or {}
        return user, channel, message.get("thread_ts") or message.get("ts")

    def clicked(
        body: dict[str, Any], change: Callable[[str, str, dict[str, Any]], str | None]
    ) -> None:
        user, channel, thread_ts = where(body)
        if not user or not channel:
            log.warning("an incident click without a user or channel; ignored")
            return
        action = (body.get("actions") or [{}])[0]
        try:
            answer = change(user, channel, action)
            if answer:
                post(channel, thread_ts, Message(answer))
        except (IncidentError, ChannelError) as error:
            # Said to the one who clicked, as Slack apps do, not to the whole channel.
            try:
                client.chat_postEphemeral(channel=channel, user=user, text=str(error))
            except Exception:
                post(channel, thread_ts, Message(str(error)))
        except Exception:
            failed("incident click", user, channel, thread_ts)

    def claim(user: str, channel: str, action: dict[str, Any]) -> str | None:
        role = str(action.get("action_id", "")).removeprefix(f"{ids.CLAIM_ACTION}-")
        incident = service.find(channel)
        service.set_role(incident.id, role, user, by=commands.actor(user))
        return None  # the service says it in the channel

    def assign(user: str, channel: str, action: dict[str, Any]) -> str | None:
        chosen = action.get("selected_user")
        role = str(action.get("block_id", "")).removeprefix(ids.ROLE_BLOCK)
        if not chosen:
            return None
        incident = service.find(channel)
        service.set_role(incident.id, role, chosen, by=commands.actor(user))
        return None

    def status(user: str, channel: str, action: dict[str, Any]) -> str | None:
        chosen = (action.get("selected_option") or {}).get("value")
        if not chosen:
            return None
        incident = service.find(channel)
        service.set_status(incident.id, str(chosen), by=commands.actor(user))
        return None

    def join(user: str, channel: str, action: dict[str, Any]) -> str | None:
        incident = service.find(None, int(str(action.get("value") or "0") or 0))
        if not incident.channel_id or not incident.is_open or incident.archived_at:
            return (
                f"Incident {incident.id} is resolved; its channel is {ids.channel_link(incident)}."
            )
        if user not in service.channels.invite(incident.channel_id, [user]):
            return (
                f"<@{user}>, Slack would not add you to {ids.channel_link(incident)}; ask "
                "someone in it to invite you."
            )
        return None

    def on_click(change: Callable[[str, str, dict[str, Any]], str | None]) -> Callable[..., None]:
        # Bolt passes a listener the arguments its parameters name: `body` only.
        def listener(body: dict[str, Any]) -> None:
            clicked(body, change)

        return listener

    def open_from_report(user: str, channel: str, action: dict[str, Any]) -> str | None:
        incident = service.open_from_job(str(action.get("value") or ""), by=commands.actor(user))
        return ids.opened_message(incident, service.templates).text

    for action_id, change in (
        (re.compile(f"^{ids.CLAIM_ACTION}-"), claim),
        (ids.ASSIGN_ACTION, assign),
        (ids.STATUS_ACTION, status),
        (ids.JOIN_ACTION, join),
        (ids.OPEN_ACTION, open_from_report),
    ):
        app.action(action_id)(ack=ack_now, lazy=[on_click(change)])

    # reactions -------------------------------------------------------------------
    @app.event("reaction_added")
    def on_reaction(event: dict[str, Any], body: dict[str, Any]) -> None:
        item = event.get("item") or {}
        user, name = event.get("user"), event.get("reaction")
        channel, ts = item.get("channel"), item.get("ts")
        if item.get("type") != "message" or not user or not channel or not ts:
            return
        opening = bool(settings.incident_open_reaction) and name == settings.incident_open_reaction
        marking = name == settings.incident_timeline_reaction
        if not (opening or marking):
            return
        if not first_delivery(body.get("event_id")):
            return
        try:
            if marking:
                incident = service.queue.incident_by_channel(channel)
                if incident is None:
                    return
                if any(
                    e.data.get("ts") == ts for e in service.queue.incident_timeline(incident.id)
                ):
                    return  # marked already (by someone else, or removed and added again)
                read = service.channels.message_text(channel, ts)
                text = unescape(read) if read else "(a message that could not be read)"
                service.note(
                    incident.id,
                    text,
                    by=commands.actor(user),
                    kind=EntryKind.MESSAGE,
                    data={"ts": ts, "marked_by": user},
                )
                client.reactions_add(channel=channel, timestamp=ts, name="white_check_mark")
            else:
                if not service.channels.is_public(channel):
                    # A private channel's or a DM's words must not land in a public
                    # incident channel, its topic and the digest.
                    log.info(
                        "incident reaction in a private conversation; ignored", channel=channel
                    )
                    return
                if service.queue.accept_delivery(OPENED_BY_REACTION, f"{channel}:{ts}", []) is None:
                    return  # this message opened an incident already (another :rotating_light:)
                text = unescape(service.channels.message_text(channel, ts) or "")
                incident = service.open(
                    text.splitlines()[0][:120] if text.strip() else "opened from a reaction",
                    by=commands.actor(user),
                    first_message=text or None,
                    auto=True,
                )
                post(channel, ts, ids.opened_message(incident, service.templates))
        except (IncidentError, ChannelError) as error:
            post(channel, ts, Message(str(error)))
        except Exception:
            failed("incident reaction", user, channel, ts)
