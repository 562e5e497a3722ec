"""`stat-bot db copy`: a site's queue moved from one database to another (SQLite to PostgreSQL).

Rows keep their ids, so links between them (a job's requesters, locks, outbox
messages; a confirmation's job) stay whole. Each table is copied in one
transaction; a row whose key is in the target already is brought up to date, so
running the copy again (after it stopped half-way, or a last time once the
service is stopped) adds what is missing and updates what changed: it is
idempotent, and the target ends as the source is. Live state that
belongs to running processes (registered dispatchers, component beats, login
throttling windows) is not copied: the processes on the new database make their own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from stat_bot.queue.base import QueueError
from stat_bot.queue.relational import RelationalQueue

# In an order that puts every referenced row before the rows that reference it.
TABLES: tuple[str, ...] = (
    "jobs",
    "job_requesters",
    "job_locks",
    "suppressions",
    "schedules",
    "schedule_firings",
    "deliveries",
    "delivery_digests",
    "counters",
    "outbox",
    "confirmations",
    "web_sessions",
    "node_health",
    "sweeps",
    "hw_loop",
    "incidents",
    "incident_events",
    "alerts",
    "runbook_pages",
    "runbook_sections",  # SQLite's full-text index (runbook_fts) follows by its triggers
    "runbook_answers",
    "runbook_ratings",
    "alert_firings",
)
NOT_COPIED: tuple[str, ...] = ("workers", "beats", "throttle")
# Tables the target must hold exactly as the source does: a dashboard session closed
# (logged out) since an earlier copy must not live on in the target.
MIRRORED: frozenset[str] = frozenset({"web_sessions"})
BATCH = 1000


@dataclass(frozen=True)
class TableCopy:
    """One table's rows in the source, in the target before and after, and those added."""

    table: str
    source: int
    target_before: int
    target_after: int

    @property
    def added(self) -> int:
        return self.target_after - self.target_before


def copy_queue(
    source: RelationalQueue,
    target: RelationalQueue,
    *,
    progress: Callable[[TableCopy], None] | None = None,
) -> list[TableCopy]:
    """Copy every table of TABLES from `source` into `target` (both migrated to one version)."""
    have, want = source.schema_version(), target.schema_version()
    if have != want:
        raise QueueError(
            f"the source is at schema version {have} and the target at {want}: run "
            "`stat-bot db migrate` on both (with each one's DATABASE_URL) first"
        )
    results = []
    for table in TABLES:
        columns = source.table_columns(table)
        missing = set(columns) - set(target.table_columns(table))
        if missing:
            raise QueueError(f"the target's {table} table has no column {sorted(missing)[0]}")
        before = target.table_count(table)
        target.load_rows(
            table, columns, _batches(source.dump_rows(table, columns)), replace=table in MIRRORED
        )
        result = TableCopy(table, source.table_count(table), before, target.table_count(table))
        results.append(result)
        if progress is not None:
            progress(result)
    return results


def _batches(rows: Iterator[tuple]) -> Iterator[list[tuple]]:
    batch: list[tuple] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= BATCH:
            yield batch
            batch = []
    if batch:
        yield batch
