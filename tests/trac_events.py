"""Trac ticket events as contrib/trac/stat_bot_notify.py sends them, signed, for tests.

The signature is computed here from the documented contract (HMAC-SHA256 of the raw
body, hex, after `sha256=`), not with the plugin's own code, so a test of either side
checks the contract rather than agreeing with itself.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from typing import Any

SECRET = "trac-and-stat-bot-share-this"

FIELDS = {
    "summary": "Node will not boot",
    "reporter": "alice",
    "owner": "",
    "cc": "",
    "type": "Hardware",
    "priority": "High",
    "status": "new",
    "resolution": "",
    "component": "compute",
    "milestone": "",
    "version": "",
    "keywords": "",
    "description": "Power LED amber, no POST.",
    "xname": "x1000c0s0b0n0",
    "time": "2025-01-31T09:15:00.123456+00:00",
    "changetime": "2025-01-31T09:15:00.123456+00:00",
}


def event(kind: str = "created", ticket: int = 12, **values: Any) -> dict[str, Any]:
    """An event body; `fields` given are merged into the default ticket's fields."""
    body: dict[str, Any] = {
        "event": kind,
        "id": str(uuid.uuid4()),
        "ticket": ticket,
        "fields": {**FIELDS, **values.pop("fields", {})},
        "old_values": {},
        "comment": "",
        "author": "alice",
        "time": "2025-01-31T09:15:00.123456+00:00",
        "link": f"https://trac.example.org/stat/ticket/{ticket}",
    }
    body.update(values)
    return body


def encode(body: Any) -> bytes:
    return json.dumps(body, ensure_ascii=False).encode()


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def headers(body: bytes, event_id: str | None, secret: str = SECRET) -> dict[str, str]:
    sent = {
        "Content-Type": "application/json",
        "User-Agent": "stat-bot-notify/1 (Trac plugin)",
        "X-Trac-Signature-256": sign(secret, body),
    }
    if event_id is not None:
        sent["X-Trac-Event-Id"] = event_id
    return sent
