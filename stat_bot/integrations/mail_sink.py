"""Local mode's mail sink: an SMTP server on loopback that keeps every mail as a file.

`stat-bot run` without SMTP_HOST starts it (python -m stat_bot.integrations.mail_sink
--dir STATE_DIR/mail --port N) and points SMTP_* at it, so the weekly handoff of
`@stat-bot oncall handoff` lands in STATE_DIR/mail/*.eml, readable with any mail client.
Plain SMTP without login on 127.0.0.1 only: it is for one machine, never a network.
"""

from __future__ import annotations

import argparse
import itertools
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from stat_bot.lifeline import watch_parent


class SavingHandler:
    """Writes each accepted mail to `folder` as `<time>-<n>.eml` (written aside, then renamed,
    so a reader never sees half a mail)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.numbers = itertools.count(1)

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:  # noqa: N802
        name = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{next(self.numbers)}.eml"
        partial = self.folder / f".{name}.part"
        partial.write_bytes(bytes(envelope.original_content or envelope.content))
        partial.replace(self.folder / name)
        return "250 Message kept"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dir", type=Path, required=True, help="folder for the .eml files")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    controller = Controller(SavingHandler(args.dir), hostname="127.0.0.1", port=args.port)
    controller.start()
    print(f"listening: 127.0.0.1:{args.port}", flush=True)
    print("ready", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    watch_parent()  # stops with `stat-bot run`, even when that is killed outright
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    main()
