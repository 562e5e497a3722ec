"""What the dispatcher's main loop sleeps on between dispatch cycles.

Set by a wake-up from another process (a job queued, a cancel asked for), by a job's
end (a slot is free), by a stop. With asyncio.Event and asyncio.wait_for, every
wake-up cost a task, a timer and three turns of the event loop before the loop ran
(the Event's waiter, then the wait task, then wait_for's own future), all on the
way from a job being queued to its process being started. Here the main loop
waits on one plain future that `set` resolves at once, with a timer for the
timeout: the next turn of the loop runs it.
"""

from __future__ import annotations

import asyncio


def _release(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class WakeFlag:
    """A flag with a timed wait; used on the event loop's thread only."""

    def __init__(self) -> None:
        self._set = False
        self._waiter: asyncio.Future[None] | None = None

    def set(self) -> None:
        self._set = True
        if self._waiter is not None:
            _release(self._waiter)

    def clear(self) -> None:
        self._set = False

    def is_set(self) -> bool:
        return self._set

    async def wait(self, timeout: float) -> bool:
        """Until the flag is set or `timeout` seconds have passed; whether it is set."""
        if self._set:
            return True
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        timer = loop.call_later(timeout, _release, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None
        return self._set
