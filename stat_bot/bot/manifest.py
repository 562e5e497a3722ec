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


# What a site reading alerts from Slack (ONCALL_ALERT_CHANNELS) adds to the subscriptions
# (DEPLOY.md): every message of the channels the bot is in. Not in the manifest itself, so
# a site without it is not sent (and the bot does not read) every channel message.
ALERT_EVENTS = frozenset({"message.channels", "message.groups"})


def bot_events(*, alerts: bool = False) -> frozenset[str]:
    """Event subscriptions, as Slack names them (`app_mention`, `message.im`, ...); with
    `alerts`, also those that reading alerts from Slack channels needs."""
    events = frozenset(manifest()["settings"]["event_subscriptions"]["bot_events"])
    return events | ALERT_EVENTS if alerts else events
