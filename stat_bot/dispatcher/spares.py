"""Job log folders made ahead of time, while the dispatcher has nothing to start.

Every job gets a new log folder with two files, three new inodes. That is usually tens
of microseconds, but on a file system that has just deleted many files (the prune
loop, a cleaned-up scratch folder; worst on ext4 without a journal) making one takes
up to a millisecond of kernel CPU, paid on the way to starting the job, at the moment
a burst of commands has the least of it to spare (BENCHMARKS.md, "What was changed",
sixteenth session: 926 µs a folder made against 43 µs a spare renamed, on the same
disk). So a dispatcher keeps up to LOG_SPARES empty folders (with empty `stdout` and
`stderr`) under `LOGS_DIR/.spare/<host>/`, made only after no job has started for
QUIET seconds, and a job's start renames one into place: a rename allocates nothing.

Each host has a folder of its own, because LOGS_DIR may be shared storage; dispatchers
on one host share it and a rename decides which takes a spare (the loser makes its
folder as before). Spares outlive a restart and are taken up by the next start. Nothing
here can stop a job from starting: any failure (no spare, a rename refused, a disk that
is full or read-only) means the job's folder is made the usual way.
"""

from __future__ import annotations

import collections
import contextlib
import os
import socket
import threading
import time
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)

QUIET = 0.25  # seconds without a job start before spares are made
SPARE_FILES = ("stdout", "stderr")
FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC


class SpareFolders:
    """A pool of empty log folders, refilled by one thread in quiet moments."""

    def __init__(self, logs_dir: Path, size: int, *, quiet: float = QUIET) -> None:
        self.folder = logs_dir / ".spare" / (socket.gethostname() or "localhost")
        self.size = size
        self.quiet = quiet
        self._ready: collections.deque[str] = collections.deque()
        self._last_use = time.monotonic()
        self._serial = 0
        self._wanted = threading.Event()  # the pool may be short: look when quiet
        self._closing = threading.Event()
        self._failing = False  # the last attempt to make one failed (warned once)
        self._thread: threading.Thread | None = None

    def __len__(self) -> int:
        return len(self._ready)

    def start(self) -> None:
        if self.size <= 0 or self._thread is not None:
            return
        self._wanted.set()
        self._thread = threading.Thread(target=self._fill, name="stat-bot-spares", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop making spares (those made stay on disk for the next start)."""
        self._closing.set()
        self._wanted.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def take(self, target: str) -> bool:
        """Rename a spare to `target` (making its parent if need be): True if one was.

        False means the caller makes the folder itself: there was no spare, or `target`
        is already there (a job run again keeps its folder), or the rename failed.
        """
        self._last_use = time.monotonic()
        self._wanted.set()
        while True:
            try:
                spare = self._ready.popleft()
            except IndexError:
                return False
            try:
                os.rename(spare, target)
                return True
            except FileNotFoundError:
                if not os.path.isdir(spare):
                    continue  # taken by another dispatcher on this host: try the next
                try:  # the job type's folder is new (or was removed)
                    os.makedirs(os.path.dirname(target), exist_ok=True)
                    os.rename(spare, target)
                    return True
                except OSError:
                    self._ready.appendleft(spare)
                    return False
            except OSError:
                # EEXIST/ENOTEMPTY/ENOTDIR: something is at `target` already; EXDEV: it is on
                # another file system. The spare stays for the next job.
                self._ready.appendleft(spare)
                return False

    # the filling thread ---------------------------------------------------
    def _fill(self) -> None:
        self._adopt()
        while True:
            self._wanted.wait()
            self._wanted.clear()
            if self._closing.is_set():
                return
            if not self._wait_quiet():
                return
            while len(self._ready) < self.size and not self._closing.is_set():
                if time.monotonic() - self._last_use < self.quiet:
                    self._wanted.set()  # jobs are starting again: later
                    break
                if not self._make_one():
                    break  # tried again after the next job start (and a quiet moment)

    def _wait_quiet(self) -> bool:
        """Wait until no job has started for `quiet` seconds; False when closing."""
        while True:
            idle = time.monotonic() - self._last_use
            if idle >= self.quiet:
                return not self._closing.is_set()
            if self._closing.wait(self.quiet - idle):
                return False

    def _adopt(self) -> None:
        """Take up the spares an earlier dispatcher on this host left."""
        try:
            names = sorted(
                entry.name
                for entry in os.scandir(self.folder)
                if entry.is_dir(follow_symlinks=False)
            )
        except OSError:
            return
        self._ready.extend(str(self.folder / name) for name in names)

    def _make_one(self) -> bool:
        self._serial += 1
        path = str(self.folder / f"{os.getpid()}-{self._serial}")
        try:
            os.mkdir(path)
        except FileExistsError:
            return True  # a name in use (an adopted spare): the next serial
        except OSError as error:
            try:
                if not isinstance(error, FileNotFoundError):
                    raise
                os.makedirs(self.folder, exist_ok=True)  # the first spare on this host
                os.mkdir(path)
            except OSError as failed:
                self._failed(failed)
                return False
        try:
            for name in SPARE_FILES:
                os.close(os.open(os.path.join(path, name), FILE_FLAGS, 0o666))
        except OSError as error:
            self._failed(error)
            remove_spare(path)
            return False
        self._failing = False
        self._ready.append(path)
        return True

    def _failed(self, error: OSError) -> None:
        """Warn once per run of failures (a full or read-only disk fails every time)."""
        if not self._failing:
            self._failing = True
            log.warning(
                "could not make a spare job log folder; jobs make their own",
                folder=str(self.folder),
                error=str(error),
            )


def remove_spare(path: str) -> None:
    """Remove a half-made spare (its files, then the folder); never raises."""
    for name in SPARE_FILES:
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(path, name))
    with contextlib.suppress(OSError):
        os.rmdir(path)
