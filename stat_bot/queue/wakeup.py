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
import time
import uuid
from pathlib import Path

from stat_bot.queue.base import WakeupListener

# A listing of the marker folder is reused while the folder's (device, inode, mtime) is
# unchanged, which spares every commit the open/getdents/close of a listing (one stat
# instead). Only a listing made once the mtime was this old is reused: a marker added in
# the same tick of the file system's clock as the listing could leave the mtime as it
# was (git's "racily clean" index entries), but not one added a whole second later.
LISTING_SETTLED_NS = 1_000_000_000


class WakeupDirectory:
    """The marker folder for one database, and the sender used after commits."""

    def __init__(self, database: Path) -> None:
        self.directory = Path(f"{database}.wake")
        self._prefix = (
            b"\0stat-bot/" + hashlib.sha1(str(database).encode()).hexdigest()[:16].encode() + b"/"
        )
        self._sender: socket.socket | None = None
        self._listed: tuple[tuple[int, int, int], list[str]] | None = None

    def _names(self) -> list[str]:
        """The markers in the folder (none if it does not exist): see LISTING_SETTLED_NS."""
        try:
            st = os.stat(self.directory)
        except FileNotFoundError:
            return []
        stamp = (st.st_dev, st.st_ino, st.st_mtime_ns)
        listed = self._listed
        if listed is not None and listed[0] == stamp:
            return listed[1]
        try:
            names = os.listdir(self.directory)  # after the stat: a change between is seen next time
        except FileNotFoundError:
            return []
        settled = time.time_ns() - st.st_mtime_ns > LISTING_SETTLED_NS
        self._listed = (stamp, names) if settled else None
        return names

    def _address(self, name: str) -> bytes:
        return self._prefix + name.encode()

    def notify(self) -> None:
        """Poke every listener; never raises, since a missed wake-up only costs a poll interval."""
        names = self._names()
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
