"""Cron arithmetic for schedules, in the site's time zone.

The queue guarantees a due time fires at most once; this module only says which
due time is current and when to look again. After downtime a schedule fires once
for the latest missed time, not once per missed time: a backlog of identical
reports helps nobody.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from croniter import croniter

from stat_bot.jobs.config import JobConfigs
from stat_bot.queue.base import ScheduleRow


def latest_due(cron: str, tz: ZoneInfo, now: float) -> float:
    """The most recent time at or before `now` that `cron` names."""
    start = datetime.fromtimestamp(now, tz)
    itr = croniter(cron, start)
    # croniter's get_prev is strictly before the start, so test `now` itself first.
    if croniter.match(cron, start) and start.microsecond == 0:
        return now
    return float(itr.get_prev(float))


def next_due(cron: str, tz: ZoneInfo, now: float) -> float:
    """The first time strictly after `now` that `cron` names."""
    return float(croniter(cron, datetime.fromtimestamp(now, tz)).get_next(float))


def config_rows(configs: JobConfigs) -> list[ScheduleRow]:
    """The schedules job_configs.py declares, as rows for the queue to keep."""
    return [
        ScheduleRow(
            key=s.key,
            namespace=s.namespace,
            job_type=s.job_type,
            cron=s.spec.cron,
            args=dict(s.spec.args),
            channel=s.spec.channel or configs.namespaces[s.namespace].spec.default_channel,
            enabled=s.spec.enabled,
        )
        for s in configs.schedules()
    ]
