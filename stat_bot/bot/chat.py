"""What the bot answers to a command, without Slack: text in, messages and a reaction out.

Bolt's listeners (bot/app.py) only turn events into `handle` calls and post the
answer, so every command here is testable with a real queue and no network.
Built-in words (help, status, jobs, logs, cancel, remove job id) come first;
everything else is matched against job_configs.py and carried out by the same
actions the command line uses.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Protocol

import structlog

from stat_bot.jobs.actions import ActionError, Requester, perform
from stat_bot.jobs.config import JobConfigs, NamespaceSpec
from stat_bot.jobs.matching import (
    MatchError,
    closest_commands,
    match_command,
    normalise,
    suggestion_lines,
)
from stat_bot.jobs.model import Source
from stat_bot.queue.base import Queue
from stat_bot.report.messages import MAX_TEXT, FileUpload, Message, split_text
from stat_bot.settings import Settings
from stat_bot.views import (
    LOG_STREAMS,
    StatusView,
    ViewError,
    cancel_text,
    job_table,
    namespace_help,
    namespaces_help,
    read_log,
)

log = structlog.get_logger(__name__)

JOBS_SHOWN = 15
LOG_LINES = 40
MENTION = re.compile(r"<@([UW][A-Z0-9]+)(?:\|[^>]*)?>")
LINK = re.compile(r"<((?:https?|mailto):[^|>]+)(?:\|[^>]*)?>")
CHANNEL_REF = re.compile(r"<#([CG][A-Z0-9]+)(?:\|([^>]*))?>")


@dataclass(frozen=True)
class Person:
    """What permission checks need to know about a Slack user."""

    id: str
    name: str = ""
    is_guest: bool = False  # a restricted or ultra-restricted (guest) account
    groups: frozenset[str] = frozenset()  # user-group handles, without the @


class People(Protocol):
    """Looks people up (bot/people.py asks Slack, with a cache)."""

    def person(self, user_id: str) -> Person: ...

    def name(self, user_id: str) -> str | None:
        """The user's name for people to read (no user groups: cheaper than `person`)."""
        ...


@dataclass(frozen=True)
class Asker:
    """Who sent a command and where the answer goes."""

    user_id: str
    channel: str
    thread_ts: str | None
    is_im: bool = False


@dataclass
class Answer:
    """Messages to post in the command's thread, and an emoji for the command itself."""

    messages: list[Message] = field(default_factory=list)
    reaction: str | None = None

    @classmethod
    def say(cls, text: str, reaction: str | None = None) -> Answer:
        return cls([Message(piece) for piece in split_text(text)], reaction)


def unescape(text: str) -> str:
    """Slack's markup back to what was typed: links, channel names, &amp; &lt; &gt;."""
    text = LINK.sub(lambda m: m[1].removeprefix("mailto:"), text)
    text = CHANNEL_REF.sub(lambda m: f"#{m[2] or m[1]}", text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def command_text(text: str, bot_user_id: str | None) -> str:
    """The command in a message: the text after the bot's mention (or before it, if it ends
    the message), with other mentions kept, Slack markup undone and whitespace tidied."""
    mention = None
    for m in MENTION.finditer(text):
        if m[1] == bot_user_id:
            mention = m
            break
    if mention is not None:
        after = text[mention.end() :]
        text = after if after.strip() else text[: mention.start()]
        text = text.lstrip(" :,")
    return normalise(" ".join(unescape(text).split()))


def code(text: str) -> str:
    return f"```\n{text}\n```"


class ChatCommands:
    """Answers commands for one set of job configs and one queue."""

    def __init__(
        self,
        settings: Settings,
        configs: JobConfigs,
        queue: Queue,
        people: People,
        *,
        bot_name: str = "stat-bot",
    ) -> None:
        self.settings = settings
        self.configs = configs
        self.queue = queue
        self.people = people
        self.bot_name = bot_name

    def handle(self, text: str, asker: Asker) -> Answer:
        words = text.split()
        first = words[0].lower() if words else "help"
        rest = [w.lower() for w in words[1:]]
        if first == "help":
            return self._help(rest)
        if len(words) == 2 and rest == ["help"] and first in self.configs.namespaces:
            return self._help([first])
        if first == "status" and not rest:
            return self._status()
        if first == "jobs" and len(rest) <= 1:
            return self._jobs(rest[0] if rest else None)
        if first == "logs":
            return self._logs(rest, asker)
        if first == "cancel" and len(rest) == 1:
            return self._cancel(rest[0], asker)
        if first == "remove" and rest[:2] == ["job", "id"] and len(rest) == 3:
            return self._cancel(rest[2], asker)
        return self._configured(text, asker)

    # built-ins ---------------------------------------------------------------------
    def _help(self, rest: list[str]) -> Answer:
        if not rest:
            return Answer.say(namespaces_help(self.configs, self.bot_name))
        name = rest[0]
        if name in self.configs.namespaces and len(rest) == 1:
            return Answer.say(namespace_help(self.configs, name))
        return self._not_understood(f"help {' '.join(rest)}")

    def _status(self) -> Answer:
        waiting = self.configs.waiting_schedules(self.settings.job_environment())
        view = StatusView.read(self.queue, self.settings.tz, waiting=waiting)
        parts = []
        for heading, table in view.sections(self.settings.tz):
            if table is None:
                continue
            parts.append(f"*{heading}*\n{code(table)}")
        if not view.running and not view.queued:
            parts.insert(0, "Nothing is running or queued.")
        return self._long("\n".join(parts), "status.txt")

    def _jobs(self, namespace: str | None) -> Answer:
        if namespace is not None and namespace not in self.configs.namespaces:
            known = ", ".join(sorted(self.configs.namespaces))
            return Answer.say(f"There is no namespace `{namespace}`. Namespaces: {known}.")
        found = self.queue.jobs(namespace=namespace, limit=JOBS_SHOWN)
        if not found:
            return Answer.say(
                "No jobs yet." if namespace is None else f"No `{namespace}` jobs yet."
            )
        heading = f"The last {len(found)} jobs" + (f" in `{namespace}`" if namespace else "")
        return self._long(f"{heading}:\n{code(job_table(found))}", "jobs.txt")

    def _logs(self, rest: list[str], asker: Asker) -> Answer:
        usage = "Usage: `logs <job id> [stdout|stderr] [head|tail]`, e.g. `logs 12 stderr`."
        if not rest or not rest[0].lstrip("#").isdigit():
            return Answer.say(usage)
        stream, end = "stdout", "tail"
        for word in rest[1:]:
            if word in LOG_STREAMS:
                stream = word
            elif word in ("head", "tail"):
                end = word
            else:
                return Answer.say(f"I don't know `{word}` here. {usage}")
        job_id = int(rest[0].lstrip("#"))
        refusal = self._job_refusal(job_id, asker, "read the logs of")
        if refusal:
            return Answer.say(refusal)
        try:
            view = read_log(self.queue, job_id, stream, end, LOG_LINES)  # type: ignore[arg-type]
        except ViewError as error:
            return Answer.say(str(error)[0].upper() + str(error)[1:] + ".")
        if not view.lines:
            return Answer.say(f"The {stream} of job #{job_id} is empty.")
        which = "first" if end == "head" else "last"
        shown = f"the {which} {len(view.lines)} of {view.total_lines} lines"
        body = "\n".join(view.lines)
        if len(body) + 200 > MAX_TEXT:
            content = view.path.read_bytes()
            return Answer(
                [
                    Message(
                        f"The {stream} of job #{job_id} is too long for a message; here is the file.",
                        file=FileUpload(f"job-{job_id}-{stream}.txt", content),
                    )
                ]
            )
        return Answer.say(f"{stream} of job #{job_id} ({shown}):\n{code(body)}")

    def _cancel(self, raw_id: str, asker: Asker) -> Answer:
        if not raw_id.lstrip("#").isdigit():
            return Answer.say(
                f"`{raw_id}` is not a job id; job ids are numbers, as in `cancel 12`."
            )
        job_id = int(raw_id.lstrip("#"))
        refusal = self._job_refusal(job_id, asker, "cancel")
        if refusal:
            return Answer.say(refusal)
        return Answer.say(cancel_text(job_id, self.queue.request_cancel(job_id)))

    # configured commands -------------------------------------------------------------
    def _configured(self, text: str, asker: Asker) -> Answer:
        try:
            match = match_command(self.configs, text)
        except MatchError as error:
            return self._refused_match(text, error)
        refusal = self.refusal(match.namespace, asker.user_id, text)
        if refusal:
            return Answer.say(refusal)
        requester = Requester(
            user=asker.user_id,
            channel=asker.channel,
            thread_ts=asker.thread_ts,
            source=Source.SLACK,
            is_im=asker.is_im,
            user_name=self.people.name(asker.user_id),
        )
        try:
            result = perform(
                match, self.configs, self.queue, requester, self.settings.tz, now=time.time()
            )
        except ActionError as error:
            return Answer.say(f"`{text}`: {error}")
        if match.command.spec.action != "schedule_job":
            return Answer.say(result.text)
        # A plain "queued" needs no words: the reaction says it. Anything else is worth saying.
        enqueued = result.enqueued
        plain = (
            enqueued is not None
            and not enqueued.coalesced
            and not enqueued.suppressed_until
            and not match.command.spec.delay_seconds
            and not (enqueued.running and len(enqueued.running) >= enqueued.job.concurrency)
        )
        reaction = self.settings.slack_ack_reaction
        return Answer(reaction=reaction) if plain else Answer.say(result.text, reaction)

    def _refused_match(self, text: str, error: MatchError) -> Answer:
        # The same words as `stat-bot enqueue` prints for the same text (MatchError's str).
        return self._not_understood(text, error.message, error.suggestions)

    def _not_understood(
        self, text: str, why: str | None = None, close: list[str] | None = None
    ) -> Answer:
        lines = [why or f"I didn't understand `{text}`."]
        if close is None:
            close = closest_commands(self.configs, text)
        lines += suggestion_lines(close)
        lines.append(f"Say `@{self.bot_name} help` for what I can do.")
        return Answer.say("\n".join(lines))

    def _long(self, text: str, filename: str) -> Answer:
        if len(text) <= MAX_TEXT:
            return Answer.say(text)
        plain = text.replace("```\n", "").replace("\n```", "")
        return Answer(
            [
                Message(
                    "That is too long for a message; here it is as a file.",
                    file=FileUpload(filename, plain.encode()),
                )
            ]
        )

    # permissions -----------------------------------------------------------------------
    def refusal(self, namespace: str, user_id: str, command: str) -> str | None:
        """Why this person may not use this namespace (logged), or None if they may."""
        spec: NamespaceSpec = self.configs.namespaces[namespace].spec
        if not spec.restricted and not spec.allowed_users:
            return None
        person = self.people.person(user_id)
        reason = None
        if spec.restricted and person.is_guest:
            reason = (
                f"Sorry <@{user_id}>, `{namespace}` is restricted to members of this workspace, "
                "and guest accounts cannot use it."
            )
        elif spec.allowed_users:
            allowed = set(spec.allowed_users)
            if user_id not in allowed and not {f"@{g}" for g in person.groups} & allowed:
                who = ", ".join(a if a.startswith("@") else f"<@{a}>" for a in spec.allowed_users)
                reason = (
                    f"Sorry <@{user_id}>, `{namespace}` commands are limited to {who}. "
                    "Ask one of them, or ask an admin to add you to the namespace's allowed_users."
                )
        if reason:
            log.warning("command refused", user=user_id, namespace=namespace, command=command)
        return reason

    def _job_refusal(self, job_id: int, asker: Asker, verb: str) -> str | None:
        job = self.queue.get(job_id)
        if job is None or job.namespace not in self.configs.namespaces:
            return None  # "no such job" is said by the command itself
        return self.refusal(job.namespace, asker.user_id, f"{verb} job #{job_id}")
