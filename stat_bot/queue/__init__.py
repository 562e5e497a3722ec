"""Persistence behind one small interface (`Queue`); only this package knows SQL."""

from __future__ import annotations

from typing import TYPE_CHECKING

from stat_bot.queue.base import Queue, QueueError, QueueMissingError

if TYPE_CHECKING:
    from stat_bot.settings import Settings

__all__ = ["Queue", "QueueError", "QueueMissingError", "open_queue"]


def open_queue(settings: Settings, *, migrate: bool = True, create: bool = True) -> Queue:
    """The queue named by DATABASE_URL, with its schema brought up to date.

    `create=False` (CLI commands that only look or queue): a missing database is a
    QueueMissingError naming the path, never a new empty database made in passing.
    """
    from stat_bot.queue.sqlite import SQLiteQueue

    queue = SQLiteQueue(
        settings.sqlite_path,
        synchronous=settings.sqlite_synchronous,
        outbox_expiry=settings.slack_delivery_expiry,
        create=create,
    )
    if migrate:
        queue.migrate()
    return queue
