"""`stat-bot task runbook-index`: read every runbook source into the queue's index.

Run by the `oncall` namespace's schedule (job_configs.py) and at local mode's start;
its report says, per source, how many pages were read, parsed again (new or changed
content), left as they were, removed, and which could not be read (those keep their
old sections). Exit status 1 when a whole source could not be read.
"""

from __future__ import annotations

from collections.abc import Sequence

from stat_bot.hardware.report import escape
from stat_bot.oncall.runbook_index import index_all
from stat_bot.tasks import TaskContext, TaskUsageError, task
from stat_bot.tasks.hw_loop import trac_client

SHOWN_FAILURES = 10


@task(
    "runbook-index",
    "runbook-index",
    "Read the runbook sources (sites, Trac wiki, runbooks/ folder) into the search index",
)
def runbook_index(ctx: TaskContext, args: Sequence[str]) -> int:
    if args:
        raise TaskUsageError("usage: stat-bot task runbook-index (no arguments)")
    reports = index_all(ctx.queue, ctx.settings, trac_client(ctx.settings))
    for report in reports:
        # The job's stdout is posted as Slack text: page addresses, redirect targets and
        # errors come from the sites read, so they are escaped (no `<!channel>` from a link).
        print(escape(report.line()))
        for key, reason in report.failed[:SHOWN_FAILURES]:
            print(f"  not read: {escape(key)}: {escape(reason)}")
        if len(report.failed) > SHOWN_FAILURES:
            print(f"  ... and {len(report.failed) - SHOWN_FAILURES} more")
    print(f"{ctx.queue.runbook_section_count()} sections in the index.")
    return 1 if any(r.error for r in reports if r.source != "markdown") else 0
