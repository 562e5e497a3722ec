"""This process's id, known without a system call.

Both queues ask on every call whether they are still in the process that opened their
connections (a forked child must open its own). `os.getpid()` is a system call, and on
this service's hot paths (three SQLite transactions a job, a webhook's write) it was
asked twice a transaction. The id is read once and renewed in a forked child by
`os.register_at_fork`, which runs for every fork made through Python (`os.fork`,
multiprocessing); `subprocess` children run another program and never get here.
"""

from __future__ import annotations

import os


class _Process:
    __slots__ = ("pid",)

    def __init__(self) -> None:
        self.pid = os.getpid()

    def renew(self) -> None:
        self.pid = os.getpid()


current = _Process()
os.register_at_fork(after_in_child=current.renew)
