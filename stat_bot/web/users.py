"""Dashboard users: names with password hashes, from WEB_USERS and the users file.

There is no default user and no default password. `stat-bot web-user add NAME`
writes the file (mode 600); it is re-read when it changes, so adding a user
needs no restart. Hashes are Werkzeug's (scrypt), never the passwords.
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from werkzeug.security import check_password_hash, generate_password_hash

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
MIN_PASSWORD = 8
# Checked against when the name is unknown, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = generate_password_hash("not a password of anyone's")


class UserError(ValueError):
    """A user name, password or users-file line that cannot be used; says what to change."""


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise UserError(
            f"user name {name!r} is not allowed: use 1-64 letters, digits and . _ @ -, "
            "starting with a letter or digit"
        )
    return name


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise UserError(f"the password is too short: use at least {MIN_PASSWORD} characters")
    return generate_password_hash(password)


def parse_entries(text: str, where: str) -> dict[str, str]:
    """NAME:HASH entries, one per line or separated by commas/spaces; '#' starts a comment."""
    users: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0] if not line.lstrip().startswith("#") else ""
        for entry in line.replace(",", " ").split():
            name, sep, hashed = entry.partition(":")
            if not sep or not hashed:
                raise UserError(
                    f"{where}, line {number}: expected NAME:HASH (make one with "
                    "`stat-bot web-user hash`), got an entry without a hash"
                )
            check_name(name)
            users[name] = hashed
    return users


@dataclass
class _FileState:
    stamp: tuple[int, int] | None = None
    users: dict[str, str] | None = None


class UserStore:
    """Who may log in: WEB_USERS plus the users file (the file wins for a name in both)."""

    def __init__(self, path: Path, env_users: str = "") -> None:
        self.path = path
        self._env = parse_entries(env_users, "WEB_USERS") if env_users else {}
        self._file = _FileState()
        self._lock = threading.Lock()

    def _file_users(self) -> dict[str, str]:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return {}
        stamp = (st.st_mtime_ns, st.st_size)
        with self._lock:
            if stamp != self._file.stamp or self._file.users is None:
                self._file = _FileState(stamp, parse_entries(self.path.read_text(), str(self.path)))
            return self._file.users or {}

    def users(self) -> dict[str, str]:
        return {**self._env, **self._file_users()}

    def names(self) -> list[str]:
        return sorted(self.users())

    def exists(self, name: str) -> bool:
        return name in self.users()

    def verify(self, name: str, password: str) -> bool:
        hashed = self.users().get(name)
        if hashed is None:
            check_password_hash(_DUMMY_HASH, password)
            return False
        try:
            return check_password_hash(hashed, password)
        except ValueError:  # a malformed hash: nobody can log in with it
            return False

    # writing the file (the CLI) ---------------------------------------------
    def _write(self, users: dict[str, str]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = "# STAT bot dashboard users: NAME:HASH (stat-bot web-user add NAME)\n" + "".join(
            f"{name}:{hashed}\n" for name, hashed in sorted(users.items())
        )
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".web-users-")
        try:
            with os.fdopen(fd, "w") as out:
                out.write(text)
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def set(self, name: str, password: str) -> bool:
        """Add the user or change their password; True if they were new."""
        check_name(name)
        hashed = hash_password(password)
        users = self._file_users()
        new = name not in users
        self._write({**users, name: hashed})
        return new

    def remove(self, name: str) -> bool:
        users = self._file_users()
        if name not in users:
            return False
        self._write({k: v for k, v in users.items() if k != name})
        return True
