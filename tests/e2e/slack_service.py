"""STAT bot as it runs for real, against the local Slack emulator: the bot and the dispatcher
as separate `stat-bot` processes sharing one SQLite queue, and a test "user" who posts
through the emulator and reads the channels.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stat_bot.integrations.slack_emulator import (
    APP_TOKEN,
    BOT_TOKEN,
    EmulatorClient,
    EmulatorThread,
)
from stat_bot.jobs.model import Job
from stat_bot.queue.sqlite import SQLiteQueue
from tests.conftest import STAT_BOT, subprocess_env, write_configs

PROGRESS = ":hourglass_flowing_sand: Job #"


def service_env(
    home: Path, api_url: str, *, database_url: str | None = None, **overrides: str
) -> dict[str, str]:
    """`stat-bot bot` and friends against the emulator at `api_url`, on `database_url`
    (default: STATE_DIR's SQLite file); `overrides` are more variables."""
    env = subprocess_env(home, database_url)
    env.update(
        SLACK_BOT_TOKEN=BOT_TOKEN,
        SLACK_APP_TOKEN=APP_TOKEN,
        SLACK_API_URL=api_url,
        SLACK_LOGS_CHANNEL="stat-bot-logs",
        SLACK_TECH_SUPPORT_CHANNEL="tech-support",
        PROGRESS_AFTER="1",
        PROGRESS_INTERVAL="0.5",
        SLACK_CONNECT_TIMEOUT="20",
    )
    env.update(overrides)
    return env


@dataclass
class SlackService:
    home: Path
    emulator: EmulatorThread
    env: dict[str, str]
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def slack(self) -> EmulatorClient:
        return self.emulator.client()

    @property
    def queue(self) -> SQLiteQueue:
        return SQLiteQueue(self.home / "var" / "stat-bot.sqlite3")

    def log_of(self, name: str) -> str:
        path = self.home / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self, name: str, *, wait: bool = True) -> subprocess.Popen[bytes]:
        before = self.slack.connections()["total"]
        out = (self.home / f"{name}.log").open("ab")
        process = subprocess.Popen(
            [STAT_BOT, name], env=self.env, cwd=self.home, stdout=out, stderr=out
        )
        out.close()
        self.processes[name] = process
        if wait and name == "bot":
            self.wait_bot_connected(before + 1)
        if wait and name == "dispatcher":
            deadline = time.monotonic() + 20
            while "dispatcher started" not in self.log_of("dispatcher"):
                assert process.poll() is None, self.log_of("dispatcher")
                assert time.monotonic() < deadline, self.log_of("dispatcher")
                time.sleep(0.05)
        return process

    def wait_bot_connected(self, total: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            counts = self.slack.connections()
            if counts["total"] >= total and counts["connected"] >= 1:
                return
            bot = self.processes.get("bot")
            assert bot is None or bot.poll() is None, self.log_of("bot")
            assert time.monotonic() < deadline, f"bot never connected: {self.log_of('bot')}"
            time.sleep(0.05)

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for name, process in self.processes.items():
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                raise AssertionError(f"{name} did not stop on SIGTERM") from None

    # what the test user does ------------------------------------------------------------
    def say(self, text: str, *, user: str = "admin", channel: str = "general") -> tuple[str, str]:
        """Post as a user; (channel id, ts of the message)."""
        return self.slack.post(user, channel, text)

    def reply(
        self,
        where: tuple[str, str],
        match: str | None = None,
        timeout: float = 15.0,
        progress: bool = False,
    ) -> dict[str, Any]:
        """The bot's first reply in the thread of `where` whose text contains `match`.

        A progress message ("has been running for 8 s", quoting the job's output so far)
        is not an answer: on a loaded machine it comes before the report, and may quote
        the very words the report is matched by. `progress=True` waits for one instead."""
        channel, ts = where

        def answer(m: dict[str, Any]) -> bool:
            text = message_text(m)
            if text.startswith(PROGRESS) != progress:
                return False
            return bool(m["bot_id"]) and (match is None or match in text)

        return self.slack.wait_for_reply(channel, ts, answer, timeout=timeout)

    def reactions(self, where: tuple[str, str]) -> list[str]:
        channel, ts = where
        (parent,) = [m for m in self.slack.messages(channel, thread_ts=ts) if m["ts"] == ts]
        return [r["name"] for r in parent["reactions"]]

    def wait_reaction(self, where: tuple[str, str], name: str, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while name not in self.reactions(where):
            assert time.monotonic() < deadline, f"no :{name}: on {where}: {self.reactions(where)}"
            time.sleep(0.05)

    def job_for(self, where: tuple[str, str], timeout: float = 10.0) -> Job:
        """The job a command queued (matched by the thread it answers in)."""
        deadline = time.monotonic() + timeout
        queue = self.queue
        try:
            while True:
                jobs = [j for j in queue.jobs(limit=200) if j.thread_ts == where[1]]
                if jobs:
                    return jobs[0]
                assert time.monotonic() < deadline, f"no job for the command at {where}"
                time.sleep(0.05)
        finally:
            queue.close()


def message_text(message: dict[str, Any]) -> str:
    """A message's text, with its blocks' text, fields and context lines, for matching."""
    parts = [message.get("text") or ""]
    for block in message.get("blocks") or []:
        text = block.get("text")
        if isinstance(text, dict):
            parts.append(text.get("text", ""))
        for f in block.get("fields") or []:
            parts.append(f.get("text", ""))
        if block.get("type") == "context":
            parts.extend(e.get("text", "") for e in block.get("elements") or [])
    return "\n".join(parts)


def start_service(
    home: Path, emulator: EmulatorThread, config: dict[str, Any], **env: str
) -> SlackService:
    (home / "workspace").mkdir(exist_ok=True)
    write_configs(home / "job_configs.py", config)
    service = SlackService(home, emulator, service_env(home, emulator.api_url, **env))
    service.start("dispatcher")
    service.start("bot")
    return service


@contextlib.contextmanager
def running_service(
    home: Path, config: dict[str, Any], *, expected_traceback: str | None = None
) -> Iterator[SlackService]:
    """A service on its own emulator for a module's tests; fails if a part logged a
    traceback (other than one a test causes on purpose, marked by `expected_traceback`)."""
    with EmulatorThread() as emulator:
        running = start_service(home, emulator, config)
        try:
            yield running
        finally:
            running.stop()
    unexpected = [
        line
        for line in running.log_of("bot").splitlines() + running.log_of("dispatcher").splitlines()
        if "Traceback" in line and (expected_traceback is None or expected_traceback not in line)
    ]
    assert not unexpected, unexpected
