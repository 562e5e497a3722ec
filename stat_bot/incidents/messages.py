"""Incident messages: the pinned control message, the digest, updates, role DMs, the snapshot.

Built from the site's templates (incidents/templates.py) plus the parts that
depend on the configured roles and statuses (buttons, selects), and stored in the
outbox by incidents/service.py with the change that causes them. The control and
digest messages are posted once and then edited in place: each later version
names the first one's outbox item (`replaces_outbox`) and waits for it.
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from stat_bot.incidents.model import Incident
from stat_bot.incidents.postmortem import human
from stat_bot.incidents.templates import Role, Templates, escape_text
from stat_bot.queue.base import OutboxMessage
from stat_bot.report.messages import OPEN_INCIDENT_ACTION, Message, Report
from stat_bot.report.outbox import outgoing
from stat_bot.views import when

KIND = "incident"
CLAIM_ACTION = "incident_claim"  # + "-<role key>"; value: the incident id
ASSIGN_ACTION = "incident_assign"  # a users_select in the role's section (block_id names the role)
STATUS_ACTION = "incident_status"
JOIN_ACTION = "incident_join"  # the digest's button; value: the incident id
OPEN_ACTION = OPEN_INCIDENT_ACTION  # on a failed job's report, a failing hw check's
ROLE_BLOCK = "incident-role-"


def channel_link(incident: Incident) -> str:
    return f"<#{incident.channel_id}>" if incident.channel_id else f"#{incident.channel_name}"


def _when(at: float, tz: ZoneInfo) -> str:
    return when(at, tz, seconds=False, zone=True)


def _values(incident: Incident, **more: object) -> dict[str, object]:
    return {
        "incident_id": incident.id,
        "description": incident.description,
        "status": incident.status,
        "channel": channel_link(incident),
        **more,
    }


def roles_text(incident: Incident, templates: Templates) -> str:
    parts = []
    for role in templates.roles:
        holder = incident.roles.get(role.key)
        parts.append(f"{escape_text(role.name)}: " + (f"<@{holder}>" if holder else "_unclaimed_"))
    return " | ".join(parts)


def _role_blocks(incident: Incident, templates: Templates) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for role in templates.roles:
        holder = incident.roles.get(role.key)
        who = f"<@{holder}>" if holder else "_unclaimed_"
        blocks.append(
            {
                "type": "section",
                "block_id": f"{ROLE_BLOCK}{role.key}",
                "text": {"type": "mrkdwn", "text": f"*{escape_text(role.name)}*: {who}"},
                "accessory": {
                    "type": "users_select",
                    "action_id": ASSIGN_ACTION,
                    "placeholder": {"type": "plain_text", "text": "Assign"},
                },
            }
        )
    blocks.append(
        {
            "type": "actions",
            "block_id": "incident-claims",
            "elements": [
                {
                    "type": "button",
                    "action_id": f"{CLAIM_ACTION}-{role.key}",
                    "text": {"type": "plain_text", "text": f"Claim {role.name}"[:75]},
                    "value": str(incident.id),
                }
                for role in templates.roles
            ],
        }
    )
    options = [
        {"text": {"type": "plain_text", "text": status}, "value": status}
        for status in templates.statuses
    ]
    current = [o for o in options if o["value"] == incident.status]
    select: dict[str, Any] = {
        "type": "static_select",
        "action_id": STATUS_ACTION,
        "placeholder": {"type": "plain_text", "text": "Status"},
        "options": options,
    }
    if current:
        select["initial_option"] = current[0]
    blocks.append({"type": "actions", "block_id": "incident-status", "elements": [select]})
    return blocks


def control_message(
    incident: Incident, templates: Templates, tz: ZoneInfo, video_link: str | None
) -> Message:
    opened_by = f"<@{incident.opened_by}>" if incident.opened_by else "STAT bot"
    video = f"Call: <{video_link}>" if video_link else ""
    blocks = templates.render(
        "control",
        _values(
            incident, opened_by=opened_by, opened_at=_when(incident.opened_at, tz), video=video
        ),
        raw=frozenset({"channel", "opened_by", "video"}),
    )
    # Roles and status stay changeable after resolving: choosing another status re-opens.
    blocks += _role_blocks(incident, templates)
    text = f"Incident {incident.id}: {escape_text(incident.description)} ({incident.status})"
    return Message(text, blocks)


def digest_message(incident: Incident, templates: Templates, tz: ZoneInfo, now: float) -> Message:
    end = incident.resolved_at or now
    age = human(end - incident.opened_at) + (" in all" if incident.resolved_at else " so far")
    blocks = templates.render(
        "digest",
        _values(
            incident,
            opened_at=_when(incident.opened_at, tz),
            age=age,
            roles=roles_text(incident, templates),
        ),
        raw=frozenset({"channel", "roles"}),
    )
    if incident.postmortem:
        blocks.append(
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": f"Postmortem: {incident.postmortem}"}],
            }
        )
    if incident.is_open:
        blocks.append(
            {
                "type": "actions",
                "block_id": "incident-digest",
                "elements": [
                    {
                        "type": "button",
                        "action_id": JOIN_ACTION,
                        "text": {"type": "plain_text", "text": "Join the channel"},
                        "style": "primary",
                        "value": str(incident.id),
                    }
                ],
            }
        )
    return Message(
        f"Incident {incident.id}: {escape_text(incident.description)} ({incident.status})", blocks
    )


def update_message(incident: Incident, templates: Templates, text: str) -> Message:
    """A change said in the channel; `text` is already mrkdwn (its parts escaped)."""
    return Message(
        text,
        templates.render(
            "update", _values(incident, text=text), raw=frozenset({"channel", "text"})
        ),
    )


def role_dm(incident: Incident, templates: Templates, role: Role) -> Message:
    blocks = templates.render(
        "role_dm",
        _values(incident, role_name=role.name, role_description=role.description),
        raw=frozenset({"channel"}),
    )
    return Message(f"You are now the {role.name} of incident {incident.id}.", blocks)


def opened_message(incident: Incident, templates: Templates) -> Message:
    blocks = templates.render("opened", _values(incident), raw=frozenset({"channel"}))
    return Message(f"Incident {incident.id} is open: {channel_link(incident)}", blocks)


def snapshot_message(incident: Incident, templates: Templates, snapshot: str) -> Message:
    blocks = templates.render(
        "snapshot", _values(incident, snapshot=snapshot), raw=frozenset({"channel", "snapshot"})
    )
    return Message(f"Site status when incident {incident.id} opened", blocks)


def resolved_message(
    incident: Incident, templates: Templates, durations: str, archive: str
) -> Message:
    blocks = templates.render(
        "resolved",
        _values(incident, durations=durations, archive=archive),
        raw=frozenset({"channel"}),
    )
    return Message(f"Incident {incident.id} is resolved. {durations}", blocks)


def control_ref(incident: Incident) -> str:
    """What every version of an incident's pinned control message is stored under."""
    return f"incident:{incident.id}:control"


def digest_ref(incident: Incident) -> str:
    return f"incident:{incident.id}:digest"


def post(
    message: Message,
    channel: str | None,
    *,
    pin: bool = False,
    ref: str | None = None,
) -> OutboxMessage:
    """A new message for the outbox; with `ref`, the first version of one kept up to date."""
    meta: dict[str, Any] = {"edits": True} if ref else {}
    if pin:
        meta["pin"] = True
    return outgoing(Report([message], kind="info", channel=channel, meta=meta), KIND, ref=ref)


def edit(
    ref: str, message: Message, channel: str | None, *, pin: bool = False
) -> list[OutboxMessage]:
    """A new version of a message kept up to date: it edits the latest version delivered
    (report/outbox.py), or is posted (and pinned) if every earlier one is gone."""
    return [post(message, channel, pin=pin, ref=ref)]


def archive(channel: str) -> OutboxMessage:
    """Archiving a channel, carried by the outbox like a message (retried through outages)."""
    report = Report([], kind="info", channel=channel, meta={"archive": True})
    return outgoing(report, KIND)
