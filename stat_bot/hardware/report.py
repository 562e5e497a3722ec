"""Node health -> the chat's answer: Block Kit, with every result as CSV beside it when long.

Every hardware answer starts the same way, with a line of totals ("16 nodes: 14 ok,
1 warning, 1 critical"), then names each problem node (xname, hostname) and what is
wrong in words, worst first; a BMC that could not be asked is listed with its reason.
Output follows the `blocks` report format (report/messages.py): an object with
"blocks", "text" (what notifications show) and, when the list is longer than
MAX_LISTED nodes, a "file" holding every node's result as CSV.

Pure functions of NodeHealth values, so the formatting is tested without a BMC.
Slack's limits shape it: 3,000 characters a section, 150 a header, 50 blocks a
message (messages.py splits longer lists into several messages).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from stat_bot.hardware.health import NodeHealth, State, by_severity, totals_line
from stat_bot.hardware.inventory import Node
from stat_bot.hardware.sweep import Change, SweepDiff
from stat_bot.hardware.targets import fold

MAX_SECTION = 3000
MAX_HEADER = 150
MAX_LISTED = 20  # problem nodes shown in the message; all of them are in the CSV
MAX_NODE_CHARS = 600  # one node's line; the CSV has the rest
MAX_CSV_CELL = 2000  # one CSV cell: what a BMC says is bounded in the file too

Blocks = list[dict[str, Any]]

ICONS = {
    State.OK: ":large_green_circle:",
    State.WARNING: ":large_yellow_circle:",
    State.CRITICAL: ":red_circle:",
    State.UNREACHABLE: ":black_circle:",
    State.AUTH_REFUSED: ":no_entry:",
    State.TIMEOUT: ":hourglass:",
    State.MALFORMED: ":warning:",
    State.UNKNOWN: ":white_circle:",
}
CSV_COLUMNS = ("xname", "hostname", "state", "power_state", "problems", "checked_at")


# `@here`, `@channel`, `@everyone` typed plainly: Slack may parse them into mentions in a
# mrkdwn text object ("certain mentions will be automatically parsed" unless verbatim).
_BROADCAST = re.compile(r"@(?=(here|channel|everyone)\b)", re.IGNORECASE)
_LINE_BREAKS = re.compile(r"\s*[\r\n\v\f\u2028\u2029]+\s*")
WORD_JOINER = "\u2060"


def escape(text: str) -> str:
    """Text from a BMC or a node (untrusted) for one mrkdwn line.

    <, > and & are Slack's control characters, so `<!channel>`, `<@U123>` and
    `<http://evil|click>` arrive as text; a plain `@channel` gets an invisible word
    joiner after the `@`, so no one is notified; line breaks become spaces, so a BMC
    cannot start a line of its own that reads like another node's result.
    """
    text = _LINE_BREAKS.sub(" ", text)
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _BROADCAST.sub("@" + WORD_JOINER, text)


def link(url: str | None, label: str) -> str:
    """A Slack link to `url` labelled `label`, both from outside: only a plain web address
    becomes a link (one holding <, >, | or a space could close the link and add a
    `<!channel>` of its own), anything else is shown as text beside the label."""
    shown = escape(label).replace("|", "¦")
    if not url:
        return shown
    if url.startswith(("https://", "http://")) and not any(c in url for c in "<>|\n\r\t "):
        return f"<{url}|{shown}>"
    return f"{shown} (`{escape(url)}`)"


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def who(xname: str, hostname: str | None) -> str:
    """`*x1000c0s1b0n0* (nid000003)`: how a node is named in every answer."""
    return f"*{xname}* ({escape(hostname)})" if hostname else f"*{xname}*"


def node_line(health: NodeHealth) -> str:
    """One problem node: icon, xname, hostname, what is wrong (`PSU 2: Critical; ...`)."""
    problems = "; ".join(health.problems) or health.state.words
    line = f"{ICONS[health.state]} {who(health.xname, health.hostname)}: {escape(problems)}"
    return clip(line, MAX_NODE_CHARS)


def sections(lines: Iterable[str]) -> Blocks:
    """Lines packed into as few mrkdwn sections as Slack's 3,000 characters allow."""
    blocks: Blocks = []
    chunk: list[str] = []
    size = 0
    for line in lines:
        if chunk and size + len(line) + 1 > MAX_SECTION:
            blocks.append(section("\n".join(chunk)))
            chunk, size = [], 0
        chunk.append(line)
        size += len(line) + 1
    if chunk:
        blocks.append(section("\n".join(chunk)))
    return blocks


def section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": clip(text, MAX_SECTION)}}


def header(text: str) -> dict[str, Any]:
    return {"type": "header", "text": {"type": "plain_text", "text": clip(text, MAX_HEADER)}}


def context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": clip(text, MAX_SECTION)}]}


def csv_row(values: Iterable[Any]) -> list[Any]:
    """A CSV row with each cell at most MAX_CSV_CELL characters (None as empty): a BMC's
    endless sensor name or event message cannot make the file unbounded."""
    return ["" if v is None else clip(v, MAX_CSV_CELL) if isinstance(v, str) else v for v in values]


def results_csv(results: Iterable[NodeHealth]) -> str:
    """Every node's result, one row each: the file beside a long answer."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for health in results:
        problems = "; ".join(health.problems) if health.state.is_problem else ""
        writer.writerow(
            csv_row(
                [
                    health.xname,
                    health.hostname or "",
                    health.state.value,
                    health.power_state or "",
                    problems,
                    health.checked_at.isoformat(timespec="seconds"),
                ]
            )
        )
    return out.getvalue()


def answer(text: str, blocks: Blocks, file: dict[str, str] | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {"text": text, "blocks": blocks}
    if file:
        answer["file"] = file
    return answer


def listed(lines: list[str], total: int, noun: str) -> list[str]:
    if total > len(lines):
        lines = [*lines, f"_…and {total - len(lines)} more {noun}: every node is in the CSV file_"]
    return lines


def check_report(
    results: Sequence[NodeHealth], *, title: str, target: str, notes: Sequence[str] = ()
) -> dict[str, Any]:
    """`hw check`'s answer: totals, then each problem node worst first (CSV when long)."""
    totals = totals_line(results)
    problems = by_severity(results)
    blocks: Blocks = [header(title), section(f"*{escape(totals)}*")]
    if problems:
        lines = [node_line(h) for h in problems[:MAX_LISTED]]
        blocks += sections(listed(lines, len(problems), "problem nodes"))
    elif results:
        blocks.append(section(":large_green_circle: Every node is healthy."))
    footer = []
    folded = fold(h.xname for h in results)
    if folded != target:
        footer.append(f"`{escape(target)}`: {escape(folded)}")
    footer += [escape(note) for note in notes]
    if footer:
        blocks.append(context(" · ".join(footer)))
    file = None
    if len(problems) > MAX_LISTED:
        file = {
            "filename": "hw-check.csv",
            "content": results_csv(results),
            "title": f"{title}: every node",
        }
    return answer(totals, blocks, file)


def _change_line(change: Change, *, recovered: bool = False) -> str:
    after = change.after
    if recovered:
        was = "; ".join(change.before.problems) if change.before else ""
        return clip(
            f"{ICONS[State.OK]} {who(after.xname, after.hostname)}: ok again"
            + (f" (was: {escape(was)})" if was else ""),
            MAX_NODE_CHARS,
        )
    line = node_line(after)
    if change.before is not None and change.before.state.is_problem:
        line = clip(f"{line} (was: {escape('; '.join(change.before.problems))})", MAX_NODE_CHARS)
    return line


def sweep_report(
    diff: SweepDiff,
    results: Sequence[NodeHealth],
    *,
    scope: str,
    previous_at: datetime | None,
    took: float,
) -> dict[str, Any]:
    """`hw sweep`'s answer: totals, what changed since the previous sweep, the rest counted."""
    totals = totals_line(results)
    blocks: Blocks = [
        header(f"Sweep of {scope}"),
        section(f"*{escape(totals)}*\n{escape(diff.summary())}"),
    ]
    for heading, changes, recovered in (
        ("New problems", diff.new, False),
        ("Changed", diff.changed, False),
        ("Recovered", diff.recovered, True),
    ):
        if not changes:
            continue
        lines = [_change_line(c, recovered=recovered) for c in changes[:MAX_LISTED]]
        lines = listed(lines, len(changes), "nodes")
        blocks += sections([f"*{heading}* ({len(changes)})", *lines])
    if diff.unchanged:
        names = fold(h.xname for h in diff.unchanged)
        blocks.append(
            section(
                clip(
                    f"*Unchanged problems* ({len(diff.unchanged)}): {escape(names)}",
                    MAX_SECTION,
                )
            )
        )
    if diff.gone:
        blocks.append(context(f"no longer in the inventory: {escape(fold(diff.gone))}"))
    since = (
        f"compared with the sweep of {previous_at:%Y-%m-%d %H:%M %Z}".rstrip()
        if previous_at
        else "no earlier sweep of this scope"
    )
    blocks.append(context(f"{len(results)} nodes in {took:.1f} s · {since}"))
    changed_nodes = len(diff.new) + len(diff.changed) + len(diff.recovered)
    file = None
    if changed_nodes > MAX_LISTED or (len(results) > MAX_LISTED and diff.first):
        file = {
            "filename": "hw-sweep.csv",
            "content": results_csv(results),
            "title": f"Sweep of {scope}: every node",
        }
    text = f"Sweep of {scope}: {totals}; {diff.summary()}"
    return answer(text, blocks, file)


def show_report(
    nodes: Sequence[Node], latest: Mapping[str, NodeHealth], *, target: str
) -> dict[str, Any]:
    """`hw show`'s answer: what a target selects, and each node's latest known health."""
    count = len(nodes)
    noun = "node" if count == 1 else "nodes"
    checked = [latest[n.xname] for n in nodes if n.xname in latest]
    never = [n for n in nodes if n.xname not in latest]
    summary = f"{escape(target)} selects {count} {noun}: {fold(n.xname for n in nodes)}"
    hostnames = [n.hostname for n in nodes if n.hostname]
    lines = [f"*{clip(summary, 1000)}*"]
    if hostnames:
        lines.append(f"hostnames: {escape(clip(fold(hostnames), 1000))}")
    if checked:
        lines.append(f"latest known: {escape(totals_line(checked))}")
    if never:
        lines.append(
            f"never checked: {len(never)} ({escape(clip(fold(n.xname for n in never), 500))})"
        )
    blocks: Blocks = [header(f"hw show {target}"), section("\n".join(lines))]
    rows = []
    for node in nodes[:MAX_LISTED]:
        health = latest.get(node.xname)
        if health is None:
            state = f"{ICONS[State.UNKNOWN]} never checked"
        else:
            when = health.checked_at.strftime("%Y-%m-%d %H:%M %Z").rstrip()
            state = f"{ICONS[health.state]} {escape(health.state.words)} ({when})"
            if health.state.is_problem:
                state += f": {escape('; '.join(health.problems))}"
        nid = f" nid {node.nid}" if node.nid is not None else ""
        rows.append(clip(f"{who(node.xname, node.hostname)}{nid} · {state}", MAX_NODE_CHARS))
    blocks += sections(listed(rows, count, "nodes"))
    blocks.append(context("`hw check <target>` checks them now"))
    file = None
    if count > MAX_LISTED:
        content = io.StringIO()
        writer = csv.writer(content, lineterminator="\n")
        writer.writerow(("xname", "hostname", "nid", "bmc", "state", "problems", "checked_at"))
        for node in nodes:
            health = latest.get(node.xname)
            writer.writerow(
                csv_row(
                    [
                        node.xname,
                        node.hostname or "",
                        "" if node.nid is None else node.nid,
                        node.bmc,
                        health.state.value if health else "never checked",
                        "; ".join(health.problems) if health and health.state.is_problem else "",
                        health.checked_at.isoformat(timespec="seconds") if health else "",
                    ]
                )
            )
        file = {"filename": "hw-show.csv", "content": content.getvalue(), "title": "Every node"}
    return answer(f"{target}: {count} {noun}", blocks, file)


def mistake(text: str) -> dict[str, Any]:
    """The answer to a request that cannot be done as asked (no inventory, a target outside
    it): said in the asker's thread as an answer, not a failure for tech support."""
    shown = "\n".join(escape(line) for line in text.splitlines())
    # `text` is what notifications show, parsed as mrkdwn too: the asker's words (a
    # target typed as `@channel` arrives as `<!channel>`) are escaped there as well.
    return answer(shown, [section(f":warning: {shown}")])
