"""A real OpenSSH server on loopback for the SSH checks, the fan-out benchmark and `fab deploy`.

DESIGN.md, "SSH for Fabric", has the facts this follows: a private host key, only key
logins, an absolute AuthorizedKeysFile, MaxStartups raised so 64 logins at once are not
dropped, and a plain user with /bin/sh (root's shell start-up costs ~0.15 s a session).
Many "hosts" are one sshd plus an ssh_config block `Host n*` -> 127.0.0.1, so any name
starting with `n` reaches it (`names(64)` gives n01..n64).

As root (CI) the login user is `statbot-ssh-test`, created once under a file lock so the
two xdist workers cannot race on `useradd`; as anyone else it is the current user.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from stat_bot.integrations.ssh import SshConfig
from tests.peers import free_port, require

TEST_USER = "statbot-ssh-test"
USER_LOCK = Path(tempfile.gettempdir()) / "stat-bot-ssh-test-user.lock"
SSHD_CANDIDATES = ("/usr/sbin/sshd", "/usr/bin/sshd", "/usr/local/sbin/sshd")
START_TIMEOUT = 30.0


def sshd_path() -> str | None:
    """sshd must be started by its absolute path (it re-executes itself)."""
    found = shutil.which("sshd")
    if found:
        return found
    return next((path for path in SSHD_CANDIDATES if os.access(path, os.X_OK)), None)


def login_user() -> str:
    """The plain login user: created (race-safe across workers) when running as root."""
    if os.geteuid() != 0:
        return getpass.getuser()
    with USER_LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            pwd.getpwnam(TEST_USER)
        except KeyError:
            subprocess.run(
                ["useradd", "--create-home", "--shell", "/bin/sh", TEST_USER],
                check=True,
                capture_output=True,
            )
        # With UsePAM no, a user without a password hash counts as locked: key logins
        # would fail silently. '*' is "no password" without being locked.
        subprocess.run(["usermod", "-p", "*", TEST_USER], check=True, capture_output=True)
    return TEST_USER


def keygen(path: Path, comment: str) -> str:
    """A fresh ed25519 key pair; returns the public key line."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        capture_output=True,
    )
    return path.with_suffix(".pub").read_text().strip()


@dataclass
class SshServer:
    """One running sshd and everything a client needs to log in to it."""

    host: str
    port: int
    user: str
    key_file: Path
    known_hosts_file: Path
    ssh_config_file: Path
    host_public_key: str
    log_file: Path
    directory: Path
    process: subprocess.Popen[bytes]

    @staticmethod
    def names(count: int) -> list[str]:
        """Host names the ssh_config sends to this sshd: n01, n02, ..."""
        width = max(2, len(str(count)))
        return [f"n{index:0{width}d}" for index in range(1, count + 1)]

    def config(self, **overrides: object) -> SshConfig:
        """An SshConfig that logs in here with strict host keys (known_hosts has the key)."""
        values: dict[str, object] = {
            "user": self.user,
            "key_file": self.key_file,
            "port": self.port,
            "known_hosts": "strict",
            "known_hosts_file": self.known_hosts_file,
            "timeout": 15.0,
            "ssh_config_file": self.ssh_config_file,
        }
        values.update(overrides)
        return SshConfig(**values)  # type: ignore[arg-type]

    def ssh_args(self) -> list[str]:
        """OpenSSH options for `ssh`/`clush` that reach this sshd as the test user."""
        return ["-F", str(self.ssh_config_file)]

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")


def _write_config(
    directory: Path, port: int, authorized_keys: Path, host_key: Path, extra: list[str]
) -> Path:
    config = directory / "sshd_config"
    config.write_text(
        "\n".join(
            [
                "ListenAddress 127.0.0.1",
                f"HostKey {host_key}",
                f"PidFile {directory / 'sshd.pid'}",
                "UsePAM no",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "PubkeyAuthentication yes",
                f"AuthorizedKeysFile {authorized_keys}",
                "StrictModes no",
                # The default 10:30:100 drops 3-11 of 64 concurrent logins.
                "MaxStartups 100:30:200",
                "MaxSessions 100",
                # sftp for Fabric's put (fab deploy uploads the release archive).
                "Subsystem sftp internal-sftp",
                "PrintMotd no",
                "LogLevel INFO",
                *extra,
                "",
            ]
        )
    )
    return config


def _client_config(server_dir: Path, port: int, user: str, key: Path, known: Path) -> Path:
    path = server_dir / "ssh_config"
    path.write_text(
        "\n".join(
            [
                "Host n* 127.0.0.1 localhost",
                "    HostName 127.0.0.1",
                f"    Port {port}",
                f"    User {user}",
                f"    IdentityFile {key}",
                "    IdentitiesOnly yes",
                f"    UserKnownHostsFile {known}",
                "    GlobalKnownHostsFile /dev/null",
                "    StrictHostKeyChecking yes",
                "    BatchMode yes",
                "    LogLevel ERROR",
                "",
            ]
        )
    )
    return path


@contextlib.contextmanager
def start_sshd(
    parent: Path | None = None, extra_config: list[str] | None = None
) -> Iterator[SshServer]:
    """Start sshd on a free loopback port; stop it and remove its folder afterwards.

    `extra_config`: more sshd_config lines (e.g. `KexAlgorithms ...` for the benchmark).

    The folder is made world-readable (not under pytest's 0700 tmp folder) because sshd
    reads the authorized keys as the login user.
    """
    sshd = sshd_path()
    if sshd is None:
        raise RuntimeError("sshd is not installed (Debian: apt-get install openssh-server)")
    user = login_user()
    directory = Path(tempfile.mkdtemp(prefix="stat-bot-sshd-", dir=parent))
    directory.chmod(0o755)
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    host_key = directory / "host_ed25519"
    host_public = keygen(host_key, "stat-bot test host")
    client_key = directory / "client_ed25519"
    authorized = directory / "authorized_keys"
    authorized.write_text(keygen(client_key, "stat-bot test client") + "\n")
    authorized.chmod(0o644)
    known = directory / "known_hosts"
    log_file = directory / "sshd.log"
    process: subprocess.Popen[bytes] | None = None
    try:
        for _attempt in range(5):
            port = free_port()
            config = _write_config(directory, port, authorized, host_key, extra_config or [])
            with log_file.open("wb") as log:
                process = subprocess.Popen(
                    [sshd, "-D", "-e", "-f", str(config), "-p", str(port)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                )
            if _wait_listening(process, log_file, port):
                break
            process.kill()
            process.wait()
            process = None
        if process is None:
            raise RuntimeError(f"sshd did not start; its log:\n{log_file.read_text()}")
        known.write_text(f"[127.0.0.1]:{port} {host_public}\n")
        server = SshServer(
            host="127.0.0.1",
            port=port,
            user=user,
            key_file=client_key,
            known_hosts_file=known,
            ssh_config_file=_client_config(directory, port, user, client_key, known),
            host_public_key=host_public,
            log_file=log_file,
            directory=directory,
            process=process,
        )
        yield server
    finally:
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(directory, ignore_errors=True)


def _wait_listening(process: subprocess.Popen[bytes], log_file: Path, port: int) -> bool:
    """True once sshd says it listens; False when it exited (e.g. the port was taken)."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        if f"port {port}" in log_file.read_text(errors="replace"):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                return True
        time.sleep(0.02)
    return False


def require_sshd() -> None:
    """Skip (loudly, once) where sshd is missing, except under CI, where it must be there."""
    require(
        None
        if sshd_path() is not None
        else "SKIPPED SSH TESTS: sshd is not installed (apt-get install openssh-server); "
        "the SSH checks and fab deploy are untested here",
        "SSH",
    )


@pytest.fixture(scope="session")
def sshd() -> Iterator[SshServer]:
    """One sshd per test process (xdist worker), shared by its tests; read-only for them."""
    require_sshd()
    with start_sshd() as server:
        yield server


@pytest.fixture
def private_sshd() -> Iterator[SshServer]:
    """An sshd of the test's own, for tests that stop or restart it."""
    require_sshd()
    with start_sshd() as server:
        yield server
