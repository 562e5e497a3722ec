"""Parts started by `stat-bot run` stop when it is gone, even if it was killed outright.

`run` starts each part in a session of its own (so a Ctrl-C reaches them through
it, in order) and stops them itself on the way out. If `run` is killed with
SIGKILL it cannot, and the parts would live on as orphans holding the database
and the Slack socket. So `run` passes its pid in STAT_BOT_PARENT_PID, and each
part watches for its parent to change and then stops itself as if told to.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading

PARENT_VARIABLE = "STAT_BOT_PARENT_PID"
CHECK_EVERY = 1.0


def watch_parent() -> None:
    """If started by `stat-bot run`, SIGTERM ourselves once it has gone away."""
    try:
        parent = int(os.environ.get(PARENT_VARIABLE, ""))
    except ValueError:
        return

    def watch() -> None:
        while os.getppid() == parent:
            threading.Event().wait(CHECK_EVERY)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="stat-bot-lifeline", daemon=True).start()


def stop_process(process: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM a helper process (an emulator, a benchmarked service part), then SIGKILL its
    whole process group if it has not stopped within `grace` seconds: it was started in a
    session of its own, and anything it started must not outlive it."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)
