"""The `hw` namespace's tasks: the hardware work that reads or writes STAT bot's database.

`hw-show` previews a target with each node's latest known health; `hw-check` asks
the nodes' BMCs over Redfish (and, where SSH is set up, the nodes that are on) and
keeps each node's result as its latest health; `hw-sweep` does the same for a whole
scope with bounded fan-out, keeps the sweep, and reports only what changed since
the previous sweep of the same scope, wherever that one ran (the database is
shared). The rest of the namespace (inventory, firmware, event logs, power) needs
no database and is a workspace script (workspace/hw/hw.py).

Each task prints a `blocks` answer (stat_bot/hardware/report.py) and returns 0; a
setting or an inventory that cannot be used is a failure whose stderr says how to fix
it. A scheduled sweep with nothing new prints nothing, so its job (report_success off) is
silent; one a person asked for always answers.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from stat_bot.hardware import credentials, report
from stat_bot.hardware.health import NodeHealth, State
from stat_bot.hardware.inventory import InventoryError, Node
from stat_bot.hardware.sweep import compare
from stat_bot.hardware.targets import TargetError, check_target, select_from, unusable
from stat_bot.report.messages import open_incident_block
from stat_bot.tasks import TaskContext, TaskUsageError, task

if TYPE_CHECKING:
    from stat_bot.queue.base import NodeHealthRow
    from stat_bot.settings import Settings

log = structlog.get_logger(__name__)

SSH_CHECKS_FILE = Path("hw") / "ssh_checks.yaml"  # under WORKSPACE_DIR


class HwTaskError(Exception):
    """The site's set-up is broken (an inventory that does not load): printed to stderr, so
    the job fails and its report, with that text, goes to tech support too."""


class MistakeError(Exception):
    """The request cannot be done as asked (no inventory, a target outside it): the answer
    says why and how to fix it, and the job succeeds."""


def fail(error: HwTaskError | MistakeError) -> int:
    if isinstance(error, MistakeError):
        emit(report.mistake(str(error)))
        return 0
    print(f"stat-bot hw: {error}", file=sys.stderr)
    return 1


def emit(answer: dict[str, Any]) -> None:
    """Print a `blocks` answer as the job's stdout."""
    print(json.dumps(answer, ensure_ascii=False))


def target_of(args: Sequence[str], *, as_job: bool = True) -> str:
    """The target argument, normalised (`all` when none); MistakeError for a typo. An option
    the task does not have is a TaskUsageError (usage, exit 2) typed at a terminal, and a
    mistake answered in the asker's thread in a job (`hw check --now` in chat)."""
    if options := [a for a in args if a.startswith("-")]:
        text = f"no option {options[0]!r}: a target is an xname, a hostname or nids"
        raise MistakeError(text) if as_job else TaskUsageError(text)
    text = " ".join(a for a in args if a).strip() or "all"
    try:
        return check_target(text)
    except TargetError as error:
        raise MistakeError(str(error)) from None


def chosen(settings: Settings, target: str) -> list[Node]:
    try:
        return select_from(settings.hw_inventory, target)
    except TargetError as error:
        raise MistakeError(str(error)) from None
    except InventoryError as error:
        raise HwTaskError(unusable(settings.hw_inventory or "", error)) from None


def redfish_password(settings: Settings) -> str:
    """REDFISH_PASSWORD, else the first line of REDFISH_PASSWORD_FILE, else empty."""
    given = settings.redfish_password.get_secret_value() if settings.redfish_password else None
    try:
        return credentials.password(given, settings.redfish_password_file)
    except credentials.CredentialsError as error:
        raise HwTaskError(str(error)) from None


def redfish_config(settings: Settings) -> Any:
    from stat_bot.integrations.redfish import RedfishConfig

    try:
        verify = credentials.verify_tls(settings.redfish_verify_tls)
    except credentials.CredentialsError as error:
        raise HwTaskError(str(error)) from None
    return RedfishConfig(
        username=settings.redfish_username or "",
        password=redfish_password(settings),
        verify_tls=verify,
        timeout=settings.redfish_timeout,
    )


# -- SSH (optional) ---------------------------------------------------------------------


def ssh_checks_path(settings: Settings) -> Path:
    return settings.workspace_dir / SSH_CHECKS_FILE


def ssh_wanted(settings: Settings) -> bool:
    """SSH checks run when SSH is set up (SSH_USER or SSH_KEY_FILE) and a checks file exists."""
    return bool(settings.ssh_user or settings.ssh_key_file) and ssh_checks_path(settings).is_file()


def add_ssh_findings(settings: Settings, results: list[NodeHealth], nodes: list[Node]) -> str:
    """Run the SSH checks on nodes that are on and have a hostname; a note for the report."""
    hostname = {n.xname: n.hostname for n in nodes}
    on = {
        hostname[h.xname]: h
        for h in results
        if hostname.get(h.xname) and (h.power_state or "").lower() == "on"
    }
    if not on:
        return "SSH checks: no node is on"
    try:
        from stat_bot.hardware.ssh_checks import load_checks, run_ssh_checks
        from stat_bot.integrations.ssh import SshConfig, SshRunner
    except ImportError as error:  # an install without the SSH checks: Redfish alone
        return f"SSH checks not available ({error})"
    try:
        checks = load_checks(ssh_checks_path(settings))
        cfg = SshConfig(
            user=settings.ssh_user,
            key_file=settings.ssh_key_file,
            # The default port leaves room for an ssh_config's Port.
            port=None if settings.ssh_port == 22 else settings.ssh_port,
            known_hosts=settings.ssh_known_hosts,
            known_hosts_file=settings.ssh_known_hosts_file,
            timeout=settings.ssh_timeout,
            ssh_config_file=settings.ssh_config_file,
        )
        with SshRunner(cfg) as runner:
            outcomes = run_ssh_checks(list(on), checks, runner, fanout=settings.hw_fanout)
    except Exception as error:  # a broken checks file or key: say so, keep Redfish's results
        log.warning("ssh checks failed", error=str(error))
        return f"SSH checks did not run: {error}"
    for host, outcome in outcomes.items():
        health = on[host]
        if isinstance(outcome, list):
            health.add(outcome)
        else:  # the BMC says it is on, but its OS cannot be checked: a warning
            health.add([outcome.finding()])
    return f"SSH checks on {len(on)} node(s) that are on"


# -- checks -------------------------------------------------------------------------------


def check(settings: Settings, nodes: list[Node]) -> tuple[list[NodeHealth], list[str]]:
    """Redfish for every node, then SSH where set up; results in the nodes' order, and notes."""
    from stat_bot.integrations.redfish import check_nodes

    results = check_nodes(nodes, redfish_config(settings), fanout=settings.hw_fanout)
    hostname = {n.xname: n.hostname for n in nodes}
    for health in results:
        health.hostname = health.hostname or hostname.get(health.xname)
    notes = []
    if ssh_wanted(settings):
        notes.append(add_ssh_findings(settings, results, nodes))
    return results, notes


def rows(results: Sequence[NodeHealth], job_id: int | None) -> list[NodeHealthRow]:
    from stat_bot.queue.base import NodeHealthRow

    return [
        NodeHealthRow(h.xname, h.state.value, h.checked_at.timestamp(), h.to_dict(), job_id)
        for h in results
    ]


@dataclass
class Asked:
    """Where the job's answer goes and who asked: what closing-the-loop rules need."""

    channel: str | None = None
    thread_ts: str | None = None
    requested_by: str | None = None
    source: str | None = None  # None: run from a terminal, not as a job
    joined_by_a_person: bool = False  # someone's request was merged into this (scheduled) job

    @property
    def by_a_person(self) -> bool:
        """Someone typed it (chat, `stat-bot enqueue`, a terminal) rather than a schedule or
        rule, or asked for the same while it was queued and joined it: they wait for an answer."""
        return self.source in PERSON_SOURCES or self.joined_by_a_person


PERSON_SOURCES = (None, "slack", "cli")


def asked(ctx: TaskContext) -> Asked:
    if not ctx.job_id:
        return Asked()
    job = ctx.queue.get(ctx.job_id)
    if job is None:
        return Asked()
    joined = any(str(r.source) in PERSON_SOURCES for r in ctx.queue.requesters(ctx.job_id))
    return Asked(job.channel, job.thread_ts, job.user or job.user_name, str(job.source), joined)


def close_the_loop(
    ctx: TaskContext, results: list[NodeHealth], ticket: int | None, where: Asked
) -> list[str]:
    """Rules in the hw namespace (tickets, drain offers): lines to add to the answer."""
    try:
        from stat_bot.tasks.hw_loop import apply_rules  # type: ignore[import-not-found]
    except ImportError:
        return []
    try:
        return list(
            apply_rules(
                ctx,
                results,
                channel=where.channel,
                thread_ts=where.thread_ts,
                requested_by=where.requested_by,
                ticket=ticket,
            )
        )
    except Exception as error:  # the check's answer matters more than a rule's failure
        log.exception("hw rules failed")
        return [f"closing the loop failed: {error}"]


def split_ticket(args: Sequence[str]) -> tuple[list[str], int | None]:
    """`--ticket N` (a Trac rule's check of a ticket's xname) out of the arguments."""
    rest: list[str] = []
    ticket = None
    items = list(args)
    while items:
        item = items.pop(0)
        if item == "--ticket" or item.startswith("--ticket="):
            value = item.partition("=")[2] or (items.pop(0) if items else "")
            if not value.lstrip("#").isdigit():
                raise TaskUsageError(f"--ticket needs a ticket number, not {value!r}")
            ticket = int(value.lstrip("#"))
        else:
            rest.append(item)
    return rest, ticket


@task("hw-show", "hw-show [TARGET]", "What a target selects, with each node's latest health")
def hw_show(ctx: TaskContext, args: Sequence[str]) -> int:
    try:
        target = target_of(args, as_job=bool(ctx.job_id))
        nodes = chosen(ctx.settings, target)
    except (HwTaskError, MistakeError) as error:
        return fail(error)
    latest = {
        x: NodeHealth.from_dict(row.data)
        for x, row in ctx.queue.node_health([n.xname for n in nodes]).items()
    }
    emit(report.show_report(nodes, latest, target=target))
    return 0


@task("hw-check", "hw-check [TARGET] [--ticket N]", "Check nodes over Redfish (and SSH)")
def hw_check(ctx: TaskContext, args: Sequence[str]) -> int:
    rest, ticket = split_ticket(args)
    try:
        target = target_of(rest, as_job=bool(ctx.job_id))
        nodes = chosen(ctx.settings, target)
        results, notes = check(ctx.settings, nodes)
    except (HwTaskError, MistakeError) as error:
        return fail(error)
    ctx.queue.record_node_health(rows(results, ctx.job_id))
    notes += close_the_loop(ctx, results, ticket, asked(ctx))
    title = f"hw check {target}"
    answer = report.check_report(results, title=title, target=target, notes=notes)
    failing = [h.xname for h in results if h.state is not State.OK]
    if failing and ctx.job_id is not None:
        # A way from a failing check straight to an incident about those nodes.
        answer["blocks"].append(open_incident_block(f"{ctx.job_id}:{','.join(failing[:40])}"))
    emit(answer)
    return 0


@task("hw-sweep", "hw-sweep [TARGET]", "Sweep nodes; report what changed since the last sweep")
def hw_sweep(ctx: TaskContext, args: Sequence[str]) -> int:
    started = time.time()
    try:
        target = target_of(args, as_job=bool(ctx.job_id))
        nodes = chosen(ctx.settings, target)
        results, notes = check(ctx.settings, nodes)
    except (HwTaskError, MistakeError) as error:
        return fail(error)
    finished = time.time()
    # The scope names what was swept: `X1000C0` and `x1000c0` are one scope.
    scope = target.lower()
    previous = ctx.queue.last_sweep(scope)
    ctx.queue.record_sweep(scope, started, finished, rows(results, ctx.job_id), job_id=ctx.job_id)
    before = [NodeHealth.from_dict(d) for d in previous.results] if previous else None
    diff = compare(before, results)
    where = asked(ctx)
    loop_notes = close_the_loop(ctx, results, None, where)
    # Quiet when nothing changed, for a schedule or a rule; a person who asked gets an answer.
    if (
        diff.quiet
        and not loop_notes
        and not where.by_a_person
        and not ctx.settings.hw_sweep_report_unchanged
    ):
        log.info("sweep: nothing changed", scope=target, nodes=len(results))
        return 0
    tz = ctx.settings.timezone
    previous_at = None
    if previous:
        previous_at = datetime.fromtimestamp(previous.finished_at, UTC).astimezone(_zone(tz))
    answer = report.sweep_report(
        diff, results, scope=target, previous_at=previous_at, took=finished - started
    )
    extra = [*notes, *loop_notes]
    if extra:
        answer["blocks"].insert(-1, report.context(" · ".join(report.escape(n) for n in extra)))
    emit(answer)
    return 0


def _zone(name: str) -> Any:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return UTC
