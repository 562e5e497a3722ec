"""On-call: alerts in (Alertmanager, PagerDuty), runbook steps out, the weekly handoff."""
