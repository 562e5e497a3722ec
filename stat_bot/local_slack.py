"""Where `stat-bot run` in local mode leaves its Slack emulator's address, and who reads it.

The supervisor writes it; `stat-bot console` and the web server's chat console read
it. A module of its own so the web server needs nothing of the supervisor, which
starts the web server.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from stat_bot.settings import Settings


def local_slack_file(settings: Settings) -> Path:
    """Where local mode leaves its emulator's address for `stat-bot console`."""
    return settings.state_dir / "local-slack.json"


def write_local_slack_file(settings: Settings, url: str) -> None:
    path = local_slack_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"url": url, "pid": os.getpid()}))
    tmp.replace(path)


def read_local_slack_url(settings: Settings) -> str | None:
    """The running local mode's emulator URL, if `stat-bot run` is up in local mode."""
    try:
        data = json.loads(local_slack_file(settings).read_text())
    except (OSError, ValueError):
        return None
    try:
        os.kill(int(data["pid"]), 0)
    except (OSError, KeyError, ValueError, TypeError):
        return None
    return str(data.get("url") or "") or None
