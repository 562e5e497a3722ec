"""`/metrics`: Prometheus text format, read from the queue at each scrape.

Every figure comes from the shared database when Prometheus asks, through a custom
collector on this app's own CollectorRegistry (not prometheus-client's global one).
So every gunicorn worker, on whichever host, and the bot and dispatcher processes that
write the same database, give the same answer: no per-process counters to add up or
lose on restart, and the totals are those of every dispatcher on every host, whichever
did the work. Ages (heartbeats, the oldest undelivered message, what is due) are taken
against the queue's clock (`Queue.now()`: the database server's on PostgreSQL), so a web
host whose clock is off does not make a live dispatcher look dead.

Per dispatcher (labels `worker`, its id, and `host`): the jobs it runs and the age of its
heartbeat. A restarted dispatcher has a new id, so its series start afresh.

The two histograms are recomputed from the jobs created in the last WINDOW seconds
(24 h), not accumulated: read them with histogram_quantile() on the raw buckets
(`histogram_quantile(0.9, stat_bot_job_duration_seconds_bucket)`), not with rate().

No login: Prometheus scrapes it. It says how busy the service is and which
namespaces exist, nothing secret, but restrict it at the reverse proxy (DEPLOY.md).
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence

import structlog
from flask import Blueprint, Flask, Response, current_app
from flask_wtf.csrf import CSRFProtect
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector, CollectorRegistry

from stat_bot.jobs.model import JobStatus, ReportState
from stat_bot.queue.base import JobTiming
from stat_bot.views import dispatcher_views
from stat_bot.web.health import bot_connected, bots_connected
from stat_bot.web.services import KEY, Services

log = structlog.get_logger(__name__)

bp = Blueprint("metrics", __name__)
REGISTRY_KEY = "stat_bot.metrics"

WINDOW = 24 * 3600.0
# Dispatch latency: from ~1 ms (an idle dispatcher) to minutes (a backlog).
LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
# Job duration: from a quick check to the default JOB_TIMEOUT of an hour.
DURATION_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


def histogram_buckets(
    values: Sequence[float], bounds: Sequence[float]
) -> tuple[list[tuple[str, float]], float]:
    """Cumulative (le, count) pairs ending with +Inf, and the sum, for one label set."""
    ordered = sorted(values)
    buckets = [(_le(b), float(bisect.bisect_right(ordered, b))) for b in bounds]
    buckets.append(("+Inf", float(len(ordered))))
    return buckets, float(sum(ordered))


def _le(bound: float) -> str:
    return str(float(bound))


def dispatch_latency(t: JobTiming) -> float | None:
    """How long a started job waited after it was due (never before it was created)."""
    if t.started_at is None:
        return None
    return max(0.0, t.started_at - max(t.start_after, t.created_at))


def job_duration(t: JobTiming) -> float | None:
    if t.started_at is None or t.finished_at is None or not t.status.finished:
        return None
    return max(0.0, t.finished_at - t.started_at)


class QueueCollector(Collector):
    """Reads the queue at scrape time and yields STAT bot's metric families."""

    def __init__(self, services: Services, window: float = WINDOW) -> None:
        self._services = services
        self._window = window

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily(
            "stat_bot_database_up", "1 if the queue database answered this scrape, else 0"
        )
        try:
            families = list(self._families(self._services.queue.now()))
        except Exception as error:  # a scrape must still answer, saying the database is down
            log.warning("metrics: the queue database cannot be read", reason=str(error))
            up.add_metric([], 0)
            return [up]
        up.add_metric([], 1)
        return [up, *families]

    def _families(self, now: float) -> Iterator[Metric]:
        queue = self._services.queue
        settings = self._services.settings
        counts = queue.job_counts()

        jobs = GaugeMetricFamily(
            "stat_bot_jobs",
            "Jobs in the queue's history (kept HISTORY_DAYS) by namespace and status",
            labels=["namespace", "status"],
        )
        by_status: dict[tuple[str, str], int] = defaultdict(int)
        failures: dict[str, int] = defaultdict(int)
        namespaces = set()
        for c in counts:
            namespaces.add(c.namespace)
            by_status[(c.namespace, str(c.status))] += c.count
            if c.report_state == ReportState.FAILED:
                failures[c.namespace] += c.count
        for (namespace, status), n in sorted(by_status.items()):
            jobs.add_metric([namespace, status], n)
        yield jobs

        depth = GaugeMetricFamily(
            "stat_bot_queue_depth",
            "Queued jobs that are due now (delayed jobs not yet due are not counted)",
            labels=["namespace"],
        )
        due: dict[str, int] = dict.fromkeys(namespaces, 0)
        queued = sum(n for (_, status), n in by_status.items() if status == JobStatus.QUEUED)
        if queued:
            for job in queue.jobs(statuses=(JobStatus.QUEUED,), limit=queued + 1000):
                if job.start_after <= now:
                    due[job.namespace] = due.get(job.namespace, 0) + 1
        for namespace, n in sorted(due.items()):
            depth.add_metric([namespace], n)
        yield depth

        failed = GaugeMetricFamily(
            "stat_bot_report_delivery_failures",
            "Jobs in the history whose report could not be delivered to Slack",
            labels=["namespace"],
        )
        for namespace in sorted(namespaces):
            failed.add_metric([namespace], failures.get(namespace, 0))
        yield failed

        outbox = queue.outbox_summary()
        undelivered = GaugeMetricFamily(
            "stat_bot_outbox_messages",
            "Messages STAT bot sends on its own (reports, notices) by delivery state: "
            "pending ones are being retried; failed and expired ones were given up",
            labels=["state"],
        )
        for state in ("pending", "failed", "expired"):
            undelivered.add_metric([state], outbox.by_state.get(state, 0))
        yield undelivered
        oldest = GaugeMetricFamily(
            "stat_bot_outbox_oldest_pending_age_seconds",
            "Age of the oldest message not yet accepted by Slack (0 when none waits)",
        )
        age = now - outbox.oldest_created_at if outbox.oldest_created_at is not None else 0.0
        oldest.add_metric([], max(0.0, age))
        yield oldest

        yield from self._histograms(queue.job_timings(since=now - self._window))

        for name, what in (
            ("webhook_requests", "Webhook"),
            ("relay_requests", "STAT relay"),
            ("trac_requests", "Trac notification"),
            ("alert_requests", "Alert (Alertmanager, PagerDuty)"),
        ):
            counter = CounterMetricFamily(
                f"stat_bot_{name}", f"{what} requests by result", labels=["result"]
            )
            for result, n in sorted(queue.counters(name).items()):
                counter.add_metric([result], n)
            yield counter

        dropped = CounterMetricFamily(
            "stat_bot_slack_events_dropped",
            "Slack events the bot did not answer, by reason: duplicate (Slack delivered the "
            "event again, and this or another bot process had answered it)",
            labels=["reason"],
        )
        for reason, n in sorted(queue.counters("slack_events_dropped").items()):
            dropped.add_metric([reason], n)
        yield dropped

        yield from self._dispatchers(now)

        beats = queue.beats()
        bot = GaugeMetricFamily(
            "stat_bot_bot_connected",
            "1 if a Slack bot's last beat says connected and is younger than LOST_AFTER",
        )
        bot.add_metric([], 1 if bot_connected(beats, settings, now) else 0)
        yield bot
        bots = GaugeMetricFamily(
            "stat_bot_bots_connected",
            "Slack bot processes (one per host) whose last beat says connected and is "
            "younger than LOST_AFTER",
        )
        bots.add_metric([], len(bots_connected(beats, settings, now)))
        yield bots

    def _dispatchers(self, now: float) -> Iterator[Metric]:
        """How many dispatchers live and look dead, and what each runs, on every host."""
        queue = self._services.queue
        running = queue.jobs(statuses=[JobStatus.RUNNING], limit=1_000_000)
        views = dispatcher_views(queue.workers(), running, now, self._services.settings.lost_after)
        live = GaugeMetricFamily(
            "stat_bot_dispatchers",
            "Dispatchers whose heartbeat is younger than LOST_AFTER seconds",
        )
        live.add_metric([], sum(not v.stale for v in views))
        yield live
        stale = GaugeMetricFamily(
            "stat_bot_dispatchers_stale",
            "Dispatchers still registered whose heartbeat is older than LOST_AFTER seconds "
            "(presumed dead: another dispatcher re-queues or marks lost what they ran)",
        )
        stale.add_metric([], sum(v.stale for v in views))
        yield stale
        jobs = GaugeMetricFamily(
            "stat_bot_dispatcher_running_jobs",
            "Jobs each registered dispatcher is running, by its id and host",
            labels=["worker", "host"],
        )
        age = GaugeMetricFamily(
            "stat_bot_dispatcher_heartbeat_age_seconds",
            "Seconds since each registered dispatcher's last heartbeat, by the database's clock",
            labels=["worker", "host"],
        )
        for v in views:
            labels = [v.worker.id, v.worker.hostname]
            jobs.add_metric(labels, v.running)
            age.add_metric(labels, v.heartbeat_age)
        yield jobs
        yield age

    def _histograms(self, timings: list[JobTiming]) -> Iterator[Metric]:
        hours = f"{self._window / 3600:g} h"
        latency = HistogramMetricFamily(
            "stat_bot_dispatch_latency_seconds",
            "Seconds from when a job was due to when it started, over jobs created in the "
            f"last {hours} (recomputed each scrape: use histogram_quantile, not rate)",
        )
        waits = [w for t in timings if (w := dispatch_latency(t)) is not None]
        buckets, total = histogram_buckets(waits, LATENCY_BUCKETS)
        latency.add_metric([], buckets, total)
        yield latency

        duration = HistogramMetricFamily(
            "stat_bot_job_duration_seconds",
            f"Seconds finished jobs ran, over jobs created in the last {hours} "
            "(recomputed each scrape: use histogram_quantile, not rate)",
            labels=["namespace", "job_type"],
        )
        runs: dict[tuple[str, str], list[float]] = defaultdict(list)
        for t in timings:
            d = job_duration(t)
            if d is not None:
                runs[(t.namespace, t.job_type)].append(d)
        for labels, values in sorted(runs.items()):
            buckets, total = histogram_buckets(values, DURATION_BUCKETS)
            duration.add_metric(list(labels), buckets, total)
        yield duration


def registry_for(services: Services) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(QueueCollector(services))
    return registry


@bp.route("/metrics")
def metrics() -> Response:
    """The Prometheus exposition of this STAT bot's queue."""
    registry: CollectorRegistry = current_app.extensions[REGISTRY_KEY]
    response = Response(generate_latest(registry), status=200)
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    response.headers["Cache-Control"] = "no-store"
    return response


def init_app(app: Flask, csrf: CSRFProtect) -> None:
    """Register this module's routes (csrf: to exempt routes that authenticate otherwise)."""
    app.extensions[REGISTRY_KEY] = registry_for(app.extensions[KEY])
    app.register_blueprint(bp)
