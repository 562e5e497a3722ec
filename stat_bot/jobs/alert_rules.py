"""What `alert_rules` in job_configs.py may say, and how a condition meets a value.

A namespace's `alert_rules` (checked in jobs/config.py against the names here) queue a
job when an alert starts firing (or resolves): an Alertmanager alert with an `xname`
label runs `hw check <xname>`. Matching an alert and building its jobs is oncall/rules.py
(it reads the queue's alert model, which jobs/ may not); the conditions are here so the
config check and the matching agree on what a pattern is.
"""

from __future__ import annotations

import re

SOURCES = ("alertmanager", "pagerduty", "slack")
STATUSES = ("firing", "resolved")
# What every alert gives a rule's args, besides the labels the rule names.
VALUES = ("alertname", "title", "service", "severity", "source", "status", "alert", "url")
REGEX_PREFIX = "re:"

Condition = bool | str | list[str]


def pattern_error(pattern: str) -> str | None:
    """Why a condition's pattern cannot be used (a bad regex), or None."""
    if pattern.startswith(REGEX_PREFIX):
        try:
            re.compile(pattern[len(REGEX_PREFIX) :])
        except re.error as error:
            return f"{pattern!r} is not a regular expression: {error}"
    elif not pattern.strip():
        return "give a value, 're:<regex>', True (present) or False (absent), not an empty one"
    return None


def meets(value: str | None, condition: Condition) -> bool:
    """True: present and not empty; False: absent or empty; text: that value (case ignored)
    or, as `re:<regex>`, a regex found in it; a list: any of its patterns."""
    if isinstance(condition, bool):
        return bool(value and value.strip()) is condition
    if value is None:
        return False
    patterns = [condition] if isinstance(condition, str) else condition
    for pattern in patterns:
        if pattern.startswith(REGEX_PREFIX):
            if re.search(pattern[len(REGEX_PREFIX) :], value):
                return True
        elif value.strip().casefold() == pattern.strip().casefold():
            return True
    return False
