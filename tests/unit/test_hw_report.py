"""The hw answers as Block Kit: totals first, problem nodes in words, CSV beside long lists."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime

from stat_bot.hardware import report
from stat_bot.hardware.health import Finding, NodeHealth, State
from stat_bot.hardware.inventory import Node
from stat_bot.hardware.sweep import compare
from stat_bot.jobs.config import JobSpec
from stat_bot.report.messages import MAX_BLOCKS, success_messages
from tests.unit.helpers import make_job

AT = datetime(2026, 12, 2, 6, 0, tzinfo=UTC)


def node(xname: str, state: State = State.OK, *findings: Finding, **extra) -> NodeHealth:
    health = NodeHealth(xname, extra.pop("hostname", None), state, checked_at=AT, **extra)
    if findings:
        health.add(findings)
    return health


def fleet(count: int = 16) -> list[NodeHealth]:
    return [
        node(f"x1000c0s{i // 2}b0n{i % 2}", hostname=f"nid{i + 1:06d}", power_state="On")
        for i in range(count)
    ]


def texts(blocks: list[dict]) -> str:
    parts = []
    for block in blocks:
        if "text" in block:
            parts.append(block["text"]["text"])
        for element in block.get("elements", []):
            parts.append(element["text"])
    return "\n".join(parts)


def test_check_report_starts_with_totals_then_names_each_problem_in_words():
    results = fleet()
    results[3] = node(
        "x1000c0s1b0n1",
        State.OK,
        Finding("critical", "PSU 2", "PSU 2: Critical"),
        hostname="nid000004",
        power_state="On",
    )
    results[5] = node(
        "x1000c0s2b0n1",
        State.TIMEOUT,
        hostname="nid000006",
        reason="no answer within 10 s",
    )
    answer = report.check_report(results, title="hw check x1000c0", target="x1000c0")
    assert answer["text"] == "16 nodes: 1 critical, 1 BMC timed out, 14 ok"
    body = texts(answer["blocks"])
    assert body.index("16 nodes: 1 critical") < body.index("PSU 2")
    assert "*x1000c0s1b0n1* (nid000004): PSU 2: Critical" in body
    assert "*x1000c0s2b0n1* (nid000006): BMC timed out: no answer within 10 s" in body
    assert body.index("PSU 2") < body.index("no answer within")  # worst first
    assert "file" not in answer
    assert answer["blocks"][0]["type"] == "header"


def test_a_healthy_check_says_so():
    answer = report.check_report(fleet(1), title="hw check x1000c0s0b0n0", target="x1000c0s0b0n0")
    assert answer["text"] == "1 node: 1 ok"
    assert "Every node is healthy" in texts(answer["blocks"])


def test_text_from_a_bmc_cannot_become_markup():
    bad = node("x1000c0s0b0n0", State.MALFORMED, reason="<!channel> & <http://x|y>")
    body = texts(report.check_report([bad], title="t", target="x1000c0")["blocks"])
    assert "<!channel>" not in body
    assert "&lt;!channel&gt; &amp; &lt;http://x|y&gt;" in body


def test_a_long_list_shows_the_worst_and_attaches_every_node_as_csv():
    results = [
        node(f"x1000c{c}s{s}b0n0", State.UNREACHABLE, reason="connection refused " + "x" * 200)
        for c in range(4)
        for s in range(8)
    ] + fleet(16)
    answer = report.check_report(results, title="hw check all", target="all")
    body = texts(answer["blocks"])
    assert body.count("connection refused") == report.MAX_LISTED
    assert "and 12 more problem nodes" in body
    assert all(len(b.get("text", {}).get("text", "")) <= 3000 for b in answer["blocks"])
    rows = list(csv.DictReader(io.StringIO(answer["file"]["content"])))
    assert len(rows) == 48
    assert rows[0]["state"] == "unreachable"
    assert rows[0]["problems"].startswith("BMC unreachable: connection refused")


def test_the_answer_is_what_the_blocks_report_format_accepts():
    results = [node(f"x1000c0s{i}b0n0", State.CRITICAL) for i in range(8)] * 20
    answer = report.check_report(results, title="hw check all", target="all")
    job = make_job(id=4, namespace="hw", job_type="check")
    spec = JobSpec(run_args_template="x", report_stdout=True, report_format="blocks")
    messages = success_messages(job, spec, json.dumps(answer))
    assert not isinstance(messages, str), messages
    assert all(len(m.blocks or []) <= MAX_BLOCKS for m in messages)
    assert messages[0].text.startswith("160 nodes: 160 critical")
    assert messages[-1].file is not None
    assert messages[-1].file.filename == "hw-check.csv"


def test_show_report_lists_latest_health_and_never_checked_nodes():
    nodes = [Node("x1000c0s0b0n0", "127.0.0.1", "nid000001", 1), Node("x1000c0s0b0n1", "b")]
    latest = {
        "x1000c0s0b0n0": node(
            "x1000c0s0b0n0", State.OK, Finding("warning", "Fan 2", "Fan 2: Warning")
        )
    }
    answer = report.show_report(nodes, latest, target="x1000c0s0b0n[0-1]")
    body = texts(answer["blocks"])
    assert answer["text"] == "x1000c0s0b0n[0-1]: 2 nodes"
    assert "selects 2 nodes: x1000c0s0b0n[0-1]" in body
    assert "hostnames: nid000001" in body
    assert "latest known: 1 node: 1 warning" in body
    assert "never checked: 1 (x1000c0s0b0n1)" in body
    assert "*x1000c0s0b0n0* (nid000001) nid 1 · :large_yellow_circle: warning" in body
    assert "Fan 2: Warning" in body


def test_sweep_report_names_new_recovered_changed_and_counts_the_rest():
    before = fleet()
    before[0] = node("x1000c0s0b0n0", State.OK, Finding("critical", "PSU 1", "PSU 1: Critical"))
    before[1] = node("x1000c0s0b0n1", State.UNREACHABLE, reason="refused")
    after = fleet()
    after[1] = node("x1000c0s0b0n1", State.UNREACHABLE, reason="refused")
    after[7] = node("x1000c0s3b0n1", State.OK, Finding("critical", "PSU 2", "PSU 2: Critical"))
    diff = compare(before, after)
    answer = report.sweep_report(diff, after, scope="x1000c0", previous_at=AT, took=1.25)
    body = texts(answer["blocks"])
    assert answer["text"] == (
        "Sweep of x1000c0: 16 nodes: 1 critical, 1 BMC unreachable, 14 ok; "
        "1 new problem, 1 recovered, 1 problem unchanged"
    )
    assert "*New problems* (1)\n:red_circle: *x1000c0s3b0n1*: PSU 2: Critical" in body
    assert "*Recovered* (1)" in body
    assert "x1000c0s0b0n0* (nid000001): ok again (was: PSU 1: Critical)" in body
    assert "*Unchanged problems* (1): x1000c0s0b0n1" in body
    assert "compared with the sweep of 2026-12-02 06:00 UTC" in body
