"""Loading and validating `job_configs.py`: what may run, and how it is asked for.

The file keeps ebmbot's format (a `raw_config` dict of namespaces with `jobs` and
`slack` commands) and adds optional keys. Every mistake is found at load time and
reported with where it is (namespace, job or command, key) and what would be valid,
so a typo never surfaces as a job that fails at three in the morning.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import re
import string
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from croniter import croniter
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictStr,
    ValidationError,
    field_validator,
)

from stat_bot.hardware.loop import LoopRule
from stat_bot.jobs import alert_rules, trac_rules
from stat_bot.jobs.model import ArgsError, check_args
from stat_bot.jobs.params import PLACEHOLDER, TYPES, Param, parse_placeholder
from stat_bot.jobs.webhooks import ACTIONS, DEFAULT_BRANCH, VALUES

ReportFormat = Literal["text", "blocks", "code", "file"]
Action = Literal["schedule_job", "cancel_job", "schedule_suppression", "cancel_suppression"]

# Words the bot answers itself; a namespace of that name could never be reached.
RESERVED_NAMESPACES = frozenset(
    {"help", "status", "jobs", "logs", "cancel", "remove", "confirm", "cancel-confirm"}
)
NAME = re.compile(r"^[a-z][a-z0-9_-]*$")
REPOSITORY = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
ALLOWED_USER = re.compile(r"^(?:[UW][A-Z0-9]{2,}|@[a-z0-9][a-z0-9._-]*)$")


def users_or_groups(values: list[str]) -> list[str]:
    """`allowed_users` and `confirm_by` entries: Slack user ids or user-group handles."""
    for value in values:
        if not ALLOWED_USER.match(value):
            raise ValueError(
                f"{value!r} is neither a Slack user id (such as U0123ABCD) nor a "
                "user-group handle (such as @hpc-admins)"
            )
    return values


class ConfigError(Exception):
    """job_configs.py is wrong; `problems` lists every mistake found, each on its own."""

    def __init__(self, problems: list[str], source: str = "job_configs.py") -> None:
        self.problems = problems
        self.source = source
        super().__init__("\n".join(f"{source}: {p}" for p in problems))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class JobSpec(_Strict):
    """One job type: the command it runs and how its outcome is reported."""

    run_args_template: str
    report_stdout: bool = False
    report_success: bool = True
    report_format: ReportFormat = "text"
    timeout: float | None = Field(None, gt=0)
    concurrency: int = Field(1, ge=1)
    coalesce: bool | Literal["type"] = True
    retries: int = Field(0, ge=0, le=100)
    report_channel: str | None = None
    # Guarded actions (README "Configuring jobs"): `confirm` is what the offer says will
    # happen, with the job's {arg} names ("Power {action} {target}"); a command for the job
    # is then answered with Confirm/Cancel buttons instead of being queued. `confirm_by`
    # names who besides the requester may confirm (user ids or @groups; default: the
    # namespace's allowed_users). `exclusive` names the arg whose target's xnames the job
    # locks: two exclusive jobs on overlapping xnames never run at once.
    confirm: str | None = None
    confirm_by: list[str] = Field(default_factory=list)
    exclusive: str | None = None

    @field_validator("confirm_by")
    @classmethod
    def _confirmers(cls, values: list[str]) -> list[str]:
        return users_or_groups(values)

    @field_validator("confirm")
    @classmethod
    def _confirm_text(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError(
                'give the text of the question, such as "Power {action} {target}", not an empty one'
            )
        return value

    @field_validator("coalesce", mode="before")
    @classmethod
    def _coalesce_mode(cls, value: Any) -> Any:
        """One message naming the three choices (pydantic would give one per type tried)."""
        if value is True or value is False or value == "type":
            return value
        raise ValueError(
            f"must be True (merge a request into a queued job of the same type with "
            f'the same arguments), "type" (merge any request of the type; the latest arguments '
            f"win) or False (every request is its own job), not {value!r}"
        )


class CommandSpec(_Strict):
    """One chat command, as in ebmbot's `slack` list."""

    command: str
    help: str = ""
    action: Action = "schedule_job"
    job_type: str
    delay_seconds: float = Field(0, ge=0)


class ScheduleSpec(_Strict):
    """A cron schedule that enqueues a job with fixed arguments into a channel."""

    cron: str
    job_type: str
    args: dict[str, str] = Field(default_factory=dict)
    channel: str | None = None
    name: str | None = None
    enabled: bool = True
    # Environment variables the job cannot do without (e.g. TRAC_URL): while one is unset
    # or empty the schedule does not fire at all, so a site without it gets no empty reports
    # and no history rows.
    requires: list[str] = Field(default_factory=list)

    @field_validator("requires")
    @classmethod
    def _variable_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise ValueError(f"{name!r} is not an environment variable name such as TRAC_URL")
        return value

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        if not croniter.is_valid(value):
            raise ValueError(
                f"{value!r} is not a cron expression; expected five fields such as '0 * * * *' "
                "(an optional sixth field gives seconds)"
            )
        return value


class WebhookSpec(_Strict):
    """A GitHub event that queues a job: the event, conditions on it, and the job it schedules.

    Conditions left out match anything. `branch` is the pushed branch for a push and
    the base (target) branch for a pull request; "default" means the repository's
    default branch; `branch` and `tag` may be glob patterns (`release/*`, `v*`).
    `args` fill the job's template fields, with `{sha}`-style event values inside.
    """

    event: Literal["push", "pull_request", "release"]
    action: str | None = None
    merged: bool | None = None
    branch: str | None = None
    tag: str | None = None
    repository: str | None = None
    job_type: str
    args: dict[str, str] = Field(default_factory=dict)
    delay_seconds: float = Field(0, ge=0)
    channel: str | None = None

    @field_validator("repository")
    @classmethod
    def _owner_and_name(cls, value: str | None) -> str | None:
        if value is not None and not REPOSITORY.match(value):
            raise ValueError(
                f"{value!r} is not a repository; write it as owner/name, such as 'hpe/stat'"
            )
        return value


class TracRuleSpec(_Strict):
    """A Trac ticket event that queues a job: the event, conditions on the ticket, the job.

    `when` tests the ticket's fields after the change: True means the field is not
    empty, False that it is, text is a glob pattern (case ignored, `x1000c0*`), a list
    any of its patterns. `changed` (for "changed" events) wants one of its fields
    altered, so a rule for closing does not fire again on a comment to a closed ticket.
    `args` fill the job's template fields with `{xname}`-style ticket values.
    """

    event: Literal["created", "changed", "deleted"]
    when: dict[str, StrictBool | StrictStr | list[StrictStr]] = Field(default_factory=dict)
    changed: list[str] = Field(default_factory=list)
    job_type: str
    args: dict[str, str] = Field(default_factory=dict)
    delay_seconds: float = Field(0, ge=0)
    channel: str | None = None

    @field_validator("when", mode="before")
    @classmethod
    def _conditions(cls, value: Any) -> Any:
        """One clear message for a condition of the wrong kind (not one per kind it is not)."""
        if not isinstance(value, dict):
            return value
        for name, condition in value.items():
            ok = isinstance(condition, bool | str) or (
                isinstance(condition, list) and all(isinstance(c, str) for c in condition)
            )
            if not ok:
                raise ValueError(
                    f"when.{name} must be True (not empty), False (empty), a pattern such as "
                    f"'x1000c0*' or a list of patterns, not {condition!r}"
                )
        return value


AlertCondition = StrictBool | StrictStr | list[StrictStr]


class AlertRuleSpec(_Strict):
    """An alert that queues a job (README "Alert rules"): conditions on it, and the job.

    A "firing" rule acts when an alert starts firing (new, or again after it resolved; not
    on reminders while it fires), a "resolved" rule when it resolves. `source` limits it
    to alertmanager, pagerduty or slack (one or a list). `alertname` (the alertname label,
    else the title), `title`, `severity` and each of `labels` take a value (case ignored),
    `re:<regex>` (found anywhere; anchor with ^ and $), True (present and not empty),
    False (absent) or a list of values. `args` fill the job's template fields with
    `{xname}`-style values: a label the rule names in `labels`, or one of the alert's own
    (alertname, title, service, severity, source, status, alert, url). Each arg is checked
    by `arg_types` (e.g. {"target": "xname"}) or else by the type of the job's command
    placeholder, so a hostile label value is refused, not run.
    """

    status: Literal["firing", "resolved"] = "firing"
    source: list[Literal["alertmanager", "pagerduty", "slack"]] = Field(default_factory=list)
    alertname: AlertCondition | None = None
    title: AlertCondition | None = None
    severity: AlertCondition | None = None
    labels: dict[str, AlertCondition] = Field(default_factory=dict)
    job_type: str
    args: dict[str, str] = Field(default_factory=dict)
    arg_types: dict[str, str] = Field(default_factory=dict)
    delay_seconds: float = Field(0, ge=0)
    channel: str | None = None

    @field_validator("source", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        value = [value] if isinstance(value, str) else value
        if isinstance(value, list):
            wrong = [v for v in value if v not in alert_rules.SOURCES]
            if wrong:
                raise ValueError(
                    f"{wrong[0]!r} is not an alert source; give one or more of "
                    f"{', '.join(alert_rules.SOURCES)}"
                )
        return value

    @field_validator("alertname", "title", "severity", mode="before")
    @classmethod
    def _condition(cls, value: Any) -> Any:
        _alert_condition(value)
        return value

    @field_validator("labels", mode="before")
    @classmethod
    def _label_conditions(cls, value: Any) -> Any:
        if isinstance(value, dict):
            for condition in value.values():
                _alert_condition(condition)
        return value


def _alert_condition(condition: Any) -> None:
    """One clear message for a condition of the wrong kind (not one per kind it is not)."""
    ok = (
        condition is None
        or isinstance(condition, bool | str)
        or (isinstance(condition, list) and all(isinstance(c, str) for c in condition))
    )
    if not ok:
        raise ValueError(
            "a condition is a value such as 'NodeDown', 're:^x1000' (a regex), True (present), "
            f"False (absent) or a list of values, not {condition!r}"
        )


HW_STATES = (
    "critical",
    "warning",
    "unreachable",
    "auth_refused",
    "timeout",
    "malformed",
    "unknown",
)


class HwRuleSpec(_Strict):
    """Closing the loop (README "Hardware rules"): what a hardware check does about a node.

    A check whose node is in one of the `when` states opens a Trac ticket for its xname
    (or comments on the open one) when `ticket`, and drains it in Slurm with the reason
    `STAT#<ticket>: <problem>` by the namespace's `drain_job`: after a confirmation
    ("confirm"), at once ("direct") or not ("no"). A later passing check comments on
    the ticket and offers to resume a node STAT drained (`resume`: "offer", "direct",
    "no"). `xnames` limits a rule to some nodes (glob patterns); the first rule that
    covers a node applies. `channel` is where offers go when the check has none.
    """

    when: list[str] = Field(default_factory=lambda: ["critical"])
    xnames: list[StrictStr] = Field(default_factory=lambda: ["*"])
    ticket: StrictBool = True
    ticket_type: StrictStr = "defect"
    ticket_priority: StrictStr = "critical"
    drain: Literal["no", "confirm", "direct"] = "confirm"
    resume: Literal["no", "offer", "direct"] = "offer"
    drain_job: str = "drain"
    resume_job: str = "resume"
    channel: str | None = None

    @field_validator("when", "xnames", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("when")
    @classmethod
    def _states(cls, values: list[str]) -> list[str]:
        wrong = [v for v in values if v not in HW_STATES]
        if wrong or not values:
            raise ValueError(
                f"{wrong[0] if wrong else values!r} is not a check state; give one or more of "
                f'{", ".join(HW_STATES)} (e.g. "critical")'
            )
        return values

    @field_validator("xnames")
    @classmethod
    def _patterns(cls, values: list[str]) -> list[str]:
        if not values or any(not v.strip() for v in values):
            raise ValueError(
                "give xname patterns such as 'x1000c0*' (or '*' for every node), not an empty one"
            )
        return values

    @field_validator("drain", "resume", mode="before")
    @classmethod
    def _mode(cls, value: Any, info: Any) -> Any:
        choices = (
            ("confirm", "direct", "no") if info.field_name == "drain" else ("offer", "direct", "no")
        )
        if value in choices:
            return value
        raise ValueError(
            f"must be one of {', '.join(repr(c) for c in choices)} "
            f"({'offer and drain once confirmed' if info.field_name == 'drain' else 'offer to resume'}, "
            f"at once, or never), not {value!r}"
        )

    def rule(self) -> LoopRule:
        """The plain rule hardware/loop.py decides with."""
        return LoopRule(
            when=tuple(self.when),
            xnames=tuple(self.xnames),
            ticket=self.ticket,
            ticket_type=self.ticket_type,
            ticket_priority=self.ticket_priority,
            drain=self.drain,
            resume=self.resume,
            drain_job=self.drain_job,
            resume_job=self.resume_job,
            channel=self.channel,
        )


class NamespaceSpec(_Strict):
    """A category of jobs with its own workspace folder."""

    @field_validator("allowed_users")
    @classmethod
    def _user_or_group(cls, values: list[str]) -> list[str]:
        return users_or_groups(values)

    description: str = ""
    restricted: bool = False
    # Slack user ids (U0123ABCD) or user-group handles (@hpc-admins); empty: every member.
    allowed_users: list[str] = Field(default_factory=list)
    fabfile: str | None = None
    default_channel: str | None = None
    jobs: dict[str, JobSpec] = Field(default_factory=dict)
    slack: list[CommandSpec] = Field(default_factory=list)
    schedules: list[ScheduleSpec] = Field(default_factory=list)
    webhooks: list[WebhookSpec] = Field(default_factory=list)
    trac_rules: list[TracRuleSpec] = Field(default_factory=list)
    hw_rules: list[HwRuleSpec] = Field(default_factory=list)
    alert_rules: list[AlertRuleSpec] = Field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Command:
    """A validated chat command: its words, split into literals and placeholders."""

    namespace: str
    spec: CommandSpec
    tokens: tuple[str | Param, ...]

    @property
    def params(self) -> tuple[Param, ...]:
        return tuple(t for t in self.tokens if isinstance(t, Param))

    @property
    def literals(self) -> tuple[str, ...]:
        return tuple(t for t in self.tokens if isinstance(t, str))

    @property
    def text(self) -> str:
        return self.spec.command

    @property
    def usage(self) -> str:
        return f"{self.namespace} {self.spec.command}"


def missing_variables(names: list[str], env: Mapping[str, str]) -> list[str]:
    """Which of a schedule's `requires` are unset or empty in the jobs' environment."""
    return [name for name in names if not env.get(name, "").strip()]


@dataclass(frozen=True, slots=True)
class Schedule:
    """A validated schedule with its stable key (used by the queue to fire it once per due time)."""

    key: str
    namespace: str
    spec: ScheduleSpec

    @property
    def job_type(self) -> str:
        return self.spec.job_type


@dataclass(frozen=True)
class Namespace:
    name: str
    spec: NamespaceSpec
    commands: tuple[Command, ...]
    schedules: tuple[Schedule, ...]

    @property
    def jobs(self) -> Mapping[str, JobSpec]:
        return self.spec.jobs


@dataclass(frozen=True)
class JobConfigs:
    """Everything job_configs.py allows, validated and ready to match commands against."""

    namespaces: dict[str, Namespace] = field(default_factory=dict)
    source: str = "job_configs.py"

    def job(self, namespace: str, job_type: str) -> JobSpec:
        return self.namespaces[namespace].spec.jobs[job_type]

    def has_job(self, namespace: str, job_type: str) -> bool:
        ns = self.namespaces.get(namespace)
        return ns is not None and job_type in ns.spec.jobs

    def schedules(self) -> Iterator[Schedule]:
        for ns in self.namespaces.values():
            yield from ns.schedules

    def waiting_schedules(self, env: Mapping[str, str]) -> dict[str, list[str]]:
        """Schedules that do not fire for want of variables they `require`: key -> those."""
        return {
            s.key: missing
            for s in self.schedules()
            if (missing := missing_variables(s.spec.requires, env))
        }

    def commands(self) -> Iterator[Command]:
        for ns in self.namespaces.values():
            yield from ns.commands

    def hw_rules(self, namespace: str) -> list[LoopRule]:
        """The namespace's `hw_rules` as the plain rules hardware/loop.py decides with."""
        ns = self.namespaces.get(namespace)
        return [rule.rule() for rule in ns.spec.hw_rules] if ns else []

    def trac_rules(self) -> Iterator[tuple[Namespace, TracRuleSpec]]:
        """Every namespace's trac rules, in the file's order: each ticket event meets them all."""
        for ns in self.namespaces.values():
            for rule in ns.spec.trac_rules:
                yield ns, rule

    def alert_rules(self) -> Iterator[tuple[Namespace, int, AlertRuleSpec]]:
        """Every namespace's alert rules with their place, in the file's order."""
        for ns in self.namespaces.values():
            for index, rule in enumerate(ns.spec.alert_rules):
                yield ns, index, rule

    def webhook_projects(self) -> list[str]:
        """Namespaces with webhook rules: the `<project>` of `/github/<project>`."""
        return [name for name, ns in self.namespaces.items() if ns.spec.webhooks]


def template_fields(template: str) -> list[str]:
    """The `{names}` a run_args_template uses, in order; ValueError if the braces are malformed."""
    names = []
    for _, name, spec, conversion in string.Formatter().parse(template):
        if name is None:
            continue
        if not name.isidentifier() or spec or conversion:
            raise ValueError(
                f"placeholder {{{name}{'!' + conversion if conversion else ''}"
                f"{':' + spec if spec else ''}}} must be a plain name such as {{name}}"
            )
        names.append(name)
    return names


def quoted_fields(template: str) -> list[str]:
    """The `{names}` that sit inside shell quotes, where a shell-quoted value would keep its quotes.

    `echo "Hello {name}"` would print `Hello 'Ada Lovelace'`; the value must stand unquoted.
    """
    found = []
    quote: str | None = None
    escaped = False
    for literal, name, _, _ in string.Formatter().parse(template):
        for char in literal:
            if escaped:
                escaped = False
            elif quote == "'":
                quote = None if char == "'" else quote
            elif char == "\\":
                escaped = True
            elif quote == '"':
                quote = None if char == '"' else quote
            elif char in "'\"":
                quote = char
        escaped = False
        if name is not None and quote is not None:
            found.append(name)
    return found


def render_template(template: str, args: Mapping[str, str]) -> str:
    """The bash command for a job: each argument shell-quoted, so it arrives as literal text."""
    import shlex

    return template.format(**{key: shlex.quote(str(value)) for key, value in args.items()})


def parse_command(text: str) -> tuple[str | Param, ...]:
    """Split a command's text into literal words and placeholders; ValueError if malformed."""
    tokens: list[str | Param] = []
    for word in text.split():
        match = PLACEHOLDER.fullmatch(word)
        if match:
            tokens.append(parse_placeholder(match))
        elif "[" in word or "]" in word:
            raise ValueError(
                f"{word!r} is not a placeholder; write [name], [name:int], [name:a|b], "
                "[name=default] or [name...] as a word of its own"
            )
        else:
            tokens.append(word.lower())
    if not tokens or not isinstance(tokens[0], str):
        raise ValueError("a command must start with a word, such as 'say hello [name]'")
    params = [t for t in tokens if isinstance(t, Param)]
    names = [p.name for p in params]
    for dup in sorted({n for n in names if names.count(n) > 1}):
        raise ValueError(f"placeholder [{dup}] appears more than once")
    for i, param in enumerate(params):
        later = params[i + 1 :]
        if param.rest and tokens[-1] is not param:
            raise ValueError(f"[{param.name}...] takes the rest of the line, so it must come last")
        if param.optional and any(not p.optional for p in later):
            raise ValueError(
                f"[{param.name}={param.default}] has a default, so the placeholders after it need one too"
            )
    last = tokens[-1]
    if isinstance(last, Param) and last.type_name == "str" and not last.choices:
        # ebmbot's rule: it matches each [param] with (.+?) and anchors the end, so the last
        # placeholder takes the rest of the line (`board [org] [number] [statuses]` with
        # `a 1 todo doing` gives statuses "todo doing"). Configs written for it keep working.
        # Typed and choice placeholders are STAT bot's own and stay one word.
        tokens[-1] = dataclasses.replace(last, rest=True)
    return tuple(tokens)


def _suggest(word: str, options: list[str]) -> str:
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def webhook_label(index: int, rule: Any) -> str:
    """`webhook #2 (push -> build)`: rules have no names, so their place and what they do."""
    label = f"webhook #{index + 1}"
    if isinstance(rule, Mapping) and isinstance(rule.get("event"), str):
        label += f" ({rule['event']} -> {rule.get('job_type', '?')})"
    elif isinstance(rule, WebhookSpec):
        label += f" ({rule.event} -> {rule.job_type})"
    return label


def trac_rule_label(index: int, rule: Any) -> str:
    """`trac rule #1 (created -> check)`, as webhook rules are named."""
    label = f"trac rule #{index + 1}"
    if isinstance(rule, Mapping) and isinstance(rule.get("event"), str):
        label += f" ({rule['event']} -> {rule.get('job_type', '?')})"
    elif isinstance(rule, TracRuleSpec):
        label += f" ({rule.event} -> {rule.job_type})"
    return label


def alert_rule_label(index: int, rule: Any) -> str:
    """`alert rule #1 (NodeDown -> check)`, as the other rules are named."""
    label = f"alert rule #{index + 1}"
    if isinstance(rule, Mapping):
        name, job = rule.get("alertname") or rule.get("title"), rule.get("job_type", "?")
    elif isinstance(rule, AlertRuleSpec):
        name, job = rule.alertname or rule.title, rule.job_type
    else:
        return label
    what = name if isinstance(name, str) else "|".join(name) if isinstance(name, list) else "any"
    return f"{label} ({str(what)[:40]} -> {job})"


def hw_rule_label(index: int, rule: Any) -> str:
    """`hw rule #1 (critical -> drain confirm)`: rules have no names, so their place and effect."""
    label = f"hw rule #{index + 1}"
    if isinstance(rule, HwRuleSpec):
        label += f" ({'|'.join(rule.when)} -> ticket {'on' if rule.ticket else 'off'}, drain {rule.drain}, resume {rule.resume})"
    return label


def _location(raw: Mapping[str, Any], loc: tuple[Any, ...]) -> tuple[str, tuple[Any, ...]]:
    """Describe where a pydantic error points, in job_configs.py's own words."""
    parts = [f"namespace {loc[0]!r}"]
    rest = loc[1:]
    if len(rest) >= 2 and rest[0] == "jobs":
        parts.append(f"job {rest[1]!r}")
        rest = rest[2:]
    elif len(rest) >= 2 and rest[0] == "webhooks" and isinstance(rest[1], int):
        try:
            item = raw[loc[0]]["webhooks"][rest[1]]
        except (KeyError, IndexError, TypeError):
            item = None
        parts.append(webhook_label(rest[1], item))
        rest = rest[2:]
    elif len(rest) >= 2 and rest[0] == "trac_rules" and isinstance(rest[1], int):
        try:
            item = raw[loc[0]]["trac_rules"][rest[1]]
        except (KeyError, IndexError, TypeError):
            item = None
        parts.append(trac_rule_label(rest[1], item))
        rest = rest[2:]
    elif len(rest) >= 2 and rest[0] == "alert_rules" and isinstance(rest[1], int):
        try:
            item = raw[loc[0]]["alert_rules"][rest[1]]
        except (KeyError, IndexError, TypeError):
            item = None
        parts.append(alert_rule_label(rest[1], item))
        rest = rest[2:]
    elif len(rest) >= 2 and rest[0] == "hw_rules" and isinstance(rest[1], int):
        parts.append(hw_rule_label(rest[1], None))
        rest = rest[2:]
    elif len(rest) >= 2 and rest[0] in ("slack", "schedules") and isinstance(rest[1], int):
        try:
            item = raw[loc[0]][rest[0]][rest[1]]
            label = (
                item.get("command") if rest[0] == "slack" else item.get("name") or item.get("cron")
            )
        except (KeyError, IndexError, TypeError, AttributeError):
            label = None
        kind = "command" if rest[0] == "slack" else "schedule"
        parts.append(f"{kind} {label!r}" if label else f"{kind} #{rest[1] + 1}")
        rest = rest[2:]
    return ", ".join(parts), rest


_KEYS = {
    "namespace": list(NamespaceSpec.model_fields),
    "job": list(JobSpec.model_fields),
    "command": list(CommandSpec.model_fields),
    "schedule": list(ScheduleSpec.model_fields),
    "webhook": list(WebhookSpec.model_fields),
    "trac": list(TracRuleSpec.model_fields),  # "trac rule #1": its first word is the kind
    "hw": list(HwRuleSpec.model_fields),  # "hw rule #1"
    "alert": list(AlertRuleSpec.model_fields),  # "alert rule #1"
}


def _describe(raw: Mapping[str, Any], error: ValidationError, namespace: str) -> list[str]:
    problems = []
    for item in error.errors():
        loc = (namespace, *item["loc"])
        where, rest = _location(raw, loc)
        kind = where.rsplit(", ", 1)[-1].split(" ", 1)[0]
        message = re.sub(r" or instance of \w+", "", item["msg"].removeprefix("Value error, "))
        if item["type"] == "extra_forbidden":
            key = str(rest[-1])
            valid = _KEYS.get(kind, [])
            problems.append(
                f"{where}: unknown key {key!r}{_suggest(key, valid)}; valid keys: {', '.join(valid)}"
            )
        elif item["type"] == "missing":
            problems.append(f"{where}: missing required key {str(rest[-1])!r}")
        else:
            key = ".".join(str(p) for p in rest)
            got = item.get("input")
            repeats = item["type"] == "value_error" and repr(got) in message
            got_text = f" (got {got!r})" if not isinstance(got, dict | list) and not repeats else ""
            if not key:  # the namespace, job, command or schedule itself is the wrong shape
                got_text = f" (got {type(got).__name__})"
            prefix = f"key {key!r}: " if key else ""
            problems.append(f"{where}: {prefix}{message}{got_text}")
    return problems


def _check_namespace(
    name: str,
    spec: NamespaceSpec,
    broken: frozenset[str] | set[str] = frozenset(),
    webhook_places: list[int] | None = None,
    trac_places: list[int] | None = None,
) -> tuple[list[str], Namespace]:
    problems: list[str] = []
    where = f"namespace {name!r}"
    fields: dict[str, list[str]] = {}
    for job_type, job in spec.jobs.items():
        if not NAME.match(job_type):
            problems.append(
                f"{where}: job name {job_type!r} must be lower-case letters, digits, _ or -"
            )
        try:
            fields[job_type] = template_fields(job.run_args_template)
        except ValueError as error:
            problems.append(f"{where}, job {job_type!r}: key 'run_args_template': {error}")
            continue
        for quoted in quoted_fields(job.run_args_template):
            problems.append(
                f"{where}, job {job_type!r}: key 'run_args_template': remove the quotes around "
                f"{{{quoted}}}; values are shell-quoted for you"
            )
        problems.extend(_check_guard(f"{where}, job {job_type!r}", job, fields[job_type]))
    commands: list[Command] = []
    shapes: dict[tuple[str, ...], str] = {}
    for cmd in spec.slack:
        cwhere = f"{where}, command {cmd.command!r}"
        try:
            tokens = parse_command(cmd.command)
        except ValueError as error:
            problems.append(f"{cwhere}: key 'command': {error}")
            continue
        if cmd.job_type in broken:
            continue
        if cmd.job_type not in spec.jobs:
            problems.append(
                f"{cwhere}: key 'job_type': unknown job {cmd.job_type!r}{_suggest(cmd.job_type, list(spec.jobs))}; "
                f"jobs in this namespace: {', '.join(spec.jobs) or '(none)'}"
            )
            continue
        command = Command(name, cmd, tokens)
        names = {p.name for p in command.params}
        exclusive = spec.jobs[cmd.job_type].exclusive
        if cmd.action == "schedule_job" and exclusive and exclusive in names:
            param = next(p for p in command.params if p.name == exclusive)
            if param.type_name not in ("target", "xname") or param.choices:
                problems.append(
                    f"{cwhere}: job {cmd.job_type!r} locks the xnames of [{exclusive}] "
                    f"(its 'exclusive'), so write the placeholder as [{exclusive}:target]"
                )
        if cmd.action == "schedule_job" and cmd.job_type in fields:
            wanted = set(fields[cmd.job_type])
            if names != wanted:
                missing = sorted(wanted - names)
                extra = sorted(names - wanted)
                detail = []
                if missing:
                    detail.append(f"the template needs {', '.join('[' + m + ']' for m in missing)}")
                if extra:
                    detail.append(f"the template has no {', '.join('{' + e + '}' for e in extra)}")
                problems.append(
                    f"{cwhere}: placeholders do not match job {cmd.job_type!r}'s run_args_template "
                    f"{spec.jobs[cmd.job_type].run_args_template!r}: {'; '.join(detail)}"
                )
        elif cmd.action == "schedule_suppression" and names != {"start_at", "end_at"}:
            problems.append(
                f"{cwhere}: a schedule_suppression command takes exactly [start_at] and [end_at] "
                "(times as HH:MM)"
            )
        elif cmd.action in ("cancel_job", "cancel_suppression") and names:
            problems.append(f"{cwhere}: a {cmd.action} command takes no placeholders")
        shape = tuple(t if isinstance(t, str) else "[]" for t in tokens)
        if shape in shapes:
            problems.append(
                f"{cwhere}: same words as command {shapes[shape]!r}; one of them can never match"
            )
        shapes[shape] = cmd.command
        commands.append(command)
    schedules: list[Schedule] = []
    for index, sched in enumerate(spec.schedules):
        swhere = f"{where}, schedule {sched.name or sched.cron!r}"
        if sched.job_type in broken:
            continue
        if sched.job_type not in spec.jobs:
            problems.append(
                f"{swhere}: key 'job_type': unknown job {sched.job_type!r}{_suggest(sched.job_type, list(spec.jobs))}; "
                f"jobs in this namespace: {', '.join(spec.jobs) or '(none)'}"
            )
            continue
        if spec.jobs[sched.job_type].confirm:
            problems.append(_unguarded(swhere, sched.job_type, "a schedule"))
        wanted = set(fields.get(sched.job_type, []))
        if set(sched.args) != wanted:
            problems.append(
                f"{swhere}: key 'args' must give exactly {sorted(wanted)} for job {sched.job_type!r}; "
                f"got {sorted(sched.args)}"
            )
        try:
            check_args(sched.args)  # as every queued job's are: refused here, not when it fires
        except ArgsError as error:
            problems.append(f"{swhere}: key 'args': {error}")
        key = f"{name}.{sched.name or f'{sched.job_type}.{index}'}"
        schedules.append(Schedule(key, name, sched))
    keys = [s.key for s in schedules]
    for dup in sorted({k for k in keys if keys.count(k) > 1}):
        problems.append(f"{where}: two schedules share the key {dup!r}; give them distinct 'name's")
    commands.sort(key=lambda c: -len(c.literals))
    places = webhook_places or list(range(len(spec.webhooks)))
    for index, rule in zip(places, spec.webhooks, strict=True):
        problems.extend(_check_webhook(where, index, rule, spec, fields, broken))
    places = trac_places or list(range(len(spec.trac_rules)))
    for index, trac_rule in zip(places, spec.trac_rules, strict=True):
        problems.extend(_check_trac_rule(where, index, trac_rule, spec, fields, broken))
    for index, hw_rule in enumerate(spec.hw_rules):
        problems.extend(_check_hw_rule(where, index, hw_rule, spec, fields, broken))
    for index, alert_rule in enumerate(spec.alert_rules):
        problems.extend(_check_alert_rule(where, index, alert_rule, spec, fields, broken, commands))
    return problems, Namespace(name, spec, tuple(commands), tuple(schedules))


def _check_guard(where: str, job: JobSpec, fields: list[str]) -> list[str]:
    """A job's `confirm` text may use only its own {args}; `exclusive` must name one of them."""
    problems = []
    if job.confirm is not None:
        try:
            names = template_fields(job.confirm)
        except ValueError as error:
            problems.append(f"{where}: key 'confirm': {error}")
            names = []
        for unknown in [n for n in names if n not in fields]:
            problems.append(
                f"{where}: key 'confirm': {{{unknown}}} is not one of the job's args"
                f"{_suggest(unknown, fields)}; it may use "
                f"{', '.join('{' + f + '}' for f in fields) or 'none (the job takes no args)'}"
            )
    if job.confirm_by and job.confirm is None:
        problems.append(
            f"{where}: key 'confirm_by' names who may confirm, but the job asks for no "
            'confirmation; add "confirm": "<what will happen>" or remove the key'
        )
    if job.exclusive is not None and job.exclusive not in fields:
        problems.append(
            f"{where}: key 'exclusive': {job.exclusive!r} is not one of the job's args"
            f"{_suggest(job.exclusive, fields)}; name the arg that holds the target, one of "
            f"{', '.join(fields) or 'none (the job takes no args)'}"
        )
    return problems


def _check_webhook(
    where: str,
    index: int,
    rule: WebhookSpec,
    spec: NamespaceSpec,
    fields: Mapping[str, list[str]],
    broken: frozenset[str] | set[str],
) -> list[str]:
    """What is wrong with one webhook rule: conditions its event cannot meet, job, args."""
    w = f"{where}, {webhook_label(index, rule)}"
    event = rule.event
    problems = []
    actions = ACTIONS[event]
    if rule.action is not None and not actions:
        problems.append(f"{w}: key 'action': a {event} has no action; remove the key")
    elif rule.action is not None and rule.action not in actions:
        hint = (
            '; a merged pull request is "action": "closed" with "merged": True'
            if event == "pull_request" and rule.action == "merged"
            else ""
        )
        problems.append(
            f"{w}: key 'action': {rule.action!r} is not a {event} action"
            f"{_suggest(rule.action, list(actions))}; valid actions: {', '.join(actions)}{hint}"
        )
    if rule.merged is not None and event != "pull_request":
        problems.append(f"{w}: key 'merged': only a pull_request is merged; remove the key")
    elif rule.merged is not None and rule.action != "closed":
        problems.append(
            f"{w}: key 'merged': a pull request is merged when it is closed, and a merged one "
            'is still merged when later edited or labelled; add "action": "closed"'
        )
    if rule.branch is not None and event == "release":
        problems.append(f"{w}: key 'branch': a release has no branch; match its 'tag' instead")
    if rule.tag is not None and event == "pull_request":
        problems.append(
            f"{w}: key 'tag': a pull request has no tag; match its base 'branch' instead"
        )
    if rule.branch is not None and rule.tag is not None and event == "push":
        problems.append(
            f"{w}: keys 'branch' and 'tag': a push is to a branch or to a tag, never both; "
            "write a rule for each"
        )
    for key, value, prefix, example in (
        ("branch", rule.branch, "refs/heads/", f"'main', {DEFAULT_BRANCH!r} or 'release/*'"),
        ("tag", rule.tag, "refs/tags/", "'v1.2.0' or 'v*'"),
    ):
        if value is not None and (not value.strip() or value.startswith("refs/")):
            if value.startswith(prefix) and value.removeprefix(prefix):
                example = repr(value.removeprefix(prefix))
            problems.append(
                f"{w}: key {key!r}: give the {key} name or a glob, such as {example}, not {value!r}"
            )
    values = list(VALUES[event])
    problems += _check_rule_job(
        w,
        rule.job_type,
        rule.args,
        spec,
        fields,
        broken,
        values,
        lambda unknown: (
            f"{{{unknown}}} is not a {event} value{_suggest(unknown, values)}; a {event} gives "
            f"{', '.join('{' + v + '}' for v in values)}"
        ),
    )
    return problems


def _unguarded(where: str, job_type: str, what: str) -> str:
    """A guarded job waits for a person's Confirm; a schedule or a webhook / Trac rule has
    nobody to give one, and queueing it directly would skip the guard (anyone who can file
    a ticket could power a node off)."""
    return (
        f"{where}: key 'job_type': job {job_type!r} asks for a confirmation ('confirm'), which "
        f"{what} cannot give; queue a job without 'confirm' (e.g. a check), or use hw_rules, "
        "whose drain and resume offers wait for a Confirm"
    )


def _check_rule_job(
    w: str,
    job_type: str,
    args: Mapping[str, str],
    spec: NamespaceSpec,
    fields: Mapping[str, list[str]],
    broken: frozenset[str] | set[str],
    values: list[str],
    not_a_value: Callable[[str], str],
) -> list[str]:
    """The job a rule (webhook or trac) queues, and its args: exactly the job's template
    fields, each filled only from `values` (`not_a_value` says why another is not one)."""
    if job_type in broken:
        return []
    if job_type not in spec.jobs:
        return [
            f"{w}: key 'job_type': unknown job {job_type!r}{_suggest(job_type, list(spec.jobs))}; "
            f"jobs in this namespace: {', '.join(spec.jobs) or '(none)'}"
        ]
    problems = []
    if spec.jobs[job_type].confirm:
        problems.append(_unguarded(w, job_type, "a rule"))
    wanted = set(fields.get(job_type, []))
    if set(args) != wanted:
        problems.append(
            f"{w}: key 'args' must give exactly {sorted(wanted)} for job {job_type!r} "
            f"(run_args_template {spec.jobs[job_type].run_args_template!r}); "
            f"got {sorted(args)}"
        )
    for key, value in args.items():
        try:
            names = template_fields(value)
        except ValueError as error:
            problems.append(f"{w}: key 'args.{key}': {error}")
            continue
        for unknown in [n for n in names if n not in values]:
            problems.append(f"{w}: key 'args.{key}': {not_a_value(unknown)}")
    return problems


def _check_trac_rule(
    where: str,
    index: int,
    rule: TracRuleSpec,
    spec: NamespaceSpec,
    fields: Mapping[str, list[str]],
    broken: frozenset[str] | set[str],
) -> list[str]:
    """What is wrong with one trac rule: field names, patterns, job, args."""
    w = f"{where}, {trac_rule_label(index, rule)}"
    problems = []
    bad = [n for n in [*rule.when, *rule.changed] if not trac_rules.FIELD_NAME.match(n)]
    for name in bad:
        problems.append(
            f"{w}: {name!r} is not a Trac field name; field names are lower-case letters, "
            f"digits and _, such as {', '.join(trac_rules.TICKET_FIELDS[:4])} or xname"
        )
    for name, condition in rule.when.items():
        if isinstance(condition, bool):
            continue
        patterns = [condition] if isinstance(condition, str) else condition
        if not patterns or any(not pattern.strip() for pattern in patterns):
            problems.append(
                f"{w}: key 'when.{name}': give a pattern such as 'x1000c0*', True (not empty) "
                "or False (empty), not an empty one"
            )
    if rule.changed and rule.event != "changed":
        problems.append(
            f"{w}: key 'changed': only a changed event alters fields; remove the key or "
            'use "event": "changed"'
        )
    values = [*trac_rules.VALUES, *(n for n in rule.when if n not in trac_rules.VALUES)]
    problems += _check_rule_job(
        w,
        rule.job_type,
        rule.args,
        spec,
        fields,
        broken,
        values,
        lambda unknown: (
            f"{{{unknown}}} is not a ticket value{_suggest(unknown, values)}; a rule may use "
            f"{', '.join('{' + v + '}' for v in trac_rules.VALUES)}, and a custom field "
            f'it names in "when" (such as "when": {{"{unknown}": True}})'
        ),
    )
    return problems


def _check_alert_rule(
    where: str,
    index: int,
    rule: AlertRuleSpec,
    spec: NamespaceSpec,
    fields: Mapping[str, list[str]],
    broken: frozenset[str] | set[str],
    commands: list[Command],
) -> list[str]:
    """What is wrong with one alert rule: patterns, label names, job, args and their types."""
    w = f"{where}, {alert_rule_label(index, rule)}"
    problems = []
    conditions: list[tuple[str, Any]] = [
        ("alertname", rule.alertname), ("title", rule.title), ("severity", rule.severity),
        *((f"labels.{name}", cond) for name, cond in rule.labels.items()),
    ]  # fmt: skip
    for key, condition in conditions:
        patterns = [condition] if isinstance(condition, str) else condition
        if isinstance(patterns, list):
            if not patterns:
                problems.append(f"{w}: key {key!r}: give at least one value, not an empty list")
            for pattern in patterns:
                error = alert_rules.pattern_error(pattern)
                if error:
                    problems.append(f"{w}: key {key!r}: {error}")
    for name in rule.labels:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,63}", name):
            problems.append(
                f"{w}: key 'labels': {name!r} is not a label name; label names are letters, "
                "digits and _, such as xname or severity"
            )
    if rule.channel is not None and not rule.channel.strip():
        problems.append(f"{w}: key 'channel': give a channel such as '#oncall', or remove the key")
    present = [n for n, c in rule.labels.items() if c is not False]
    values = [*alert_rules.VALUES, *(n for n in present if n not in alert_rules.VALUES)]
    problems += _check_rule_job(
        w,
        rule.job_type,
        rule.args,
        spec,
        fields,
        broken,
        values,
        lambda unknown: (
            f"{{{unknown}}} is not an alert value{_suggest(unknown, values)}; a rule may use "
            f"{', '.join('{' + v + '}' for v in alert_rules.VALUES)}, and a label it names "
            f'in "labels" (such as "labels": {{"{unknown}": True}})'
        ),
    )
    for key, type_name in rule.arg_types.items():
        if key not in rule.args:
            problems.append(
                f"{w}: key 'arg_types': {key!r} is not one of the rule's args "
                f"({', '.join(rule.args) or 'none'})"
            )
        if type_name not in TYPES:
            problems.append(
                f"{w}: key 'arg_types.{key}': unknown type {type_name!r}"
                f"{_suggest(type_name, list(TYPES))}; use one of {', '.join(TYPES)}"
            )
    typed = {
        p.name
        for c in commands
        if c.spec.job_type == rule.job_type and c.spec.action == "schedule_job"
        for p in c.params
    }
    for key, template in rule.args.items():
        if key in rule.arg_types or key in typed:
            continue
        try:
            names = template_fields(template)
        except ValueError:
            continue
        if names:  # a value from outside with no type to check it
            problems.append(
                f"{w}: key 'args.{key}': {template!r} comes from the alert, so give it a type "
                f'to be checked by, e.g. "arg_types": {{"{key}": "xname"}} (one of '
                f"{', '.join(TYPES)}), or add a command for job {rule.job_type!r} with a "
                f"typed [{key}:...] placeholder"
            )
    return problems


# The args each of a hw rule's jobs must take: the rule fills them.
HW_RULE_JOB_ARGS = {"drain_job": ("target", "reason"), "resume_job": ("target",)}


def _check_hw_rule(
    where: str,
    index: int,
    rule: HwRuleSpec,
    spec: NamespaceSpec,
    fields: Mapping[str, list[str]],
    broken: frozenset[str] | set[str],
) -> list[str]:
    """A hw rule's drain and resume jobs exist and take exactly the args the rule fills."""
    w = f"{where}, {hw_rule_label(index, rule)}"
    problems = []
    for key, mode in (("drain_job", rule.drain), ("resume_job", rule.resume)):
        job_type = getattr(rule, key)
        if mode == "no" or job_type in broken:
            continue
        wanted = HW_RULE_JOB_ARGS[key]
        if job_type not in spec.jobs:
            problems.append(
                f"{w}: key {key!r}: unknown job {job_type!r}{_suggest(job_type, list(spec.jobs))}; "
                f"add a job taking {', '.join('{' + a + '}' for a in wanted)} (such as "
                f"`python3 slurm_cmd.py {key.removesuffix('_job')} "
                f"{' '.join('{' + a + '}' for a in wanted)}`) or set "
                f"{key.removesuffix('_job')!r} to 'no'"
            )
            continue
        if job_type in fields and sorted(fields[job_type]) != sorted(wanted):
            problems.append(
                f"{w}: key {key!r}: job {job_type!r} must take exactly "
                f"{', '.join('{' + a + '}' for a in wanted)} (the rule fills them); its "
                f"run_args_template is {spec.jobs[job_type].run_args_template!r}"
            )
    if rule.channel is not None and not rule.channel.strip():
        problems.append(f"{w}: key 'channel': give a channel such as '#hw', or remove the key")
    return problems


def _salvage(
    body: Any,
    error: ValidationError,
    broken: set[str],
    webhook_places: list[int],
    trac_places: list[int] | None = None,
) -> NamespaceSpec | None:
    """The namespace without the items pydantic refused, so the cross-checks can still run.

    Reporting one mistake per run would make fixing a config a slow loop; the names
    of refused jobs go into `broken` so commands using them are not blamed twice.
    Webhook rules are named by their place, so `webhook_places` gets the original
    place of each rule kept, and `trac_places` that of each trac rule.
    """
    if not isinstance(body, dict):
        return None
    body = {
        k: (dict(v) if isinstance(v, dict) else list(v) if isinstance(v, list) else v)
        for k, v in body.items()
    }
    drop: dict[str, set[Any]] = {
        "slack": set(),
        "schedules": set(),
        "webhooks": set(),
        "trac_rules": set(),
        "hw_rules": set(),
        "alert_rules": set(),
    }
    for item in error.errors():
        loc = item["loc"]
        if len(loc) == 1 or (loc[0] == "jobs" and not isinstance(body.get("jobs"), dict)):
            if loc[0] == "jobs" and isinstance(body.get("jobs"), dict):
                broken.update(body["jobs"])
            body.pop(loc[0], None)
        elif loc[0] == "jobs" and isinstance(body.get("jobs"), dict):
            broken.add(str(loc[1]))
            body["jobs"].pop(loc[1], None)
        elif loc[0] in drop and isinstance(loc[1], int):
            drop[str(loc[0])].add(loc[1])
    for key, indexes in drop.items():
        if isinstance(body.get(key), list):
            if key == "webhooks":
                webhook_places[:] = [i for i in range(len(body[key])) if i not in indexes]
            if key == "trac_rules" and trac_places is not None:
                trac_places[:] = [i for i in range(len(body[key])) if i not in indexes]
            body[key] = [x for i, x in enumerate(body[key]) if i not in indexes]
    try:
        return NamespaceSpec.model_validate(body)
    except ValidationError:
        return None


def parse_config(raw: Any, source: str = "job_configs.py") -> JobConfigs:
    """Validate a raw_config dict; ConfigError lists every problem found."""
    if not isinstance(raw, dict):
        raise ConfigError(
            [f"raw_config must be a dict of namespaces, got {type(raw).__name__}"], source
        )
    problems: list[str] = []
    namespaces: dict[str, Namespace] = {}
    for name, body in raw.items():
        if not isinstance(name, str) or not NAME.match(name):
            problems.append(
                f"namespace {name!r}: names must be lower-case letters, digits, _ or - (it is a folder name)"
            )
            continue
        if name in RESERVED_NAMESPACES:
            problems.append(
                f"namespace {name!r}: the name is a built-in command "
                f"({', '.join(sorted(RESERVED_NAMESPACES))}); choose another"
            )
            continue
        broken: set[str] = set()
        webhook_places: list[int] = []
        trac_places: list[int] = []
        try:
            spec = NamespaceSpec.model_validate(body)
        except ValidationError as error:
            problems.extend(_describe(raw, error, name))
            salvaged = _salvage(body, error, broken, webhook_places, trac_places)
            if salvaged is None:
                continue
            spec = salvaged
        ns_problems, namespace = _check_namespace(
            name, spec, broken, webhook_places or None, trac_places or None
        )
        problems.extend(ns_problems)
        namespaces[name] = namespace
    if problems:
        raise ConfigError(problems, source)
    return JobConfigs(namespaces, source)


def load_config(path: Path) -> JobConfigs:
    """Import job_configs.py from a path and validate its raw_config."""
    source = path.name
    if not path.is_file():
        raise ConfigError(
            [f"no such file {str(path)!r}; set JOB_CONFIGS to the job configuration file"], source
        )
    module_name = f"_stat_bot_job_configs_{abs(hash(str(path)))}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ConfigError([f"{path} cannot be imported as Python"], source)
    module = importlib.util.module_from_spec(spec)
    try:
        # Compiled from the source each time, never from __pycache__: a cached .pyc is
        # checked by whole seconds and size, so an edit made within the second it was
        # loaded could otherwise be missed by a process reloading the file.
        code = compile(path.read_bytes(), str(path), "exec", dont_inherit=True)
        exec(code, module.__dict__)  # job_configs.py is the site's own code, as an import
    except SyntaxError as error:
        raise ConfigError([f"line {error.lineno}: syntax error: {error.msg}"], source) from None
    except Exception as error:
        raise ConfigError(
            [f"importing it raised {type(error).__name__}: {error}"], source
        ) from None
    finally:
        sys.modules.pop(module_name, None)
    if not hasattr(module, "raw_config"):
        raise ConfigError(["defines no raw_config dict (see README: Configuring jobs)"], source)
    return parse_config(module.raw_config, source)
