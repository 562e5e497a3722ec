"""Spare job log folders (dispatcher/spares.py): made in quiet moments, renamed into place.

Real folders on the test's file system and the pool's real thread; at the end, a real
dispatcher whose jobs start in spares.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from stat_bot.dispatcher import runner as runner_module
from stat_bot.dispatcher.runner import Runner, open_log_files
from stat_bot.dispatcher.spares import SpareFolders
from stat_bot.jobs.config import parse_config
from stat_bot.jobs.model import JobRequest, JobStatus
from stat_bot.queue import open_queue
from tests.integration.conftest import wait_status, wait_until
from tests.unit.helpers import make_job, runner_settings

QUIET = 0.05  # seconds: short, so that the tests wait little


def spare_names(pool: SpareFolders) -> list[str]:
    return sorted(os.listdir(pool.folder)) if pool.folder.is_dir() else []


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    return tmp_path / "logs"


@pytest.fixture
def pool(logs: Path):
    made: list[SpareFolders] = []

    def make(size: int = 4, quiet: float = QUIET) -> SpareFolders:
        spares = SpareFolders(logs, size, quiet=quiet)
        made.append(spares)
        return spares

    yield make
    for spares in made:
        spares.close()


def test_spares_are_empty_folders_with_empty_log_files_in_a_folder_for_this_host(pool, logs):
    spares = pool(4)
    spares.start()
    wait_until(lambda: len(spares) == 4, what="four spares")
    assert spares.folder == logs / ".spare" / socket.gethostname()
    names = spare_names(spares)
    assert len(names) == 4
    for name in names:
        folder = spares.folder / name
        assert sorted(os.listdir(folder)) == ["stderr", "stdout"]
        assert (folder / "stdout").stat().st_size == 0
        assert (folder / "stderr").stat().st_size == 0
    time.sleep(QUIET * 4)
    assert len(spare_names(spares)) == 4  # no more than asked for


def test_a_taken_spare_is_renamed_into_place_and_its_type_folder_made(pool, logs):
    spares = pool(2)
    spares.start()
    wait_until(lambda: len(spares) == 2, what="two spares")
    inodes = {(spares.folder / name).stat().st_ino for name in spare_names(spares)}
    target = logs / "ns" / "type" / "17"  # logs/ns/type does not exist yet
    assert spares.take(str(target))
    assert target.stat().st_ino in inodes  # the same folder: no new inode
    assert sorted(os.listdir(target)) == ["stderr", "stdout"]
    assert len(spares) == 1
    assert len(spare_names(spares)) == 1
    # Then the pool is made whole again, once nothing has been taken for a while.
    wait_until(lambda: len(spares) == 2, what="the pool refilled")


def test_a_folder_already_in_place_is_left_to_the_caller_and_the_spare_kept(pool, logs):
    spares = pool(1)
    spares.start()
    wait_until(lambda: len(spares) == 1, what="a spare")
    rerun = logs / "ns" / "type" / "5"  # a job run again keeps its folder
    rerun.mkdir(parents=True)
    (rerun / "stdout").write_text("the first attempt's output\n")
    assert not spares.take(str(rerun))
    assert (rerun / "stdout").read_text() == "the first attempt's output\n"
    assert len(spares) == 1
    a_file = logs / "ns" / "type" / "6"
    a_file.write_text("not a folder")
    assert not spares.take(str(a_file))
    assert a_file.read_text() == "not a folder"
    assert len(spares) == 1


def test_no_spares_are_made_while_jobs_keep_starting(pool, logs):
    spares = pool(50, quiet=0.3)
    spares.start()
    until = time.monotonic() + 1.2
    while time.monotonic() < until:  # a job start every 50 ms: never quiet for 0.3 s
        assert not spares.take(str(logs / "ns" / "type" / str(time.monotonic_ns())))
        time.sleep(0.05)
    assert spare_names(spares) == []
    wait_until(lambda: len(spares) == 50, what="the pool filled once quiet")


def test_a_spare_taken_by_another_dispatcher_is_skipped(pool, logs):
    first = pool(3)
    first.start()
    wait_until(lambda: len(first) == 3, what="three spares")
    first.close()
    # A second dispatcher on this host takes up the same three, as does a third.
    second, third = pool(3), pool(3)
    second.start()
    third.start()
    wait_until(lambda: len(second) == 3 and len(third) == 3, what="both took them up")
    assert len(spare_names(second)) == 3  # taken up, not made again
    second.close()
    third.close()
    taken = {
        pool_.take(str(logs / "ns" / "type" / str(n)))
        for n, pool_ in enumerate([second, third, second, third, second, third])
    }
    assert taken == {True, False}  # three renamed, the rest found them gone
    assert len(os.listdir(logs / "ns" / "type")) == 3
    assert spare_names(second) == []


def test_spares_left_at_a_stop_are_taken_up_by_the_next_start(pool, logs):
    first = pool(3)
    first.start()
    wait_until(lambda: len(first) == 3, what="three spares")
    first.close()
    left = spare_names(first)
    second = pool(3)
    second.start()
    wait_until(lambda: len(second) == 3, what="the spares taken up")
    time.sleep(QUIET * 4)
    assert spare_names(second) == left


def test_a_spare_half_made_when_its_dispatcher_was_killed_still_gives_both_files(pool, logs):
    # kill -9 between a spare's folder and its files: the next start takes it up as it is.
    folder = logs / ".spare" / socket.gethostname()
    (folder / "1-1").mkdir(parents=True)
    (folder / "1-1" / "stdout").write_bytes(b"")
    half_made = (folder / "1-1").stat().st_ino
    spares = pool(1)
    spares.start()
    wait_until(lambda: len(spares) == 1, what="the half-made spare taken up")
    target = logs / "ns" / "type" / "3"
    assert spares.take(str(target))
    assert target.stat().st_ino == half_made
    for fd in open_log_files(str(target)):
        os.close(fd)
    assert sorted(os.listdir(target)) == ["stderr", "stdout"]


def test_a_symlink_among_the_spares_is_not_taken_up(pool, logs, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "stdout").write_text("must not be truncated\n")
    folder = logs / ".spare" / socket.gethostname()
    folder.mkdir(parents=True)
    (folder / "planted").symlink_to(elsewhere)
    spares = pool(1)
    spares.start()
    wait_until(lambda: len(spares) == 1, what="a spare")
    target = logs / "ns" / "type" / "1"
    assert spares.take(str(target))
    assert not target.is_symlink()
    assert (elsewhere / "stdout").read_text() == "must not be truncated\n"


def test_a_spare_folder_that_cannot_be_made_warns_once_and_jobs_make_their_own(pool, logs):
    (logs / ".spare").mkdir(parents=True)
    (logs / ".spare" / socket.gethostname()).write_text("a file where the folder goes")
    with capture_logs() as logged:
        spares = pool(4)
        spares.start()
        for n in range(3):  # each start asks for spares again, in the next quiet moment
            time.sleep(QUIET * 4)
            assert not spares.take(str(logs / "ns" / "type" / str(n)))
        time.sleep(QUIET * 4)
        spares.close()
    warnings = [e for e in logged if e["log_level"] == "warning"]
    assert len(warnings) == 1
    assert warnings[0]["event"] == "could not make a spare job log folder; jobs make their own"
    assert str(logs / ".spare") in warnings[0]["folder"]
    assert len(spares) == 0


def test_close_stops_the_thread_at_once_and_a_size_of_zero_starts_none(pool, logs):
    spares = pool(10, quiet=60)  # would wait a minute for quiet
    spares.start()
    thread = spares._thread
    assert thread is not None
    assert thread.is_alive()
    began = time.monotonic()
    spares.close()
    assert time.monotonic() - began < 2
    assert not thread.is_alive()
    none = pool(0)
    none.start()
    assert none._thread is None
    assert not (logs / ".spare").exists()


CONFIG = {
    "t": {"jobs": {"say": {"run_args_template": "echo said $STAT_BOT_JOB_ID $STAT_BOT_ATTEMPT"}}}
}


@pytest.mark.skipif(not runner_module.pidfd_usable(), reason="needs pidfd_open")
def test_a_job_writes_its_logs_into_a_spare_and_run_again_keeps_that_folder(tmp_path, pool):
    settings = runner_settings(tmp_path)
    assert settings.logs_dir is not None
    spares = pool(2, quiet=60)  # filled below, not again during the test
    spares.folder = settings.logs_dir / ".spare" / "host"
    spares._last_use = 0.0  # long quiet already: fill at once
    spares.start()
    wait_until(lambda: len(spares) == 2, what="two spares")
    inodes = {(spares.folder / name).stat().st_ino for name in spare_names(spares)}
    config = parse_config(CONFIG)
    runner = Runner(settings, spares=spares)

    async def run(attempt: int) -> Path:
        job = make_job(
            id=9, namespace="t", job_type="say", status=JobStatus.RUNNING, attempts=attempt
        )
        running = await runner.start(job, config.job("t", "say"), config.namespaces["t"].spec)
        outcome = await asyncio.wait_for(running.wait(), 30)
        assert outcome.status is JobStatus.SUCCEEDED
        return running.log_dir

    log_dir = asyncio.run(run(1))
    assert log_dir == settings.logs_dir / "t" / "say" / "9"
    assert log_dir.stat().st_ino in inodes
    assert (log_dir / "stdout").read_text() == "said 9 1\n"
    assert (log_dir / "stderr").read_text() == ""
    first = log_dir.stat().st_ino
    # Lost and re-queued, the job runs again in the folder it has: its files start empty.
    assert asyncio.run(run(2)) == log_dir
    assert log_dir.stat().st_ino == first
    assert (log_dir / "stdout").read_text() == "said 9 2\n"
    assert len(spares) == 1  # the second start left the spare it could not use


def test_a_dispatchers_jobs_start_in_spares(make_settings, configure, thread_dispatcher):
    configure(CONFIG)
    settings = make_settings(log_spares=3)
    assert settings.logs_dir is not None
    folder = settings.logs_dir / ".spare" / socket.gethostname()
    queue = open_queue(settings)
    thread_dispatcher(None, settings)
    wait_until(lambda: folder.is_dir() and len(os.listdir(folder)) == 3, what="three spares")
    inodes = {(folder / name).stat().st_ino for name in os.listdir(folder)}
    jobs = [queue.enqueue(JobRequest(namespace="t", job_type="say")).job for _ in range(2)]
    for job in jobs:
        done = wait_status(queue, job.id, JobStatus.SUCCEEDED)
        assert done.log_dir is not None
        assert Path(done.log_dir).stat().st_ino in inodes
        assert (Path(done.log_dir) / "stdout").read_text() == f"said {job.id} 1\n"
    wait_until(lambda: len(os.listdir(folder)) == 3, what="the pool refilled")
    queue.close()


def test_with_log_spares_zero_the_dispatcher_makes_none(
    make_settings, configure, thread_dispatcher
):
    configure(CONFIG)
    settings = make_settings(log_spares=0)
    assert settings.logs_dir is not None
    queue = open_queue(settings)
    thread_dispatcher(None, settings)
    job = queue.enqueue(JobRequest(namespace="t", job_type="say")).job
    done = wait_status(queue, job.id, JobStatus.SUCCEEDED)
    assert done.log_dir is not None
    assert (Path(done.log_dir) / "stdout").read_text() == f"said {job.id} 1\n"
    time.sleep(0.6)  # past the quiet moment a pool would wait for
    assert not (settings.logs_dir / ".spare").exists()
    queue.close()
