"""Built-in tasks: jobs that need the service's own state, run as `stat-bot task NAME ...`.

Workspace scripts know nothing of the service; some work must read or write its
database all the same (sweep history, the latest health of each node, offers of
actions waiting for a confirmation). Such work is a task: a job like any other
(process group, timeout, logs, report) whose command is `stat-bot task NAME ARGS`,
so it gets the settings, the job configs and the queue handed to it here.

A task module registers itself with `@task("name")`; it prints its report to stdout
as any job does and returns the exit status.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stat_bot.jobs.config import JobConfigs
    from stat_bot.queue.base import Queue
    from stat_bot.settings import Settings

# Modules whose tasks `stat-bot task` knows; each registers its names on import.
MODULES: tuple[str, ...] = (
    "stat_bot.tasks.hw",
    "stat_bot.tasks.incidents",
    "stat_bot.tasks.runbooks",
    "stat_bot.tasks.oncall",
)


@dataclass
class TaskContext:
    """What a task may use. `job_id` is the job running it (None from a terminal)."""

    settings: Settings
    configs: JobConfigs
    queue_factory: Callable[[], Queue]
    job_id: int | None = None
    _queue: Any = None

    @property
    def queue(self) -> Queue:
        if self._queue is None:
            self._queue = self.queue_factory()
        return self._queue


TaskFunction = Callable[[TaskContext, Sequence[str]], int]


@dataclass(frozen=True)
class Task:
    name: str
    function: TaskFunction
    usage: str
    help: str


REGISTRY: dict[str, Task] = {}


def task(name: str, usage: str, help: str) -> Callable[[TaskFunction], TaskFunction]:
    def register(function: TaskFunction) -> TaskFunction:
        REGISTRY[name] = Task(name, function, usage, help)
        return function

    return register


def tasks() -> dict[str, Task]:
    for module in MODULES:
        importlib.import_module(module)
    return dict(sorted(REGISTRY.items()))


class TaskUsageError(ValueError):
    """The task's arguments are wrong; the message says how to call it."""
