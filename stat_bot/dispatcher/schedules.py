"""The schedules job_configs.py declares, as the queue keeps them (the dispatcher syncs them).

The cron arithmetic is the jobs domain's (jobs/schedules.py).
"""

from __future__ import annotations

from stat_bot.jobs.config import JobConfigs
from stat_bot.queue.base import ScheduleRow


def config_rows(configs: JobConfigs) -> list[ScheduleRow]:
    """The schedules job_configs.py declares, as rows for the queue to keep."""
    return [
        ScheduleRow(
            key=s.key,
            namespace=s.namespace,
            job_type=s.job_type,
            cron=s.spec.cron,
            args=dict(s.spec.args),
            channel=s.spec.channel,  # its own; the rest of the rule applies when it fires
            enabled=s.spec.enabled,
        )
        for s in configs.schedules()
    ]
