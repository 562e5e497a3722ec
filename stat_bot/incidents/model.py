"""The incident model, as the queue stores it (defined in queue/incident_model.py, since the
queue may not import incidents/; named here for the rest of incidents/)."""

from stat_bot.queue.incident_model import (
    CHANGEABLE,
    EntryKind,
    Incident,
    IncidentConflictError,
    IncidentDraft,
    IncidentMessages,
    TimelineEntry,
)

__all__ = [
    "CHANGEABLE",
    "EntryKind",
    "Incident",
    "IncidentConflictError",
    "IncidentDraft",
    "IncidentMessages",
    "TimelineEntry",
]
