"""HPC-STAT's relay: `/slack-proxy` (the ticket form -> the STAT channel) and `/set-interval`.

Contract (the dashboard's pages call these too):
- POST /slack-proxy, JSON {summary, type, priority, xname, action} -> 200 {"ok": true,
  "channel", "ts"}; 400 {"error", "field"}; 401; 502 {"error"} (Slack down); 503 (no STAT_CHANNEL).
- GET /set-interval -> {"schedule", "interval", "interval_seconds", "cron", "next_fire_at"};
  POST JSON {"interval": "1h"|"2h"|"5h"|"1d"|"default"} or {"minutes": N} -> the same body,
  400 {"error", "field": "interval"|"minutes"}, 404 when the schedule does not exist.
"""

from __future__ import annotations

from flask import Flask
from flask_wtf.csrf import CSRFProtect

# The form's choices, as HPC-STAT's form offers them (matched without regard to case).
TICKET_TYPES = ("Bug", "Feature Request", "Hardware", "Cable", "Switch", "Firmware", "Task")
PRIORITIES = ("High", "Medium", "Low")
ACTIONS = ("new", "accepted", "assigned", "reassigned", "resolved", "reopened", "closed")
# The active-tickets report's intervals, as HPC-STAT's dropdown offers them.
INTERVALS = {"1h": 3600, "2h": 7200, "5h": 18000, "1d": 86400}


def init_app(app: Flask, csrf: CSRFProtect) -> None:
    """Register this module's routes (csrf: to exempt routes that authenticate otherwise)."""
