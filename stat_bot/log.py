"""Logging set-up: readable in a terminal, JSON lines under systemd, secrets never written.

Every log line, ours or a library's (through the standard logging bridge), passes
the redaction step, so a token pasted into a URL or an exception message is
masked before it reaches a file or the journal.
"""

from __future__ import annotations

import functools
import io
import json
import logging
import re
import sys
from typing import Any

import structlog

SECRET_KEYS = re.compile(r"token|secret|password|passwd|authorization|cookie|api[_-]?key", re.I)
SECRET_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\b(xox[abprse]-|xapp-)[A-Za-z0-9-]+"), r"\1***"),
    (re.compile(r"(?<=://)([^/\s:@]+):([^/\s@]+)@"), r"\1:***@"),
    # `access_token=`, `client_secret=`... as well as the bare names.
    (
        re.compile(r"(?i)\b(\w*(?:password|passwd|token|secret|api_key|apikey))=([^&\s]+)"),
        r"\1=***",
    ),
    # A header line or a headers dict's repr: `Authorization: Bearer x`, `'Authorization': 'token x'`.
    (
        re.compile(
            r"""(?i)\b(authorization['"]?\s*[:=]\s*['"]?(?:(?:bearer|basic|token)\s+)?)[^\s'",}]+"""
        ),
        r"\1***",
    ),
    (re.compile(r"\bgh[pousr]_[A-Za-z0-9]{20,}"), "gh*_***"),
)


# Every pattern above needs one of these; most log values have none, and one search
# is far cheaper than five substitutions on every value of every line.
MAY_HOLD_SECRET = re.compile(r"xox|xapp-|://|=|gh[pousr]_|(?i:authorization)")


def redact(value: str) -> str:
    """Mask anything that looks like a credential inside free text."""
    if not MAY_HOLD_SECRET.search(value):
        return value
    for pattern, replacement in SECRET_PATTERNS:
        value = pattern.sub(replacement, value)
    return value


# Values that cannot hold text: the usual numbers and flags of a log line pass untouched.
PLAIN_TYPES = frozenset({int, float, bool, type(None)})


@functools.lru_cache(maxsize=1024)
def secret_key(key: str) -> bool:
    """Whether a field's name says its value is a secret; the names of log fields repeat."""
    return SECRET_KEYS.search(key) is not None


def _scrub(value: Any) -> Any:
    kind = type(value)
    if kind is str:
        return redact(value)
    if kind in PLAIN_TYPES:
        return value
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: "***" if secret_key(str(k)) else _scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        if all(type(v) in PLAIN_TYPES for v in value):
            return value  # a list of job ids, say: nothing in it to mask
        return type(value)(_scrub(v) for v in value)
    return value


def redact_processor(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: mask secret-named keys and credential-looking text."""
    texts = False
    # Only values are replaced, so the dict can be changed while it is walked.
    for key, value in event_dict.items():
        kind = type(value)
        if secret_key(key):
            event_dict[key] = "***"
        elif kind is str:
            texts = True
        elif kind not in PLAIN_TYPES:
            event_dict[key] = _scrub(value)
    # Most lines hold no credential-like text at all: one search over all their text
    # (joined by a character no pattern matches) instead of one per value.
    if texts and MAY_HOLD_SECRET.search(
        "\0".join(v for v in event_dict.values() if type(v) is str)
    ):
        for key, value in event_dict.items():
            if type(value) is str:
                event_dict[key] = redact(value)
    return event_dict


def _render_exception_then_redact(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    if "exception" in event_dict and isinstance(event_dict["exception"], str):
        event_dict["exception"] = redact(event_dict["exception"])
    return event_dict


def _redacted_traceback(sio: Any, exc_info: Any) -> None:
    """The console renderer's traceback, with credentials in exception messages masked."""
    buffer = io.StringIO()
    structlog.dev.default_exception_formatter(buffer, exc_info)
    sio.write(redact(buffer.getvalue()))


class TolerantStream:
    """A log stream whose failures are dropped lines, never exceptions.

    If whoever reads our stderr goes away (a closed pipe), every log call would
    raise in the middle of whatever was logging, a signal handler included, and a
    service asked to stop might never get to. Losing log lines is the lesser harm.
    """

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._broken = False

    def write(self, text: str) -> int:
        if not self._broken:
            try:
                return self._stream.write(text)
            except (OSError, ValueError):
                self._broken = True
        return 0

    def flush(self) -> None:
        if not self._broken:
            try:
                self._stream.flush()
            except (OSError, ValueError):
                self._broken = True

    def isatty(self) -> bool:
        return bool(self._stream.isatty())


def _json_default(value: Any) -> Any:
    """What structlog's JSONRenderer does with a value JSON cannot hold."""
    try:
        return value.__structlog__()
    except AttributeError:
        return repr(value)


_JSON = json.JSONEncoder(ensure_ascii=False, default=_json_default)


def _to_json(event_dict: dict[str, Any], **_: Any) -> str:
    """json.dumps(event_dict, ensure_ascii=False), without building an encoder for every line."""
    return _JSON.encode(event_dict)


def configure(level: str = "INFO", fmt: str = "auto", stream: Any = None) -> None:
    """Set up structlog and route the standard library's logging through the same pipeline."""
    stream = TolerantStream(stream or sys.stderr)
    console = fmt == "console" or (fmt == "auto" and stream.isatty())
    # The level and the time are added after redaction: they never hold a secret.
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        redact_processor,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any
    if console:
        renderer = structlog.dev.ConsoleRenderer(
            colors=stream.isatty(), exception_formatter=_redacted_traceback
        )
        tail: list[Any] = [renderer]
    else:
        tail = [
            structlog.processors.format_exc_info,
            _render_exception_then_redact,
            structlog.processors.JSONRenderer(serializer=_to_json),
        ]
    numeric = logging.getLevelName(level)
    structlog.configure(
        processors=[*shared, structlog.stdlib.PositionalArgumentsFormatter(), *tail],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        # One write per line (PrintLogger writes the line and its newline apart).
        logger_factory=structlog.WriteLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *tail],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
