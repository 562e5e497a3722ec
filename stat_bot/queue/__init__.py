"""Persistence behind one small interface (`Queue`); only this package knows SQL."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from stat_bot.queue.base import Queue, QueueError, QueueMissingError

if TYPE_CHECKING:
    from stat_bot.settings import Settings

__all__ = ["Queue", "QueueError", "QueueMissingError", "open_queue"]

POSTGRES_SCHEMES = frozenset({"postgresql", "postgres"})


def open_queue(settings: Settings, *, migrate: bool = True, create: bool = True) -> Queue:
    """The queue DATABASE_URL names, chosen by the URL's scheme, its schema brought up to date.

    sqlite:/// is the embedded default; postgresql:// (or postgres://) is the shared
    backend for several hosts. QueueError (naming the scheme and what to use instead)
    for a scheme with no backend.
    `create=False` (CLI commands that only look or queue): a missing database is a
    QueueMissingError naming the path, never a new empty database made in passing.
    """
    scheme = urlsplit(settings.database_url).scheme.lower()
    if scheme == "sqlite":
        from stat_bot.queue.sqlite import SQLiteQueue

        queue: Queue = SQLiteQueue(
            settings.sqlite_path,
            synchronous=settings.sqlite_synchronous,
            outbox_expiry=settings.slack_delivery_expiry,
            create=create,
        )
    elif scheme in POSTGRES_SCHEMES:
        from stat_bot.queue.postgres import PostgresQueue

        queue = PostgresQueue(
            settings.database_url,
            outbox_expiry=settings.slack_delivery_expiry,
            pool_size=settings.database_pool_size,
            connect_timeout=settings.database_connect_timeout,
        )
    else:
        raise QueueError(
            f"DATABASE_URL: unknown scheme {scheme + '://' if scheme else '(none)'}; "
            "use sqlite:///PATH or postgresql://USER@HOST/DB"
        )
    if migrate:
        queue.migrate()
    return queue
