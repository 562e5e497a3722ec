"""Coalescing answers everyone: `stat-bot bot` and `stat-bot dispatcher` as processes, the Slack
emulator between them, and bursts of mentions held in the queue by a suppression so that
every request meets the others still queued (the worst case for merging).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from stat_bot.integrations.slack_emulator import EmulatorThread
from stat_bot.jobs.model import JobStatus
from tests.e2e.slack_service import SlackService, message_text, start_service

CONFIG = {
    "system": {
        "jobs": {"hello": {"run_args_template": "echo Hello {name}", "report_stdout": True}},
        "slack": [{"command": "hello [name]", "job_type": "hello"}],
    },
    "ops": {
        "jobs": {"broken": {"run_args_template": "echo broken {what} >&2; exit 3"}},
        "slack": [{"command": "broken [what]", "job_type": "broken"}],
    },
    "trac": {
        "jobs": {
            "ticket": {
                "run_args_template": "echo ticket {number}",
                "report_stdout": True,
                "coalesce": "type",
            }
        },
        "slack": [{"command": "ticket [number:int]", "job_type": "ticket"}],
    },
}

BURST = 100
PEOPLE = ("ada", "bob", "cy", "dee")


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlackService]:
    home = tmp_path_factory.mktemp("coalesce-e2e")
    with EmulatorThread() as emulator:
        for name in PEOPLE:
            emulator.client().add_user(name)
        running = start_service(home, emulator, CONFIG)
        try:
            yield running
        finally:
            running.stop()
    logs = running.log_of("bot").splitlines() + running.log_of("dispatcher").splitlines()
    assert not [line for line in logs if "Traceback" in line]


class Held:
    """A job type held in the queue by a suppression while a burst arrives, then let go."""

    def __init__(self, service: SlackService, namespace: str, job_type: str) -> None:
        self.queue = service.queue
        self.namespace, self.job_type = namespace, job_type
        self.queue.suppress(namespace, job_type, time.time() - 1, time.time() + 600)

    def queued(self) -> list[Any]:
        return [
            j
            for j in self.queue.jobs(namespace=self.namespace, limit=1000)
            if j.job_type == self.job_type and j.status is JobStatus.QUEUED
        ]

    def wait_queued(self, count: int, timeout: float = 60.0) -> list[Any]:
        deadline = time.monotonic() + timeout
        while len(jobs := self.queued()) < count:
            assert time.monotonic() < deadline, f"{len(jobs)} of {count} jobs queued"
            time.sleep(0.05)
        return jobs

    def release(self) -> None:
        self.queue.unsuppress(self.namespace, self.job_type)
        self.queue.close()


def bot_replies(service: SlackService, where: tuple[str, str], text: str) -> list[dict[str, Any]]:
    channel, ts = where
    return [
        m
        for m in service.slack.messages(channel, thread_ts=ts)
        if m["ts"] != ts and m["bot_id"] and text in message_text(m)
    ]


def test_a_burst_of_100_distinct_mentions_gets_100_answers(service: SlackService):
    held = Held(service, "system", "hello")
    wheres = [service.say(f"@stat-bot system hello Ada{n}") for n in range(BURST)]
    jobs = held.wait_queued(BURST)
    # Other arguments are other jobs: nothing merged, every thread its own job.
    assert len(jobs) == BURST
    assert sorted(j.args["name"] for j in jobs) == sorted(f"Ada{n}" for n in range(BURST))
    held.release()
    for n, where in enumerate(wheres):
        service.reply(where, f"Hello Ada{n}", timeout=120)
    for n, where in enumerate(wheres):
        answers = [m for m in bot_replies(service, where, "Hello") if m["text"] == f"Hello Ada{n}"]
        assert len(answers) == 1, (n, answers)
        assert not bot_replies(service, where, "Joined")


def test_a_burst_of_the_same_request_is_one_job_that_answers_everyone(service: SlackService):
    held = Held(service, "system", "hello")
    first = service.say("@stat-bot system hello Zed")
    (job,) = held.wait_queued(1)
    others = [service.say("@stat-bot system hello Zed", user=name) for name in PEOPLE]
    # Each one who joined is told at once, while the job is still held in the queue.
    for where in others:
        said = message_text(service.reply(where, "Joined", timeout=30))
        assert said.startswith(
            f"Joined job #{job.id} `system hello`, already queued for @admin; "
            "its result comes to this thread too"
        )
    assert [j.id for j in held.queued()] == [job.id]
    # (The bot handles events on several threads: they may be kept in another order.)
    assert sorted((r.user_name, r.thread_ts) for r in held.queue.requesters(job.id)) == [
        (name, where[1]) for name, where in zip(PEOPLE, others, strict=True)
    ]
    held.release()
    for where in [first, *others]:
        service.reply(where, "Hello Zed", timeout=30)
    for where in [first, *others]:
        assert len(bot_replies(service, where, "Hello Zed")) == 1


def test_a_failure_reaches_every_requester_and_is_reposted_once(service: SlackService):
    held = Held(service, "ops", "broken")
    wheres = [service.say("@stat-bot ops broken disk", user=name) for name in ("admin", *PEOPLE)]
    (job,) = held.wait_queued(1)
    # The bot handles events on several threads: whichever request it took first queued
    # the job, and the other four joined it.
    said = [message_text(service.reply(where, f"#{job.id}", timeout=30)) for where in wheres]
    assert sorted(text.startswith(f"Joined job #{job.id}") for text in said) == [
        False,
        True,
        True,
        True,
        True,
    ]
    held.release()
    for where in wheres:
        text = message_text(service.reply(where, "failed with exit status 3", timeout=30))
        assert "broken disk" in text
    repost = f"#{job.id} ops broken failed"
    service.slack.wait_for_message("tech-support", lambda m: repost in m["text"], timeout=15)
    assert len([m for m in service.slack.messages("tech-support") if repost in m["text"]]) == 1


def test_by_type_the_latest_arguments_win_and_everyone_is_told(service: SlackService):
    held = Held(service, "trac", "ticket")
    five = service.say("@stat-bot trac ticket 5")
    (job,) = held.wait_queued(1)
    seven = service.say("@stat-bot trac ticket 7", user="bob")
    said = message_text(service.reply(seven, "Joined", timeout=30))
    assert said.startswith(
        f"Joined job #{job.id} `trac ticket`, already queued for @admin; it now runs with the "
        "latest arguments asked for (number=7)"
    )
    held.release()
    note = (
        f"Job #{job.id} `trac ticket` answers 2 requests merged into it, and ran with the "
        "arguments asked for last: number=7."
    )
    for where in (five, seven):
        service.reply(where, "ticket 7", timeout=30)
        assert len(bot_replies(service, where, note)) == 1
        assert not bot_replies(service, where, "ticket 5")
