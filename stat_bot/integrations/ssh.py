"""Run one command on many hosts over SSH (Fabric), keeping the connections between calls.

Why its own runner rather than `fabric.ThreadingGroup`: a sweep must never stop at one
bad node, so each host's failure is turned into words here (unreachable, key refused,
unknown host key, timed out) instead of a GroupException; connections are kept per
host, so a second sweep skips the key exchange and login (DESIGN.md measured 64 hosts:
~1.5 s the first time, ~0.33 s on kept connections). The host-key policy is explicit
because Fabric's default accepts any key silently.

Nothing here reads settings: the caller passes an `SshConfig` (workspace scripts build
it from SSH_* variables, tests from the loopback sshd).
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import paramiko
from fabric import Config, Connection
from fabric.runners import Remote
from invoke.exceptions import CommandTimedOut
from paramiko.ssh_exception import NoValidConnectionsError

KnownHosts = Literal["strict", "accept-new", "off"]
ErrorKind = Literal["unreachable", "auth_refused", "host_key", "timeout", "error"]
KNOWN_HOSTS_POLICIES = ("strict", "accept-new", "off")
DEFAULT_KNOWN_HOSTS = Path("~/.ssh/known_hosts")


class _Remote(Remote):
    """Fabric's runner for a remote command, whose kill at the time limit tolerates a
    connection already closed.

    Fabric kills a command at its time limit from a timer thread by closing the channel.
    The run can see the channel closed while that thread is still sending the close, and
    the runner then drops the connection (`SshRunner.run`); the thread's send failed with
    EOFError, printed as an unhandled exception in a thread (on stderr, which a workspace
    script's job reports). The channel is closed either way, which is all the kill is for.
    """

    def kill(self) -> None:
        with contextlib.suppress(EOFError, OSError, paramiko.SSHException):
            super().kill()


class SshSetupError(ValueError):
    """The configuration itself is wrong (no such key file, bad policy): no host can work."""


@dataclass(frozen=True)
class SshConfig:
    """How to log in to the nodes; one for a whole sweep.

    user: login name (None: the ssh_config's User, else the local user).
    key_file: private key (None: the ssh_config's IdentityFile, else ~/.ssh defaults and agent).
    port: sshd port (None: the ssh_config's Port, else 22).
    known_hosts: strict (only hosts already in known_hosts_file), accept-new (remember a new
      host's key, refuse a changed one), off (no check: only for throwaway test nodes).
    known_hosts_file: None means ~/.ssh/known_hosts.
    timeout: seconds per host to connect, log in and run the command.
    ssh_config_file: an OpenSSH client config to read (Host, HostName, Port, User,
      IdentityFile); None reads none, so nothing outside these fields changes behaviour.
    """

    user: str | None = None
    key_file: Path | None = None
    port: int | None = None
    known_hosts: KnownHosts = "strict"
    known_hosts_file: Path | None = None
    timeout: float = 10.0
    ssh_config_file: Path | None = None

    def __post_init__(self) -> None:
        if self.known_hosts not in KNOWN_HOSTS_POLICIES:
            raise SshSetupError(
                f"known_hosts policy {self.known_hosts!r} is not one of "
                f"{', '.join(KNOWN_HOSTS_POLICIES)}"
            )
        if self.timeout <= 0:
            raise SshSetupError(f"SSH timeout must be more than 0 seconds, not {self.timeout}")
        if self.port is not None and not 0 < self.port < 65536:
            raise SshSetupError(f"SSH port {self.port} is not between 1 and 65535")

    @classmethod
    def from_environment(cls, env: Mapping[str, str] = os.environ) -> SshConfig:
        """For workspace scripts: SSH_USER, SSH_KEY_FILE, SSH_PORT, SSH_KNOWN_HOSTS,
        SSH_KNOWN_HOSTS_FILE, SSH_TIMEOUT, SSH_CONFIG_FILE (all optional; see environment-sample).
        """

        def text(name: str) -> str | None:
            return env.get(name, "").strip() or None

        def number(name: str, kind: type[int] | type[float]) -> int | float | None:
            raw = text(name)
            if raw is None:
                return None
            try:
                return kind(raw)
            except ValueError:
                raise SshSetupError(f"{name}={raw!r} is not a number") from None

        port = number("SSH_PORT", int)
        timeout = number("SSH_TIMEOUT", float)
        policy = text("SSH_KNOWN_HOSTS") or "strict"
        if policy not in KNOWN_HOSTS_POLICIES:
            raise SshSetupError(
                f"SSH_KNOWN_HOSTS={policy!r} is not one of {', '.join(KNOWN_HOSTS_POLICIES)}"
            )
        key, known, config = (
            text("SSH_KEY_FILE"),
            text("SSH_KNOWN_HOSTS_FILE"),
            text("SSH_CONFIG_FILE"),
        )
        return cls(
            user=text("SSH_USER"),
            key_file=Path(key) if key else None,
            port=int(port) if port is not None else None,
            known_hosts=policy,  # type: ignore[arg-type]
            known_hosts_file=Path(known) if known else None,
            timeout=float(timeout) if timeout is not None else 10.0,
            ssh_config_file=Path(config) if config else None,
        )

    @property
    def known_hosts_path(self) -> Path:
        return (self.known_hosts_file or DEFAULT_KNOWN_HOSTS).expanduser()


@dataclass(frozen=True)
class Result:
    """What one host did: its command's output, or why it could not be asked.

    ok: the command ran and exited 0. exit_code: None when it never ran.
    error / error_kind: set when the host could not be asked (or timed out):
    unreachable, auth_refused, host_key, timeout, error (anything else).
    """

    host: str
    ok: bool
    exit_code: int | None
    stdout: str
    stderr: str
    error: str | None = None
    error_kind: ErrorKind | None = None
    seconds: float = 0.0


class SessionBrokenError(EOFError):
    """The session closed before the command's exit status came (sshd or the node went away,
    or the command was killed by a signal)."""


class UnknownHostKey(paramiko.SSHException):
    """Strict policy: the host's key is not in known_hosts."""


class _RefuseUnknown(paramiko.MissingHostKeyPolicy):
    def __init__(self, known_hosts: Path) -> None:
        self.known_hosts = known_hosts

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey):
        raise UnknownHostKey(
            f"host key of {hostname} ({key.get_name()}) is not in {self.known_hosts} and the "
            "policy is strict: check the node and add its key (ssh-keyscan), or use accept-new"
        )


class _AcceptNew(paramiko.MissingHostKeyPolicy):
    """Remember a new host's key in known_hosts (appended, once, under a lock)."""

    def __init__(self, known_hosts: Path) -> None:
        self.known_hosts = known_hosts
        self.lock = threading.Lock()
        self.accepted: dict[str, paramiko.PKey] = {}

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey):
        with self.lock:
            earlier = self.accepted.get(hostname)
            if earlier is not None:
                if earlier != key:
                    raise paramiko.BadHostKeyException(hostname, key, earlier)
                return
            self.accepted[hostname] = key
            self.known_hosts.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            entry = paramiko.hostkeys.HostKeyEntry([hostname], key)
            with self.known_hosts.open("a") as file:
                file.write(entry.to_line())


class _Accept(paramiko.MissingHostKeyPolicy):
    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey):
        return


def _load_key(path: Path) -> paramiko.PKey:
    path = path.expanduser()
    if not path.is_file():
        raise SshSetupError(f"SSH key file {path} does not exist (SSH_KEY_FILE)")
    try:
        return paramiko.PKey.from_path(path)
    except paramiko.PasswordRequiredException:
        raise SshSetupError(
            f"SSH key file {path} is protected by a passphrase: use a key without one "
            "for unattended checks"
        ) from None
    except (paramiko.SSHException, ValueError, OSError) as exc:
        raise SshSetupError(f"SSH key file {path} cannot be read as a private key: {exc}") from None


class SshRunner:
    """Runs commands on hosts through kept Fabric connections; thread-safe.

    `run_many` never raises for a host's failure: each host gets a Result.
    Call `close()` (or use it as a context manager) to drop the connections.
    """

    def __init__(self, cfg: SshConfig) -> None:
        self.cfg = cfg
        self._pkey = _load_key(cfg.key_file) if cfg.key_file else None
        ssh_config = paramiko.SSHConfig()
        if cfg.ssh_config_file is not None:
            path = cfg.ssh_config_file.expanduser()
            if not path.is_file():
                raise SshSetupError(f"ssh_config file {path} does not exist")
            ssh_config = paramiko.SSHConfig.from_path(str(path))
        self._fabric_config = Config(
            ssh_config=ssh_config, overrides={"runners": {"remote": _Remote}}
        )
        self._known_hosts = cfg.known_hosts_path
        # Read once: each connection gets only its host's keys (known_hosts may be long).
        self._host_keys = paramiko.HostKeys()
        if cfg.known_hosts != "off" and self._known_hosts.is_file():
            try:
                self._host_keys.load(str(self._known_hosts))
            except (OSError, paramiko.SSHException) as exc:
                raise SshSetupError(f"known_hosts file {self._known_hosts}: {exc}") from None
        self._policy: paramiko.MissingHostKeyPolicy
        if cfg.known_hosts == "strict":
            self._policy = _RefuseUnknown(self._known_hosts)
        elif cfg.known_hosts == "accept-new":
            self._policy = _AcceptNew(self._known_hosts)
        else:
            self._policy = _Accept()
        self._connections: dict[str, Connection] = {}
        self._lock = threading.Lock()
        self._build_lock = threading.Lock()

    def __enter__(self) -> SshRunner:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _new_connection(self, host: str) -> Connection:
        connect_kwargs: dict[str, object] = {
            "timeout": self.cfg.timeout,
            "banner_timeout": self.cfg.timeout,
            "auth_timeout": self.cfg.timeout,
        }
        if self._pkey is not None:
            connect_kwargs.update(pkey=self._pkey, look_for_keys=False, allow_agent=False)
        # Each connection gets its own copy of the Config: Connection() writes settings
        # (inline_ssh_env) into the Config it is given, and every write rebuilds that
        # Config from empty, so with one shared Config a host starting its command while
        # another's connection was built could read no settings at all ("No attribute or
        # config key found for 'runners'", 1 of 64 hosts). Copies are made one at a time,
        # from a Config nothing writes to; connecting stays concurrent.
        with self._build_lock:
            connection = Connection(
                host,
                user=self.cfg.user,
                port=self.cfg.port,
                config=self._fabric_config.clone(),
                connect_kwargs=connect_kwargs,
            )
        if self._pkey is not None:  # the configured key, not also the ssh_config's IdentityFile
            connection.connect_kwargs.pop("key_filename", None)
        client = connection.client
        port = connection.port
        name = connection.host if port == 22 else f"[{connection.host}]:{port}"
        for keytype, key in (self._host_keys.lookup(name) or {}).items():
            client.get_host_keys().add(name, keytype, key)
        client.set_missing_host_key_policy(self._policy)
        return connection

    def _connection(self, host: str) -> Connection:
        with self._lock:
            connection = self._connections.get(host)
        if connection is not None:
            return connection
        connection = self._new_connection(host)
        with self._lock:
            return self._connections.setdefault(host, connection)

    def _drop(self, host: str) -> None:
        with self._lock:
            connection = self._connections.pop(host, None)
        if connection is not None:
            _quiet_close(connection)

    def run(self, host: str, command: str, timeout: float | None = None) -> Result:
        """Run `command` on one host (a kept connection when there is a live one)."""
        limit = timeout or self.cfg.timeout
        started = time.monotonic()
        connection = self._connection(host)
        kept = connection.is_connected
        try:
            return self._run_on(connection, host, command, limit, started)
        except CommandTimedOut:
            self._drop(host)  # the channel's state is unknown: start clean next time
            return self._failure(host, "timeout", f"{host}: no answer within {limit:g} s", started)
        except SessionBrokenError as exc:
            if time.monotonic() - started >= limit - 0.05:
                # Fabric closed the channel at the time limit and the close won the race
                # with its own timeout error (seen on a loaded machine): a timeout all the same.
                self._drop(host)
                return self._failure(
                    host, "timeout", f"{host}: no answer within {limit:g} s", started
                )
            return self._broken(host, connection, exc, kept, command, limit, started)
        except Exception as exc:
            return self._broken(host, connection, exc, kept, command, limit, started)

    def _broken(
        self,
        host: str,
        connection: Connection,
        exc: BaseException,
        kept: bool,
        command: str,
        limit: float,
        started: float,
    ) -> Result:
        """A run that failed other than by its time limit: once more on a fresh login when
        it was a kept connection (the node or its sshd restarted), else the reason."""
        self._drop(host)
        if kept:  # the node or its sshd restarted since the last call: log in again
            return self.run(host, command, max(limit - (time.monotonic() - started), 0.5))
        kind, words = self.explain(host, connection, exc, limit)
        return self._failure(host, kind, words, started)

    def _run_on(
        self, connection: Connection, host: str, command: str, limit: float, started: float
    ) -> Result:
        connection.open()
        left = max(limit - (time.monotonic() - started), 0.5)
        result = connection.run(command, hide=True, warn=True, in_stream=False, timeout=left)
        if result.exited == -1:  # the channel closed without an exit status
            raise SessionBrokenError("the session ended without an exit status")
        return Result(
            host=host,
            ok=result.exited == 0,
            exit_code=result.exited,
            stdout=result.stdout,
            stderr=result.stderr,
            seconds=time.monotonic() - started,
        )

    @staticmethod
    def _failure(host: str, kind: ErrorKind, words: str, started: float) -> Result:
        return Result(
            host=host,
            ok=False,
            exit_code=None,
            stdout="",
            stderr="",
            error=words,
            error_kind=kind,
            seconds=time.monotonic() - started,
        )

    def explain(
        self, host: str, connection: Connection, exc: BaseException, limit: float
    ) -> tuple[ErrorKind, str]:
        """A failure in words an admin acts on (never the key or a secret)."""
        where = f"{connection.host}:{connection.port}"
        name = host if host == connection.host else f"{host} ({where})"
        if isinstance(exc, UnknownHostKey):
            return "host_key", f"{host}: {exc}"
        if isinstance(exc, paramiko.BadHostKeyException):
            return "host_key", (
                f"{name}: host key differs from the one in {self._known_hosts}: the node was "
                "reinstalled or something is in between; check, then replace its line"
            )
        if isinstance(exc, paramiko.AuthenticationException):
            key = self.cfg.key_file or "the default keys"
            return "auth_refused", (
                f"{name}: {connection.user} was refused with {key}: is its public key in "
                "the node's authorized_keys for that user?"
            )
        if isinstance(exc, NoValidConnectionsError):
            return (
                "unreachable",
                f"{name}: connection refused (is sshd running on port {connection.port}?)",
            )
        if isinstance(exc, socket.gaierror):
            return "unreachable", f"{host}: the name does not resolve ({exc.strerror})"
        if isinstance(exc, TimeoutError | socket.timeout):
            return "timeout", f"{name}: no answer within {limit:g} s"
        if isinstance(exc, paramiko.SSHException) and "banner" in str(exc).lower():
            return "timeout", f"{name}: sshd did not greet within {limit:g} s ({exc})"
        if isinstance(exc, OSError):
            return "unreachable", f"{name}: {exc.strerror or exc}"
        if isinstance(exc, SessionBrokenError):
            return "error", (
                f"{name}: the session ended before the command did (sshd or the node went "
                "away, or the command was killed by a signal)"
            )
        if isinstance(exc, EOFError | paramiko.SSHException):
            return "unreachable", f"{name}: the SSH session broke off ({exc or type(exc).__name__})"
        return "error", f"{name}: {type(exc).__name__}: {exc}"

    def run_many(
        self,
        hosts: Iterable[str],
        command: str,
        fanout: int = 64,
        timeout: float | None = None,
    ) -> dict[str, Result]:
        """Run `command` on every host, at most `fanout` at once; a Result for each, in order."""
        unique = list(dict.fromkeys(hosts))
        if not unique:
            return {}
        with ThreadPoolExecutor(max_workers=max(1, min(fanout, len(unique)))) as pool:
            results = pool.map(lambda host: self._safe_run(host, command, timeout), unique)
            return dict(zip(unique, results, strict=True))

    def _safe_run(self, host: str, command: str, timeout: float | None) -> Result:
        started = time.monotonic()
        try:
            return self.run(host, command, timeout)
        except Exception as exc:  # a bug of ours must still not hide the other hosts
            return self._failure(host, "error", f"{host}: {type(exc).__name__}: {exc}", started)

    @property
    def connected(self) -> list[str]:
        """Hosts with a live kept connection."""
        with self._lock:
            return [host for host, c in self._connections.items() if c.is_connected]

    def close(self) -> None:
        with self._lock:
            connections, self._connections = list(self._connections.values()), {}
        for connection in connections:
            _quiet_close(connection)


def _quiet_close(connection: Connection) -> None:
    try:
        connection.close()
    except Exception:  # closing a broken connection may fail; it is gone either way
        return
