"""What the bot answers to a command, without Slack: text in, messages and a reaction out.

Bolt's listeners (bot/app.py) only turn events into `handle` calls and post the
answer, so every command here is testable with a real queue and no network.
Built-in words (help, status, jobs, logs, cancel, remove job id) come first;
everything else is matched against job_configs.py and carried out by the same
actions the command line uses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Protocol

import structlog

from stat_bot.actions import ActionError, Requester, decide, perform, site_inventory
from stat_bot.jobs.config import JobConfigs, NamespaceSpec
from stat_bot.jobs.config_file import ConfigFile
from stat_bot.jobs.matching import (
    MatchError,
    closest_commands,
    match_command,
    normalise,
    suggestion_lines,
)
from stat_bot.jobs.model import Source
from stat_bot.jobs.params import excerpt
from stat_bot.oncall.runbook_messages import runbook_search
from stat_bot.queue.base import Confirmation, Queue
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
    parse_job_id,
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


class LookupFailedError(Exception):
    """Slack could not say who someone is or which groups they are in; the text says why."""


class People(Protocol):
    """Looks people up (bot/people.py asks Slack, with a cache).

    `person` and `groups` raise LookupFailedError when Slack cannot answer.
    """

    def person(self, user_id: str) -> Person:
        """Name and guest status (no user groups: those cost a usergroups.list)."""
        ...

    def groups(self, user_id: str) -> frozenset[str]:
        """The handles (without @) of the user groups the user is in."""
        ...

    def name(self, user_id: str) -> str | None:
        """The user's name for people to read (no user groups: cheaper than `person`)."""
        ...


class IncidentHandler(Protocol):
    """Typed `incident ...` commands (bot/incidents.py)."""

    def handle(self, words: list[str], asker: Asker) -> Answer: ...


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


def _digits(word: str) -> bool:
    """A number, however long (ASCII digits only: int() would read other scripts' too)."""
    digits = word.lstrip("#")
    return digits.isascii() and digits.isdigit()


def _not_shown(hidden: set[str]) -> str:
    names = ", ".join(f"`{name}`" for name in sorted(hidden))
    return f"(Not shown: jobs in {names}, which you may not use.)"


def code(text: str) -> str:
    return f"```\n{text}\n```"


class ChatCommands:
    """Answers commands for one set of job configs and one queue."""

    def __init__(
        self,
        settings: Settings,
        configs: JobConfigs | ConfigFile,
        queue: Queue,
        people: People,
        *,
        bot_name: str = "stat-bot",
    ) -> None:
        self.settings = settings
        # job_configs.py as it is now (jobs/config_file.py): edits apply without a restart.
        self.config_file = configs if isinstance(configs, ConfigFile) else ConfigFile.fixed(configs)
        self.queue = queue
        self.people = people
        self.bot_name = bot_name
        # Set by the bot (bot/service.py) when it runs incidents; typed `incident ...`
        # commands are refused with a hint otherwise.
        self.incidents: IncidentHandler | None = None

    @property
    def configs(self) -> JobConfigs:
        return self.config_file.current()

    def handle(self, text: str, asker: Asker) -> Answer:
        words = text.split()
        first = words[0].lower() if words else "help"
        rest = [w.lower() for w in words[1:]]
        if first == "help":
            return self._help(rest)
        if len(words) == 2 and rest == ["help"] and first in self.configs.namespaces:
            return self._help([first])
        if first == "status" and not rest:
            return self._status(asker)
        if first == "jobs" and len(rest) <= 1:
            return self._jobs(rest[0] if rest else None, asker)
        if first == "logs":
            return self._logs(rest, asker)
        if first == "cancel" and len(rest) == 1:
            return self._cancel(rest[0], asker)
        if first == "remove" and rest[:2] == ["job", "id"] and len(rest) == 3:
            return self._cancel(rest[2], asker)
        if first in ("confirm", "cancel-confirm") and len(words) == 2:
            return self.decide(words[1], asker.user_id, confirm=first == "confirm")
        if first == "confirm" and len(words) == 3 and rest[1] == "cancel":
            return self.decide(words[1], asker.user_id, confirm=False)
        if first == "runbook":
            return self._runbook(" ".join(words[1:]))
        if first == "incident":
            if self.incidents is None:
                return Answer.say(
                    "Incidents are not running in this process (only the bot runs them)."
                )
            return self.incidents.handle(words[1:], asker)
        if first in ("confirm", "cancel-confirm"):
            return Answer.say(
                "Usage: `confirm <code>` or `cancel-confirm <code>`, with the code of an offer "
                "to run a guarded job (its buttons do the same)."
            )
        return self._configured(text, asker)

    # runbooks ----------------------------------------------------------------------
    def _runbook(self, text: str) -> Answer:
        """`runbook <words...>`: the best sections of the runbook index (oncall/)."""
        return Answer.say(runbook_search(self.queue, text))

    # guarded jobs ------------------------------------------------------------------
    def _name(self, user_id: str) -> str | None:
        try:
            return self.people.name(user_id)
        except LookupFailedError:
            return None

    def decide(self, code: str, user_id: str, *, confirm: bool) -> Answer:
        """`confirm ABC123` / `cancel-confirm ABC123`, typed or clicked (bot/app.py)."""
        result = decide(
            self.queue,
            code,
            confirm=confirm,
            by=user_id,
            by_name=self._name(user_id),
            refusal=lambda offer: self.confirm_refusal(offer, user_id, confirm=confirm),
        )
        if result.job is not None:
            return Answer.say(result.text, self.settings.slack_ack_reaction)
        return Answer.say(result.text)

    def confirm_refusal(self, offer: Confirmation, user_id: str, *, confirm: bool) -> str | None:
        """Why this person may not confirm (or cancel) this offer, or None if they may.

        They must be allowed to use its namespace at all; then the requester may, and
        so may anyone its job's `confirm_by` (default: the namespace's allowed_users) names,
        by id or by a user group they are in.
        """
        namespace = offer.request.namespace
        verb = "confirm" if confirm else "cancel"
        if namespace not in self.configs.namespaces:
            return f"`{namespace}` is no longer in job_configs.py, so `{offer.code}` cannot be {verb}ed."
        refusal = self.refusal(namespace, user_id, f"{verb} {offer.code}")
        if refusal:
            return refusal
        if user_id == offer.requested_by or user_id in offer.confirmers:
            return None
        handles = {c[1:] for c in offer.confirmers if c.startswith("@")}
        try:
            if handles and self.people.groups(user_id) & handles:
                return None
        except LookupFailedError as error:
            return f"Sorry <@{user_id}>, I could not check whether you may {verb} it: {error}."
        asker = f"<@{offer.requested_by}>" if offer.requested_by else "whoever asked"
        others = ", ".join(c if c.startswith("@") else f"<@{c}>" for c in offer.confirmers)
        who = f"{asker} or {others}" if others else asker
        log.warning("confirmation refused", user=user_id, code=offer.code, verb=verb)
        return f"Sorry <@{user_id}>, only {who} may {verb} `{offer.code}`; nothing was changed."

    # built-ins ---------------------------------------------------------------------
    def _help(self, rest: list[str]) -> Answer:
        if not rest:
            return Answer.say(namespaces_help(self.configs, self.bot_name))
        name = rest[0]
        if name in self.configs.namespaces and len(rest) == 1:
            return Answer.say(namespace_help(self.configs, name))
        return self._not_understood(f"help {' '.join(rest)}")

    def _status(self, asker: Asker) -> Answer:
        hidden = self.hidden_namespaces(asker.user_id)
        waiting = self.configs.waiting_schedules(self.settings.job_environment())
        view = StatusView.read(
            self.queue, self.settings.tz, waiting=waiting, lost_after=self.settings.lost_after
        ).without(hidden)
        parts = []
        for heading, table in view.sections(self.settings.tz):
            if table is None:
                continue
            parts.append(f"*{heading}*\n{code(table)}")
        if not view.running and not view.queued:
            parts.insert(0, "Nothing is running or queued.")
        if hidden:
            parts.append(_not_shown(hidden))
        return self._long("\n".join(parts), "status.txt")

    def _jobs(self, namespace: str | None, asker: Asker) -> Answer:
        if namespace is not None and namespace not in self.configs.namespaces:
            known = ", ".join(sorted(self.configs.namespaces))
            return Answer.say(f"There is no namespace `{excerpt(namespace)}`. Namespaces: {known}.")
        if namespace is not None:
            refusal = self.refusal(namespace, asker.user_id, f"jobs {namespace}")
            if refusal:
                return Answer.say(refusal)
        hidden = self.hidden_namespaces(asker.user_id) if namespace is None else set()
        found = self.queue.jobs(namespace=namespace, limit=JOBS_SHOWN, hidden=sorted(hidden))
        note = f"\n{_not_shown(hidden)}" if hidden else ""
        if not found:
            return Answer.say(
                ("No jobs yet." if namespace is None else f"No `{namespace}` jobs yet.") + note
            )
        heading = f"The last {len(found)} jobs" + (f" in `{namespace}`" if namespace else "")
        return self._long(f"{heading}:\n{code(job_table(found))}{note}", "jobs.txt")

    def _logs(self, rest: list[str], asker: Asker) -> Answer:
        usage = "Usage: `logs <job id> [stdout|stderr] [head|tail]`, e.g. `logs 12 stderr`."
        job_id = parse_job_id(rest[0]) if rest else None
        if job_id is None:
            if rest and _digits(rest[0]):
                return Answer.say(
                    f"No job #{excerpt(rest[0].lstrip('#'))}; `jobs` lists recent jobs."
                )
            return Answer.say(usage)
        stream, end = "stdout", "tail"
        for word in rest[1:]:
            if word in LOG_STREAMS:
                stream = word
            elif word in ("head", "tail"):
                end = word
            else:
                return Answer.say(f"I don't know `{excerpt(word)}` here. {usage}")
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
        job_id = parse_job_id(raw_id)
        if job_id is None:
            if _digits(raw_id):
                return Answer.say(f"No job #{excerpt(raw_id.lstrip('#'))}.")
            return Answer.say(
                f"`{excerpt(raw_id)}` is not a job id; job ids are numbers, as in `cancel 12`."
            )
        refusal = self._job_refusal(job_id, asker, "cancel")
        if refusal:
            return Answer.say(refusal)
        return Answer.say(cancel_text(job_id, self.queue.request_cancel(job_id)))

    # configured commands -------------------------------------------------------------
    def _configured(self, text: str, asker: Asker) -> Answer:
        configs = self.configs  # one version of job_configs.py for the whole command
        try:
            match = match_command(configs, text)
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
        spec = match.command.spec
        try:
            guarded = (
                spec.action == "schedule_job"
                and configs.job(match.namespace, spec.job_type).exclusive
            )
            result = perform(
                match,
                configs,
                self.queue,
                requester,
                self.settings.tz,
                now=self.queue.now(),
                inventory=site_inventory(self.settings.hw_inventory) if guarded else None,
                confirm_expiry=self.settings.hw_confirm_expiry,
            )
        except ActionError as error:
            return Answer.say(f"`{excerpt(text)}`: {error}")
        if match.command.spec.action != "schedule_job":
            return Answer.say(result.text)
        if "code" in result.data:  # offered with buttons (the outbox posts the offer)
            return Answer(reaction="question")
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
        # A namespace's name alone (`@stat-bot hw`) asks what it can do: its help.
        if text.strip() in self.configs.namespaces:
            return Answer.say(namespace_help(self.configs, text.strip()))
        # The same words as `stat-bot enqueue` prints for the same text (MatchError's str).
        return self._not_understood(text, error.message, error.suggestions)

    def _not_understood(
        self, text: str, why: str | None = None, close: list[str] | None = None
    ) -> Answer:
        lines = [why or f"I didn't understand `{excerpt(text)}`."]
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
        """Why this person may not use this namespace (logged), or None if they may.

        Slack is asked only what the namespace needs: users.info for `restricted`, the
        user groups only when allowed_users names a group and not the user's own id.
        """
        spec: NamespaceSpec = self.configs.namespaces[namespace].spec
        if not spec.restricted and not spec.allowed_users:
            return None
        try:
            reason = self._refusal(spec, namespace, user_id)
        except LookupFailedError as error:
            log.warning(
                "permission check failed", user=user_id, namespace=namespace, reason=str(error)
            )
            return (
                f"Sorry <@{user_id}>, I could not check whether you may use `{namespace}`: "
                f"{error}. Try again in a minute; if it keeps failing, tell an admin "
                "(the bot needs the users:read and usergroups:read scopes)."
            )
        if reason:
            log.warning("command refused", user=user_id, namespace=namespace, command=command)
        return reason

    def _refusal(self, spec: NamespaceSpec, namespace: str, user_id: str) -> str | None:
        if spec.restricted and self.people.person(user_id).is_guest:
            return (
                f"Sorry <@{user_id}>, `{namespace}` is restricted to members of this workspace, "
                "and guest accounts cannot use it."
            )
        if not spec.allowed_users or user_id in spec.allowed_users:
            return None
        handles = {a[1:] for a in spec.allowed_users if a.startswith("@")}
        if handles and self.people.groups(user_id) & handles:
            return None
        who = ", ".join(a if a.startswith("@") else f"<@{a}>" for a in spec.allowed_users)
        return (
            f"Sorry <@{user_id}>, `{namespace}` commands are limited to {who}. "
            "Ask one of them, or ask an admin to add you to the namespace's allowed_users."
        )

    def hidden_namespaces(self, user_id: str) -> set[str]:
        """The namespaces whose jobs (history, args, logs) this person may not see.

        A failed lookup hides the namespace too: better a shorter list than a leak.
        """
        hidden = set()
        for name, namespace in self.configs.namespaces.items():
            spec = namespace.spec
            if not spec.restricted and not spec.allowed_users:
                continue
            try:
                if self._refusal(spec, name, user_id):
                    hidden.add(name)
            except LookupFailedError:
                hidden.add(name)
        return hidden

    def _job_refusal(self, job_id: int, asker: Asker, verb: str) -> str | None:
        job = self.queue.get(job_id)
        if job is None or job.namespace not in self.configs.namespaces:
            return None  # "no such job" is said by the command itself
        return self.refusal(job.namespace, asker.user_id, f"{verb} job #{job_id}")
