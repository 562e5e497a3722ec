"""Recording alerts with what they cause, whichever way they came in.

The webhooks (web/alerts.py) and the Slack listener (bot/slack_alerts.py) both call
`record`: the alerts, the jobs their `alert_rules` ask for (oncall/rules.py) and the
messages for the on-call channel are written in one transaction (Queue.record_alerts), so
a refused or repeated delivery leaves neither a job without its alert nor the reverse.
A rule whose job cannot be built (a label that is not an xname, say) is refused there and
then, and the refusal is said in the alert's message.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import structlog

from stat_bot.jobs.config import JobConfigs
from stat_bot.jobs.model import JobRequest
from stat_bot.oncall.rules import rule_outcomes
from stat_bot.oncall.runbook_match import answer_drafts, matches
from stat_bot.oncall.runbook_messages import runbook_replies
from stat_bot.queue.alert_model import AlertChange, AlertEvent
from stat_bot.queue.base import OutboxMessage, Queue

log = structlog.get_logger(__name__)

Messages = Callable[[list[AlertChange], Mapping[int, list[str]]], Sequence[OutboxMessage]]


@dataclass
class Recorded:
    """What recording did: the changes (None: a delivery seen before), the rules refused."""

    changes: list[AlertChange] | None
    refusals: dict[int, list[str]] = field(default_factory=dict)


def record(
    queue: Queue,
    configs: JobConfigs,
    events: list[AlertEvent],
    *,
    delivery: tuple[str, str] | None,
    messages: Messages,
    site_channel: str | None,
    thread_ts: str | None = None,
    runbook_threshold: float | None = None,
) -> Recorded:
    """Record `events`, queue their rules' jobs (reports to `site_channel`, in `thread_ts`
    when given) and store `messages(changes, refusals)`, all in one transaction.

    With a `runbook_threshold` and a `site_channel`, each firing's best runbook section
    (searched first: a read) is stored as its answer and posted in the thread of the
    alert's message (the one whose ref is `alert_ref(change)`), in the same transaction."""
    refusals: dict[int, list[str]] = {}
    found = (
        matches(queue, events, runbook_threshold)
        if runbook_threshold is not None and site_channel
        else {}
    )

    def jobs(change: AlertChange) -> list[tuple[str, JobRequest]]:
        wanted = []
        refusals.pop(change.alert.id, None)  # a retried transaction starts afresh
        for outcome in rule_outcomes(
            configs, change, site_channel=site_channel, thread_ts=thread_ts
        ):
            if outcome.request is not None:
                wanted.append((outcome.key, outcome.request))
            else:
                refusals.setdefault(change.alert.id, []).append(
                    f"{outcome.label} not run: {outcome.refusal}"
                )
                log.warning(
                    "alert rule refused",
                    alert=change.alert.id,
                    rule=outcome.label,
                    reason=outcome.refusal,
                )
        return wanted

    changes = queue.record_alerts(
        events,
        delivery=delivery,
        outbox=lambda changes: [
            *messages(changes, refusals),
            *runbook_replies(changes, found, site_channel),
        ],
        runbooks=(lambda changes: answer_drafts(changes, found)) if found else None,
        jobs=jobs,
    )
    return Recorded(changes, refusals)
