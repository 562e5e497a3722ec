"""Text -> (command, typed arguments), or a refusal that explains itself.

`@stat-bot trac new bug high x1000c0s0b0n0 node down` and
`stat-bot enqueue "trac new ..."` both come through here, so chat, the command
line and tests agree on what a command means.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field

from stat_bot.jobs.config import Command, JobConfigs
from stat_bot.jobs.params import Param, ParamError, excerpt

# A word is a run of non-space characters, or a quoted string (straight or curly
# quotes, since Slack clients turn one into the other).
WORD = re.compile(r'"(?P<dq>[^"]*)"|“(?P<cq>[^”]*)”|\'(?P<sq>[^\']*)\'|(?P<bare>\S+)')


@dataclass(frozen=True, slots=True)
class Word:
    value: str
    start: int


@dataclass(frozen=True, slots=True)
class Match:
    """A command that matched, with its arguments checked and normalised."""

    command: Command
    args: dict[str, str]

    @property
    def namespace(self) -> str:
        return self.command.namespace

    @property
    def job_type(self) -> str:
        return self.command.spec.job_type


@dataclass
class MatchError(Exception):
    """Why text is not a command, what was expected, and the closest commands."""

    message: str
    suggestions: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return "\n".join([self.message, *suggestion_lines(self.suggestions)])


def suggestion_lines(suggestions: list[str]) -> list[str]:
    """ "The closest commands:" and one line each, as chat, the CLI and the dashboard say it.

    One wording for one mistake, wherever it is made: the bot's reply and the
    `stat-bot: ...` line of the command line are the same sentences.
    """
    if not suggestions:
        return []
    lines = ["The closest commands:"]
    for suggestion in suggestions:
        usage, _, help_text = suggestion.partition(" - ")
        lines.append(f"• `{usage}`" + (f": {help_text}" if help_text else ""))
    return lines


def split_words(text: str) -> list[Word]:
    """Words of a message, honouring quotes so `"two words"` is one argument."""
    words = []
    for m in WORD.finditer(text):
        value = next(v for v in (m["dq"], m["cq"], m["sq"], m["bare"]) if v is not None)
        words.append(Word(value, m.start()))
    return words


def normalise(text: str) -> str:
    """Tidy what people type: surrounding space and a trailing full stop."""
    text = text.strip()
    if text.endswith(".") and not text.endswith(".."):
        text = text[:-1].rstrip()
    return text


class _ArgProblemError(Exception):
    pass


def _bind(command: Command, text: str, words: list[Word]) -> dict[str, str] | None:
    """Arguments for `command` from `words`, None if its literal words differ, or _ArgProblemError."""
    args: dict[str, str] = {}
    i = 0
    for token in command.tokens:
        if isinstance(token, str):
            if i >= len(words) or words[i].value.lower() != token:
                return None
            i += 1
            continue
        param: Param = token
        if i >= len(words):
            if param.optional:
                args[param.name] = param.convert(param.default or "")
                continue
            raise _ArgProblemError(f"missing [{param.name}]: expected {param.describe()}")
        if param.rest:
            raw = text[words[i].start :].strip()
            value = raw if len(words) - i > 1 else words[i].value
            i = len(words)
        else:
            value = words[i].value
            i += 1
        try:
            args[param.name] = param.convert(value)
        except ParamError as error:
            raise _ArgProblemError(str(error)) from None
    if i < len(words):
        # Only after a command's literal words or a typed placeholder: a plain last
        # placeholder takes the rest of the line (config.parse_command).
        extra = " ".join(w.value for w in words[i:])
        last = [t for t in command.tokens if isinstance(t, Param)][-1:]
        if last and last[0].type_name == "target":
            # `hw check x1000c0s0b0n0 x1000c0s1b0n0`: several names, written as words.
            raise _ArgProblemError(
                f"unexpected extra words {excerpt(extra)!r}: to name several nodes, separate "
                "them with commas, not spaces (e.g. x1000c0s0b0n0,x1000c0s1b0n0)"
            )
        raise _ArgProblemError(f"unexpected extra words {excerpt(extra)!r}")
    return args


def match_command(configs: JobConfigs, text: str) -> Match:
    """The command `text` asks for, with typed arguments; MatchError explains a refusal."""
    text = normalise(text)
    words = split_words(text)
    if not words:
        raise MatchError("Nothing to do: say a namespace and a command, e.g. `system hello Ada`.")
    ns_name = words[0].value.lower()
    namespace = configs.namespaces.get(ns_name)
    if namespace is None:
        close = difflib.get_close_matches(ns_name, list(configs.namespaces), n=3, cutoff=0.5)
        known = ", ".join(sorted(configs.namespaces)) or "(none configured)"
        raise MatchError(
            f"I didn't understand `{excerpt(text)}`. I don't know the namespace "
            f"{excerpt(ns_name)!r}. Namespaces: {known}.",
            closest_commands(configs, text) or [f"{c} help" for c in close],
        )
    rest_text = text[words[1].start :] if len(words) > 1 else ""
    rest = split_words(rest_text)
    problems: list[tuple[int, Command, str]] = []
    for command in namespace.commands:
        try:
            args = _bind(command, rest_text, rest)
        except _ArgProblemError as problem:
            problems.append((len(command.literals), command, str(problem)))
            continue
        if args is not None:
            return Match(command, args)
    if problems:
        problems.sort(key=lambda p: -p[0])
        _, command, problem = problems[0]
        raise MatchError(
            f"`{namespace.name} {command.text}`: {problem}.",
            [_usage(c) for _, c, _ in problems[:3]],
        )
    raise MatchError(
        f"I didn't understand `{excerpt(text)}`. Say `{namespace.name} help` for its commands.",
        closest_commands(configs, text),
    )


def _usage(command: Command) -> str:
    help_text = f" - {command.spec.help}" if command.spec.help else ""
    return f"{command.usage}{help_text}"


def closest_commands(configs: JobConfigs, text: str, n: int = 3) -> list[str]:
    """The configured commands that read most like `text`, for "did you mean"."""
    commands = list(configs.commands())
    by_usage = {c.usage: c for c in commands}
    shapes = {
        " ".join(t if isinstance(t, str) else "" for t in c.tokens).strip(): c for c in commands
    }
    words = text.lower().split()
    # Compare only as many words as the command has literal ones (plus its namespace), so the
    # arguments after a mistyped command word (`hw chek x1000c0`) do not drown the likeness.
    scored = sorted(
        (
            (
                difflib.SequenceMatcher(
                    None,
                    " ".join(words[: len(c.literals) + 1]),
                    f"{c.namespace} {shape}",
                ).ratio(),
                c.usage,
            )
            for shape, c in shapes.items()
        ),
        reverse=True,
    )
    return [_usage(by_usage[usage]) for score, usage in scored[:n] if score >= 0.75]
