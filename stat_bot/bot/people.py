"""Who is asking: Slack users and user groups, cached for permission checks.

Every command to a restricted namespace needs to know whether its sender is a
guest, and to a namespace with user groups in allowed_users which groups they are
in; asking Slack each time would add a round trip to every command. Users are cached for SLACK_USER_CACHE_SECONDS and looked
up on a miss, so someone who joined after start-up is found on their first
command; `forget` drops a user when Slack says they changed.
"""

from __future__ import annotations

import threading
import time

import structlog
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from stat_bot.bot.chat import LookupFailedError, Person
from stat_bot.report.slack import SLACK_CALL_ERRORS

log = structlog.get_logger(__name__)


FAILURE_TTL = 30.0  # seconds a failed lookup is remembered: Slack is not asked per command


class SlackPeople:
    """The People of bot/chat.py, asked of Slack (users.info, usergroups.list).

    User groups are fetched only when a namespace's allowed_users names one and the
    sender is not listed by id: a restricted namespace without allowed_users needs
    users.info alone. A failed lookup raises LookupFailedError saying what failed, and
    the failure is remembered for FAILURE_TTL seconds so a broken scope or an outage
    costs one Slack call per half-minute, not one per command.
    """

    def __init__(self, client: WebClient, ttl: float = 3600.0) -> None:
        self._client = client
        self._ttl = ttl
        self._lock = threading.Lock()
        self._users: dict[str, tuple[float, str, bool]] = {}  # id -> (fetched, name, guest)
        self._groups: tuple[float, dict[str, frozenset[str]]] | None = None  # user -> handles
        self._groups_failed: tuple[float, str] | None = None  # (when, why)

    def person(self, user_id: str) -> Person:
        now = time.monotonic()
        try:
            _, name, guest = self._user(user_id, now)
        except SLACK_CALL_ERRORS as error:
            raise LookupFailedError(
                f"Slack's users.info did not answer for you ({slack_reason(error)})"
            ) from None
        return Person(user_id, name, guest)

    def groups(self, user_id: str) -> frozenset[str]:
        return self._groups_of(user_id, time.monotonic())

    def name(self, user_id: str) -> str | None:
        """The user's Slack name (cached like the rest), or None if Slack cannot say."""
        try:
            return self._user(user_id, time.monotonic())[1] or None
        except SLACK_CALL_ERRORS as error:
            log.debug("no name for a user", user=user_id, error=type(error).__name__)
            return None

    def _user(self, user_id: str, now: float) -> tuple[float, str, bool]:
        with self._lock:
            cached = self._users.get(user_id)
        if cached is None or now - cached[0] > self._ttl:
            info = self._client.users_info(user=user_id)["user"]
            guest = bool(info.get("is_restricted") or info.get("is_ultra_restricted"))
            cached = (now, info.get("name", ""), guest)
            with self._lock:
                self._users[user_id] = cached
        return cached

    def _groups_of(self, user_id: str, now: float) -> frozenset[str]:
        with self._lock:
            groups, failed = self._groups, self._groups_failed
        if groups is not None and now - groups[0] <= self._ttl:
            return groups[1].get(user_id, frozenset())
        if failed is not None and now - failed[0] <= FAILURE_TTL:
            raise LookupFailedError(failed[1])
        try:
            listed = self._client.usergroups_list(include_users=True).get("usergroups", [])
        except SLACK_CALL_ERRORS as error:
            why = f"Slack's usergroups.list failed ({slack_reason(error)})"
            log.warning("user-group lookup failed", reason=why)
            with self._lock:
                self._groups_failed = (now, why)
            raise LookupFailedError(why) from None
        members: dict[str, set[str]] = {}
        for group in listed:
            for member in group.get("users") or []:
                members.setdefault(member, set()).add(group["handle"])
        groups = (now, {user: frozenset(handles) for user, handles in members.items()})
        with self._lock:
            self._groups, self._groups_failed = groups, None
        return groups[1].get(user_id, frozenset())

    def forget(self, user_id: str | None = None) -> None:
        """Drop a user (or everyone, and the groups) so the next command asks Slack again."""
        with self._lock:
            if user_id is None:
                self._users.clear()
            else:
                self._users.pop(user_id, None)
            self._groups = None
            self._groups_failed = None


def slack_reason(error: Exception) -> str:
    """Slack's error code (`missing_scope`, `ratelimited`), or the connection's failure."""
    if isinstance(error, SlackApiError):
        code = str(error.response.get("error") or f"HTTP {error.response.status_code}")
        needed = error.response.get("needed")
        return f"{code}, needs {needed}" if needed else code
    return type(error).__name__ + (f": {error}" if str(error) else "")
