"""`stat-bot db copy`: a real SQLite queue with a site's history moved into a real PostgreSQL.

The source is filled through the Queue interface as the service fills it (jobs with
merged requesters and locks, a schedule with web overrides that has fired, a
suppression, webhook deliveries and digests, counters, an outbox with pending and
delivered messages, a confirmation, hardware state), then copied by the CLI. Every
table must hold the same rows on both sides, a second copy adds nothing, and new ids
on the target go on above the copied ones.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from stat_bot.hardware.loop import Memory
from stat_bot.jobs.model import JobRequest, JobStatus, Source, TargetSet
from stat_bot.queue import open_queue
from stat_bot.queue.alert_model import AlertEvent, AlertStatus
from stat_bot.queue.base import NodeHealthRow, OutboxMessage, ScheduleRow
from stat_bot.queue.copy import TABLES
from stat_bot.queue.relational import RelationalQueue
from stat_bot.queue.runbook_model import RunbookAnswerDraft, RunbookPageDraft, RunbookSectionDraft
from stat_bot.settings import load_settings

T0 = 1_700_000_000.0
TARGET = TargetSet("x1000c0s0b0n0", ("x1000c0s0b0n0",), (None,), ("x1000.c0.s0.b0.n0.",), True)


def fill(queue: RelationalQueue) -> None:
    """A little of everything a site's queue holds."""
    power = JobRequest(namespace="hw", job_type="power", args={"target": "x1000c0s0b0n0"},
                       targets=TARGET, channel="C1", user="U1", user_name="ada")  # fmt: skip
    first = queue.enqueue(power, now=T0).job
    again = JobRequest(namespace="hw", job_type="power", args={"target": "x1000c0s0b0n0"},
                       channel="C2", thread_ts="1.2", user="U2", coalesce=True, targets=TARGET)  # fmt: skip
    queue.enqueue(again, now=T0 + 1)
    (claimed,) = queue.claim("w1", 1, now=T0 + 2)
    queue.mark_started(claimed.id, 4242, "/logs/1")
    queue.finish(claimed.id, JobStatus.SUCCEEDED, 0, note="done",
                 outbox=[OutboxMessage(kind="report", payload='"ok"', channel="C1", job_id=first.id)],
                 now=T0 + 3)  # fmt: skip
    for n in range(5):
        queue.enqueue(JobRequest(namespace="system", job_type="hello", args={"n": n}), now=T0 + n)
    queue.sync_schedules(
        [ScheduleRow(key="trac.active", namespace="trac", job_type="active", cron="0 8 * * *")],
        now=T0,
    )
    queue.set_schedule("trac.active", interval_seconds=3600, enabled=False, now=T0 + 5)
    queue.set_schedule("trac.active", enabled=True, now=T0 + 6)
    queue.fire_schedule(
        "trac.active",
        T0 + 3600,
        JobRequest(namespace="trac", job_type="active", source=Source.SCHEDULE),
    )
    queue.suppress("trac", "active", T0, T0 + 10 * 86400 * 365, "U1")
    queue.accept_delivery("github", "d-1", [JobRequest(namespace="system", job_type="hello")],
                          digest="abc123", now=T0 + 7)  # fmt: skip
    queue.count("webhooks_accepted", "github", 3)
    queue.post([OutboxMessage(kind="notice", payload='"hello"', channel="C9")], now=T0 + 8)
    queue.offer_confirmation(
        power, requested_by="U1", channel="C1", thread_ts="1.1", summary="Power off x1000c0s0b0n0",
        expires_in=600, confirmers=("@hpc-admins",), now=T0 + 9,
    )  # fmt: skip
    queue.open_session("hash-1", "ada", max_age=3600, now=T0)
    queue.record_sweep("all", T0, T0 + 60,
                       [NodeHealthRow("x1000c0s0b0n0", "ok", T0 + 30, {"xname": "x1000c0s0b0n0"}, None)])  # fmt: skip
    queue.remember_loop([Memory("x1000c0s0b0n0", 17, "PSU 2: Critical", True, None, None, T0)])
    queue.store_runbook_page(RunbookPageDraft(
        "markdown", "node-down.md", "runbooks/node-down.md", "Node down", "h1",
        (RunbookSectionDraft("node-down", "Node down", "1. Ping the BMC", "runbooks/node-down.md#node-down"),),
    ), now=T0)  # fmt: skip
    (alert,) = (
        queue.record_alerts(
            [AlertEvent("alertmanager", "f1", "NodeDown", AlertStatus.FIRING, T0)], now=T0
        )
        or []
    )
    (hit,) = queue.search_runbooks("node down", 1)
    answer = queue.record_runbook_answer(RunbookAnswerDraft(
        alert.alert.id, 1, hit.section_id, hit.title, hit.url, hit.score, "runbook:1:1"), now=T0)  # fmt: skip
    assert answer is not None
    queue.rate_runbook(answer.id, "U1", True, now=T0)


def searchable(queue: RelationalQueue) -> None:
    """The copied sections are found by the target's own full-text search."""
    assert [h.title for h in queue.search_runbooks("ping bmc")] == ["Node down"]


def rows(queue: RelationalQueue, table: str) -> list[tuple]:
    columns = queue.table_columns(table)
    return sorted((tuple(r) for r in queue.dump_rows(table, columns)), key=repr)


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "stat_bot", *args],
        capture_output=True, text=True, cwd=cwd, timeout=120,
        env={"PATH": "/usr/bin:/bin", "STATE_DIR": str(cwd / "var")},
    )  # fmt: skip


def test_db_copy_moves_every_table_idempotently_and_ids_go_on(tmp_path: Path, postgres_url):
    source_url = f"sqlite:///{tmp_path / 'site.sqlite3'}"
    source = open_queue(load_settings(state_dir=tmp_path, database_url=source_url))
    fill(source)
    target_url = postgres_url.replace("postgresql://", "postgresql://postgres:pw-s3cret@", 1)
    target_url = target_url.replace("postgres:pw-s3cret@postgres@", "postgres:pw-s3cret@")

    first = cli("db", "copy", "--from", source_url, "--to", target_url, "--json", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "s3cret" not in first.stdout + first.stderr
    report = json.loads(first.stdout)
    counts = {t["table"]: t for t in report["tables"]}
    assert set(counts) == set(TABLES)
    target = open_queue(load_settings(state_dir=tmp_path, database_url=postgres_url))
    try:
        for table in TABLES:
            assert rows(target, table) == rows(source, table), table
            assert counts[table]["source"] == counts[table]["target"] == counts[table]["added"]
        searchable(target)
        assert counts["jobs"]["added"] == 8
        assert counts["job_requesters"]["added"] == 1
        assert counts["outbox"]["added"] >= 2

        # The site went on between the copies: a job ended, a message was delivered, a
        # session was closed. The last copy (service stopped) brings all of that across.
        (hello,) = source.claim("w2", 1, now=T0 + 20)
        source.finish(hello.id, JobStatus.FAILED, 1, now=T0 + 21)
        (pending,) = source.claim_outbox("sender", limit=1, now=T0 + 22)
        source.outbox_delivered(pending, "C1", "123.456", now=T0 + 23)
        source.close_session("hash-1")
        second = cli("db", "copy", "--from", source_url, "--to", target_url, "--json", cwd=tmp_path)
        assert second.returncode == 0, second.stderr
        again = {t["table"]: t for t in json.loads(second.stdout)["tables"]}
        assert all(t["added"] == 0 for name, t in again.items() if name != "web_sessions")
        assert again["web_sessions"]["target"] == 0
        for table in TABLES:
            assert rows(target, table) == rows(source, table), table
        assert target.get(hello.id).status is JobStatus.FAILED
        assert target.outbox_get(pending.id).state == "delivered"
        assert target.session_user("hash-1", max_age=10**10, now=T0 + 30) is None  # logged out

        # The copied site goes on: its schedule keeps its override, new ids follow.
        (schedule,) = target.schedules()
        assert (schedule.interval_seconds, schedule.enabled, schedule.has_fired) == (
            3600,
            True,
            True,
        )
        new = target.enqueue(
            JobRequest(namespace="system", job_type="hello", args={"n": "new"})
        ).job
        assert new.id == max(j.id for j in source.jobs(limit=100)) + 1
        assert [r.channel for r in target.requesters(1)] == ["C2"]
        assert target.job_locks(new.id) == []
    finally:
        target.close()
        source.close()


def test_db_copy_refuses_a_missing_source_and_the_same_database(tmp_path: Path, postgres_url):
    missing = f"sqlite:///{tmp_path / 'nothing.sqlite3'}"
    result = cli("db", "copy", "--from", missing, "--to", postgres_url, cwd=tmp_path)
    assert result.returncode == 1
    assert "no database at" in result.stderr
    same = cli("db", "copy", "--from", postgres_url, "--to", postgres_url, cwd=tmp_path)
    assert same.returncode == 2
    assert "same database" in same.stderr


@pytest.mark.parametrize("direction", ["postgres-to-sqlite"])
def test_db_copy_works_back_to_sqlite(tmp_path: Path, postgres_url, direction):
    source = open_queue(load_settings(state_dir=tmp_path, database_url=postgres_url))
    try:
        fill(source)
        target_url = f"sqlite:///{tmp_path / 'back.sqlite3'}"
        result = cli("db", "copy", "--from", postgres_url, "--to", target_url, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        target = open_queue(load_settings(state_dir=tmp_path, database_url=target_url))
        for table in TABLES:
            assert rows(target, table) == rows(source, table), table
        searchable(target)  # SQLite's FTS5 index filled by its triggers as the rows came in
        target.close()
    finally:
        source.close()
