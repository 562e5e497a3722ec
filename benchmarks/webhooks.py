"""(e) GitHub webhooks: COUNT signed deliveries from CLIENTS processes against `stat-bot web`,
and the same against a bare reference endpoint on the same server, alternating.

Server side: the real `stat-bot web` console script (gunicorn, gthread workers)
with WEB_WORKERS x WEB_THREADS (the settings' defaults unless given), JSON logs
at INFO to a file as under systemd, GITHUB_WEBHOOK_SECRET set, and a generated
job_configs.py whose namespace `bench` has one rule: a push to main queues
`build {sha}`, a job type that does not coalesce, so every delivery is its own
job. No dispatcher runs, so every job stays queued and can be counted.

The reference (bare_webhooks.py): a bare Flask app on the same gunicorn settings
that checks the same signature, parses the JSON and writes one SQLite row per
delivery with the queue's durability (WAL, its default synchronous, one
transaction per delivery). ROUNDS rounds of each, alternating (bare, STAT bot,
STAT bot, bare...), each on a fresh server and database.

Client side: CLIENTS fresh Python processes, each with COUNT / CLIENTS push
deliveries shaped like GitHub's (about 4 kB of JSON, each with its own commit
sha and X-GitHub-Delivery id) signed in advance as GitHub signs them, start at
the same agreed moment and send them one after another over one keep-alive
connection (http.client), checking each answer is 202. Requests/s = COUNT /
(last response - first request), over all clients; per side, all its rounds'
deliveries over all its rounds' time.

Judged: STAT bot's requests/s at least 0.7 of the bare endpoint's, and at most
1 ms of server CPU (master and workers) per accepted delivery (the ratio to the
bare endpoint's CPU is shown beside it). After each STAT bot round the database
must hold exactly COUNT queued jobs and COUNT deliveries, and the
`webhook_requests` counter COUNT accepted: none lost, none doubled.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import http.client
import json
import os
import secrets
import select
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
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
    """In a fresh process: send the deliveries; argv: the job's JSON file; JSON on stdout out.

    Once its deliveries are signed and its connection open it says `ready <its port>` on
    stdout and waits for the start time on stdin: every client starts together however
    slowly each got ready (on a busy machine, seconds apart). Told `reconnect` instead, it
    opens a new connection and says `ready` again (see `deal_evenly`).
    """
    job = json.loads(Path(sys.argv[1]).read_text())
    secret = job["secret"].encode()
    deliveries = []
    previous = "0" * 40
    for n in range(job["count"]):
        sha = hashlib.sha1(f"{job['client']}-{n}".encode()).hexdigest()
        deliveries.append(signed(secret, "push", push_payload(sha, previous)))
        previous = sha
    path = f"/github/{job['project']}"

    def connect() -> http.client.HTTPConnection:
        connection = http.client.HTTPConnection("127.0.0.1", job["port"], timeout=30)
        connection.connect()
        connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        print(f"ready {connection.sock.getsockname()[1]}", flush=True)
        return connection

    connection = connect()
    while (line := sys.stdin.readline()).strip() == "reconnect":  # see deal_evenly
        connection.close()
        connection = connect()
    start_at = float(line)
    ready = time.time()
    time.sleep(max(0.0, start_at - ready))
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
            "late": max(0.0, ready - start_at),
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


def workers(pid: int) -> list[int]:
    """gunicorn's workers: the master's child processes (Linux /proc)."""
    with contextlib.suppress(OSError):
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    return []


def server_cpu(pid: int) -> float:
    """CPU seconds of gunicorn's master and its workers (its child processes)."""
    total = cpu_seconds(pid)
    for child in workers(pid):
        with contextlib.suppress(OSError):
            total += cpu_seconds(child)
    return total


def worker_of_clients(pid: int, port: int) -> dict[int, int]:
    """Which worker holds each established connection to `port`: client port -> worker pid.

    Linux /proc: the server ends of the connections (local port `port`) from
    /proc/net/tcp{,6}, their socket inodes found among each worker's descriptors.
    """
    clients: dict[str, int] = {}  # socket inode -> the client's port
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                local, remote = fields[1].rsplit(":", 1)[1], fields[2].rsplit(":", 1)[1]
                if fields[3] == "01" and int(local, 16) == port:
                    clients[fields[9]] = int(remote, 16)
    held: dict[int, int] = {}
    for worker in workers(pid):
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{worker}/fd"):
                with contextlib.suppress(OSError):
                    link = os.readlink(f"/proc/{worker}/fd/{fd}")
                    if link.startswith("socket:[") and link[8:-1] in clients:
                        held[clients[link[8:-1]]] = worker
    return held


def split_of(pid: int, held: dict[int, int]) -> list[int]:
    """Connections per worker, most first (a worker holding none counts as 0)."""
    return sorted((list(held.values()).count(w) for w in workers(pid)), reverse=True)


def deal_evenly(
    server_pid: int, port: int, processes: list[subprocess.Popen[str]], timeout: float
) -> tuple[list[int], int]:
    """Have clients reconnect until the workers hold their connections evenly.

    The workers share one listening socket and race to accept, so the clients' few
    kept-alive connections fall to them by chance: with 4 and 2 workers, 2+2 in 3 rounds
    of 8, 3+1 in 4, 4+0 in 1. A worker holding more has that many clients sharing its one
    interpreter while the other idles, which moved a round's throughput by up to 40 %, on
    either side, more than anything measured. So before the deliveries begin, a client of
    the busiest worker is asked to connect again (landing on either worker) until no worker
    holds more than one connection beyond another's: both sides are measured alike.
    Returns the split and how many reconnections it took.
    """
    ports = [client_port(p, timeout) for p in processes]
    moves = 0
    deadline = time.monotonic() + timeout
    while True:
        held: dict[int, int] = {}
        while time.monotonic() < deadline:  # until every connection has been accepted
            held = worker_of_clients(server_pid, port)
            if all(p in held for p in ports):
                break
            time.sleep(0.01)
        split = split_of(server_pid, held)
        if not uneven(split) or moves >= MAX_REDEALS or time.monotonic() >= deadline:
            return split, moves
        busiest = max(set(held.values()), key=list(held.values()).count)
        n = next(i for i, p in enumerate(ports) if held.get(p) == busiest)
        stdin = processes[n].stdin
        assert stdin is not None
        stdin.write("reconnect\n")
        stdin.flush()
        ports[n] = client_port(processes[n], timeout)
        moves += 1


MAX_REDEALS = 40  # reconnections before the deliveries start on an uneven split anyway


def client_port(process: subprocess.Popen[str], timeout: float) -> int:
    """The local port of a client's connection, from its `ready <port>` line."""
    assert process.stdout is not None
    readable, _, _ = select.select([process.stdout], [], [], timeout)
    line = process.stdout.readline() if readable else ""
    word, _, number = line.strip().partition(" ")
    if word != "ready" or not number.isdigit():
        process.kill()
        _, err = process.communicate(timeout=5)
        raise BenchmarkError(f"a client did not get ready: {line[:200]!r}\n{err[-2000:]}")
    return int(number)


@dataclass
class Round:
    """One side's measurement: COUNT deliveries from the clients against one server."""

    side: str
    count: int
    seconds: float
    server_cpu: float
    statuses: dict[str, int]
    latencies: list[float]
    reconnects: int
    late: float
    client_cpu: float
    body_bytes: float
    split: list[int]  # connections per worker, most first, as the deliveries began
    redealt: int  # reconnections it took to deal them evenly (deal_evenly)

    @property
    def accepted(self) -> int:
        return self.statuses.get("202", 0)


def start_client(
    home: Path, n: int, count: int, port: int, secret: str, project: str
) -> subprocess.Popen[str]:
    """Client process `n` (client_main), to send `count` deliveries to `project` on `port`."""
    job = home / f"client{n}.json"
    job.write_text(
        json.dumps(
            {"client": n, "count": count, "port": port, "secret": secret, "project": project}
        )
    )
    code = (
        f"import sys; sys.path.insert(0, {str(ROOT)!r}); "
        "from benchmarks.webhooks import client_main; client_main()"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code, str(job)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=client_env(),
        text=True,
    )


def drive(
    home: Path,
    server: Any,
    port: int,
    secret: str,
    side: str,
    *,
    count: int,
    clients: int,
    timeout: float,
) -> Round:
    """Once the server answers a ping: the clients' deliveries, timed, and its CPU meanwhile."""
    wait_until(
        lambda: server.alive() and ping(port, secret.encode()), 30, f"the {side} server to answer"
    )
    per_client = [count // clients + (1 if n < count % clients else 0) for n in range(clients)]
    cpu_before = server_cpu(server.process.pid)
    processes = [
        start_client(home, n, share, port, secret, "bench") for n, share in enumerate(per_client)
    ]
    results = []
    try:
        split, redealt = deal_evenly(server.process.pid, port, processes, timeout)
        # Soon enough to start together, late enough for each to read it first.
        start_at = time.time() + 0.2
        for process in processes:
            assert process.stdin is not None
            process.stdin.write(f"{start_at!r}\n")
            process.stdin.flush()
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
    statuses: dict[str, int] = {}
    for result in results:
        for status, n in result["statuses"].items():
            statuses[status] = statuses.get(status, 0) + n
    return Round(
        side=side,
        count=count,
        seconds=max(r["last"] for r in results) - min(r["first"] for r in results),
        server_cpu=server_seconds,
        statuses=statuses,
        latencies=[ms for result in results for ms in result["latencies"]],
        reconnects=sum(r["reconnects"] for r in results),
        late=max(r["late"] for r in results),
        client_cpu=sum(r["cpu"] for r in results),
        body_bytes=results[0]["bytes"],
        split=split,
        redealt=redealt,
    )


def client_env() -> dict[str, str]:
    from stat_bot.settings import PROXY_VARIABLES

    return {k: v for k, v in os.environ.items() if k not in PROXY_VARIABLES}


JOB_CONFIGS = {
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
            {"event": "push", "branch": "main", "job_type": "build", "args": {"sha": "{sha}"}}
        ],
    }
}


@dataclass
class Checks:
    """What STAT bot's database holds after a round: every delivery exactly once."""

    jobs: int = 0
    distinct: int = 0
    deliveries: int = 0
    counted: dict[str, int] = field(default_factory=dict)

    def add(self, other: Checks) -> None:
        self.jobs += other.jobs
        self.distinct += other.distinct
        self.deliveries += other.deliveries
        for label, n in other.counted.items():
            self.counted[label] = self.counted.get(label, 0) + n


def stat_bot_round(
    home: Path, *, count: int, clients: int, settings: dict[str, str], timeout: float
) -> tuple[Round, Checks]:
    """The real `stat-bot web` in `home`, with no dispatcher: every job stays queued."""
    from benchmarks.slack import Background
    from stat_bot.settings import PROXY_VARIABLES

    (home / "workspace" / "bench").mkdir(parents=True)
    (home / "job_configs.py").write_text(
        '"""Generated by the benchmarks."""\n\nraw_config = ' + repr(JOB_CONFIGS) + "\n"
    )
    secret = secrets.token_hex(20)
    port = free_port()
    env = {
        k: v
        for k, v in dispatcher_env(home).items()
        if not k.startswith(("WEB_", "GITHUB_")) and k not in PROXY_VARIABLES
    }
    env.update(settings)
    env.update(WEB_PORT=str(port), WEB_HOST="127.0.0.1", GITHUB_WEBHOOK_SECRET=secret)
    server = Background("web", [str(STAT_BOT), "web"], env, home)
    try:
        measured = drive(
            home,
            server,
            port,
            secret,
            "stat-bot web",
            count=count,
            clients=clients,
            timeout=timeout,
        )
    finally:
        server.stop()
    with read_only(home / "var" / "stat-bot.sqlite3") as db:
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
    return measured, Checks(jobs, distinct, deliveries, counted)


def bare_round(
    home: Path, *, count: int, clients: int, workers: int, threads: int, timeout: float
) -> Round:
    """The bare reference (bare_webhooks.py) in `home`, with the same clients and payloads."""
    from benchmarks.bare_webhooks import create_database
    from benchmarks.slack import Background

    home.mkdir(parents=True)
    database = home / "bare.sqlite3"
    create_database(database)
    secret = secrets.token_hex(20)
    port = free_port()
    env = client_env()
    env.update(BARE_WEBHOOK_SECRET=secret, PYTHONPATH=str(ROOT))
    argv = [sys.executable, "-m", "benchmarks.bare_webhooks", str(database), str(port)]
    server = Background("bare", [*argv, str(workers), str(threads)], env, home)
    try:
        measured = drive(
            home, server, port, secret, "bare", count=count, clients=clients, timeout=timeout
        )
    finally:
        server.stop()
    with read_only(database) as db:
        (rows,) = db.execute("SELECT count(*) FROM deliveries").fetchone()
    if rows != count or measured.accepted != count:
        others = {status: n for status, n in measured.statuses.items() if status != "202"}
        # What the server said about it (a traceback's last line names the error).
        said = [
            line.strip()
            for line in server.text().splitlines()
            if "Error" in line or "Traceback" in line or "[ERROR]" in line
        ][-6:]
        raise BenchmarkError(
            f"the bare reference recorded {rows:,} deliveries and accepted {measured.accepted:,} "
            f"of {count:,}: it is broken, so nothing can be judged against it (answers other "
            f"than 202: {others or 'none'}; the clients reconnected {measured.reconnects} "
            "times; its log: " + (" | ".join(said) if said else "no error") + ")"
        )
    return measured


def run(
    home: Path,
    *,
    count: int = 5000,
    clients: int = 4,
    workers: int | None = None,
    threads: int | None = None,
    rounds: int = 2,
    timeout: float = 120.0,
) -> tuple[str, list[Figure]]:
    from stat_bot.settings import Settings

    defaults = Settings.model_fields
    web_workers = workers if workers is not None else int(defaults["web_workers"].default)
    web_threads = threads if threads is not None else int(defaults["web_threads"].default)
    settings: dict[str, str] = {}
    if workers is not None:
        settings["WEB_WORKERS"] = str(workers)
    if threads is not None:
        settings["WEB_THREADS"] = str(threads)
    measured: dict[str, list[Round]] = {"stat-bot web": [], "bare": []}
    checks = Checks()
    for n in range(rounds):
        # Alternating, bare first in even rounds (bare, STAT bot, STAT bot, bare, ...), so a
        # machine slowing down or speeding up during the run weighs on both sides alike.
        for side in ("bare", "stat-bot web") if n % 2 == 0 else ("stat-bot web", "bare"):
            where = home / f"{'bare' if side == 'bare' else 'stat-bot'}-{n + 1}"
            if side == "bare":
                measured[side].append(
                    bare_round(
                        where,
                        count=count,
                        clients=clients,
                        workers=web_workers,
                        threads=web_threads,
                        timeout=timeout,
                    )
                )
            else:
                where.mkdir()
                one, checked = stat_bot_round(
                    where, count=count, clients=clients, settings=settings, timeout=timeout
                )
                measured[side].append(one)
                checks.add(checked)
    return title(count, clients, rounds, web_workers, web_threads, measured), figures(
        count * rounds, measured["stat-bot web"], measured["bare"], checks
    )


def title(
    count: int,
    clients: int,
    rounds: int,
    workers: int,
    threads: int,
    measured: dict[str, list[Round]],
) -> str:
    size = measured["stat-bot web"][0].body_bytes / 1000
    return (
        f"GitHub webhooks: {count:,} signed push deliveries (~{size:.1f} kB each) from "
        f"{clients} client processes, each one keep-alive connection, against `stat-bot web` "
        f"(gunicorn gthread, WEB_WORKERS {workers} x WEB_THREADS {threads}; no dispatcher, so "
        "every job stays queued) and against the bare reference (Flask on the same gunicorn "
        "settings: the signature checked, the JSON parsed, one SQLite row per delivery, WAL, "
        f"synchronous as the queue's default); {rounds} rounds each, alternating"
    )


def rate(rounds: list[Round]) -> float:
    """Deliveries per second over all of a side's rounds (their total count / total time)."""
    return sum(r.count for r in rounds) / sum(r.seconds for r in rounds)


def cpu_ms(rounds: list[Round]) -> float:
    """Server CPU per accepted delivery over all of a side's rounds, in ms."""
    return sum(r.server_cpu for r in rounds) * 1000 / max(1, sum(r.accepted for r in rounds))


def uneven(split: list[int]) -> bool:
    """Whether one worker holds more than one connection beyond another's share."""
    return bool(split) and split[0] - split[-1] > 1


def dealt(rounds: list[Round]) -> str:
    """Each round's connections per worker, and the reconnections that dealt them."""
    return "connections per worker: " + ", ".join(
        "+".join(map(str, r.split)) + (f" ({r.redealt} reconnected)" if r.redealt else "")
        for r in rounds
    )


def each(rounds: list[Round], shown: Any) -> str:
    return "rounds: " + ", ".join(shown(r) for r in rounds)


def figures(total: int, stat: list[Round], bare: list[Round], checks: Checks) -> list[Figure]:
    """STAT bot's figures beside the bare reference's, judged as ratios to it."""
    statuses: dict[str, int] = {}
    for r in stat:
        for status, n in r.statuses.items():
            statuses[status] = statuses.get(status, 0) + n
    others = {s: n for s, n in statuses.items() if s != "202"}
    latencies = [ms for r in stat for ms in r.latencies]
    late = max(r.late for r in stat + bare)
    disturbed = f"; a client was ready {late:.2f} s after the start: disturbed" if late else ""
    return [
        Figure(
            "webhooks/s, STAT bot",
            rate(stat),
            "/s",
            note=each(stat, lambda r: f"{r.count / r.seconds:,.0f}/s") + disturbed,
        ),
        Figure(
            "rounds with connections split unevenly, STAT bot",
            sum(uneven(r.split) for r in stat),
            "",
            note=dealt(stat),
        ),
        Figure(
            "webhooks/s, bare Flask + SQLite (reference)",
            rate(bare),
            "/s",
            note=each(bare, lambda r: f"{r.count / r.seconds:,.0f}/s"),
        ),
        Figure(
            "rounds with connections split unevenly, bare",
            sum(uneven(r.split) for r in bare),
            "",
            note=dealt(bare),
        ),
        Figure("webhooks/s: STAT bot / bare", rate(stat) / rate(bare), "", 0.7, digits=2),
        Figure(
            "answered 202", statuses.get("202", 0), "", total, note=f"others: {others or 'none'}"
        ),
        Figure(
            "jobs queued in the database",
            checks.jobs,
            "",
            total,
            note=f"{checks.distinct:,} distinct shas",
        ),
        Figure("deliveries recorded", checks.deliveries, "", total),
        Figure(
            "lost or doubled (|queued - sent|)",
            abs(checks.jobs - total) + abs(checks.deliveries - total),
            "",
            0,
            higher_is_better=False,
        ),
        Figure(
            "counter webhook_requests accepted",
            checks.counted.get("accepted", 0),
            "",
            total,
            note=f"all labels: {checks.counted}",
        ),
        Figure("request -> response p50", percentile(latencies, 50), " ms", None, False, 2),
        Figure("request -> response p99", percentile(latencies, 99), " ms", None, False, 2),
        Figure(
            "request -> response p50, bare",
            percentile([ms for r in bare for ms in r.latencies], 50),
            " ms",
            None,
            False,
            2,
        ),
        Figure(
            "CPU per accepted webhook, server (all workers)",
            cpu_ms(stat),
            " ms",
            1.0,
            False,
            2,
            note=each(stat, lambda r: f"{r.server_cpu * 1000 / max(1, r.accepted):.2f} ms"),
        ),
        Figure(
            "CPU per webhook, bare server (reference)",
            cpu_ms(bare),
            " ms",
            None,
            False,
            2,
            note=each(bare, lambda r: f"{r.server_cpu * 1000 / max(1, r.accepted):.2f} ms"),
        ),
        Figure(
            "CPU per webhook: STAT bot / bare",
            cpu_ms(stat) / cpu_ms(bare),
            "",
            None,
            False,
            2,
            note="information: the CPU STAT bot spends beyond the bare endpoint's",
        ),
        Figure(
            "CPU per webhook, clients",
            sum(r.client_cpu for r in stat) * 1000 / total,
            " ms",
            None,
            False,
            2,
            note="information: includes building and signing the payloads",
        ),
        Figure("reconnects", sum(r.reconnects for r in stat), "", 0, higher_is_better=False),
    ]
