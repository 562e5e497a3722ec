"""Instant wake-ups between processes sharing one SQLite file.

SQLite has no LISTEN/NOTIFY, and polling once a second (ebmbot) costs half a
second of latency on average. Instead each listening dispatcher owns a Linux
abstract-namespace datagram socket and leaves a marker file named after it in
`<database>.wake/`; a writer sends one byte to every marker's socket after it
commits. Abstract sockets need no file (so no 108-byte path limit and nothing to
clean up after a crash); a marker whose socket refuses is stale and is removed.
The dispatcher still polls slowly as a safety net, so a lost datagram delays a
job, never strands it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import uuid
from pathlib import Path

from stat_bot.queue.base import WakeupListener


class WakeupDirectory:
    """The marker folder for one database, and the sender used after commits."""

    def __init__(self, database: Path) -> None:
        self.directory = Path(f"{database}.wake")
        self._prefix = (
            b"\0stat-bot/" + hashlib.sha1(str(database).encode()).hexdigest()[:16].encode() + b"/"
        )
        self._sender: socket.socket | None = None

    def _address(self, name: str) -> bytes:
        return self._prefix + name.encode()

    def notify(self) -> None:
        """Poke every listener; never raises, since a missed wake-up only costs a poll interval."""
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return
        if not names:
            return
        if self._sender is None:
            self._sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._sender.setblocking(False)
        for name in names:
            try:
                self._sender.sendto(b"!", self._address(name))
            except (BlockingIOError, InterruptedError):
                pass  # its buffer is full of wake-ups already
            except (ConnectionRefusedError, FileNotFoundError):
                with contextlib.suppress(FileNotFoundError):
                    (self.directory / name).unlink()
            except OSError:
                pass

    def listen(self, name: str) -> SocketListener:
        self.directory.mkdir(parents=True, exist_ok=True)
        unique = f"{name}-{uuid.uuid4().hex[:8]}"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(self._address(unique))
        sock.setblocking(False)
        marker = self.directory / unique
        marker.touch()
        return SocketListener(sock, marker)

    def close(self) -> None:
        if self._sender is not None:
            self._sender.close()
            self._sender = None


class SocketListener(WakeupListener):
    def __init__(self, sock: socket.socket, marker: Path) -> None:
        self._sock = sock
        self._marker = marker

    def fileno(self) -> int:
        return self._sock.fileno()

    def drain(self) -> None:
        while True:
            try:
                self._sock.recv(64)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return

    def close(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._marker.unlink()
        self._sock.close()
