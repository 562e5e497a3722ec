"""What a job's process is told about its job: the STAT_BOT_* variables."""

from __future__ import annotations

import json
from pathlib import Path

from slack_sdk import WebClient

from stat_bot.bot.people import SlackPeople
from stat_bot.dispatcher.runner import Runner
from stat_bot.settings import Settings
from stat_bot.views import asker
from tests.unit.helpers import make_job


def test_a_job_is_told_who_asked_by_id_and_by_name(settings: Settings, tmp_path: Path):
    job = make_job(user="U0ADMIN", user_name="ada", args={"node": "x1000c0s0b0n0"})
    env = Runner(settings).environment(job, tmp_path)
    assert env["STAT_BOT_USER"] == "U0ADMIN"
    assert env["STAT_BOT_USER_NAME"] == "ada"
    assert json.loads(env["STAT_BOT_ARGS"]) == {"node": "x1000c0s0b0n0"}
    assert env["STAT_BOT_ARG_NODE"] == "x1000c0s0b0n0"
    unnamed = Runner(settings).environment(make_job(user="root", user_name=None), tmp_path)
    assert unnamed["STAT_BOT_USER_NAME"] == ""


def test_people_see_names_where_known():
    assert asker(make_job(user="U0ADMIN", user_name="ada")) == "@ada"
    assert asker(make_job(user="root", user_name=None)) == "root"
    assert asker(make_job(user=None, user_name=None, source="schedule")) == "schedule"


def test_a_name_slack_cannot_give_is_none_not_an_error():
    # Nothing listens on port 9 of loopback: the lookup fails at once.
    client = WebClient(token="xoxb-test", base_url="http://127.0.0.1:9/api/", timeout=2)
    assert SlackPeople(client).name("U0ADMIN") is None


def test_log_files_go_to_threads_only_while_the_disk_is_slow(settings: Settings, tmp_path: Path):
    import asyncio
    import os

    from stat_bot.dispatcher.runner import SLOW_FILES, timed_open_logs

    runner = Runner(settings)
    threaded: list[object] = []
    submit = runner._files.submit

    def recording_submit(fn, *args, **kwargs):
        threaded.append(fn)
        return submit(fn, *args, **kwargs)

    runner._files.submit = recording_submit  # type: ignore[method-assign]

    async def open_one(name: str) -> None:
        out, err = await runner._open_logs(tmp_path / name)
        os.close(out)
        os.close(err)

    asyncio.run(open_one("fast"))
    assert threaded == []  # the usual case: the loop makes them itself
    runner._file_seconds = 1.0  # as after some jobs on a disk that turned slow
    asyncio.run(open_one("slow"))
    assert threaded == [timed_open_logs]
    while runner._file_seconds > SLOW_FILES:  # fast again: the average comes down...
        asyncio.run(open_one(f"again{len(threaded)}"))
    threaded.clear()
    asyncio.run(open_one("back"))
    assert threaded == []  # ...and the loop takes it back
    assert (tmp_path / "back" / "stdout").exists()
    assert (tmp_path / "back" / "stderr").exists()
