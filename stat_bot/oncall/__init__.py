"""On-call: alerts in (Alertmanager, PagerDuty, paging tools' Slack messages), alert rules
queueing jobs, runbook steps out, the weekly handoff."""
