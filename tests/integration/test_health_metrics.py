"""/healthz, /readyz and /metrics against the real queue, real dispatchers and a real bot process.

Readiness is checked with a dispatcher on a thread and `stat-bot bot` as a process
connected to the Slack emulator; metrics are scraped with the test client and parsed
with prometheus-client's own parser after real jobs went through the queue (SQLite and
PostgreSQL).
"""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import prometheus_client
import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from stat_bot.integrations.slack_emulator import APP_TOKEN, BOT_TOKEN, EmulatorThread
from stat_bot.jobs.config import JobConfigs
from stat_bot.jobs.model import JobRequest, JobStatus, ReportState
from stat_bot.queue import Queue, open_queue
from stat_bot.queue.postgres import PostgresQueue
from stat_bot.queue.sqlite import SQLiteQueue
from stat_bot.settings import Settings
from stat_bot.web.metrics import LATENCY_BUCKETS
from tests.e2e.slack_service import SlackService, service_env
from tests.integration.conftest import wait_status, wait_until
from tests.peers import free_port
from tests.postgres_fixtures import with_database
from tests.web_fixtures import WebSession

CONFIG = {
    "ops": {
        "jobs": {
            "check": {"run_args_template": "true", "report_success": False},
            "slow": {"run_args_template": "sleep 0.3", "report_success": False},
        }
    }
}
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: FlaskClient) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.headers["Content-Type"] == CONTENT_TYPE_LATEST
    found: Samples = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for s in family.samples:
            found[(s.name, frozenset(s.labels.items()))] = s.value
    return found


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


@pytest.fixture
def configs(configure: Callable[[dict[str, Any]], JobConfigs]) -> JobConfigs:
    return configure(CONFIG)


@pytest.fixture
def client(make_web_app: Callable[..., Flask], configs: JobConfigs) -> FlaskClient:
    """An anonymous client: none of these routes needs a login."""
    return make_web_app().test_client()


def readyz(client: FlaskClient) -> tuple[int, dict[str, Any]]:
    response = client.get("/readyz")
    return response.status_code, response.get_json()


# -- /healthz and /readyz ------------------------------------------------------------------------


def test_healthz_answers_ok_without_login(client: FlaskClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_readyz_without_a_dispatcher_is_503_saying_so(client: FlaskClient) -> None:
    status, body = readyz(client)
    assert status == 503
    assert body["ready"] is False
    assert body["checks"]["database"]["ready"] is True
    dispatcher = body["checks"]["dispatcher"]
    assert dispatcher["ready"] is False
    assert "stat-bot dispatcher" in dispatcher["detail"]
    assert "bot" not in body["checks"]  # Slack is not configured: no bot expected


def test_readyz_is_ready_while_a_dispatcher_runs_and_not_after(
    client: FlaskClient, configs: JobConfigs, thread_dispatcher: Callable[..., Any]
) -> None:
    td = thread_dispatcher(configs)
    status, body = readyz(client)
    assert status == 200, body
    assert body["ready"] is True
    assert set(body["checks"]) == {"database", "dispatcher", "delivery"}
    assert "1 dispatcher(s) alive" in body["checks"]["dispatcher"]["detail"]
    assert body["checks"]["delivery"] == {
        "ready": True,
        "detail": "every message has been delivered",
    }
    td.stop()  # a clean stop unregisters the dispatcher
    status, body = readyz(client)
    assert status == 503
    assert body["checks"]["dispatcher"]["ready"] is False


def test_a_stale_dispatcher_heartbeat_is_not_ready(
    client: FlaskClient, queue: Queue, settings: Settings
) -> None:
    queue.register_worker("gone", "node1", 4242, now=time.time() - settings.lost_after - 10)
    status, body = readyz(client)
    assert status == 503
    detail = body["checks"]["dispatcher"]["detail"]
    assert "LOST_AFTER" in detail
    assert "s ago" in detail
    queue.heartbeat("gone")  # it beats again: ready
    assert readyz(client)[0] == 200


def broken_queue(tmp_path: Path, database_url: str) -> tuple[Queue, str]:
    """A queue whose database fails every call, and words of the reason it gives: on SQLite
    a file that is not a database (a disk gone wrong, a bad restore), on PostgreSQL a
    database that is not there (dropped, or a typo in DATABASE_URL)."""
    if database_url.startswith("sqlite:"):
        path = tmp_path / "broken" / "stat-bot.sqlite3"
        path.parent.mkdir()
        path.write_bytes(b"this is not a database\n" * 512)
        return SQLiteQueue(path), "not a database"
    missing = with_database(database_url, "statbot_no_such_database")
    return PostgresQueue(missing, connect_timeout=2), "does not exist"


def test_a_database_error_is_503_with_the_reason_and_healthz_stays_ok(
    make_web_app: Callable[..., Flask], configs: JobConfigs, tmp_path: Path, database_url: str
) -> None:
    broken, reason = broken_queue(tmp_path, database_url)
    client = make_web_app(queue=broken).test_client()
    status, body = readyz(client)
    assert status == 503
    database = body["checks"]["database"]
    assert database["ready"] is False
    assert reason in database["detail"]
    assert body["checks"]["dispatcher"]["ready"] is False
    assert client.get("/healthz").status_code == 200
    samples = scrape(client)  # the scrape still answers, saying the database is down
    assert value(samples, "stat_bot_database_up") == 0
    broken.close()


def test_an_unopenable_database_is_503_not_500(
    make_web_app: Callable[..., Flask],
    make_settings: Callable[..., Settings],
    configs: JobConfigs,
    tmp_path: Path,
    database_url: str,
) -> None:
    if database_url.startswith("sqlite:"):  # a path below a file
        blocker = tmp_path / "a-file"
        blocker.write_text("")
        unopenable = f"sqlite:///{blocker}/sub/stat-bot.sqlite3"
    else:  # a server that does not answer
        unopenable = f"postgresql://postgres@127.0.0.1:{free_port()}/stat"
    settings = make_settings(database_url=unopenable, database_connect_timeout=2)
    app = create_app_without_queue(make_web_app, settings)
    status, body = readyz(app.test_client())
    assert status == 503
    assert "cannot be opened" in body["checks"]["database"]["detail"]


def create_app_without_queue(make_web_app: Callable[..., Flask], settings: Settings) -> Flask:
    """The app opening its own queue from DATABASE_URL, as `stat-bot web` does."""
    return make_web_app(settings, queue=None)


# -- the bot's heartbeat --------------------------------------------------------------------------


@pytest.fixture
def slack_settings(
    make_settings: Callable[..., Settings], slack_emulator: EmulatorThread
) -> Settings:
    return make_settings(
        slack_bot_token=BOT_TOKEN, slack_app_token=APP_TOKEN, slack_api_url=slack_emulator.api_url
    )


@pytest.fixture
def service(
    home: Path, slack_emulator: EmulatorThread, configs: JobConfigs, database_url: str
) -> Iterator[Callable[..., SlackService]]:
    """`stat-bot` processes (bot, dispatcher) against the emulator; all stopped at the end."""
    started: list[SlackService] = []

    def make(**env: str) -> SlackService:
        env_ = service_env(home, slack_emulator.api_url, database_url=database_url, **env)
        svc = SlackService(home, slack_emulator, env_)
        started.append(svc)
        return svc

    yield make
    for svc in started:
        svc.stop()


def bot_beat(queue: Queue) -> Any:
    """This host's bot's beat (a bot beats as `bot:<host>`)."""
    return next((b for b in queue.beats() if b.component == f"bot:{socket.gethostname()}"), None)


def test_a_running_bot_makes_readyz_ready_and_a_stopped_one_not(
    make_web_app: Callable[..., Flask],
    slack_settings: Settings,
    service: Callable[..., SlackService],
    queue: Queue,
) -> None:
    client = make_web_app(slack_settings).test_client()
    svc = service()
    svc.start("dispatcher")
    bot = svc.start("bot")

    status, body = wait_until(
        lambda: (r := readyz(client))[0] == 200 and r, what="/readyz to be ready"
    )
    assert body["checks"]["bot"]["ready"] is True
    assert f":{bot.pid}" in body["checks"]["bot"]["detail"]
    assert value(scrape(client), "stat_bot_bot_connected") == 1

    # While connected it beats every HEARTBEAT_INTERVAL (0.5 s here), from its own thread.
    first = bot_beat(queue).at
    wait_until(lambda: bot_beat(queue).at > first, timeout=5, what="a second beat")
    assert bot_beat(queue).state == "connected"

    bot.send_signal(signal.SIGTERM)
    assert bot.wait(20) == 0, svc.log_of("bot")
    status, body = readyz(client)
    assert status == 503
    check = body["checks"]["bot"]
    assert check["ready"] is False
    assert "stopped" in check["detail"]
    assert body["checks"]["dispatcher"]["ready"] is True
    assert value(scrape(client), "stat_bot_bot_connected") == 0


def test_a_bot_waiting_for_slack_says_connecting_and_why(
    make_web_app: Callable[..., Flask],
    slack_settings: Settings,
    service: Callable[..., SlackService],
    queue: Queue,
) -> None:
    client = make_web_app(slack_settings).test_client()
    svc = service(SLACK_API_URL=f"http://127.0.0.1:{free_port()}/api/")
    bot = svc.start("bot", wait=False)
    beat = wait_until(
        lambda: (b := bot_beat(queue)) is not None and "cannot be reached" in b.detail and b,
        what="the bot to say it cannot reach Slack",
    )
    assert beat.state == "connecting"
    assert beat.pid == bot.pid
    status, body = readyz(client)
    assert status == 503
    assert "connecting" in body["checks"]["bot"]["detail"]

    bot.send_signal(signal.SIGTERM)
    assert bot.wait(20) == 0, svc.log_of("bot")
    beat = bot_beat(queue)
    assert beat.state == "stopped"
    assert "stopped while waiting for Slack" in beat.detail


def test_a_bot_whose_beats_stopped_coming_is_not_ready(
    make_web_app: Callable[..., Flask], slack_settings: Settings, queue: Queue
) -> None:
    # A bot killed with SIGKILL leaves "connected" behind; its age gives it away.
    queue.beat("bot", "connected", "socket mode", hostname="h", pid=7, now=time.time() - 60)
    queue.register_worker("w", "h", 8)
    status, body = readyz(make_web_app(slack_settings).test_client())
    assert status == 503
    assert "LOST_AFTER" in body["checks"]["bot"]["detail"]
    queue.beat("bot", "connected", "socket mode", hostname="h", pid=7)
    assert readyz(make_web_app(slack_settings).test_client())[0] == 200


def test_one_connected_bot_of_two_hosts_is_enough(
    make_web_app: Callable[..., Flask], slack_settings: Settings, queue: SQLiteQueue
) -> None:
    """Bots on two hosts beat in rows of their own: hostb's stopping does not hide hosta's."""
    queue.register_worker("w", "h", 8)
    old = time.time() - 600
    queue.beat("bot", "stopped", "the bot exited", hostname="h", pid=1, now=old)  # older version
    queue.beat("bot:hosta", "connected", "socket mode", hostname="hosta", pid=11)
    queue.beat("bot:hostb", "stopped", "the bot exited", hostname="hostb", pid=22)
    client = make_web_app(slack_settings).test_client()
    status, body = readyz(client)
    assert status == 200
    assert body["checks"]["bot"]["detail"].startswith("bot hosta:11 connected")
    queue.beat("bot:hostb", "connected", "socket mode", hostname="hostb", pid=23)
    status, body = readyz(client)
    assert status == 200
    assert body["checks"]["bot"]["detail"].startswith("2 bots connected (")
    samples = scrape(client)
    assert value(samples, "stat_bot_bot_connected") == 1
    assert value(samples, "stat_bot_bots_connected") == 2

    stale = time.time() - 60  # LOST_AFTER is 5 s here
    queue.beat("bot:hosta", "connected", "socket mode", hostname="hosta", pid=11, now=stale)
    queue.beat("bot:hostb", "connecting", "reconnecting", hostname="hostb", pid=23)
    status, body = readyz(client)
    assert status == 503
    assert body["checks"]["bot"]["detail"].startswith("bot hostb:23 is connecting (reconnecting), ")
    assert value(scrape(client), "stat_bot_bots_connected") == 0


# -- /metrics ------------------------------------------------------------------------------------


def request(job_type: str = "check", **kwargs: Any) -> JobRequest:
    return JobRequest(namespace="ops", job_type=job_type, coalesce=False, **kwargs)


def run_job(
    queue: Queue,
    t0: float,
    *,
    wait: float,
    run: float,
    status: JobStatus = JobStatus.SUCCEEDED,
    job_type: str = "check",
) -> int:
    """A job through the queue by hand, with chosen times: enqueued at t0, started `wait`
    later, finished `run` after that."""
    job = queue.enqueue(request(job_type), now=t0).job
    (claimed,) = queue.claim("worker-1", 1, now=t0 + wait)
    assert claimed.id == job.id
    queue.finish(job.id, status, 0, now=t0 + wait + run)
    return job.id


def test_metrics_count_jobs_depth_latency_duration_and_failures(
    client: FlaskClient, queue: Queue
) -> None:
    t0 = time.time() - 600
    run_job(queue, t0, wait=0.003, run=0.4)
    run_job(queue, t0 + 1, wait=0.2, run=7.0)
    failed = run_job(queue, t0 + 2, wait=40.0, run=2.0, status=JobStatus.FAILED, job_type="slow")
    queue.record_report(failed, ReportState.FAILED, "channel_not_found")
    queue.enqueue(request())  # due now: counts towards the depth
    queue.enqueue(request(delay_seconds=3600))  # not due for an hour: does not
    old = time.time() - 3 * 86400  # outside the histograms' 24 h window
    run_job(queue, old, wait=1000.0, run=1000.0)

    samples = scrape(client)
    assert value(samples, "stat_bot_database_up") == 1
    assert value(samples, "stat_bot_jobs", namespace="ops", status="succeeded") == 3
    assert value(samples, "stat_bot_jobs", namespace="ops", status="failed") == 1
    assert value(samples, "stat_bot_jobs", namespace="ops", status="queued") == 2
    assert value(samples, "stat_bot_queue_depth", namespace="ops") == 1
    assert value(samples, "stat_bot_report_delivery_failures", namespace="ops") == 1

    # Dispatch latency over the last 24 h: 0.003 s, 0.2 s and 40 s (not the old 1000 s).
    latency = "stat_bot_dispatch_latency_seconds"
    assert value(samples, f"{latency}_count") == 3
    assert value(samples, f"{latency}_sum") == pytest.approx(40.203, abs=1e-3)
    assert value(samples, f"{latency}_bucket", le="0.005") == 1
    assert value(samples, f"{latency}_bucket", le="0.25") == 2
    assert value(samples, f"{latency}_bucket", le="30.0") == 2
    assert value(samples, f"{latency}_bucket", le="60.0") == 3
    assert value(samples, f"{latency}_bucket", le="+Inf") == 3
    assert len([k for k in samples if k[0] == f"{latency}_bucket"]) == len(LATENCY_BUCKETS) + 1

    # Durations by namespace and job type.
    duration = "stat_bot_job_duration_seconds"
    check = {"namespace": "ops", "job_type": "check"}
    assert value(samples, f"{duration}_count", **check) == 2
    assert value(samples, f"{duration}_sum", **check) == pytest.approx(7.4)
    assert value(samples, f"{duration}_bucket", le="0.5", **check) == 1
    assert value(samples, f"{duration}_bucket", le="10.0", **check) == 2
    assert value(samples, f"{duration}_count", namespace="ops", job_type="slow") == 1


def test_latency_is_measured_from_when_a_delayed_job_was_due(
    client: FlaskClient, queue: Queue
) -> None:
    t0 = time.time() - 600
    job = queue.enqueue(request(delay_seconds=60), now=t0).job
    queue.claim("w", 1, now=t0 + 60.5)
    queue.finish(job.id, JobStatus.SUCCEEDED, 0, now=t0 + 61)
    samples = scrape(client)
    assert value(samples, "stat_bot_dispatch_latency_seconds_sum") == pytest.approx(0.5)


def test_metrics_of_real_runs_and_of_the_services_processes(
    client: FlaskClient,
    configs: JobConfigs,
    queue: Queue,
    thread_dispatcher: Callable[..., Any],
    web_user: tuple[str, str],
) -> None:
    thread_dispatcher(configs)
    job = queue.enqueue(request("slow")).job
    done = wait_status(queue, job.id, JobStatus.SUCCEEDED)
    queue.count("webhook_requests", "accepted", by=2)  # as the webhook routes count them
    queue.count("webhook_requests", "bad_signature")
    session = WebSession(client)
    session.login(*web_user)
    session.post_json("/slack-proxy", {"summary": ""})  # refused: counted as invalid

    samples = scrape(client)
    assert value(samples, "stat_bot_jobs", namespace="ops", status="succeeded") == 1
    assert value(samples, "stat_bot_queue_depth", namespace="ops") == 0
    assert value(samples, "stat_bot_dispatchers") == 1
    assert value(samples, "stat_bot_bot_connected") == 0
    slow = {"namespace": "ops", "job_type": "slow"}
    assert done.started_at is not None
    assert done.finished_at is not None
    assert value(samples, "stat_bot_job_duration_seconds_sum", **slow) == pytest.approx(
        done.finished_at - done.started_at
    )
    assert value(samples, "stat_bot_job_duration_seconds_sum", **slow) >= 0.3
    assert value(samples, "stat_bot_dispatch_latency_seconds_count") == 1
    assert value(samples, "stat_bot_webhook_requests_total", result="accepted") == 2
    assert value(samples, "stat_bot_webhook_requests_total", result="bad_signature") == 1
    assert value(samples, "stat_bot_relay_requests_total", result="invalid") == 1


def test_every_worker_and_app_reads_the_same_figures(
    make_web_app: Callable[..., Flask], configs: JobConfigs, queue: Queue, settings: Settings
) -> None:
    run_job(queue, time.time() - 5, wait=0.01, run=0.1)
    other_queue = open_queue(settings)  # as another gunicorn worker would have
    try:
        first = scrape(make_web_app().test_client())
        second = scrape(make_web_app(queue=other_queue).test_client())
    finally:
        other_queue.close()
    assert first == second
    assert value(first, "stat_bot_jobs", namespace="ops", status="succeeded") == 1
    # Each app has its own registry: nothing of ours lands in prometheus-client's global one.
    global_names = {f.name for f in prometheus_client.REGISTRY.collect()}
    assert not [n for n in global_names if n.startswith("stat_bot_")]


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_metrics_sum_the_work_of_two_dispatcher_processes(
    backend: str,
    request: pytest.FixtureRequest,
    configure: Callable[[dict[str, Any]], JobConfigs],
    make_web_app: Callable[..., Flask],
    make_settings: Callable[..., Settings],
    start_dispatcher: Callable[..., Any],
    tmp_path: Path,
) -> None:
    """Two `stat-bot dispatcher` processes share the database; each runs two held jobs.

    Two web apps on their own connections (as two gunicorn workers, on any host) answer
    the same totals, and the per-dispatcher gauges add up to them. On PostgreSQL as on
    SQLite: the same figures whichever backend holds them.
    """
    url = request.getfixturevalue("postgres_url") if backend == "postgres" else ""
    settings = make_settings(database_url=url) if url else make_settings()
    env = {"DATABASE_URL": url} if url else {}
    queue, other_queue = open_queue(settings), open_queue(settings)
    request.addfinalizer(queue.close)
    request.addfinalizer(other_queue.close)
    gate = tmp_path / "gate"
    configure(
        {
            "ops": {
                "jobs": {
                    "held": {
                        "run_args_template": f"while [ ! -e {gate} ]; do sleep 0.05; done",
                        "report_success": False,
                        "concurrency": 4,
                    }
                }
            }
        }
    )
    first = start_dispatcher(DISPATCHER_CONCURRENCY="2", **env)
    second = start_dispatcher(DISPATCHER_CONCURRENCY="2", **env)
    held = JobRequest(namespace="ops", job_type="held", coalesce=False, concurrency=4)
    ids = [queue.enqueue(held).job.id for _ in range(4)]
    # Each may hold two: four running means two on each.
    wait_until(
        lambda: all((j := queue.get(i)) is not None and j.pid for i in ids),
        timeout=30,
        what="four held jobs running",
    )
    workers = {w.pid: w for w in queue.workers()}
    a, b = workers[first.pid], workers[second.pid]
    apps = [
        make_web_app(settings, queue=queue).test_client(),
        make_web_app(settings, queue=other_queue).test_client(),
    ]
    for client in apps:
        samples = scrape(client)
        assert value(samples, "stat_bot_jobs", namespace="ops", status="running") == 4
        assert value(samples, "stat_bot_dispatchers") == 2
        assert value(samples, "stat_bot_dispatchers_stale") == 0
        for w in (a, b):
            labels = {"worker": w.id, "host": w.hostname}
            assert value(samples, "stat_bot_dispatcher_running_jobs", **labels) == 2
            age = value(samples, "stat_bot_dispatcher_heartbeat_age_seconds", **labels)
            assert age is not None
            assert 0 <= age < settings.lost_after

    gate.touch()
    for job_id in ids:
        wait_status(queue, job_id, JobStatus.SUCCEEDED, timeout=30)
    by = {queue.get(i).worker_id for i in ids}  # type: ignore[union-attr]
    assert by == {a.id, b.id}  # both did some of the work
    answers = [scrape(client) for client in apps]
    for samples in answers:
        assert value(samples, "stat_bot_jobs", namespace="ops", status="succeeded") == 4
        assert value(samples, "stat_bot_jobs", namespace="ops", status="running") is None
        of_held = {"namespace": "ops", "job_type": "held"}
        assert value(samples, "stat_bot_job_duration_seconds_count", **of_held) == 4
        assert value(samples, "stat_bot_dispatch_latency_seconds_count") == 4
        for w in (a, b):
            labels = {"worker": w.id, "host": w.hostname}
            assert value(samples, "stat_bot_dispatcher_running_jobs", **labels) == 0
    # Everything but the heartbeat ages (which grow between the two scrapes) is the same.
    same = [
        {k: v for k, v in samples.items() if "heartbeat_age" not in k[0]} for samples in answers
    ]
    assert same[0] == same[1]


def test_metrics_show_a_dispatcher_whose_heartbeat_is_stale_by_the_queues_clock(
    client: FlaskClient, queue: SQLiteQueue, settings: Settings
) -> None:
    """No dispatcher runs to recover it, so it stays registered and stale."""
    now = queue.now()
    queue.register_worker("hostb:7:abcdef", "hostb", 7, now=now - 600)
    queue.heartbeat("hostb:7:abcdef", now=now - settings.lost_after - 100)
    queue.enqueue(request())
    assert len(queue.claim("hostb:7:abcdef", 1)) == 1
    samples = scrape(client)
    assert value(samples, "stat_bot_dispatchers") == 0
    assert value(samples, "stat_bot_dispatchers_stale") == 1
    labels = {"worker": "hostb:7:abcdef", "host": "hostb"}
    assert value(samples, "stat_bot_dispatcher_running_jobs", **labels) == 1
    age = value(samples, "stat_bot_dispatcher_heartbeat_age_seconds", **labels)
    assert age == pytest.approx(settings.lost_after + 100, abs=30)


def test_metrics_of_an_empty_queue_are_zeros(client: FlaskClient) -> None:
    samples = scrape(client)
    assert value(samples, "stat_bot_dispatch_latency_seconds_count") == 0
    assert value(samples, "stat_bot_dispatchers") == 0
    assert value(samples, "stat_bot_dispatchers_stale") == 0
    assert value(samples, "stat_bot_database_up") == 1
    assert not [k for k in samples if k[0] == "stat_bot_jobs"]
    assert not [k for k in samples if k[0].startswith("stat_bot_dispatcher_")]
