"""The incident lifecycle: open, roles, status, notes, links, resolve and re-open.

The bot (bot/incidents.py) turns commands, clicks and reactions into calls here.
Each change is one queue transaction holding the incident's new state, its
timeline entries and every message the change causes (the control and digest
messages edited, an update in the channel, a DM to a new role holder), so a
crash loses neither half. Two people clicking at once are told apart by the
incident's version: the loser reads again and decides again.

Work that takes a while or needs other systems runs as jobs of the `incidents`
namespace (the site snapshot, the postmortem into Trac, archiving the channel),
and `hw check` jobs for linked xnames; every such job is linked to the incident
and its result shows in the timeline.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import structlog

from stat_bot.hardware.xnames import XnameError, parse_xname
from stat_bot.incidents import messages, naming
from stat_bot.incidents.model import (
    EntryKind,
    Incident,
    IncidentConflictError,
    IncidentDraft,
    IncidentMessages,
    TimelineEntry,
)
from stat_bot.incidents.postmortem import durations, durations_text, human
from stat_bot.incidents.templates import Templates, escape_text
from stat_bot.incidents.timeline import full_timeline
from stat_bot.jobs.config import JobConfigs
from stat_bot.jobs.model import Source
from stat_bot.jobs.requests import build_request
from stat_bot.queue.base import OutboxMessage, Queue
from stat_bot.report.channels import IncidentChannels
from stat_bot.settings import Settings
from stat_bot.views import when

log = structlog.get_logger(__name__)

NAMESPACE = "incidents"  # job_configs.py's namespace of incident jobs
MAX_DESCRIPTION = 300
MAX_NOTE = 3000
ATTEMPTS = 5  # reads and decisions again after another change won the race


class IncidentError(ValueError):
    """A request that cannot be carried out; the text says why and what to do instead."""


@dataclass(frozen=True)
class Actor:
    """Who asked: a Slack user id and, when known, their name for people to read."""

    id: str
    name: str | None = None


class IncidentService:
    def __init__(
        self,
        settings: Settings,
        queue: Queue,
        templates: Templates,
        channels: IncidentChannels,
        configs: Callable[[], JobConfigs],
        groups_of: Callable[[str], frozenset[str]] | None = None,
        job_refusal: Callable[[str, str, str], str | None] | None = None,
    ) -> None:
        self.settings = settings
        self.queue = queue
        self.templates = templates
        self.channels = channels
        self.configs = configs
        self.groups_of = groups_of
        # Why a linked job may not start (the asker may not use its namespace): the
        # bot's `ChatCommands.refusal(namespace, user, command)`.
        self.job_refusal = job_refusal

    # permissions ------------------------------------------------------------------
    def refusal(self, user_id: str) -> str | None:
        """Why this person may not change roles or status (INCIDENT_ALLOWED_USERS), or None."""
        allowed = [a.strip() for a in self.settings.incident_allowed_users.split(",") if a.strip()]
        if not allowed or user_id in allowed:
            return None
        handles = {a[1:] for a in allowed if a.startswith("@")}
        if handles and self.groups_of is not None:
            try:
                if self.groups_of(user_id) & handles:
                    return None
            except Exception as error:  # a lookup failure refuses, saying so
                return f"Sorry <@{user_id}>, I could not check whether you may change incidents: {error}."
        who = ", ".join(a if a.startswith("@") else f"<@{a}>" for a in allowed)
        log.warning("incident change refused", user=user_id)
        return f"Sorry <@{user_id}>, only {who} may change an incident's roles and status; nothing was changed."

    # opening ----------------------------------------------------------------------
    def open(
        self,
        description: str,
        *,
        by: Actor,
        xnames: Sequence[str] = (),
        tickets: Sequence[int] = (),
        first_message: str | None = None,
        auto: bool = False,
    ) -> Incident:
        """Create the channel, store the incident and its messages, start its jobs."""
        description = " ".join(description.split())
        if not description:
            raise IncidentError(
                "An incident needs a short description: `/incident gpfs hangs on login nodes` "
                "or `@stat-bot incident open gpfs hangs on login nodes`."
            )
        if len(description) > MAX_DESCRIPTION:
            raise IncidentError(
                f"That description has {len(description)} characters; keep it under "
                f"{MAX_DESCRIPTION} (details go in the channel)."
            )
        xnames = self._xnames(xnames)
        now = self.queue.now()
        slug = naming.auto_slug() if auto else naming.slug(description)
        names = (naming.channel_name(slug, now, self.settings.tz, n) for n in range(1, 100))
        created = self.channels.create(names)
        topic = description + (
            f" | Call: {self.settings.incident_video_link}"
            if self.settings.incident_video_link
            else ""
        )
        self.channels.describe(
            created.id,
            topic=topic,
            purpose=f"Incident opened by STAT bot for {by.name or by.id}: {description}",
        )
        invited = [by.id]
        if self.settings.incident_auto_invite_group:
            invited += self.channels.group_members(self.settings.incident_auto_invite_group)
        self.channels.invite(created.id, invited)
        entries = [
            TimelineEntry(EntryKind.OPENED, f"opened: {description}", by.id, by.name, at=now)
        ]
        if first_message:
            entries.append(
                TimelineEntry(EntryKind.MESSAGE, first_message[:MAX_NOTE], by.id, by.name, at=now)
            )
        entries += [
            TimelineEntry(EntryKind.LINK, f"xname {x}", by.id, by.name, at=now, data={"xname": x})
            for x in xnames
        ]
        entries += [
            TimelineEntry(
                EntryKind.LINK, f"ticket #{t}", by.id, by.name, at=now, data={"ticket": t}
            )
            for t in tickets
        ]
        draft = IncidentDraft(
            channel_id=created.id,
            channel_name=created.name,
            description=description,
            status=self.templates.first_status,
            opened_by=by.id,
            opened_by_name=by.name,
            xnames=tuple(xnames),
            tickets=tuple(tickets),
        )

        def outbox(incident: Incident) -> IncidentMessages:
            control = messages.control_message(
                incident, self.templates, self.settings.tz, self.settings.incident_video_link
            )
            digest = None
            if self.settings.incidents_digest_channel:
                digest = messages.post(
                    messages.digest_message(incident, self.templates, self.settings.tz, now),
                    self.settings.incidents_digest_channel,
                    ref=messages.digest_ref(incident),
                )
            return IncidentMessages(
                control=messages.post(
                    control, incident.channel_id, pin=True, ref=messages.control_ref(incident)
                ),
                digest=digest,
            )

        try:
            incident = self.queue.open_incident(draft, entries=entries, outbox=outbox, now=now)
        except Exception as error:
            # Nothing was stored: a channel no incident knows of would only mislead.
            log.exception("incident not stored; archiving its channel", channel=created.name)
            why = self.channels.archive(created.id)
            fate = "archived" if why is None else f"left behind ({why})"
            raise IncidentError(
                f"The incident could not be stored ({type(error).__name__}); its channel "
                f"#{created.name} was {fate}. Try again in a minute."
            ) from error
        log.info("incident opened", incident=incident.id, channel=incident.channel_name, user=by.id)
        jobs = [("snapshot", NAMESPACE, {"incident": str(incident.id)})]
        jobs += [("check", "hw", {"target": x}) for x in xnames]
        self._start_jobs(incident, jobs, by)
        return self.queue.incident(incident.id) or incident

    def _xnames(self, xnames: Sequence[str]) -> list[str]:
        found = []
        for raw in xnames:
            try:
                found.append(parse_xname(raw).text)
            except XnameError as error:
                raise IncidentError(f"`{raw}` is not an xname: {error}") from None
        return list(dict.fromkeys(found))

    def _start_jobs(
        self, incident: Incident, jobs: Sequence[tuple[str, str, dict[str, str]]], by: Actor
    ) -> list[int]:
        """Queue jobs whose reports go to the incident's channel, and link them to it; the
        refusals of those the asker may not run, said in the channel."""
        configs = self.configs()
        started: list[int] = []
        refusals: list[str] = []
        for job_type, namespace_name, args in jobs:
            namespace = configs.namespaces.get(namespace_name)
            if namespace is None or job_type not in namespace.spec.jobs:
                log.warning("incident job not configured", namespace=namespace_name, job=job_type)
                continue
            if namespace_name != NAMESPACE and self.job_refusal is not None:
                # A linked `hw check` is the asker's job: their namespace rights apply.
                refused = self.job_refusal(namespace_name, by.id, f"{namespace_name} {job_type}")
                if refused:
                    refusals.append(refused)
                    continue
            request = build_request(
                namespace, job_type, source=Source.SLACK, args=args, channel=incident.channel_id,
                user=by.id, user_name=by.name,
            )  # fmt: skip
            started.append(self.queue.enqueue(request).job.id)
        if started:
            self._change(
                incident.id,
                lambda inc: (
                    {"jobs": [*inc.jobs, *[j for j in started if j not in inc.jobs]]},
                    [],
                    [],
                ),
            )
        if refusals:
            text = "Not started: " + " ".join(dict.fromkeys(refusals))
            self._change(incident.id, lambda _: ({}, [], [self._say(text)]), version_check=False)
        return started

    def open_from_job(self, value: str, *, by: Actor) -> Incident:
        """The "Open an incident" button of a failed job's report or a failing hw check:
        an incident about that job (linked, so its result is in the timeline) and its nodes."""
        raw_id, _, raw_xnames = value.partition(":")
        job = self.queue.get(int(raw_id)) if raw_id.isdigit() else None
        if job is None:
            raise IncidentError(
                "That job is no longer in STAT bot's history; open the incident with `/incident`."
            )
        xnames = [x for x in raw_xnames.split(",") if x]
        if xnames:
            description = f"{job.full_type} {job.args.get('target', '')}: {len(xnames)} node(s) failing".replace(
                "  ", " "
            )
        else:
            description = f"job #{job.id} {job.full_type} {job.status}"
        incident = self.open(
            description,
            by=by,
            xnames=xnames,
            first_message=f"Opened from the report of job #{job.id} ({job.full_type}).",
        )
        self._change(
            incident.id,
            lambda inc: None if job.id in inc.jobs else ({"jobs": [*inc.jobs, job.id]}, [], []),
        )
        return self.queue.incident(incident.id) or incident

    # changes ----------------------------------------------------------------------
    def _change(
        self,
        incident_id: int,
        decide: Callable[
            [Incident],
            tuple[
                dict[str, object],
                list[TimelineEntry],
                list[Callable[[Incident], list[OutboxMessage]]],
            ]
            | None,
        ],
        *,
        version_check: bool = True,
    ) -> Incident | None:
        """Read, decide, write; again when another change won in between. None: nothing to do."""
        for _ in range(ATTEMPTS):
            current = self.queue.incident(incident_id)
            if current is None:
                raise IncidentError(f"There is no incident {incident_id}.")
            decided = decide(current)
            if decided is None:
                return None
            changes, entries, builders = decided

            def outbox(new: Incident, builders=builders) -> list[OutboxMessage]:  # type: ignore[no-untyped-def]
                return [m for build in builders for m in build(new)]

            try:
                return self.queue.update_incident(
                    incident_id,
                    version=current.version if version_check else None,
                    changes=changes,
                    entries=entries,
                    outbox=outbox,
                )
            except IncidentConflictError:
                continue
        raise IncidentError("The incident kept changing under that request; try again.")

    def _refreshed(self, new: Incident) -> list[OutboxMessage]:
        """The control and digest messages edited to show `new`."""
        now = self.queue.now()
        found = messages.edit(
            messages.control_ref(new),
            messages.control_message(
                new, self.templates, self.settings.tz, self.settings.incident_video_link
            ),
            new.channel_id,
            pin=True,
        )
        if self.settings.incidents_digest_channel:
            found += messages.edit(
                messages.digest_ref(new),
                messages.digest_message(new, self.templates, self.settings.tz, now),
                self.settings.incidents_digest_channel,
            )
        return found

    def _say(self, text: str) -> Callable[[Incident], list[OutboxMessage]]:
        return lambda new: [
            messages.post(messages.update_message(new, self.templates, text), new.channel_id)
        ]

    def set_role(self, incident_id: int, role_key: str, user_id: str, *, by: Actor) -> str:
        role = self.templates.role(role_key)
        if role is None:
            keys = ", ".join(f"`{r.key}`" for r in self.templates.roles)
            raise IncidentError(f"There is no role `{role_key}`; the roles are {keys}.")
        refusal = self.refusal(by.id)
        if refusal:
            raise IncidentError(refusal)
        how = "claimed the role" if user_id == by.id else f"assigned by <@{by.id}>"
        text = f"<@{user_id}> is now the *{escape_text(role.name)}* ({how})."

        def decide(current: Incident):  # type: ignore[no-untyped-def]
            if current.roles.get(role.key) == user_id:
                return None
            roles = {**current.roles, role.key: user_id}
            entry = TimelineEntry(
                EntryKind.ROLE, f"{role.name}: <@{user_id}> ({how})", by.id, by.name,
                data={"role": role.key, "user": user_id, "previous": current.roles.get(role.key)},
            )  # fmt: skip
            dm = lambda new: [messages.post(messages.role_dm(new, self.templates, role), user_id)]  # noqa: E731
            return {"roles": roles}, [entry], [self._refreshed, self._say(text), dm]

        current = self.queue.incident(incident_id)
        if current is not None and current.channel_id and user_id != by.id:
            # A role holder belongs in the channel: invited before anything says they hold it.
            self.channels.invite(current.channel_id, [user_id])
        changed = self._change(incident_id, decide)
        if changed is None:
            return f"<@{user_id}> already is the {escape_text(role.name)}."
        log.info("incident role set", incident=incident_id, role=role.key, user=user_id, by=by.id)
        return text

    def set_status(self, incident_id: int, status: str, *, by: Actor) -> str:
        wanted = self.templates.status(status)
        if wanted is None:
            names = ", ".join(f"`{s}`" for s in self.templates.statuses)
            raise IncidentError(f"There is no status `{status}`; choose one of {names}.")
        refusal = self.refusal(by.id)
        if refusal:
            raise IncidentError(refusal)
        resolving = wanted == self.templates.resolved_status
        said: list[str] = []
        seen_open: list[bool] = []

        def decide(current: Incident):  # type: ignore[no-untyped-def]
            if current.status == wanted:
                return None
            if seen_open and seen_open[0] != current.is_open:
                # Someone resolved (or re-opened) it while this was decided: re-deciding
                # would turn a status change into a re-open nobody asked for.
                state = "open again" if current.is_open else "resolved"
                raise IncidentError(
                    f"Incident {current.id} was {state} by someone else just now; nothing was "
                    "changed. Look at its pinned message and choose again."
                )
            seen_open[:] = [current.is_open]
            if not resolving and not current.is_open and current.archived_at is not None:
                raise IncidentError(
                    f"Incident {current.id}'s channel is archived, so it cannot be re-opened; "
                    "open a new incident instead."
                )
            now = self.queue.now()
            changes: dict[str, object] = {"status": wanted}
            entries = [
                TimelineEntry(
                    EntryKind.STATUS, f"status: {current.status} → {wanted}", by.id, by.name,
                    at=now, data={"status": wanted, "previous": current.status},
                )
            ]  # fmt: skip
            builders = [self._refreshed]
            text = f"<@{by.id}> set the status to *{wanted}* (was {current.status})."
            if resolving and current.is_open:
                changes["resolved_at"] = now
                entries.append(
                    TimelineEntry(EntryKind.RESOLVED, "resolved", by.id, by.name, at=now)
                )
                found = durations(
                    current,
                    [*full_timeline(self.queue, current), *entries],
                    self.templates.identified_status,
                )
                after = self.settings.incident_archive_after
                archive = (
                    f"in {human(after)}" if after > 0 else "never (INCIDENT_ARCHIVE_AFTER is 0)"
                )
                text += " " + durations_text(found)
                builders.append(
                    lambda new: [
                        messages.post(
                            messages.resolved_message(
                                new, self.templates, durations_text(found), archive
                            ),
                            new.channel_id,
                        )
                    ]
                )
            elif not resolving and not current.is_open:
                changes["resolved_at"] = None
                entries.append(
                    TimelineEntry(EntryKind.REOPENED, "re-opened", by.id, by.name, at=now)
                )
                text = f"<@{by.id}> re-opened the incident: status *{wanted}*."
                builders.append(self._say(text))
            else:
                builders.append(self._say(text))
            said[:] = [text]
            return changes, entries, builders

        changed = self._change(incident_id, decide)
        if changed is None:
            return f"The incident already is {wanted}."
        log.info("incident status set", incident=incident_id, status=wanted, by=by.id)
        if resolving and changed.resolved_at is not None:
            jobs = [("postmortem", NAMESPACE, {"incident": str(incident_id)})]
            self._start_jobs(changed, jobs, by)
            if self.settings.incident_archive_after > 0:
                self._start_archive(changed, by)
        return said[0] if said else f"Status: {wanted}."

    def _start_archive(self, incident: Incident, by: Actor) -> None:
        namespace = self.configs().namespaces.get(NAMESPACE)
        if namespace is None or "archive" not in namespace.spec.jobs:
            return
        request = build_request(
            namespace, "archive", source=Source.SLACK, args={"incident": str(incident.id)},
            channel=self.settings.incidents_digest_channel or incident.channel_id, user=by.id,
            user_name=by.name, delay_seconds=self.settings.incident_archive_after,
        )  # fmt: skip
        self.queue.enqueue(request)

    def note(
        self,
        incident_id: int,
        text: str,
        *,
        by: Actor,
        kind: EntryKind = EntryKind.NOTE,
        data: dict[str, object] | None = None,
    ) -> Incident:
        text = text.strip()
        if not text:
            raise IncidentError(
                "A note needs text: `@stat-bot incident note restarted gpfs on io[1-4]`."
            )
        entry = TimelineEntry(kind, text[:MAX_NOTE], by.id, by.name, data=data or {})
        changed = self._change(incident_id, lambda _: ({}, [entry], []), version_check=False)
        assert changed is not None
        return changed

    def link(
        self,
        incident_id: int,
        *,
        xnames: Sequence[str] = (),
        tickets: Sequence[int] = (),
        by: Actor,
    ) -> str:
        refusal = self.refusal(by.id)
        if refusal:
            raise IncidentError(refusal)
        xnames = self._xnames(xnames)
        entries = [
            TimelineEntry(EntryKind.LINK, f"xname {x}", by.id, by.name, data={"xname": x})
            for x in xnames
        ]
        entries += [
            TimelineEntry(EntryKind.LINK, f"ticket #{t}", by.id, by.name, data={"ticket": t})
            for t in tickets
        ]

        def decide(current: Incident):  # type: ignore[no-untyped-def]
            new_x = [x for x in xnames if x not in current.xnames]
            new_t = [t for t in tickets if t not in current.tickets]
            if not new_x and not new_t:
                return None
            changes = {"xnames": [*current.xnames, *new_x], "tickets": [*current.tickets, *new_t]}
            return changes, entries, [self._refreshed]

        changed = self._change(incident_id, decide)
        if changed is None:
            return "Those are linked already."
        self._start_jobs(changed, [("check", "hw", {"target": x}) for x in xnames], by)
        linked = [f"`{x}`" for x in xnames] + [f"#{t}" for t in tickets]
        return (
            "Linked "
            + ", ".join(linked)
            + (" (an `hw check` of each is on its way)." if xnames else ".")
        )

    # reading ----------------------------------------------------------------------
    def find(self, channel_id: str | None, number: int | None = None) -> Incident:
        if number is not None:
            found = self.queue.incident(number)
            if found is None:
                raise IncidentError(f"There is no incident {number}.")
            return found
        found = self.queue.incident_by_channel(channel_id) if channel_id else None
        if found is None:
            raise IncidentError(
                "This is not an incident channel: say it in the incident's channel, or name it "
                "by number (`@stat-bot incident 7 status monitoring`)."
            )
        return found

    def timeline_text(self, incident: Incident) -> str:
        lines = [
            f"*Incident {incident.id}: {escape_text(incident.description)}* ({incident.status})"
        ]
        for entry in full_timeline(self.queue, incident):
            when = _clock(entry.at or 0.0, self.settings)
            who = f"<@{entry.user}>" if entry.user else "STAT bot"
            text = (
                entry.text
                if entry.kind in (EntryKind.ROLE, EntryKind.JOB)
                else escape_text(entry.text)
            )
            lines.append(f"`{when}` {who} ({entry.kind}): {text}")
        return "\n".join(lines)


def _clock(at: float, settings: Settings) -> str:
    return when(at, settings.tz)
