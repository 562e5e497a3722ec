"""The webhooks benchmark deals the clients' kept-alive connections evenly over the workers
before it measures (benchmarks/webhooks.py), against real processes and sockets."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks.webhooks import deal_evenly, split_of, start_client, uneven, worker_of_clients

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads Linux /proc")

# A pre-fork server as gunicorn's: one listening socket, two worker processes accepting
# from it and keeping every connection open. The second starts accepting only once the
# first holds four connections, so the clients' first four all fall to the first.
SERVER = """
import os, socket
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(64)
print(listener.getsockname()[1], flush=True)
first_has_four, told = os.pipe()
for n in range(2):
    if os.fork() == 0:
        if n:
            os.read(first_has_four, 1)
        held = []
        while True:
            held.append(listener.accept()[0])
            if len(held) == 4 and not n:
                os.write(told, b"!")
listener.close()
os.wait()
"""


@pytest.fixture
def server():
    process = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        yield process.pid, port
    finally:
        for child in Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split():
            subprocess.run(["kill", "-9", child], check=False)
        process.kill()
        process.wait(10)


def clients(tmp_path: Path, port: int, n: int) -> list[subprocess.Popen[str]]:
    """The benchmark's own client processes, with no deliveries to send."""
    return [start_client(tmp_path, i, 0, port, "s", "p") for i in range(n)]


def test_connections_that_all_fell_to_one_worker_are_dealt_two_and_two(server, tmp_path):
    pid, port = server
    processes = clients(tmp_path, port, 4)
    try:
        split, moved = deal_evenly(pid, port, processes, timeout=60)
        assert split == [2, 2]
        assert moved >= 2  # all four were on the first worker: two at least had to move
        held = worker_of_clients(pid, port)
        assert len(held) == 4
        assert len(set(held.values())) == 2
        assert split_of(pid, held) == [2, 2]
        start = time.time() + 0.1
        for process in processes:
            out, err = process.communicate(f"{start!r}\n", timeout=30)
            assert process.returncode == 0, err
            assert json.loads(out)["statuses"] == {}  # nothing was sent: only connections
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait(10)


def test_a_split_is_uneven_when_one_worker_holds_two_more_than_another():
    for split in ([3, 1], [4, 0], [3, 1, 1]):
        assert uneven(split)
    for split in ([2, 2], [2, 1], [1], []):
        assert not uneven(split)
