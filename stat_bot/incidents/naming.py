"""Incident channel names: `inc-YYYYMMDDHHMM-<slug>` within Slack's rules.

Slack allows lower-case letters, digits, hyphens and underscores, at most 80
characters. The slug comes from the description (janus converts spaces to
hyphens the same way); an incident opened by a reaction gets `auto-<6 hex>`.
"""

from __future__ import annotations

import re
import secrets
import unicodedata
from datetime import datetime
from zoneinfo import ZoneInfo

MAX_NAME = 80
PREFIX = "inc"


def slug(description: str) -> str:
    """Lower case ASCII words joined by hyphens ("" when nothing usable is left)."""
    ascii_text = unicodedata.normalize("NFKD", description).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")


def auto_slug() -> str:
    return f"auto-{secrets.token_hex(3)}"


def channel_name(description_slug: str, at: float, tz: ZoneInfo, suffix: int = 0) -> str:
    """The name for an incident opened at `at`; `suffix` > 1 after a name clash."""
    stamp = datetime.fromtimestamp(at, tz).strftime("%Y%m%d%H%M")
    tail = f"-{suffix}" if suffix > 1 else ""
    head = f"{PREFIX}-{stamp}-"
    room = MAX_NAME - len(head) - len(tail)
    body = (description_slug or "incident")[:room].rstrip("-")
    return f"{head}{body}{tail}"
