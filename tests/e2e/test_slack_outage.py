"""A Slack outage longer than any retry, with a dispatcher killed in the middle of it.

The real `stat-bot dispatcher` reaches the Slack emulator through a TCP relay
that the test closes (connection refused, like a network cut or Slack down) for
more than a minute. Jobs finish meanwhile; one dispatcher is killed with SIGKILL
and another started. When the relay opens again every report arrives exactly
once, in order, and nothing is left pending.
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from stat_bot.integrations.slack_emulator import GENERAL_CHANNEL_ID, EmulatorThread
from stat_bot.jobs.model import JobRequest, JobStatus, ReportState
from stat_bot.queue.sqlite import SQLiteQueue
from stat_bot.settings import load_settings
from stat_bot.web.health import readiness
from tests.conftest import STAT_BOT
from tests.e2e.slack_service import SlackService, service_env
from tests.trac_fixtures import free_port

OUTAGE = 65.0  # longer than a minute, and than any one retry wait (SLACK_RETRY_MAX)


class Relay:
    """127.0.0.1:port -> target, that can refuse connections and cut live ones."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()

    def up(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            for conn in self._open:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
                conn.close()
            self._open.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open.update((client, server))
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)


@pytest.mark.slow
def test_a_long_outage_and_a_killed_dispatcher_lose_and_repeat_no_report(
    tmp_path: Path, slack_emulator: EmulatorThread
):
    target = urlsplit(slack_emulator.api_url)
    relay = Relay((target.hostname or "127.0.0.1", target.port or 80))
    relay.up()
    (tmp_path / "workspace" / "demo").mkdir(parents=True)
    (tmp_path / "job_configs.py").write_text(
        "raw_config = "
        + repr(
            {
                "demo": {
                    "jobs": {
                        "say": {
                            "run_args_template": "echo report {n}",
                            "report_stdout": True,
                            "coalesce": False,
                        }
                    }
                }
            }
        )
        + "\n"
    )
    api_url = f"http://127.0.0.1:{relay.port}{target.path}"
    env = service_env(
        tmp_path,
        api_url,
        SLACK_RETRY_MAX="2",
        SLACK_DELIVERY_DEGRADED_AFTER="5",
        PROGRESS_AFTER="0",
        SLACK_LOGS_CHANNEL="",
        SLACK_TECH_SUPPORT_CHANNEL="",
    )
    service = SlackService(tmp_path, slack_emulator, env)
    queue = SQLiteQueue(tmp_path / "var" / "stat-bot.sqlite3")
    try:
        service.start("dispatcher")
        relay.down()
        outage_started = time.monotonic()
        first = [enqueue(queue, n) for n in range(10)]
        wait_finished(queue, first)
        # Killed without a chance to record anything; its messages stay in the outbox.
        service.processes["dispatcher"].send_signal(signal.SIGKILL)
        service.processes["dispatcher"].wait(10)
        service.start("dispatcher")
        second = [enqueue(queue, n) for n in range(10, 20)]
        wait_finished(queue, second)
        jobs = first + second

        status = subprocess.run(
            [STAT_BOT, "--json", "status"], env=env, cwd=tmp_path, capture_output=True, check=True
        )
        undelivered = json.loads(status.stdout)["undelivered"]
        assert undelivered["pending"] == 20, (queue.outbox_items(), service.log_of("dispatcher"))
        assert "could not be reached" in undelivered["last_error"]
        while time.monotonic() - outage_started < 6:
            time.sleep(0.2)
        settings = load_settings(
            state_dir=tmp_path / "var", slack_delivery_degraded_after=5.0, lost_after=30.0
        )
        check = readiness(queue, settings)["delivery"]
        assert not check.ready
        assert "20 message(s) waiting for Slack" in check.detail

        while time.monotonic() - outage_started < OUTAGE:
            assert all(queue.get(j).report_state == ReportState.PENDING for j in jobs)
            time.sleep(1)
        assert slack_emulator.client().messages(GENERAL_CHANNEL_ID) == []
        relay.up()

        deadline = time.monotonic() + 30
        while any(queue.get(j).report_state != ReportState.DELIVERED for j in jobs):
            assert time.monotonic() < deadline, [queue.get(j).report_state for j in jobs]
            time.sleep(0.2)
        posted = [m["text"] for m in slack_emulator.client().messages(GENERAL_CHANNEL_ID)]
        assert posted == [f"report {n}" for n in range(20)]
        summary = queue.outbox_summary()
        assert (summary.undelivered, summary.by_state) == (0, {"pending": 0})
        assert readiness(queue, settings)["delivery"].ready
        assert "Traceback" not in service.log_of("dispatcher")
    finally:
        relay.down()
        service.stop()
        queue.close()


def enqueue(queue: SQLiteQueue, n: int) -> int:
    request = JobRequest(
        namespace="demo", job_type="say", args={"n": str(n)}, channel="general", coalesce=False
    )
    return queue.enqueue(request).job.id


def wait_finished(queue: SQLiteQueue, ids: list[int], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while any(queue.get(i).status is not JobStatus.SUCCEEDED for i in ids):
        assert time.monotonic() < deadline, [queue.get(i).status for i in ids]
        time.sleep(0.1)
