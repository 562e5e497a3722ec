"""Mail out over SMTP (smtplib): STARTTLS or implicit TLS, optional login, a private CA.

Every failure becomes one MailError whose text says what went wrong and what to check,
and never holds the password. A message is handed to the server whole or not at all:
smtplib sends DATA only after every recipient was accepted, and a connection lost
before the final "." leaves the server nothing to deliver.
"""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path


class MailError(Exception):
    """The mail was not sent; the message says why (no secrets in it)."""


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    sender: str
    starttls: bool = True
    tls: bool = False  # implicit TLS (SMTPS)
    user: str | None = None
    password: str | None = None
    ca_file: Path | None = None
    timeout: float = 30.0

    def __repr__(self) -> str:  # the password never shows, even in a traceback's locals
        return f"SmtpConfig(host={self.host!r}, port={self.port}, user={self.user!r}, password=***)"


def handoff_message(
    *, subject: str, sender: str, to: list[str], text: str, html: str, png: bytes, cid: str
) -> EmailMessage:
    """multipart/alternative: text/plain, then multipart/related (text/html + the PNG by cid)."""
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = sender
    message["To"] = ", ".join(to)
    message["Message-ID"] = make_msgid(domain="stat-bot")
    message.set_content(text)
    message.add_alternative(html, subtype="html")
    html_part = message.get_payload()[1]
    html_part.add_related(
        png, maintype="image", subtype="png", cid=f"<{cid}>", filename="alerts-per-day.png"
    )
    return message


def _context(config: SmtpConfig) -> ssl.SSLContext:
    try:
        return ssl.create_default_context(cafile=str(config.ca_file) if config.ca_file else None)
    except (OSError, ssl.SSLError) as error:
        raise MailError(
            f"SMTP_CA_FILE {config.ca_file}: cannot read it as PEM certificates ({error})"
        ) from None


def send(config: SmtpConfig, message: EmailMessage, to: list[str]) -> None:
    """Send `message` to `to`; MailError with the reason if the server did not take it."""
    if not to:
        raise MailError("no recipient: set HANDOFF_MAIL_TO to a comma list of addresses")
    where = f"{config.host}:{config.port}"
    context = _context(config) if (config.tls or config.starttls) else None
    try:
        if config.tls:
            client: smtplib.SMTP = smtplib.SMTP_SSL(
                config.host, config.port, timeout=config.timeout, context=context
            )
        else:
            client = smtplib.SMTP(config.host, config.port, timeout=config.timeout)
        with client:
            client.ehlo()
            if config.starttls and not config.tls:
                if not client.has_extn("starttls"):
                    raise MailError(
                        f"the SMTP server {where} does not offer STARTTLS, and SMTP_STARTTLS is on: "
                        "the password and the mail would cross the network in clear; use the "
                        "server's submission port, or SMTP_TLS=true for port 465"
                    )
                client.starttls(context=context)
                client.ehlo()
            if config.user:
                client.login(config.user, config.password or "")
            refused = client.send_message(message, to_addrs=to)
            if refused:
                raise MailError(
                    f"the SMTP server {where} refused some recipients: {', '.join(sorted(refused))}"
                )
    except MailError:
        raise
    except smtplib.SMTPAuthenticationError as error:
        raise MailError(
            f"the SMTP server {where} refused the login of {config.user!r} ({error.smtp_code}): "
            "check SMTP_USER and SMTP_PASSWORD"
        ) from None
    except smtplib.SMTPNotSupportedError:
        raise MailError(
            f"the SMTP server {where} does not support AUTH: unset SMTP_USER, or use TLS"
        ) from None
    except ssl.SSLCertVerificationError as error:
        raise MailError(
            f"the SMTP server {where}'s certificate is not trusted ({error.verify_message}): "
            "set SMTP_CA_FILE to the CA that signed it"
        ) from None
    except smtplib.SMTPResponseException as error:
        said = (
            error.smtp_error.decode("utf-8", "replace")
            if isinstance(error.smtp_error, bytes)
            else str(error.smtp_error)
        )
        raise MailError(
            f"the SMTP server {where} answered {error.smtp_code} {said[:200]}"
        ) from None
    except smtplib.SMTPRecipientsRefused as error:
        raise MailError(
            f"the SMTP server {where} refused every recipient: {', '.join(error.recipients)}"
        ) from None
    except (smtplib.SMTPException, ssl.SSLError) as error:
        raise MailError(f"SMTP with {where} failed: {error}") from None
    except TimeoutError:
        raise MailError(
            f"the SMTP server {where} did not answer within {config.timeout:g} s"
        ) from None
    except OSError as error:
        raise MailError(
            f"cannot reach the SMTP server {where}: {error.strerror or error}"
        ) from None
