"""Closing the loop after a hardware check: Trac tickets, Slurm drains, recovery and resume.

`apply_rules` is called by the `hw-check` and `hw-sweep` tasks with their results.
For each node a rule of the namespace's `hw_rules` covers, it gathers what
hardware/loop.py's `decide` needs - the node's open Trac tickets (one query for all
of them), its Slurm state (one `scontrol show node`), what was remembered about it
and which offers still wait - then carries the actions out: tickets opened or
commented through the Trac client, drains and resumes offered with Confirm/Cancel
buttons (stat_bot.actions.offer_confirmation) or queued at once as the namespace's
`drain`/`resume` jobs (so they are locked per xname, logged and reported as any job).
It returns lines for the check's report and remembers what it did in the queue.

Only nodes that need it are looked up: failing ones, and passing ones that were
failing or that Slurm shows drained by STAT. A site without Trac or Slurm gets the
rest of the loop and a line saying what was skipped and why.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import structlog

from stat_bot.actions import confirm_summary, offer_confirmation
from stat_bot.hardware.health import NodeHealth, State, totals_line
from stat_bot.hardware.inventory import Inventory, InventoryError, load_inventory
from stat_bot.hardware.loop import (
    NEW_TICKET,
    CommentTicket,
    Drain,
    LoopRule,
    Memory,
    Note,
    OpenTicket,
    Resume,
    Situation,
    decide,
    drained_by_stat,
    problem_text,
    result_lines,
    rule_for,
)
from stat_bot.integrations.slurm import NodeState, Slurm, SlurmError, slurm_name
from stat_bot.integrations.trac import TracClient, TracError
from stat_bot.jobs.model import ArgsError, Source
from stat_bot.jobs.requests import build_request
from stat_bot.queue.base import ConfirmationState

if TYPE_CHECKING:
    from stat_bot.settings import Settings
    from stat_bot.tasks import TaskContext

log = structlog.get_logger(__name__)

DEFAULT_NAMESPACE = "hw"
TRAC_CHUNK = 50  # xnames per Trac query (they go in the URL)
TRAC_NOT_SET_UP = "Trac is not set up (TRAC_URL)"


def trac_client(settings: Settings) -> TracClient | None:
    """The jobs' Trac account from the settings (None: TRAC_URL not set)."""
    if not settings.trac_url:
        return None
    password = settings.trac_password.get_secret_value() if settings.trac_password else None
    if password is None and settings.trac_password_file is not None:
        password = settings.trac_password_file.read_text(encoding="utf-8").rstrip("\r\n")
    return TracClient(
        settings.trac_url, settings.trac_user, password, timeout=settings.trac_timeout
    )


def slurm_client(settings: Settings) -> Slurm:
    env = settings.job_environment()
    return Slurm(settings.slurm_scontrol, {k: env[k] for k in ("SLURM_CONF", "PATH") if k in env})


class _Run:
    """One application of the rules: the clients, the running job, and the lines written."""

    def __init__(
        self,
        ctx: TaskContext,
        namespace: str,
        *,
        channel: str | None,
        thread_ts: str | None,
        requested_by: str | None,
        now: float,
    ) -> None:
        self.ctx = ctx
        self.namespace = namespace
        self.channel = channel
        self.thread_ts = thread_ts
        self.requested_by = requested_by
        self.requested_by_name: str | None = None
        self.source = Source.CLI
        # A person asked (chat, CLI, a terminal): they are told also what is as it was.
        self.by_a_person = True
        self.now = now
        self.lines: list[str] = []
        job = ctx.queue.get(ctx.job_id) if ctx.job_id else None
        if job is not None:
            # offers are confirmed by the requester's Slack id, whatever name the caller passed
            self.requested_by = job.user or requested_by
            self.requested_by_name = job.user_name
            self.source = Source(job.source)
            self.by_a_person = self.source in (Source.SLACK, Source.CLI)
        self.trac: TracClient | None = None
        self.trac_problem: str | None = TRAC_NOT_SET_UP
        try:
            self.trac = trac_client(ctx.settings)
            if self.trac is not None:
                self.trac_problem = None
        except (TracError, OSError) as error:
            self.trac_problem = f"Trac cannot be used: {error}"
        self._inventory: Inventory | bool | None = False

    # --- lookups --------------------------------------------------------------------------

    @property
    def inventory(self) -> Inventory | None:
        """The site's inventory (for nids and exclusive jobs' targets); None if unset or bad."""
        if self._inventory is False:
            path = self.ctx.settings.hw_inventory
            try:
                self._inventory = load_inventory(path) if path else None
            except InventoryError:
                self._inventory = None
        return self._inventory  # type: ignore[return-value]

    def slurm_name(self, result: NodeHealth) -> str | None:
        node = self.inventory.by_xname.get(result.xname) if self.inventory else None
        return slurm_name(result.hostname or (node.hostname if node else None), node and node.nid)

    def slurm_states(self) -> tuple[dict[str, NodeState] | None, str | None]:
        slurm = slurm_client(self.ctx.settings)
        problem = slurm.unavailable_reason()
        if problem:
            return None, problem
        try:
            return slurm.node_states(), None
        except SlurmError as error:
            return None, str(error)

    def open_tickets(self, xnames: Sequence[str]) -> dict[str, tuple[int, ...]] | None:
        """Open tickets per xname (one query per 50 xnames); None when Trac cannot be asked."""
        if self.trac is None or not xnames:
            return {} if self.trac is not None else None
        found: dict[str, list[int]] = {x: [] for x in xnames}
        try:
            for start in range(0, len(xnames), TRAC_CHUNK):
                chunk = list(xnames[start : start + TRAC_CHUNK])
                rows = self.trac.query(
                    columns=("id", "xname"), order="id", status="!closed", xname=chunk
                )
                for row in rows:
                    xname = row.get("xname", "").strip().lower()
                    if xname in found:
                        found[xname].append(int(row["id"]))
        except TracError as error:
            self.trac_problem = f"Trac could not be asked ({error})"
            return None
        return {x: tuple(sorted(ids)) for x, ids in found.items()}

    def offers(self, memories: Sequence[Memory]) -> tuple[frozenset[str], frozenset[str]]:
        """Of the offers remembered: those still waiting, and those a person cancelled."""
        pending, cancelled = set(), set()
        for memory in memories:
            for code in (memory.drain_offer, memory.resume_offer):
                offer = self.ctx.queue.get_confirmation(code) if code else None
                if offer is None:
                    continue
                if offer.state is ConfirmationState.PENDING and offer.expires_at > self.now:
                    pending.add(offer.code)
                elif offer.state is ConfirmationState.CANCELLED:
                    cancelled.add(offer.code)
        return frozenset(pending), frozenset(cancelled)

    # --- acting ---------------------------------------------------------------------------

    def offer_or_queue(
        self, rule: LoopRule, job_type: str, args: dict[str, str], *, confirm: bool, what: str
    ) -> str | None:
        """Offer (or queue) a drain/resume job of the namespace; the offer's code if offered."""
        configs = self.ctx.configs
        namespace = configs.namespaces.get(self.namespace)
        if namespace is None or job_type not in namespace.spec.jobs:
            self.lines.append(f"{what} not possible: no job {self.namespace} {job_type}")
            return None
        channel = self.channel or rule.channel
        try:
            request = build_request(
                namespace,
                job_type,
                source=self.source,
                args=args,
                channel=channel,
                thread_ts=self.thread_ts if channel == self.channel else None,
                user=self.requested_by,
                user_name=self.requested_by_name,
                inventory=self.inventory,
            )
        except ArgsError as error:
            self.lines.append(f"{what} not possible: {error}")
            return None
        if not confirm:
            job = self.ctx.queue.enqueue(request, now=self.now).job
            self.lines.append(f"{what}: job #{job.id} queued")
            return None
        if channel is None:
            self.lines.append(
                f"{what} not offered: this check has no channel to offer it in; give the hw rule "
                'a "channel"'
            )
            return None
        spec = namespace.spec.jobs[job_type]
        summary = confirm_summary(spec.confirm or f"{job_type} {{target}}", request.args)
        code = offer_confirmation(
            self.ctx.queue,
            configs,
            request,
            channel=channel,
            thread_ts=request.thread_ts,
            requested_by=self.requested_by,
            requested_by_name=self.requested_by_name,
            summary=summary,
            expires_in=self.ctx.settings.hw_confirm_expiry,
            now=self.now,
        )
        self.lines.append(f"{what} offered: confirm with `@stat-bot confirm {code}`")
        return code

    def carry_out(self, s: Situation, actions: Sequence[object], memory: Memory) -> Memory:
        result, rule, label = s.result, s.rule, s.label
        failing = rule.fails(result.state)
        problem = problem_text(result) if failing else None
        ticket = s.given_ticket or memory.ticket
        recorded = False
        for action in actions:
            if isinstance(action, OpenTicket):
                assert self.trac is not None
                try:
                    ticket = self.trac.create(
                        summary=action.summary,
                        type=action.type,
                        priority=action.priority,
                        description=action.description,
                        xname=result.xname,
                    )
                    recorded = True
                    self.lines.append(f"Opened STAT#{ticket} for {label}")
                except TracError as error:
                    ticket = None
                    self.lines.append(f"Could not open a ticket for {label}: {error}")
            elif isinstance(action, CommentTicket):
                assert self.trac is not None
                try:
                    self.trac.comment(action.ticket, action.text)
                    ticket, recorded = action.ticket, True
                    self.lines.append(f"Commented on STAT#{action.ticket} ({label})")
                except TracError as error:
                    self.lines.append(f"Could not comment on STAT#{action.ticket}: {error}")
            elif isinstance(action, Drain):
                number = ticket if action.ticket == NEW_TICKET else action.ticket
                reason = action.reason(number if number and number > 0 else None)
                memory.drain_offer = self.offer_or_queue(
                    rule,
                    rule.drain_job,
                    {"target": result.xname, "reason": reason},
                    confirm=action.confirm,
                    what=f"Drain of {label} ({reason})",
                )
            elif isinstance(action, Resume):
                memory.resume_offer = self.offer_or_queue(
                    rule,
                    rule.resume_job,
                    {"target": result.xname},
                    confirm=action.confirm,
                    what=f"Resume of {label}",
                )
            elif isinstance(action, Note) and (self.by_a_person or not action.repeat):
                self.lines.append(action.text)
        memory.ticket = ticket if ticket and ticket > 0 else memory.ticket
        if failing:
            memory.failing = True
            if recorded or s.given_ticket:
                memory.problem = problem  # what the ticket now says: not commented again
        elif result.state is State.OK:
            memory.failing = False
            memory.problem = None
            if memory.drain_offer not in s.pending:
                memory.drain_offer = None  # a cancelled drain does not outlive the failure
        return memory

    def comment_on_asking_ticket(self, ticket: int, results: Sequence[NodeHealth]) -> None:
        """The check a ticket asked for (Trac -> check): its result goes into that ticket."""
        if self.trac is None:
            self.lines.append(f"Result not commented on STAT#{ticket}: {self.trac_problem}")
            return
        text = [f"STAT bot's hardware check for this ticket: {totals_line(results)}", ""]
        for result in results:
            label = f"{result.xname} ({result.hostname})" if result.hostname else result.xname
            if result.state.is_problem:
                text += [f"{label}:", *result_lines(result)]
            else:
                text.append(f"{label}: {result.state.words}")
        try:
            self.trac.comment(ticket, "\n".join(text))
            self.lines.append(f"Commented the result on STAT#{ticket}")
        except TracError as error:
            self.lines.append(f"Could not comment the result on STAT#{ticket}: {error}")


def _namespace(ctx: TaskContext) -> str:
    job = ctx.queue.get(ctx.job_id) if ctx.job_id else None
    namespace = ctx.configs.namespaces.get(job.namespace) if job is not None else None
    return (
        namespace.name if namespace is not None and namespace.spec.hw_rules else DEFAULT_NAMESPACE
    )


def _recorded_in(ctx: TaskContext, ticket: int, results: Sequence[NodeHealth]) -> bool:
    """Whether `ticket` is where the rules recorded each of these (failing) results already."""
    if not results:
        return False
    memories = ctx.queue.loop_memory([r.xname for r in results])
    return all(
        (memory := memories.get(r.xname)) is not None
        and memory.failing
        and memory.ticket == ticket
        and memory.problem == problem_text(r)
        for r in results
    )


def apply_rules(
    ctx: TaskContext,
    results: list[NodeHealth],
    *,
    channel: str | None,
    thread_ts: str | None,
    requested_by: str | None,
    ticket: int | None = None,
    namespace: str | None = None,
    now: float | None = None,
) -> list[str]:
    """Close the loop for a check's results; lines for the check's report.

    `channel`/`thread_ts`: where the check answers (offers go there, or to the rule's
    `channel`); `requested_by`: who asked (they may confirm the offers; the running
    job's Slack user id is preferred when there is one); `ticket`: the Trac ticket that
    asked for this check, which gets the result as a comment and names the drains.
    `namespace`: whose `hw_rules` apply (default: the running job's, else "hw").
    """
    now = ctx.queue.now() if now is None else now  # offers and jobs by the queue's clock
    namespace = namespace or _namespace(ctx)
    run = _Run(
        ctx, namespace, channel=channel, thread_ts=thread_ts, requested_by=requested_by, now=now
    )
    if ticket is not None:
        if _recorded_in(ctx, ticket, results):
            # the ticket the rules themselves just opened (Trac's "created" event runs this
            # check): it already says exactly this
            run.lines.append(f"STAT#{ticket} already records this result")
        else:
            run.comment_on_asking_ticket(ticket, results)
    rules = ctx.configs.hw_rules(namespace)
    covered = [(r, rule) for r in results if (rule := rule_for(rules, r.xname)) is not None]
    if not covered:
        return run.lines
    memories = ctx.queue.loop_memory([r.xname for r, _ in covered])
    states, slurm_problem = (None, None)
    if any(rule.drain != "no" or rule.resume != "no" for _, rule in covered):
        states, slurm_problem = run.slurm_states()
    names = {r.xname: run.slurm_name(r) for r, _ in covered}

    def slurm_state(result: NodeHealth) -> NodeState | None:
        name = names[result.xname]
        return states.get(name) if states is not None and name else None

    relevant = []
    for result, rule in covered:
        memory = memories.get(result.xname)
        if rule.fails(result.state) or (
            result.state is State.OK
            and ((memory is not None and memory.failing) or drained_by_stat(slurm_state(result)))
        ):
            relevant.append((result, rule))
    if not relevant:
        return run.lines
    wants_trac = [r.xname for r, rule in relevant if rule.ticket]
    tickets = run.open_tickets(wants_trac) if wants_trac else {}
    pending, cancelled = run.offers([memories[r.xname] for r, _ in relevant if r.xname in memories])
    remembered = []
    for result, rule in relevant:
        label = f"{result.xname} ({result.hostname})" if result.hostname else result.xname
        state = slurm_state(result)
        if states is None:
            why = slurm_problem
        elif state is None:
            name = names[result.xname]
            why = f"Slurm does not know {name}" if name else "no hostname or nid in the inventory"
        else:
            why = None
        situation = Situation(
            result=result,
            rule=rule,
            label=label,
            open_tickets=None if tickets is None else tickets.get(result.xname, ()),
            trac_problem=run.trac_problem,
            slurm=state,
            slurm_problem=why,
            memory=memories.get(result.xname),
            pending=pending,
            cancelled=cancelled,
            given_ticket=ticket,
        )
        actions = decide(situation)
        before = memories.get(result.xname) or Memory(result.xname)
        after = run.carry_out(situation, actions, replace(before))
        if after != before:
            remembered.append(after)
    if remembered:
        ctx.queue.remember_loop(remembered, now=now)
    log.info("hw rules applied", nodes=len(relevant), lines=len(run.lines))
    return grouped(run.lines)


NOT_DRAINED = " not drained: "


def grouped(lines: list[str]) -> list[str]:
    """One line per reason a node was not drained (Slurm missing is the same for all of
    them), naming the nodes, after what was done, instead of the reason once per node."""
    reasons: dict[str, list[str]] = {}
    out: list[str] = []
    for line in lines:
        label, found, why = line.partition(NOT_DRAINED)
        if found:
            reasons.setdefault(why, []).append(label)
        else:
            out.append(line)
    return out + [f"not drained ({why}): {', '.join(labels)}" for why, labels in reasons.items()]
