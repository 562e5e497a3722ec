"""Command placeholders: `[name]`, `[count:int]`, `[interval:1h|2h|5h|1d]`, `[name=world]`, `[text...]`,
`[target:target]`.

A placeholder names a value that is templated into the job's `run_args_template`.
Its type checks and normalises what the user typed, so a job never starts with
an argument it cannot use, and the refusal can say what was expected.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

from stat_bot.hardware.targets import TargetError, check_target
from stat_bot.hardware.xnames import XnameError, parse_xname

PLACEHOLDER = re.compile(
    r"\[(?P<name>[A-Za-z_]\w*)(?P<rest>\.\.\.)?(?::(?P<type>[^\]=]*))?(?:=(?P<default>[^\]]*))?\]"
)

EXCERPT = 60  # characters of a person's input quoted back in an answer


def excerpt(text: str, limit: int = EXCERPT) -> str:
    """`text`, or its start and how long it was when longer than `limit`: an answer quotes
    enough to recognise the input, never a whole overlong one back at its sender."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text):,} characters)"


class ParamError(ValueError):
    """A value does not fit its placeholder; the message says what was expected."""


@dataclass(frozen=True, slots=True)
class ParamType:
    """A named kind of value: how to describe it to a person and how to check it."""

    name: str
    description: str
    convert: Callable[[str], str]


def _as_int(value: str) -> str:
    try:
        return str(int(value, 10))
    except ValueError:
        raise ParamError("a whole number, such as 5") from None


def _as_float(value: str) -> str:
    try:
        number = float(value)
    except ValueError:
        raise ParamError("a number, such as 2.5") from None
    if not math.isfinite(number):
        raise ParamError("a finite number, such as 2.5")
    return repr(number)


def _as_xname(value: str) -> str:
    try:
        return parse_xname(value).text
    except XnameError as error:
        raise ParamError(
            f"an xname (HPE Cray EX component name) such as x1000c0s0b0n0: {error.detail}"
        ) from None


def _as_str(value: str) -> str:
    return value


def _as_target(value: str) -> str:
    """A hardware target (xname, partial xname, range, list, hostname, nid range, `all`),
    checked for its syntax only: which nodes it selects is known once the inventory is read
    (jobs/targets.py), when the request is built."""
    try:
        return check_target(value)
    except TargetError as error:
        raise ParamError(f"a target such as x1000c0s0b0n0, x1000c0 or nid[1-4] ({error})") from None


TYPES: dict[str, ParamType] = {
    t.name: t
    for t in (
        ParamType("str", "text", _as_str),
        ParamType("int", "a whole number", _as_int),
        ParamType("float", "a number", _as_float),
        ParamType("xname", "an xname such as x1000c0s0b0n0", _as_xname),
        ParamType(
            "target", "nodes: an xname, x1000c0s[0-3]b0n0, a hostname, nid[1-4] or all", _as_target
        ),
    )
}


@dataclass(frozen=True, slots=True)
class Param:
    """One placeholder of a command."""

    name: str
    type_name: str = "str"
    choices: tuple[str, ...] = ()
    default: str | None = None
    rest: bool = False

    @property
    def optional(self) -> bool:
        return self.default is not None

    def describe(self) -> str:
        """How a person would read what this placeholder expects."""
        if self.choices:
            what = "one of " + ", ".join(self.choices)
        else:
            what = TYPES[self.type_name].description
        if self.rest:
            what += " (the rest of the line)"
        if self.default is not None:
            what += f"; default {self.default!r}"
        return what

    def convert(self, value: str) -> str:
        """The normalised value, or ParamError naming this placeholder and what it expects."""
        if self.choices:
            if value in self.choices:
                return value
            lowered = {c.lower(): c for c in self.choices}
            if value.lower() in lowered:
                return lowered[value.lower()]
            raise ParamError(
                f"[{self.name}] must be one of {', '.join(self.choices)}; got {excerpt(value)!r}"
            )
        try:
            return TYPES[self.type_name].convert(value)
        except ParamError as error:
            raise ParamError(f"[{self.name}] must be {error}; got {excerpt(value)!r}") from None


def parse_placeholder(match: re.Match[str]) -> Param:
    """Turn one `[...]` into a Param, or raise ValueError saying what is malformed."""
    name = match["name"]
    type_spec = (match["type"] or "").strip()
    default = match["default"]
    choices: tuple[str, ...] = ()
    type_name = "str"
    if "|" in type_spec:
        choices = tuple(c.strip() for c in type_spec.split("|"))
        if any(not c for c in choices):
            raise ValueError(f"[{match[0][1:-1]}]: a choice list may not contain an empty choice")
    elif type_spec:
        if type_spec not in TYPES:
            raise ValueError(
                f"[{match[0][1:-1]}]: unknown type {type_spec!r}; "
                f"use one of {', '.join(TYPES)} or choices like a|b|c"
            )
        type_name = type_spec
    param = Param(name, type_name, choices, default, bool(match["rest"]))
    if default is not None:
        try:
            param.convert(default)
        except ParamError as error:
            raise ValueError(f"default of {error}") from None
    return param
