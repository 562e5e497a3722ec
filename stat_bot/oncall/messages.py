"""What the on-call channel reads when an alert fires (again) or resolves."""

from __future__ import annotations

from collections.abc import Mapping

from stat_bot.hardware.report import escape, link
from stat_bot.queue.alert_model import Alert, AlertChange, AlertChangeKind
from stat_bot.queue.base import OutboxMessage
from stat_bot.report.messages import Message, Report
from stat_bot.report.outbox import outgoing

KIND = "alert"
SHOWN_LABELS = 8
ACK_ACTION = "stat_alert_ack"  # the Acknowledge button (stat_bot/bot/alerts.py)


def alert_ref(change: AlertChange) -> str:
    """The firing's outbox ref: a later message (its runbook, its resolution) finds it."""
    return f"alert:{change.alert.id}:{change.alert.fire_count}"


def rule_lines(change: AlertChange, refusals: Mapping[int, list[str]] | None) -> list[str]:
    """What the alert rules did: the jobs queued (their reports follow in the channel)
    and the rules refused, with why."""
    lines = [f":gear: queued job #{job_id} (alert rule)" for job_id in change.jobs]
    lines += [f":no_entry: {escape(why)}" for why in (refusals or {}).get(change.alert.id, [])]
    return lines


def thread_messages(
    changes: list[AlertChange],
    channel: str,
    thread_ts: str,
    refusals: Mapping[int, list[str]] | None = None,
) -> list[OutboxMessage]:
    """The follow-up for an alert read from a paging tool's message in the on-call channel
    itself: a short reply in that message's thread (how many times it fired, what the
    rules queued), not a second top-level copy of what everyone just saw."""
    found = []
    for change in changes:
        alert = change.alert
        lines = []
        if change.kind in (AlertChangeKind.NEW, AlertChangeKind.REFIRED):
            times = (
                f"fired {alert.fire_count} times since <!date^{int(alert.first_fired_at)}"
                f"^{{date_short_pretty}} {{time}}|{alert.first_fired_at:.0f}>"
                if alert.fire_count > 1
                else "first time"
            )
            lines.append(f":eyes: Alert #{alert.id} recorded: {times}")
        elif change.kind is AlertChangeKind.RESOLVED and (change.jobs or refusals):
            lines.append(f":white_check_mark: Alert #{alert.id} resolved")
        extra = rule_lines(change, refusals)
        if not lines and not extra:
            continue
        text = "\n".join(lines + extra)
        blocks = None
        if change.kind is not AlertChangeKind.RESOLVED and alert.acknowledged_at is None:
            # Acknowledged here as from the webhooks' alert messages (the paging tool's own
            # message is not ours to put a button on).
            blocks = [
                {"type": "section", "text": {"type": "mrkdwn", "text": text}},
                ack_button(alert.id),
            ]
        report = Report([Message(text, blocks)], "info", channel, thread_ts)
        found.append(outgoing(report, KIND, ref=alert_ref(change)))
    return found


def alert_messages(
    changes: list[AlertChange],
    channel: str | None,
    refusals: Mapping[int, list[str]] | None = None,
) -> list[OutboxMessage]:
    """One message per alert that fired or resolved; repeats say nothing (unless a rule
    queued a job for them, which is said)."""
    if not channel:
        return []
    found = []
    for change in changes:
        alert = change.alert
        title = escape(alert.title)
        where = " · ".join(escape(x) for x in (alert.service, alert.severity) if x)
        if change.kind in (AlertChangeKind.NEW, AlertChangeKind.REFIRED):
            again = f" (fired {alert.fire_count} times)" if alert.fire_count > 1 else ""
            head = f":rotating_light: *{title}*{again}"
        elif change.kind is AlertChangeKind.RESOLVED:
            head = f":white_check_mark: Resolved: *{title}*"
        elif change.jobs or (refusals or {}).get(alert.id):
            head = f":gear: *{title}*"
        else:
            continue
        labels = ", ".join(
            f"{escape(k)}=`{escape(v)}`" for k, v in sorted(alert.labels.items())[:SHOWN_LABELS]
        )
        lines = [head, f"{escape(alert.source)}{' · ' + where if where else ''}"]
        if labels:
            lines.append(labels)
        if alert.url:
            lines.append(link(alert.url, "source"))
        lines += rule_lines(change, refusals)
        text = "\n".join(lines)
        blocks = None
        if change.kind is not AlertChangeKind.RESOLVED and alert.acknowledged_at is None:
            blocks = [
                {"type": "section", "text": {"type": "mrkdwn", "text": text}},
                ack_button(alert.id),
            ]
        report = Report([Message(text, blocks)], kind="info", channel=channel)
        found.append(outgoing(report, KIND, ref=alert_ref(change)))
    return found


def ack_button(alert_id: int) -> dict[str, object]:
    """The Acknowledge button under a firing: the first click wins (Queue.acknowledge_alert)."""
    return {
        "type": "actions",
        "block_id": f"stat_alert_{alert_id}",
        "elements": [
            {
                "type": "button",
                "action_id": ACK_ACTION,
                "text": {"type": "plain_text", "text": "Acknowledge"},
                "value": str(alert_id),
            }
        ],
    }


def acknowledged_text(alert: Alert, by: str) -> str:
    """`:eyes: Acknowledged by <@U123>: *NodeDown*` (by: a Slack mention we made, or a
    name from outside, which `acknowledged_message` escapes)."""
    return f":eyes: Acknowledged by {by}: *{escape(alert.title)}*"


def acknowledged_message(alert: Alert, by: str, channel: str | None) -> list[OutboxMessage]:
    """The channel's note of an acknowledgement made elsewhere (PagerDuty)."""
    if not channel:
        return []
    text = acknowledged_text(alert, escape(by))  # a PagerDuty user's name: outside text
    report = Report([Message(text)], kind="info", channel=channel)
    return [outgoing(report, KIND, ref=f"alert-ack:{alert.id}")]
