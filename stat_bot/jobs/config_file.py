"""job_configs.py as every long-running process sees it: read again when the file changes.

One rule for the dispatcher, the bot and each web worker, so a job one process
queues is known to the process that runs it:

- Each time a process looks at the configuration (`ConfigFile.current()`), one
  `stat` of the file is compared with the one taken when it was loaded (modification
  and change times in nanoseconds, size, inode: an edit in place or a file renamed
  over it); on any difference the file is loaded again. Nothing is read otherwise.
- A file that no longer loads (a typo saved mid-edit) is logged once per change, with
  every problem, and the last good configuration stays in force until the file loads
  again. A process that starts with a broken file does not start.

Short-lived commands (`stat-bot enqueue`, `check-config`, ...) load the file once:
they are over before it could change.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import structlog

from stat_bot.jobs.config import ConfigError, JobConfigs, load_config

log = structlog.get_logger(__name__)

Stamp = tuple[int, int, int, int, int]


def _stamp(path: Path) -> Stamp | None:
    """What one stat says about the file; None if it cannot be read."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino, st.st_dev)


class ConfigFile:
    """The configuration loaded from one job_configs.py, kept current (see the module's rule)."""

    def __init__(self, path: Path) -> None:
        """Load the file now; ConfigError if it does not load (the process should not start)."""
        self.path = path
        self.version = 0  # goes up by one each time another configuration comes into force
        self._lock = threading.Lock()
        self._fixed = False
        self._stamp = _stamp(path)  # before loading: an edit made meanwhile is seen next time
        self._configs = load_config(path)

    @classmethod
    def fixed(cls, configs: JobConfigs) -> ConfigFile:
        """A configuration that is never read again (tests, and callers that built their own)."""
        self = cls.__new__(cls)
        self.path = Path(configs.source)
        self.version = 0
        self._lock = threading.Lock()
        self._fixed = True
        self._configs = configs
        self._stamp = None
        return self

    def current(self) -> JobConfigs:
        """The configuration in force: the file's, loaded again if it changed since."""
        if self._fixed:
            return self._configs
        if _stamp(self.path) == self._stamp:
            return self._configs  # the common case: one stat, nothing else
        with self._lock:  # one thread loads; the others then find it loaded
            stamp = _stamp(self.path)
            if stamp != self._stamp:
                self._reload(stamp)
            return self._configs

    def _reload(self, stamp: Stamp | None) -> None:
        """Load the file; the stamp is recorded last, so a thread that finds it current
        (without the lock) finds the configuration that goes with it."""
        try:
            configs = load_config(self.path)
        except ConfigError as error:
            self._stamp = stamp  # a broken file is reported once, not on every look
            log.error(
                "job_configs.py changed but does not load; keeping the last good configuration "
                "until it is fixed (stat-bot check-config lists the problems)",
                path=str(self.path),
                problems=error.problems,
            )
            return
        self._configs = configs
        self.version += 1
        self._stamp = stamp
        log.info(
            "job_configs.py changed; loaded again",
            path=str(self.path),
            namespaces=len(configs.namespaces),
            version=self.version,
        )
