"""A real SMTP server for the tests: aiosmtpd with STARTTLS required and AUTH required.

The certificate is self-signed for 127.0.0.1 (openssl), so a client must be given it
as its CA (SMTP_CA_FILE), as a site with a private CA does. Received mails are kept
in `messages` as the server parsed them (bytes as sent).
"""

from __future__ import annotations

import socket
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

USER, PASSWORD = "handoff", "s3cret-smtp-Pa55"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def self_signed(folder: Path) -> tuple[Path, Path]:
    cert, key = folder / "smtp-cert.pem", folder / "smtp-key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes


@dataclass
class SmtpServer:
    port: int
    cert: Path
    messages: list[Received] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)

    def environ(self, **extra: str) -> dict[str, str]:
        env = {
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(self.port),
            "SMTP_STARTTLS": "true",
            "SMTP_USER": USER,
            "SMTP_PASSWORD": PASSWORD,
            "SMTP_FROM": "stat-bot@example.org",
            "SMTP_CA_FILE": str(self.cert),
            "SMTP_TIMEOUT": "10",
            "HANDOFF_MAIL_TO": "oncall@example.org, lead@example.org",
        }
        env.update(extra)
        return env


class _Handler:
    def __init__(self, server: SmtpServer) -> None:
        self.server = server

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:  # noqa: N802
        self.server.messages.append(
            Received(envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.content))
        )
        return "250 Message accepted for delivery"


@pytest.fixture(scope="session")
def smtp_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed(tmp_path_factory.mktemp("smtp"))


@pytest.fixture
def smtp_server(smtp_cert: tuple[Path, Path]) -> Iterator[SmtpServer]:
    """STARTTLS required, AUTH (PLAIN/LOGIN) required as USER / PASSWORD."""
    cert, key = smtp_cert
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = SmtpServer(free_port(), cert)

    def authenticate(_srv: Any, _session: Any, _env: Any, _mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
            USER.encode(),
            PASSWORD.encode(),
        )
        if ok:
            server.logins.append(USER)
        return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535

    controller = Controller(
        _Handler(server),
        hostname="127.0.0.1",
        port=server.port,
        tls_context=context,
        require_starttls=True,
        authenticator=authenticate,
        auth_required=True,
    )
    controller.start()
    try:
        yield server
    finally:
        controller.stop()
