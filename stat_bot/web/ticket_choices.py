"""The ticket form's choices: the site's own ticket types and priorities, read from its Trac.

The dashboard's STAT ticket form offers what this site's Trac offers (`[ticket-type]`,
priorities: `defect, enhancement, task` on a fresh Trac), so a notice names a type the
site really uses. The lists are read with the trac jobs' own settings (TRAC_URL,
TRAC_USER, TRAC_PASSWORD or TRAC_PASSWORD_FILE) and kept for a few minutes per
process. Without a Trac, or while it cannot be reached, the form falls back to
HPC-STAT's lists - what HPC-STAT's own form sends - and says why. The relay accepts
both, so HPC-STAT's page keeps working beside the dashboard.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import structlog

from stat_bot.integrations.trac import TracClient, TracError
from stat_bot.settings import Settings

log = structlog.get_logger(__name__)

# HPC-STAT's form offers these (matched without regard to case).
FALLBACK_TYPES = ("Bug", "Feature Request", "Hardware", "Cable", "Switch", "Firmware", "Task")
FALLBACK_PRIORITIES = ("High", "Medium", "Low")
KEEP_SECONDS = 300.0  # the site's lists change rarely
RETRY_SECONDS = 30.0  # after a failure, ask Trac again this soon
MAX_WAIT = 3.0  # seconds a page waits for Trac before falling back


@dataclass(frozen=True, slots=True)
class TicketChoices:
    """What the form offers, and why (None: read from Trac; else the reason for the fallback)."""

    types: tuple[str, ...]
    priorities: tuple[str, ...]
    fallback_reason: str | None = None

    @property
    def accepted_types(self) -> tuple[str, ...]:
        return _union(self.types, FALLBACK_TYPES)

    @property
    def accepted_priorities(self) -> tuple[str, ...]:
        return _union(self.priorities, FALLBACK_PRIORITIES)


FALLBACK = TicketChoices(FALLBACK_TYPES, FALLBACK_PRIORITIES, "no Trac is configured (TRAC_URL)")


def _union(first: tuple[str, ...], second: tuple[str, ...]) -> tuple[str, ...]:
    seen = {value.casefold() for value in first}
    return first + tuple(value for value in second if value.casefold() not in seen)


_lock = threading.Lock()
_cache: dict[tuple[str, str | None], tuple[float, TicketChoices]] = {}


def ticket_choices(settings: Settings) -> TicketChoices:
    """The site's ticket types and priorities (cached), or HPC-STAT's with the reason."""
    if not settings.trac_url:
        return FALLBACK
    key = (settings.trac_url, settings.trac_user)
    now = time.monotonic()
    with _lock:
        cached = _cache.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
    choices = _read(settings)
    keep = KEEP_SECONDS if choices.fallback_reason is None else RETRY_SECONDS
    with _lock:
        _cache[key] = (now + keep, choices)
    return choices


def _read(settings: Settings) -> TicketChoices:
    assert settings.trac_url is not None
    try:
        password = settings.trac_password.get_secret_value() if settings.trac_password else None
        if password is None and settings.trac_password_file is not None:
            password = settings.trac_password_file.read_text(encoding="utf-8").rstrip("\r\n")
        client = TracClient(
            settings.trac_url,
            settings.trac_user,
            password,
            timeout=min(settings.trac_timeout, MAX_WAIT),
        )
        types, priorities = tuple(client.types()), tuple(client.priorities())
    except (TracError, OSError) as error:
        reason = f"Trac could not be asked ({error})"
        log.warning("ticket form: using HPC-STAT's choices", reason=str(error))
        return TicketChoices(FALLBACK_TYPES, FALLBACK_PRIORITIES, reason)
    if not types or not priorities:
        return TicketChoices(
            types or FALLBACK_TYPES,
            priorities or FALLBACK_PRIORITIES,
            "Trac listed no ticket types or priorities",
        )
    return TicketChoices(types, priorities)
