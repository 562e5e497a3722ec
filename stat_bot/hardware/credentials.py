"""How the hardware settings' texts become what the Redfish client takes.

Built-in tasks read them from the service's settings, workspace scripts from their
environment; both turn them into a RedfishConfig through these functions, so
`REDFISH_VERIFY_TLS=/etc/ssl/site-ca.pem` or a password file mean the same to both.
"""

from __future__ import annotations

from pathlib import Path

TRUE = {"1", "true", "yes", "on"}
FALSE = {"0", "false", "no", "off"}


class CredentialsError(ValueError):
    """A setting that cannot be used; the message names it."""


def verify_tls(text: str | bool | None) -> bool | str:
    """REDFISH_VERIFY_TLS: true/false (and yes/no, 1/0, on/off), or a CA bundle's path."""
    if text is None or isinstance(text, bool):
        return True if text is None else text
    value = text.strip()
    if not value or value.lower() in TRUE:
        return True
    if value.lower() in FALSE:
        return False
    if not Path(value).is_file():
        raise CredentialsError(
            f"REDFISH_VERIFY_TLS {value!r} is neither true, false nor a CA bundle file"
        )
    return value


def password(given: str | None, file: str | Path | None) -> str:
    """REDFISH_PASSWORD, else the first line of REDFISH_PASSWORD_FILE, else empty."""
    if given:
        return given
    if not file:
        return ""
    try:
        lines = Path(file).read_text().splitlines()
    except OSError as error:
        raise CredentialsError(
            f"REDFISH_PASSWORD_FILE {file} cannot be read ({error.strerror or error})"
        ) from None
    return lines[0].strip() if lines else ""
