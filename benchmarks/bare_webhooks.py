"""The webhooks benchmark's reference: the least a signed-webhook endpoint can do, on the same server.

A bare Flask app served by gunicorn exactly as `stat-bot web` is (the same `WebServer`
options: gthread workers, WEB_WORKERS x WEB_THREADS, keep-alive), that does what no
webhook receiver can skip: read the body, check its `X-Hub-Signature-256` (HMAC-SHA256,
compared in constant time) before parsing it, parse the JSON, and write one row per
delivery (keyed by `X-GitHub-Delivery`, so a redelivery writes nothing) to SQLite with
the queue's durability: WAL, `PRAGMA synchronous` as SQLITE_SYNCHRONOUS's default, one
write transaction per delivery. No logging, counters, sessions or rules: what STAT bot
spends beyond this is what the benchmark holds against it.

Run as `python -m benchmarks.bare_webhooks DATABASE PORT WORKERS THREADS` with the secret
in BARE_WEBHOOK_SECRET (not on the command line, where `ps` shows it).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import sqlite3
import sys
import threading
import time
from pathlib import Path
from typing import Any

from flask import Flask, Response, jsonify, request

from stat_bot.settings import Settings
from stat_bot.web.server import WebServer

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS deliveries (delivery TEXT PRIMARY KEY, project TEXT NOT NULL, "
    "event TEXT NOT NULL, sha TEXT, received REAL NOT NULL)"
)
INSERT = "INSERT OR IGNORE INTO deliveries VALUES (?, ?, ?, ?, ?)"
# SQLite's own busy handler sleeps 1, 2, 5... ms; retrying sooner, as the queue does
# (queue/sqlite.py), keeps the reference from waiting longer than the lock is held.
BUSY_FIRST_SLEEP = 0.0001
BUSY_MAX_SLEEP = 0.002


def synchronous_default() -> str:
    """The queue's default PRAGMA synchronous (SQLITE_SYNCHRONOUS), read from the settings."""
    return str(Settings.model_fields["sqlite_synchronous"].default)


def create_database(path: Path) -> None:
    """The reference's table, in WAL mode (a property of the file, set once)."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(SCHEMA)
    finally:
        conn.close()


def create_app(database: Path, secret: bytes, synchronous: str) -> Flask:
    """The bare endpoint: `POST /github/<project>`, 403 unless signed, 202 once recorded."""
    app = Flask(__name__)
    local = threading.local()

    def connection() -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(database, isolation_level=None, timeout=0)
            conn.execute(f"PRAGMA synchronous = {synchronous}")
            local.conn = conn
        return conn

    def record(row: tuple[Any, ...]) -> bool:
        conn = connection()
        delay = BUSY_FIRST_SLEEP
        while True:
            try:
                conn.execute("BEGIN IMMEDIATE")
                break
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) and "busy" not in str(error):
                    raise
                time.sleep(delay)
                delay = min(delay * 2, BUSY_MAX_SLEEP)
        try:
            added = conn.execute(INSERT, row).rowcount == 1
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return added

    @app.post("/github/<project>")
    def receive(project: str) -> tuple[Response, int]:
        body = request.get_data(cache=False)
        expected = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
        sent = request.headers.get("X-Hub-Signature-256", "")
        if not hmac.compare_digest(expected.encode(), sent.encode("latin-1", "replace")):
            return jsonify(error="bad signature"), 403
        event = request.headers.get("X-GitHub-Event", "")
        delivery = request.headers.get("X-GitHub-Delivery", "")
        payload = json.loads(body)
        if event == "ping":
            return jsonify(ok=True, event=event), 200
        added = record((delivery, project, event, payload.get("after"), time.time()))
        return jsonify(ok=True, delivery=delivery, duplicate=not added), 202 if added else 200

    return app


class BareServer(WebServer):
    """`stat-bot web`'s gunicorn configuration, serving the bare app instead of STAT bot's."""

    def __init__(self, settings: Settings, port: int, app: Flask) -> None:
        self.app = app
        super().__init__(settings, port=port)

    def load(self) -> Any:
        return self.app


def main(argv: list[str]) -> None:
    database, port, workers, threads = Path(argv[0]), int(argv[1]), int(argv[2]), int(argv[3])
    secret = os.environ["BARE_WEBHOOK_SECRET"].encode()
    settings = Settings(
        web_host="127.0.0.1",
        web_port=port,
        web_workers=workers,
        web_threads=threads,
        state_dir=database.parent,
    )
    app = create_app(database, secret, synchronous_default())
    BareServer(settings, port, app).run()


if __name__ == "__main__":
    main(sys.argv[1:])
