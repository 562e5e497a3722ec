"""(e) GitHub webhooks: COUNT signed deliveries from CLIENTS processes against `stat-bot web`.

Server side: the real `stat-bot web` console script (gunicorn, gthread workers)
with WEB_WORKERS x WEB_THREADS (the settings' defaults unless given), JSON logs
at INFO to a file as under systemd, GITHUB_WEBHOOK_SECRET set, and a generated
job_configs.py whose namespace `bench` has one rule: a push to main queues
`build {sha}`, a job type that does not coalesce, so every delivery is its own
job. No dispatcher runs, so every job stays queued and can be counted.

Client side: CLIENTS fresh Python processes, each with COUNT / CLIENTS push
deliveries shaped like GitHub's (about 4 kB of JSON, each with its own commit
sha and X-GitHub-Delivery id) signed in advance as GitHub signs them, start at
the same agreed moment and send them one after another over one keep-alive
connection (http.client), checking each answer is 202. Requests/s = COUNT /
(last response - first request), over all clients.

Then the database must hold exactly COUNT queued jobs and COUNT deliveries, and
the `webhook_requests` counter COUNT accepted: none lost, none doubled.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import http.client
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from benchmarks.common import (
    STAT_BOT,
    BenchmarkError,
    Figure,
    cpu_seconds,
    dispatcher_env,
    percentile,
    read_only,
    wait_until,
)
from stat_bot.web.server import free_port

TARGET_PER_SECOND = 500.0
ROOT = Path(__file__).resolve().parents[1]
REPOSITORY = "hpe-hpc/stat"


def push_payload(sha: str, before: str) -> dict[str, Any]:
    """A push to main as GitHub sends it (the fields STAT bot ignores included)."""
    api = f"https://api.github.com/repos/{REPOSITORY}"
    user = {
        "login": "alice", "id": 21031067, "node_id": "MDQ6VXNlcjIxMDMxMDY3",
        "avatar_url": "https://avatars.githubusercontent.com/u/21031067?v=4", "gravatar_id": "",
        "url": "https://api.github.com/users/alice", "html_url": "https://github.com/alice",
        "followers_url": "https://api.github.com/users/alice/followers",
        "repos_url": "https://api.github.com/users/alice/repos", "type": "User",
        "site_admin": False,
    }  # fmt: skip
    person = {"name": "Alice", "email": "alice@example.org", "username": "alice"}
    commit = {
        "id": sha, "tree_id": hashlib.sha1(sha.encode()).hexdigest(), "distinct": True,
        "message": "Node checks: time out after 30 s on a busy BMC",
        "timestamp": "2024-05-15T15:20:30+00:00",
        "url": f"https://github.com/{REPOSITORY}/commit/{sha}", "author": person,
        "committer": person, "added": [], "removed": [],
        "modified": ["workspace/hw/check.py", "job_configs.py"],
    }  # fmt: skip
    repository = {
        "id": 186853002, "node_id": "MDEwOlJlcG9zaXRvcnkxODY4NTMwMDI=", "name": "stat",
        "full_name": REPOSITORY, "private": True, "owner": {**user, "login": "hpe-hpc"},
        "html_url": f"https://github.com/{REPOSITORY}", "description": "System triage",
        "fork": False, "url": api, "forks_url": f"{api}/forks",
        "keys_url": f"{api}/keys{{/key_id}}",
        "hooks_url": f"{api}/hooks", "branches_url": f"{api}/branches{{/branch}}",
        "tags_url": f"{api}/tags", "commits_url": f"{api}/commits{{/sha}}",
        "compare_url": f"{api}/compare/{{base}}...{{head}}", "pulls_url": f"{api}/pulls{{/number}}",
        "releases_url": f"{api}/releases{{/id}}", "issues_url": f"{api}/issues{{/number}}",
        "contents_url": f"{api}/contents/{{+path}}", "merges_url": f"{api}/merges",
        "created_at": 1557933565, "updated_at": "2024-05-15T15:21:14Z", "pushed_at": 1715786457,
        "git_url": f"git://github.com/{REPOSITORY}.git",
        "ssh_url": f"git@github.com:{REPOSITORY}.git",
        "clone_url": f"https://github.com/{REPOSITORY}.git",
        "svn_url": f"https://github.com/{REPOSITORY}", "homepage": None, "size": 512,
        "stargazers_count": 3, "watchers_count": 3, "language": "Python", "has_issues": True,
        "has_projects": True, "has_downloads": True, "has_wiki": False, "has_pages": False,
        "forks_count": 0, "mirror_url": None, "archived": False, "disabled": False,
        "open_issues_count": 2, "license": None, "topics": [], "visibility": "private",
        "forks": 0, "open_issues": 2, "watchers": 3, "default_branch": "main",
        "stargazers": 3, "master_branch": "main",
    }  # fmt: skip
    return {
        "ref": "refs/heads/main", "before": before, "after": sha, "repository": repository,
        "pusher": {"name": "alice", "email": "alice@example.org"}, "sender": user,
        "created": False, "deleted": False, "forced": False, "base_ref": None,
        "compare": f"https://github.com/{REPOSITORY}/compare/{before[:12]}...{sha[:12]}",
        "commits": [commit], "head_commit": commit,
    }  # fmt: skip


def signed(secret: bytes, event: str, payload: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    """A delivery's body and headers as GitHub sends them."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    return body, {
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/6a5d2b0",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-GitHub-Hook-ID": "109948940",
        "X-Hub-Signature-256": "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest(),
    }


def client_main() -> None:
    """In a fresh process: send the deliveries; argv: the job's JSON file; JSON on stdout out."""
    job = json.loads(Path(sys.argv[1]).read_text())
    secret = job["secret"].encode()
    deliveries = []
    previous = "0" * 40
    for n in range(job["count"]):
        sha = hashlib.sha1(f"{job['client']}-{n}".encode()).hexdigest()
        deliveries.append(signed(secret, "push", push_payload(sha, previous)))
        previous = sha
    path = f"/github/{job['project']}"
    connection = http.client.HTTPConnection("127.0.0.1", job["port"], timeout=30)
    connection.connect()
    connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    ready = time.time()
    time.sleep(max(0.0, job["start_at"] - ready))
    statuses: dict[str, int] = {}
    latencies: list[float] = []
    reconnects = 0
    first = time.time()
    for body, headers in deliveries:
        sent = time.perf_counter()
        for attempt in range(2):
            try:
                connection.request("POST", path, body=body, headers=headers)
                response = connection.getresponse()
                response.read()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # The server closed the kept-alive connection: the same delivery again is safe
                # (a replay is acknowledged, not enqueued twice); counted so it shows.
                if attempt:
                    raise
                reconnects += 1
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", job["port"], timeout=30)
        latencies.append((time.perf_counter() - sent) * 1000)
        statuses[str(response.status)] = statuses.get(str(response.status), 0) + 1
    last = time.time()
    connection.close()
    json.dump(
        {
            "first": first,
            "last": last,
            "statuses": statuses,
            "latencies": latencies,
            "reconnects": reconnects,
            "late": max(0.0, ready - job["start_at"]),
            "bytes": sum(len(b) for b, _ in deliveries) / max(1, len(deliveries)),
            "cpu": time.process_time(),
        },
        sys.stdout,
    )


def ping(port: int, secret: bytes) -> bool:
    """A signed ping: answered 200 once a worker serves the app (it enqueues nothing)."""
    body, headers = signed(secret, "ping", {"zen": "Keep it logically awesome.", "hook_id": 1})
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("POST", "/github/bench", body=body, headers=headers)
        response = connection.getresponse()
        text = response.read()
    except OSError:
        return False
    finally:
        connection.close()
    if response.status != 200:
        raise BenchmarkError(f"the ping was answered {response.status}: {text[:300]!r}")
    return True


def server_cpu(pid: int) -> float:
    """CPU seconds of gunicorn's master and its workers (its child processes)."""
    total = cpu_seconds(pid)
    with contextlib.suppress(OSError):
        for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            with contextlib.suppress(OSError):
                total += cpu_seconds(int(child))
    return total


def run(
    home: Path,
    *,
    count: int = 5000,
    clients: int = 4,
    workers: int | None = None,
    threads: int | None = None,
    timeout: float = 120.0,
) -> tuple[str, list[Figure]]:
    # Imported here, so the client processes (which import this module) start quickly.
    from benchmarks.slack import Background
    from stat_bot.settings import PROXY_VARIABLES

    (home / "workspace" / "bench").mkdir(parents=True)
    (home / "job_configs.py").write_text(
        '"""Generated by the benchmarks."""\n\nraw_config = '
        + repr(
            {
                "bench": {
                    "description": "benchmark jobs",
                    "jobs": {
                        "build": {
                            "run_args_template": "echo build {sha}",
                            "coalesce": False,
                            "report_success": False,
                        }
                    },
                    "webhooks": [
                        {
                            "event": "push",
                            "branch": "main",
                            "job_type": "build",
                            "args": {"sha": "{sha}"},
                        }
                    ],
                }
            }
        )
        + "\n"
    )
    secret = secrets.token_hex(20)
    port = free_port()
    settings = {"WEB_PORT": str(port), "WEB_HOST": "127.0.0.1", "GITHUB_WEBHOOK_SECRET": secret}
    if workers is not None:
        settings["WEB_WORKERS"] = str(workers)
    if threads is not None:
        settings["WEB_THREADS"] = str(threads)
    env = {
        k: v
        for k, v in dispatcher_env(home).items()
        if not k.startswith(("WEB_", "GITHUB_")) and k not in PROXY_VARIABLES
    }
    env.update(settings)
    shown_workers = env.get("WEB_WORKERS", "2 (default)")
    shown_threads = env.get("WEB_THREADS", "4 (default)")
    server = Background("web", [str(STAT_BOT), "web"], env, home)
    try:
        wait_until(
            lambda: server.alive() and ping(port, secret.encode()), 30, "the web server to answer"
        )
        per_client = [count // clients + (1 if n < count % clients else 0) for n in range(clients)]
        # Late enough for every client to have started and signed its share (checked below).
        start_at = time.time() + 2.0 + 0.25 * clients
        code = (
            f"import sys; sys.path.insert(0, {str(ROOT)!r}); "
            "from benchmarks.webhooks import client_main; client_main()"
        )
        cpu_before = server_cpu(server.process.pid)
        processes = []
        for n, share in enumerate(per_client):
            job = home / f"client{n}.json"
            job.write_text(
                json.dumps(
                    {
                        "client": n,
                        "count": share,
                        "port": port,
                        "secret": secret,
                        "project": "bench",
                        "start_at": start_at,
                    }
                )
            )
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-c", code, str(job)],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    env={k: v for k, v in os.environ.items() if k not in PROXY_VARIABLES},
                    text=True,
                )
            )
        results = []
        try:
            for process in processes:
                left = max(1.0, start_at + timeout - time.time())
                try:
                    out, err = process.communicate(timeout=left)
                except subprocess.TimeoutExpired:
                    raise BenchmarkError(f"a client was not done after {timeout:g} s") from None
                if process.returncode != 0:
                    raise BenchmarkError(f"a client failed:\n{err[-2000:]}")
                results.append(json.loads(out))
        finally:
            for process in processes:
                if process.poll() is None:
                    process.kill()
                    process.wait(5)
        server_seconds = server_cpu(server.process.pid) - cpu_before
        server.alive()
    finally:
        server.stop()
    database = home / "var" / "stat-bot.sqlite3"
    with read_only(database) as db:
        (jobs,) = db.execute(
            "SELECT count(*) FROM jobs WHERE namespace = 'bench' AND status = 'queued'"
        ).fetchone()
        (distinct,) = db.execute("SELECT count(DISTINCT args) FROM jobs").fetchone()
        (deliveries,) = db.execute(
            "SELECT count(*) FROM deliveries WHERE source = 'github'"
        ).fetchone()
        counted = dict(
            db.execute("SELECT label, value FROM counters WHERE name = 'webhook_requests'")
        )
    statuses: dict[str, int] = {}
    for result in results:
        for status, n in result["statuses"].items():
            statuses[status] = statuses.get(status, 0) + n
    latencies = [ms for result in results for ms in result["latencies"]]
    seconds = max(r["last"] for r in results) - min(r["first"] for r in results)
    reconnects = sum(r["reconnects"] for r in results)
    late = max(r["late"] for r in results)
    others = {s: n for s, n in statuses.items() if s != "202"}
    title = (
        f"GitHub webhooks: {count:,} signed push deliveries (~{results[0]['bytes'] / 1000:.1f} kB "
        f"each) from {clients} client processes, each one keep-alive connection, against "
        f"`stat-bot web` (gunicorn, WEB_WORKERS {shown_workers}, WEB_THREADS {shown_threads}); "
        "no dispatcher, so every job stays queued"
    )
    return title, [
        Figure(
            "webhooks/s",
            count / seconds,
            "/s",
            TARGET_PER_SECOND,
            note=f"{seconds:.2f} s"
            + (f"; a client was ready {late:.2f} s after the start: disturbed" if late else ""),
        ),
        Figure(
            "answered 202", statuses.get("202", 0), "", count, note=f"others: {others or 'none'}"
        ),
        Figure("jobs queued in the database", jobs, "", count, note=f"{distinct:,} distinct shas"),
        Figure("deliveries recorded", deliveries, "", count),
        Figure(
            "lost or doubled (|queued - sent|)",
            abs(jobs - count) + abs(deliveries - count),
            "",
            0,
            higher_is_better=False,
        ),
        Figure(
            "counter webhook_requests accepted",
            counted.get("accepted", 0),
            "",
            count,
            note=f"all labels: {counted}",
        ),
        Figure("request -> response p50", percentile(latencies, 50), " ms", None, False, 2),
        Figure("request -> response p99", percentile(latencies, 99), " ms", None, False, 2),
        Figure(
            "CPU per webhook, server (all workers)",
            server_seconds * 1000 / count,
            " ms",
            None,
            False,
            2,
        ),
        Figure(
            "CPU per webhook, clients",
            sum(r["cpu"] for r in results) * 1000 / count,
            " ms",
            None,
            False,
            2,
            note="information: includes building and signing the payloads",
        ),
        Figure("reconnects", reconnects, "", 0, higher_is_better=False),
    ]
