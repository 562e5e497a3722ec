"""An incident's whole timeline: its stored entries plus what its linked jobs did.

A linked job's result is not copied into the timeline when the job ends (the
dispatcher knows nothing of incidents); it is read from the job itself whenever
the timeline is shown, so it is never stale and never missing.
"""

from __future__ import annotations

from stat_bot.incidents.model import EntryKind, Incident, TimelineEntry
from stat_bot.queue.base import Queue


def full_timeline(queue: Queue, incident: Incident) -> list[TimelineEntry]:
    """Stored entries and each linked job's start and end, in time order."""
    entries = list(queue.incident_timeline(incident.id))
    for job_id in incident.jobs:
        job = queue.get(job_id)
        if job is None:  # pruned from the queue's history
            continue
        if job.status.finished and job.finished_at is not None:
            exit_code = "" if job.exit_code is None else f", exit {job.exit_code}"
            entries.append(
                TimelineEntry(
                    EntryKind.JOB,
                    f"job #{job.id} `{job.full_type}` {job.status}{exit_code}",
                    user=job.user,
                    user_name=job.user_name,
                    at=job.finished_at,
                    data={"job_id": job.id, "status": str(job.status)},
                    incident_id=incident.id,
                )
            )
    entries.sort(key=lambda e: (e.at or 0.0, e.id if e.id is not None else 1 << 62))
    return entries
