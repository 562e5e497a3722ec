"""The Slack app manifest (slack-app-manifest.json beside this file): one source for the app's
scopes and event subscriptions.

DEPLOY.md has people paste it into Slack when creating the app, and the local
emulator sends only the events it subscribes to, so tests see what a real
workspace would send: a mention in a channel arrives once, as `app_mention`,
because the app does not subscribe to every channel message.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

MANIFEST = Path(__file__).with_name("slack-app-manifest.json")


@cache
def manifest() -> dict[str, Any]:
    return json.loads(MANIFEST.read_text())


def bot_events() -> frozenset[str]:
    """Event subscriptions, as Slack names them (`app_mention`, `message.im`, ...)."""
    return frozenset(manifest()["settings"]["event_subscriptions"]["bot_events"])
