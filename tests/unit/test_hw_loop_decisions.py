"""Closing the loop's decisions (stat_bot/hardware/loop.py): which action for which result."""

from __future__ import annotations

from datetime import UTC, datetime

from stat_bot.hardware.health import Finding, NodeHealth, State
from stat_bot.hardware.loop import (
    NEW_TICKET,
    CommentTicket,
    Drain,
    LoopRule,
    Memory,
    Resume,
    Situation,
    decide,
    drain_reason,
    problem_text,
    rule_for,
    stat_ticket,
)
from stat_bot.integrations.slurm import NodeState

XNAME = "x1000c0s0b0n1"
LABEL = f"{XNAME} (nid000002)"
WHEN = datetime(2026, 12, 2, 1, 30, tzinfo=UTC)
IDLE = NodeState("nid000002", "IDLE")


def critical(*texts: str) -> NodeHealth:
    findings = [Finding("critical", t.split(":")[0], t) for t in texts or ("PSU 2: Critical",)]
    return NodeHealth(XNAME, "nid000002", State.CRITICAL, findings, checked_at=WHEN)


def ok() -> NodeHealth:
    return NodeHealth(XNAME, "nid000002", State.OK, [], checked_at=WHEN)


def drained(reason: str) -> NodeState:
    return NodeState("nid000002", "IDLE+DRAIN", reason)


def situation(result: NodeHealth, **kwargs) -> Situation:
    values = {"rule": LoopRule(), "label": LABEL, "slurm": IDLE, **kwargs}
    return Situation(result, **values)


def kinds(actions) -> list[str]:
    return [type(a).__name__ for a in actions]


# --- failing -----------------------------------------------------------------------------


def test_first_critical_opens_a_ticket_and_offers_a_drain_naming_it() -> None:
    actions = decide(situation(critical()))
    assert kinds(actions) == ["OpenTicket", "Drain"]
    opened, drain = actions
    assert opened.summary == f"{LABEL}: PSU 2: Critical"
    assert "PSU 2: Critical" in opened.description
    assert (opened.type, opened.priority) == ("defect", "critical")
    assert drain == Drain(NEW_TICKET, "PSU 2: Critical", confirm=True)
    assert drain.reason(12) == "STAT#12: PSU 2: Critical"


def test_open_ticket_for_the_xname_gets_a_comment_not_a_second_ticket() -> None:
    actions = decide(situation(critical(), open_tickets=(7,)))
    assert kinds(actions) == ["CommentTicket", "Drain"]
    assert actions[0].ticket == 7
    assert "PSU 2: Critical" in actions[0].text
    assert actions[1].ticket == 7


def test_the_remembered_ticket_wins_over_older_open_ones() -> None:
    memory = Memory(XNAME, ticket=9, problem="Fan 1: Critical", failing=True)
    actions = decide(situation(critical(), open_tickets=(3, 9), memory=memory))
    assert actions[0] == CommentTicket(9, actions[0].text)


def test_same_problem_again_is_not_commented_twice_and_pending_drain_not_offered_twice() -> None:
    memory = Memory(XNAME, ticket=7, problem="PSU 2: Critical", failing=True, drain_offer="ABC123")
    actions = decide(situation(critical(), open_tickets=(7,), memory=memory, pending={"ABC123"}))
    assert kinds(actions) == ["Note", "Note"]
    assert "STAT#7 already records" in actions[0].text
    assert "@stat-bot confirm ABC123" in actions[1].text


def test_an_expired_drain_offer_is_offered_again() -> None:
    memory = Memory(XNAME, ticket=7, problem="PSU 2: Critical", failing=True, drain_offer="OLD111")
    actions = decide(situation(critical(), open_tickets=(7,), memory=memory, pending=frozenset()))
    assert actions[-1] == Drain(7, "PSU 2: Critical", confirm=True)


def test_a_new_problem_on_the_same_ticket_is_commented() -> None:
    memory = Memory(XNAME, ticket=7, problem="Fan 1: Critical", failing=True)
    actions = decide(situation(critical(), open_tickets=(7,), memory=memory))
    assert kinds(actions)[0] == "CommentTicket"


def test_a_closed_remembered_ticket_means_a_new_ticket() -> None:
    memory = Memory(XNAME, ticket=7, problem="PSU 2: Critical", failing=True)
    actions = decide(situation(critical(), open_tickets=(), memory=memory))
    assert kinds(actions)[0] == "OpenTicket"


def test_already_drained_node_is_left_alone() -> None:
    actions = decide(situation(critical(), open_tickets=(7,), slurm=drained("admin: bad DIMM")))
    assert kinds(actions) == ["CommentTicket", "Note"]
    assert "already drained" in actions[1].text
    assert "admin: bad DIMM" in actions[1].text


def test_direct_drain_and_no_ticket_rules() -> None:
    rule = LoopRule(ticket=False, drain="direct")
    actions = decide(situation(critical(), rule=rule))
    assert actions == [Drain(None, "PSU 2: Critical", confirm=False)]
    assert drain_reason(None, "PSU 2: Critical") == "STAT: PSU 2: Critical"


def test_no_drain_rule_only_tickets() -> None:
    actions = decide(situation(critical(), rule=LoopRule(drain="no")))
    assert kinds(actions) == ["OpenTicket"]


def test_without_slurm_the_report_says_why_not_drained() -> None:
    actions = decide(
        situation(
            critical(),
            slurm=None,
            slurm_problem="Slurm is not available on this host (no scontrol)",
        )
    )
    assert kinds(actions) == ["OpenTicket", "Note"]
    assert "not drained: Slurm is not available" in actions[1].text


def test_without_trac_the_report_says_why_and_the_drain_has_no_ticket() -> None:
    actions = decide(situation(critical(), open_tickets=None, trac_problem="TRAC_URL is not set"))
    assert kinds(actions) == ["Note", "Drain"]
    assert "TRAC_URL is not set" in actions[0].text
    assert actions[1].ticket is None


def test_a_check_asked_by_a_ticket_drains_under_that_ticket_without_a_new_one() -> None:
    actions = decide(situation(critical(), open_tickets=(3,), given_ticket=42))
    assert actions == [Drain(42, "PSU 2: Critical", confirm=True)]


def test_warning_is_neither_failing_nor_passing_by_default() -> None:
    warning = NodeHealth(XNAME, "nid000002", State.WARNING, [Finding("warning", "Fan", "Fan 1")])
    memory = Memory(XNAME, ticket=7, failing=True)
    assert decide(situation(warning, memory=memory, open_tickets=(7,))) == []


def test_a_rule_may_count_unreachable_bmcs_as_failing() -> None:
    rule = LoopRule(when=("critical", "unreachable"), drain="no")
    down = NodeHealth(XNAME, None, State.UNREACHABLE, reason="connection refused")
    actions = decide(situation(down, rule=rule, label=XNAME))
    assert kinds(actions) == ["OpenTicket"]
    assert actions[0].summary == f"{XNAME}: BMC unreachable: connection refused"


# --- passing -----------------------------------------------------------------------------


def test_recovery_comments_on_the_ticket_and_offers_resume() -> None:
    memory = Memory(XNAME, ticket=7, problem="PSU 2: Critical", failing=True)
    slurm = drained("STAT#7: PSU 2: Critical")
    actions = decide(situation(ok(), memory=memory, open_tickets=(7,), slurm=slurm))
    assert kinds(actions) == ["CommentTicket", "Resume"]
    assert actions[0].ticket == 7
    assert "passed its check at 2026-12-02 01:30:00 UTC" in actions[0].text
    assert "drained in Slurm (STAT#7: PSU 2: Critical)" in actions[0].text
    assert actions[1] == Resume(confirm=True)


def test_second_pass_does_not_comment_again_nor_offer_a_pending_resume_again() -> None:
    memory = Memory(XNAME, ticket=7, failing=False, resume_offer="RES123")
    slurm = drained("STAT#7: PSU 2: Critical")
    actions = decide(
        situation(ok(), memory=memory, open_tickets=(7,), slurm=slurm, pending={"RES123"})
    )
    assert kinds(actions) == ["Note"]
    assert "@stat-bot confirm RES123" in actions[0].text


def test_pass_of_a_node_stat_drained_without_memory_finds_the_ticket_in_the_reason() -> None:
    slurm = drained("STAT#5: Fan 1: Critical")
    actions = decide(situation(ok(), open_tickets=(5,), slurm=slurm))
    # no memory of failing: no "passed" comment (it may be long done), but the resume offer
    assert kinds(actions) == ["Resume"]
    assert stat_ticket(slurm) == 5


def test_pass_of_a_node_drained_by_someone_else_is_left_drained() -> None:
    memory = Memory(XNAME, ticket=7, failing=True)
    actions = decide(
        situation(ok(), memory=memory, open_tickets=(7,), slurm=drained("maintenance"))
    )
    assert kinds(actions) == ["CommentTicket", "Note"]
    assert "another reason (maintenance)" in actions[1].text


def test_pass_with_a_drain_offer_still_open_says_to_cancel_it() -> None:
    memory = Memory(XNAME, ticket=7, failing=True, drain_offer="DRN999")
    actions = decide(
        situation(ok(), memory=memory, open_tickets=(7,), slurm=IDLE, pending={"DRN999"})
    )
    assert kinds(actions) == ["CommentTicket", "Note"]
    assert "cancel-confirm DRN999" in actions[1].text


def test_healthy_node_never_failing_does_nothing() -> None:
    assert decide(situation(ok())) == []


def test_resume_direct_and_no() -> None:
    slurm = drained("STAT#7: x")
    memory = Memory(XNAME, ticket=7, failing=True)
    direct = decide(situation(ok(), rule=LoopRule(resume="direct"), memory=memory, slurm=slurm))
    assert direct == [Resume(confirm=False)]  # ticket 7 not open: no comment
    assert decide(situation(ok(), rule=LoopRule(resume="no"), slurm=slurm)) == []


# --- words and rule choice ---------------------------------------------------------------


def test_problem_text_puts_critical_first_and_counts_the_rest() -> None:
    result = NodeHealth(
        XNAME,
        None,
        State.CRITICAL,
        [Finding("warning", "Fan 1", "Fan 1: Warning"), Finding("critical", "PSU 2", "PSU 2: x")],
    )
    assert problem_text(result) == "PSU 2: x (+1 more)"
    long = critical("PSU 2: " + "y" * 300)
    assert len(problem_text(long)) <= 120


def test_first_rule_covering_the_xname_applies() -> None:
    rules = [LoopRule(xnames=("x1000c1*",), drain="no"), LoopRule(drain="direct")]
    assert rule_for(rules, "x1000c1s0b0n0").drain == "no"
    assert rule_for(rules, "X1000C0s0b0n0").drain == "direct"
    assert rule_for([LoopRule(xnames=("x9*",))], XNAME) is None


def test_notes_of_what_was_so_at_the_last_check_are_marked_repeats() -> None:
    """A scheduled sweep leaves repeats out, so it stays quiet when nothing changed."""
    unavailable = {"slurm": None, "slurm_problem": "no scontrol", "open_tickets": None}
    first = decide(situation(critical(), trac_problem="TRAC_URL is not set", **unavailable))
    assert [a.repeat for a in first] == [False, False]
    memory = Memory(XNAME, failing=True)
    again = decide(situation(critical(), memory=memory, **unavailable))
    assert [a.repeat for a in again] == [True, True]
    memory = Memory(XNAME, ticket=7, problem="PSU 2: Critical", failing=True, drain_offer="C0DE12")
    pending = decide(situation(critical(), open_tickets=(7,), memory=memory, pending={"C0DE12"}))
    assert all(a.repeat for a in pending)


def test_a_cancelled_drain_is_not_offered_again_while_the_node_keeps_failing() -> None:
    memory = Memory(XNAME, ticket=7, problem="PSU 2: Critical", failing=True, drain_offer="NO1234")
    actions = decide(situation(critical(), open_tickets=(7,), memory=memory, cancelled={"NO1234"}))
    assert kinds(actions) == ["Note", "Note"]
    assert "was cancelled" in actions[1].text
    assert f"hw drain {XNAME}" in actions[1].text
    # a new failure (after a pass) is offered again
    fresh = Memory(XNAME, ticket=7, failing=False, drain_offer="NO1234")
    again = decide(situation(critical(), open_tickets=(7,), memory=fresh, cancelled={"NO1234"}))
    assert kinds(again)[-1] == "Drain"


def test_trac_down_the_remembered_ticket_still_names_the_drain() -> None:
    memory = Memory(XNAME, ticket=7, problem="PSU 2: Critical", failing=True)
    actions = decide(
        situation(
            critical(), open_tickets=None, trac_problem="Trac could not be asked", memory=memory
        )
    )
    assert kinds(actions) == ["Note", "Drain"]
    assert actions[1].reason(actions[1].ticket) == "STAT#7: PSU 2: Critical"


def test_not_drained_lines_are_grouped_by_reason():
    from stat_bot.tasks.hw_loop import grouped

    lines = [
        "Opened STAT#5 for a",
        "a not drained: Slurm is not set up",
        "Opened STAT#6 for b",
        "b not drained: Slurm is not set up",
        "c not drained: Slurm does not know nid3",
    ]
    assert grouped(lines) == [
        "Opened STAT#5 for a",
        "Opened STAT#6 for b",
        "not drained (Slurm is not set up): a, b",
        "not drained (Slurm does not know nid3): c",
    ]
