"""Alert rules at work: which of job_configs.py's `alert_rules` an alert meets, and the
job each asks for.

Rules are matched for alerts from every source (`alertmanager`, `pagerduty`, `slack`) in
the transaction that records the alert (oncall/intake.py, Queue.record_alerts), once per
firing: a reminder while it still fires, or the same delivery again, queues nothing.

A rule's values come from outside (a label is whatever the alerting side says), so each
arg is checked by a type before a job is built: the rule's `arg_types`, else the type of
the job's own command placeholder (`hw check [target:target]`). A value that does not fit
refuses the rule's job with the reason; it is never run (and shell-quoting would keep even
a refused-by-nothing value literal).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from stat_bot.jobs.alert_rules import meets
from stat_bot.jobs.config import AlertRuleSpec, JobConfigs, Namespace, alert_rule_label
from stat_bot.jobs.model import ArgsError, JobRequest, Source
from stat_bot.jobs.params import Param, ParamError, excerpt
from stat_bot.jobs.requests import build_request
from stat_bot.queue.alert_model import AlertChange, AlertChangeKind, AlertStatus

if TYPE_CHECKING:
    from stat_bot.hardware.inventory import Inventory


def alert_values(change: AlertChange) -> dict[str, str]:
    """The `{names}` a rule's args may use: the alert's labels, then its own fields."""
    alert = change.alert
    values = {str(k): str(v) for k, v in alert.labels.items()}
    values.update(
        alertname=alert.labels.get("alertname") or alert.title,
        title=alert.title,
        service=alert.service,
        severity=alert.severity,
        source=alert.source,
        status=str(alert.status),
        alert=str(alert.id),
        url=alert.url or "",
    )
    return values


def triggers(rule: AlertRuleSpec, change: AlertChange) -> bool:
    """Whether this change is one the rule acts on: the alert starting to fire (new, or
    again after it resolved) for a firing rule, its resolution for a resolved one."""
    if rule.status == "firing":
        return change.started_firing
    return change.kind is AlertChangeKind.RESOLVED and change.alert.status is AlertStatus.RESOLVED


def matches(rule: AlertRuleSpec, change: AlertChange) -> bool:
    """Whether the change triggers the rule and the alert meets every condition it sets."""
    if not triggers(rule, change):
        return False
    alert = change.alert
    if rule.source and alert.source not in rule.source:
        return False
    values = alert_values(change)
    for name, condition in (
        ("alertname", rule.alertname),
        ("title", rule.title),
        ("severity", rule.severity),
    ):
        if condition is not None and not meets(values[name], condition):
            return False
    return all(meets(alert.labels.get(name), cond) for name, cond in rule.labels.items())


class _Blank(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return ""


def job_params(namespace: Namespace, job_type: str) -> dict[str, Param]:
    """The typed placeholders of the namespace's commands that queue `job_type`, by name."""
    found: dict[str, Param] = {}
    for command in namespace.commands:
        if command.spec.job_type == job_type and command.spec.action == "schedule_job":
            for param in command.params:
                found.setdefault(param.name, param)
    return found


def rule_args(namespace: Namespace, rule: AlertRuleSpec, change: AlertChange) -> dict[str, str]:
    """The job's args, each filled from the alert and checked by its type; ParamError (naming
    the arg, the value and what was expected) when one does not fit."""
    values = _Blank(alert_values(change))
    typed = job_params(namespace, rule.job_type)
    args = {}
    for key, template in rule.args.items():
        value = template.format_map(values)
        if not value.strip():
            raise ParamError(f"[{key}] would be empty ({template!r} has no value in this alert)")
        type_name = rule.arg_types.get(key)
        param = Param(key, type_name) if type_name else typed.get(key)
        if param is not None:
            value = param.convert(value)
        args[key] = value
    return args


@dataclass(frozen=True, slots=True)
class RuleOutcome:
    """What one matched rule did for an alert: its request (and dedupe key), or why not."""

    label: str  # `hw alert rule #1 (NodeDown -> check)`
    key: str
    request: JobRequest | None = None
    refusal: str | None = None


def rule_outcomes(
    configs: JobConfigs,
    change: AlertChange,
    *,
    site_channel: str | None,
    thread_ts: str | None = None,
    inventory: Inventory | None = None,
) -> list[RuleOutcome]:
    """Every rule the change meets, in the file's order: a request to queue, or a refusal.

    The dedupe key is the alert, its firing (fire count) and status, and the rule's place:
    one firing queues each rule's job once, however often it is delivered or repeated.
    """
    outcomes = []
    alert = change.alert
    for namespace, index, rule in configs.alert_rules():
        if not matches(rule, change):
            continue
        label = f"{namespace.name} {alert_rule_label(index, rule)}"
        key = f"{alert.id}:{alert.fire_count}:{rule.status}:{namespace.name}:{index}"
        try:
            args = rule_args(namespace, rule, change)
            request = build_request(
                namespace,
                rule.job_type,
                source=Source.WEBHOOK,
                args=args,
                channel=rule.channel,
                site_channel=site_channel,
                thread_ts=thread_ts if not rule.channel else None,
                user=f"alert {alert.source} #{alert.id}",
                delay_seconds=rule.delay_seconds,
                inventory=inventory,
            )
        except (ParamError, ArgsError) as error:
            outcomes.append(RuleOutcome(label, key, refusal=excerpt(str(error), 300)))
            continue
        outcomes.append(RuleOutcome(label, key, request=request))
    return outcomes
