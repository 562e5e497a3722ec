"""The process id the queues compare to find out they were forked (queue/process.py)."""

from __future__ import annotations

import os
from pathlib import Path

from stat_bot.jobs.model import JobRequest
from stat_bot.queue.process import current
from stat_bot.queue.sqlite import SQLiteQueue


def in_child(check) -> int:
    """Run `check` in a forked child; its exit code (0: it held)."""
    pid = os.fork()
    if pid == 0:
        try:
            code = 0 if check() else 1
        except BaseException:
            code = 2
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_the_id_is_this_processs_and_a_forked_childs_own():
    assert current.pid == os.getpid()
    parent = current.pid
    assert in_child(lambda: current.pid == os.getpid() != parent) == 0
    assert current.pid == parent


def test_a_forked_child_opens_its_own_connections_and_writes_through_them(tmp_path: Path):
    q = SQLiteQueue(tmp_path / "q.sqlite3")
    q.migrate()  # opens the parent's reading and writing connections
    reader, writer = q._conn(), q._writer.conn
    assert reader is not None
    assert writer is not None
    request = JobRequest(namespace="ns", job_type="t", coalesce=False)  # each a new job

    def child_writes() -> bool:
        q.enqueue(request)
        return q._writer.conn is not writer and q._conn() is not reader and len(q.jobs()) == 1

    assert in_child(child_writes) == 0
    # The parent's are still its own, and still work.
    assert q._conn() is reader
    q.enqueue(request)
    assert q._writer.conn is writer
    assert len(q.jobs()) == 2
    q.close()
