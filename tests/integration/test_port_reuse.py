"""A port whose only connections are in TIME_WAIT is free: quick restarts keep their port."""

from __future__ import annotations

import socket

from stat_bot.supervisor import port_is_free


def _time_wait_port() -> int:
    """A port we listened on, served one connection and closed first (so TIME_WAIT is ours)."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = server.accept()
    accepted.close()  # the server side closes first: its end goes to TIME_WAIT
    client.recv(1)
    client.close()
    server.close()
    return port


def _states(port: int) -> set[str]:
    """The TCP states of local sockets on `port` (from /proc/net/tcp)."""
    names = {"01": "ESTABLISHED", "06": "TIME_WAIT", "0A": "LISTEN", "08": "CLOSE_WAIT"}
    found = set()
    with open("/proc/net/tcp") as table:
        for line in list(table)[1:]:
            fields = line.split()
            if int(fields[1].split(":")[1], 16) == port:
                found.add(names.get(fields[3], fields[3]))
    return found


def test_a_port_with_only_time_wait_connections_counts_as_free():
    port = _time_wait_port()
    assert _states(port) == {"TIME_WAIT"}
    assert port_is_free("127.0.0.1", port)


def test_a_port_someone_listens_on_is_not_free():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        assert not port_is_free("127.0.0.1", server.getsockname()[1])
