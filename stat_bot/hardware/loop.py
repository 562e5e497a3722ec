"""Closing the loop: what to do about one node's check result, given Trac and Slurm.

A check that finds a critical problem opens a Trac ticket for the xname (or
comments on the one already open) and drains the node in Slurm with the reason
`STAT#<ticket>: <problem>`, at once or after a confirmation; a later check that
passes comments on that ticket and offers to resume the node. Which of these a
site wants is data (`hw_rules` in job_configs.py, read into `LoopRule`).

This module only decides: `decide(situation)` turns one node's result, its open
tickets, its Slurm state and what was remembered about it into a list of actions.
It asks nothing and changes nothing, so every rule of the loop is unit-tested
here; stat_bot/tasks/hw_loop.py gathers the situation and carries the actions out.

Idempotent by construction: a node with an open ticket gets a comment (and only
when its problem changed), never a second ticket; a drain or resume offer still
pending is pointed to, never offered again; a node already drained is left alone.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Literal, Protocol

from stat_bot.hardware.health import NodeHealth, State

DrainMode = Literal["no", "confirm", "direct"]
ResumeMode = Literal["no", "offer", "direct"]
# A drain reason STAT bot wrote: `STAT#12: PSU 2: Critical` (or `STAT: ...` without Trac).
STAT_REASON = re.compile(r"^STAT(?:#(?P<ticket>\d+))?:")
MAX_PROBLEM = 120  # characters of the problem in a summary or drain reason
NEW_TICKET = -1  # `Drain.ticket` when the ticket is the one OpenTicket creates just before


class NodeState(Protocol):
    """A node as Slurm reports it (stat_bot.integrations.slurm.NodeState has this shape;
    integrations import hardware, so hardware names only what it reads)."""

    @property
    def drained(self) -> bool: ...

    @property
    def reason(self) -> str: ...


@dataclass(frozen=True)
class LoopRule:
    """One `hw_rules` entry of job_configs.py (validated in jobs/config.py).

    `when`: the check states that count as failing (default critical only);
    `xnames`: glob patterns of the xnames it covers (default all);
    `ticket`: open a Trac ticket, or comment on the open one;
    `drain`: "confirm" (offer, drain once confirmed), "direct", or "no";
    `resume`: after a passing check of a node STAT drained, "offer", "direct" or "no";
    `drain_job`/`resume_job`: the namespace's jobs that do it (`{target}`, `{reason}`);
    `channel`: where offers go when the check has no channel of its own.
    """

    when: tuple[str, ...] = ("critical",)
    xnames: tuple[str, ...] = ("*",)
    ticket: bool = True
    ticket_type: str = "defect"
    ticket_priority: str = "critical"
    drain: DrainMode = "confirm"
    resume: ResumeMode = "offer"
    drain_job: str = "drain"
    resume_job: str = "resume"
    channel: str | None = None

    def covers(self, xname: str) -> bool:
        return any(fnmatchcase(xname.lower(), pattern.lower()) for pattern in self.xnames)

    def fails(self, state: State) -> bool:
        return state.value in self.when


def rule_for(rules: Sequence[LoopRule], xname: str) -> LoopRule | None:
    """The first rule that covers the xname (rules read like a firewall's: first match)."""
    return next((rule for rule in rules if rule.covers(xname)), None)


@dataclass
class Memory:
    """What the loop remembers about one xname between checks (kept by the queue).

    `failing`: the last check the loop acted on failed (so a pass is a recovery);
    `ticket`/`problem`: the ticket it opened or commented and the problem it recorded;
    `drain_offer`/`resume_offer`: codes of the confirmations it offered.
    """

    xname: str
    ticket: int | None = None
    problem: str | None = None
    failing: bool = False
    drain_offer: str | None = None
    resume_offer: str | None = None
    updated_at: float = 0.0


# --- actions ---------------------------------------------------------------------------


@dataclass(frozen=True)
class OpenTicket:
    summary: str
    description: str
    type: str
    priority: str


@dataclass(frozen=True)
class CommentTicket:
    ticket: int
    text: str


@dataclass(frozen=True)
class Drain:
    """Drain the node with `reason(ticket)`; `ticket` is NEW_TICKET for the one just opened."""

    ticket: int | None
    problem: str
    confirm: bool

    def reason(self, ticket: int | None) -> str:
        return drain_reason(ticket, self.problem)


@dataclass(frozen=True)
class Resume:
    confirm: bool


@dataclass(frozen=True)
class Note:
    """Nothing to do, and why: a line for the check's report.

    `repeat`: the same was true at the last check (the node was already failing, the
    offer already made): worth saying to a person who asked again, but noise in a
    scheduled sweep that must stay quiet when nothing changed.
    """

    text: str
    repeat: bool = False


Action = OpenTicket | CommentTicket | Drain | Resume | Note


@dataclass(frozen=True)
class Situation:
    """Everything `decide` needs about one node, gathered by the caller.

    `open_tickets`: open Trac tickets whose xname is this node's (None: Trac not asked,
    not set up or failing; `trac_problem` says why). `slurm`: its Slurm state (None:
    Slurm not available or does not know it; `slurm_problem` says why). `pending`:
    which of the remembered offer codes still wait for an answer, `cancelled` which were
    cancelled (a person said no: not offered again while the node stays failing). `given_ticket`: the
    ticket that asked for this check (a new Trac ticket with an xname); its result is
    commented there by the caller, and drains name it.
    """

    result: NodeHealth
    rule: LoopRule
    label: str
    open_tickets: tuple[int, ...] | None = ()
    trac_problem: str | None = None
    slurm: NodeState | None = None
    slurm_problem: str | None = None
    memory: Memory | None = None
    pending: frozenset[str] = field(default_factory=frozenset)
    cancelled: frozenset[str] = field(default_factory=frozenset)
    given_ticket: int | None = None


# --- words -----------------------------------------------------------------------------


def problem_text(result: NodeHealth) -> str:
    """The node's worst problem in one line (`PSU 2: Critical (+1 more)`)."""
    if result.state in (State.OK, State.WARNING, State.CRITICAL) and result.findings:
        ordered = sorted(result.findings, key=lambda f: f.severity != "critical")
        first = ordered[0].text
        more = len(ordered) - 1
    else:
        problems = result.problems
        first = problems[0] if problems else result.state.words
        more = len(problems) - 1
    text = " ".join(first.split())
    if len(text) > MAX_PROBLEM:
        text = text[: MAX_PROBLEM - 3].rstrip() + "..."
    return f"{text} (+{more} more)" if more > 0 else text


def drain_reason(ticket: int | None, problem: str) -> str:
    """`STAT#12: PSU 2: Critical`: sinfo -R shows which ticket to read."""
    return f"STAT#{ticket}: {problem}" if ticket else f"STAT: {problem}"


def stat_ticket(state: NodeState | None) -> int | None:
    """The ticket number in a drain reason STAT wrote (None: not ours, or no ticket)."""
    if state is None:
        return None
    match = STAT_REASON.match(state.reason)
    return int(match.group("ticket")) if match and match.group("ticket") else None


def drained_by_stat(state: NodeState | None) -> bool:
    return state is not None and state.drained and bool(STAT_REASON.match(state.reason))


def ticket_summary(label: str, problem: str) -> str:
    """`x1000c0s0b0n1 (nid000002): PSU 2: Critical`: the xname first, as admins search."""
    return f"{label}: {problem}"


def result_lines(result: NodeHealth) -> list[str]:
    return [f" * {line}" for line in result.problems] or [f" * {result.state.words}"]


def ticket_description(label: str, result: NodeHealth) -> str:
    return "\n".join(
        [
            f"STAT bot's hardware check of {label} at {result.checked_at:%Y-%m-%d %H:%M:%S %Z} "
            f"found it {result.state.words}:",
            "",
            *result_lines(result),
        ]
    )


# --- deciding --------------------------------------------------------------------------


def decide(s: Situation) -> list[Action]:
    """What to do about one node's result (empty: nothing, e.g. a warning no rule counts)."""
    if s.rule.fails(s.result.state):
        return _failing(s)
    if s.result.state is State.OK:
        return _passing(s)
    return []


def _pending(s: Situation, code: str | None) -> bool:
    return code is not None and code in s.pending


def _current_ticket(s: Situation) -> int | None:
    """The open ticket this node's trouble is recorded in, if any."""
    if s.given_ticket is not None:
        return s.given_ticket
    tickets = s.open_tickets or ()
    memory = s.memory
    if (
        memory is not None
        and memory.ticket
        and (s.open_tickets is None or memory.ticket in tickets)
    ):
        return memory.ticket  # (Trac not asked: the ticket remembered still names the drain)
    from_reason = stat_ticket(s.slurm)
    if from_reason in tickets:
        return from_reason
    return min(tickets) if tickets else None


def _failing(s: Situation) -> list[Action]:
    rule, memory = s.rule, s.memory
    problem = problem_text(s.result)
    actions: list[Action] = []
    ticket = _current_ticket(s)
    again = memory is not None and memory.failing  # the last check failed too
    if rule.ticket and s.given_ticket is None:
        if s.open_tickets is None:
            actions.append(
                Note(f"no ticket for {s.label}: {s.trac_problem or 'Trac unavailable'}", again)
            )
        elif ticket is None:
            actions.append(
                OpenTicket(
                    ticket_summary(s.label, problem),
                    ticket_description(s.label, s.result),
                    rule.ticket_type,
                    rule.ticket_priority,
                )
            )
            ticket = NEW_TICKET
        elif (
            memory is not None
            and memory.failing
            and memory.ticket == ticket
            and memory.problem == problem
        ):
            actions.append(Note(f"STAT#{ticket} already records {s.label}: {problem}", True))
        else:
            actions.append(
                CommentTicket(
                    ticket,
                    "\n".join(
                        [
                            f"STAT bot's hardware check found {s.label} {s.result.state.words}:",
                            "",
                            *result_lines(s.result),
                        ]
                    ),
                )
            )
    if rule.drain == "no":
        return actions
    if s.slurm is None:
        actions.append(Note(f"{s.label} not drained: {s.slurm_problem or 'not in Slurm'}", again))
    elif s.slurm.drained:
        actions.append(Note(f"{s.label} is already drained in Slurm ({s.slurm.reason})", again))
    elif again and memory is not None and memory.drain_offer in s.cancelled:
        actions.append(
            Note(
                f"the drain of {s.label} offered as `{memory.drain_offer}` was cancelled: not "
                f"offered again while it fails; `@stat-bot hw drain {s.result.xname} <reason>` "
                "drains it",
                True,
            )
        )
    elif memory is not None and _pending(s, memory.drain_offer):
        actions.append(
            Note(
                f"drain of {s.label} already offered: confirm with "
                f"`@stat-bot confirm {memory.drain_offer}`",
                True,
            )
        )
    else:
        actions.append(Drain(ticket, problem, confirm=rule.drain == "confirm"))
    return actions


def _passing(s: Situation) -> list[Action]:
    rule, memory = s.rule, s.memory
    was_failing = memory is not None and memory.failing
    ours = drained_by_stat(s.slurm)
    if not was_failing and not ours:
        return []
    actions: list[Action] = []
    tickets = s.open_tickets or ()
    ticket = memory.ticket if memory is not None and memory.ticket in tickets else None
    if ticket is None and stat_ticket(s.slurm) in tickets:
        ticket = stat_ticket(s.slurm)
    if rule.ticket and was_failing and ticket is not None and s.given_ticket is None:
        drained = f"; it is drained in Slurm ({s.slurm.reason})" if ours and s.slurm else ""
        actions.append(
            CommentTicket(
                ticket,
                f"{s.label} passed its check at "
                f"{s.result.checked_at:%Y-%m-%d %H:%M:%S %Z}{drained}.",
            )
        )
    if memory is not None and _pending(s, memory.drain_offer):
        actions.append(
            Note(
                f"the drain of {s.label} offered as `{memory.drain_offer}` is still open: "
                f"cancel it with `@stat-bot cancel-confirm {memory.drain_offer}`"
            )
        )
    if ours and rule.resume != "no":
        if memory is not None and _pending(s, memory.resume_offer):
            actions.append(
                Note(
                    f"resume of {s.label} already offered: confirm with "
                    f"`@stat-bot confirm {memory.resume_offer}`",
                    not was_failing,
                )
            )
        else:
            actions.append(Resume(confirm=rule.resume == "offer"))
    elif s.slurm is not None and s.slurm.drained and not ours:
        actions.append(
            Note(f"{s.label} is drained in Slurm for another reason ({s.slurm.reason}): left so")
        )
    return actions


def pending_codes(memories: Iterable[Memory]) -> set[str]:
    """Every offer code the memories hold (to ask the queue which still wait)."""
    codes = set()
    for memory in memories:
        codes.update(c for c in (memory.drain_offer, memory.resume_offer) if c)
    return codes
