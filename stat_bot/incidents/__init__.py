"""Incidents: a Slack channel per incident, roles, status, a timeline and a postmortem.

The model (model.py) is what the queue stores; the lifecycle (service.py) decides
what a command or a click changes and which messages that causes; the messages
themselves are rendered from JSON templates (templates.py) by messages.py.
"""
