"""The data flow's direction in the imports: source -> jobs -> queue -> dispatcher -> report.

Read from the source files (every import, also those inside functions), so a
sideways or backwards import fails here rather than as an import cycle at run time.
"""

from __future__ import annotations

import ast
from pathlib import Path

import stat_bot

ROOT = Path(stat_bot.__file__).parent
# What each part must never import (besides settings and log, which all may use).
FORBIDDEN = {
    "jobs": {
        "queue",
        "dispatcher",
        "report",
        "bot",
        "web",
        "actions",
        "views",
        "supervisor",
        "cli",
    },
    "queue": {"dispatcher", "report", "bot", "web", "actions", "views", "supervisor", "cli"},
    "dispatcher": {"bot", "web", "actions", "views", "supervisor", "cli"},
    # report/ may read the queue (its outbox); it never reaches back to who queued.
    "report": {"dispatcher", "bot", "web", "actions", "views", "supervisor", "cli"},
    "views": {"dispatcher", "bot", "web", "supervisor", "cli"},
    "actions": {"dispatcher", "bot", "web", "supervisor", "cli"},
    "web": {"dispatcher", "bot", "supervisor", "cli"},
    "bot": {"dispatcher", "web", "supervisor", "cli"},
    # Built-in tasks are a source, like the command line that starts them.
    "tasks": {"dispatcher", "bot", "web", "supervisor", "cli"},
}
# Libraries that workspace scripts import: plain parameters in, no service parts, no settings.
SERVICE = {
    "jobs",
    "queue",
    "dispatcher",
    "report",
    "bot",
    "web",
    "actions",
    "views",
    "supervisor",
    "cli",
    "tasks",
    "settings",
    "lifeline",
    "console",
    "local_slack",
}
FORBIDDEN["hardware"] = SERVICE
FORBIDDEN["integrations"] = SERVICE


def part(module: str) -> str | None:
    """`stat_bot.jobs.config` -> `jobs`; `stat_bot.views` -> `views`."""
    names = module.split(".")
    return names[1] if len(names) > 1 and names[0] == "stat_bot" else None


def imports() -> dict[str, set[tuple[str, str]]]:
    """Each part's imports of other parts, as (importing file, imported module)."""
    found: dict[str, set[tuple[str, str]]] = {}
    for path in ROOT.rglob("*.py"):
        name = ".".join(("stat_bot", *path.relative_to(ROOT).with_suffix("").parts))
        source = part(name.removesuffix(".__init__"))
        # Local mode's stand-ins for peers (Slack, BMCs, a mail server) are programs of
        # their own, started by `stat-bot run` and stopping with it (lifeline).
        if source is None or any(
            peer in name for peer in ("slack_emulator", "redfish_emulator", "mail_sink")
        ):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            for target in targets:
                other = part(target)
                allowed = (
                    ("log",) if source in ("hardware", "integrations") else ("settings", "log")
                )
                if other and other != source and other not in allowed:
                    found.setdefault(source, set()).add((name, target))
    return found


def test_no_part_imports_against_the_data_flow():
    wrong = sorted(
        f"{importer} imports {target}"
        for source, edges in imports().items()
        for importer, target in edges
        if part(target) in FORBIDDEN.get(source, set())
    )
    assert wrong == []


def test_there_are_no_import_cycles_between_parts():
    graph = {src: {part(t) for _, t in edges} for src, edges in imports().items()}

    def reaches(start: str, goal: str) -> bool:
        seen, todo = set(), [start]
        while todo:
            node = todo.pop()
            for nxt in graph.get(node, ()):
                if nxt == goal:
                    return True
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return False

    cycles = sorted(f"{a} <-> {b}" for a in graph for b in graph[a] if b and reaches(b, a))
    assert cycles == []
