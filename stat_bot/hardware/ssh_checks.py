"""Node-health checks over SSH, defined as data (workspace/hw/ssh_checks.yaml).

A check is a name, a shell command and how to judge what it prints: a number against
thresholds, lines that are each a problem, a regex that must (not) match, or an exit
code. A site adds its own by editing the YAML, not the service. All of a node's checks
go in one script run in one SSH session (each check in the background with its own
time limit, its output between markers), so a check run costs a node one session and
as long as its slowest check.

Why the markers carry a random token: a check's output comes from the node, so it must
not be able to end its own section early or fake another check's.
"""

from __future__ import annotations

import base64
import re
import secrets
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import yaml

from stat_bot.hardware.health import Finding, Severity, State
from stat_bot.integrations.ssh import Result, SshRunner

Judge = Literal["number", "lines", "regex", "exit_code"]
JUDGES: tuple[str, ...] = get_args(Judge)
SEVERITIES: tuple[str, ...] = get_args(Severity)
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
DEFAULT_TIMEOUT = 10.0
TIMED_OUT = 124  # coreutils `timeout`
OUTPUT_LIMIT = 200  # characters of a line quoted in a finding


class ChecksError(ValueError):
    """The checks file is wrong; `.problems` name the check and the field."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))


@dataclass(frozen=True)
class Check:
    """One check. See the header of workspace/hw/ssh_checks.yaml for the fields' meaning."""

    name: str
    command: str
    judge: Judge
    component: str
    text: str
    severity: Severity = "warning"
    warning_above: float | None = None
    critical_above: float | None = None
    warning_below: float | None = None
    critical_below: float | None = None
    unit: str = ""
    must_match: str | None = None
    must_not_match: str | None = None
    warning_codes: tuple[int, ...] = (1,)
    max_findings: int = 5
    timeout: float = DEFAULT_TIMEOUT
    enabled: bool = True


@dataclass(frozen=True)
class CheckFailure:
    """Why a node's checks could not run at all (the node is not judged, not healthy)."""

    kind: str  # unreachable, auth_refused, host_key, timeout, malformed, error
    reason: str

    @property
    def state(self) -> State:
        return FAILURE_STATES.get(self.kind, State.UNKNOWN)

    def finding(self, severity: Severity = "warning") -> Finding:
        """As a finding, for a node whose BMC answered but whose OS could not be checked."""
        return Finding(severity, "SSH", f"SSH: {self.reason}")


FAILURE_STATES = {
    "unreachable": State.UNREACHABLE,
    "auth_refused": State.AUTH_REFUSED,
    "host_key": State.AUTH_REFUSED,
    "timeout": State.TIMEOUT,
    "malformed": State.MALFORMED,
}

DEFAULT_TEXT = {
    "number": "{component} {value}",
    "lines": "{line}",
    "regex": "{line}",
    "exit_code": "{output}",
}
FIELDS = {
    "name",
    "command",
    "judge",
    "component",
    "text",
    "severity",
    "warning_above",
    "critical_above",
    "warning_below",
    "critical_below",
    "unit",
    "must_match",
    "must_not_match",
    "warning_codes",
    "max_findings",
    "timeout",
    "enabled",
}
TEMPLATE_FIELDS = {
    "number": {"component", "label", "value"},
    "lines": {"component", "line"},
    "regex": {"component", "line"},
    "exit_code": {"component", "output", "code"},
}


# ---------------------------------------------------------------- loading and validation


def load_checks(path: Path) -> list[Check]:
    """Read and validate a checks file; ChecksError lists every problem, by check and field."""
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ChecksError(str(path), [f"cannot read it: {exc.strerror}"]) from None
    except yaml.YAMLError as exc:
        raise ChecksError(str(path), [f"not valid YAML: {exc}"]) from None
    if isinstance(data, Mapping):
        data = data.get("checks")
    if not isinstance(data, list):
        raise ChecksError(str(path), ["expected a top-level `checks:` list of checks"])
    return checks_from_data(data, str(path))


def checks_from_data(items: Iterable[Any], source: str = "checks") -> list[Check]:
    """Validate checks given as plain data (a list of mappings), e.g. from job_configs.py."""
    checks: list[Check] = []
    problems: list[str] = []
    seen: set[str] = set()
    for number, item in enumerate(items, start=1):
        check, wrong = _check_from(item, number)
        problems.extend(wrong)
        if check is None:
            continue
        if check.name in seen:
            problems.append(f"check {check.name!r} (#{number}): the name is used twice")
        seen.add(check.name)
        checks.append(check)
    if problems:
        raise ChecksError(source, problems)
    return [check for check in checks if check.enabled]


def _check_from(item: Any, number: int) -> tuple[Check | None, list[str]]:
    if not isinstance(item, Mapping):
        return None, [f"check #{number}: expected a mapping with name, command, judge"]
    name = item.get("name")
    label = f"check {name!r} (#{number})" if isinstance(name, str) else f"check #{number}"
    problems: list[str] = []

    def wrong(field_name: str, message: str) -> None:
        problems.append(f"{label}: field {field_name!r} {message}")

    for unknown in sorted(set(item) - FIELDS):
        wrong(unknown, f"is not a check field (known: {', '.join(sorted(FIELDS))})")
    if not isinstance(name, str) or not NAME.match(name):
        wrong("name", "must be lower-case letters, digits, - or _ (e.g. disk_space)")
    command = item.get("command")
    if not isinstance(command, str) or not command.strip():
        wrong("command", "must be a non-empty shell command")
    judge = item.get("judge")
    if judge not in JUDGES:
        wrong("judge", f"must be one of {', '.join(JUDGES)}, not {judge!r}")
        return None, problems
    severity = item.get("severity", "warning")
    if severity not in SEVERITIES:
        wrong("severity", f"must be warning or critical, not {severity!r}")
    numbers: dict[str, float | None] = {}
    for key in ("warning_above", "critical_above", "warning_below", "critical_below", "timeout"):
        value = item.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            wrong(key, f"must be a number, not {value!r}")
            value = None
        numbers[key] = None if value is None else float(value)
    if numbers["timeout"] is not None and numbers["timeout"] <= 0:
        wrong("timeout", "must be more than 0 seconds")
    if judge == "number":
        limits = [numbers[k] for k in ("warning_above", "critical_above")]
        limits += [numbers[k] for k in ("warning_below", "critical_below")]
        if all(limit is None for limit in limits):
            wrong(
                "warning_above",
                "or another threshold (critical_above, warning_below, "
                "critical_below) is needed by a number check",
            )
    for key in ("must_match", "must_not_match"):
        pattern = item.get(key)
        if pattern is None:
            continue
        if not isinstance(pattern, str):
            wrong(key, "must be a regular expression (a string)")
            continue
        try:
            re.compile(pattern)
        except re.error as exc:
            wrong(key, f"is not a valid regular expression: {exc}")
    if judge == "regex" and item.get("must_match") is None and item.get("must_not_match") is None:
        wrong("must_match", "or must_not_match is needed by a regex check")
    codes = item.get("warning_codes", [1])
    if not isinstance(codes, list) or not all(
        isinstance(c, int) and not isinstance(c, bool) for c in codes
    ):
        wrong("warning_codes", "must be a list of exit codes, e.g. [1]")
        codes = [1]
    max_findings = item.get("max_findings", 5)
    if isinstance(max_findings, bool) or not isinstance(max_findings, int) or max_findings < 1:
        wrong("max_findings", "must be a whole number of at least 1")
        max_findings = 5
    unit = item.get("unit", "")
    if not isinstance(unit, str):
        wrong("unit", "must be a string such as '%'")
        unit = ""
    component = item.get("component", name if isinstance(name, str) else "")
    text = item.get("text", DEFAULT_TEXT[judge])
    for key, template in (("component", component), ("text", text)):
        if not isinstance(template, str) or not template:
            wrong(key, "must be a non-empty string")
            continue
        allowed = TEMPLATE_FIELDS[judge] - ({"component"} if key == "component" else set())
        problem = _template_problem(template, allowed)
        if problem:
            wrong(key, problem)
    enabled = item.get("enabled", True)
    if not isinstance(enabled, bool):
        wrong("enabled", "must be true or false")
    if problems:
        return None, problems
    return Check(
        name=name,
        command=command,
        judge=judge,
        component=component,
        text=text,
        severity=severity,
        warning_above=numbers["warning_above"],
        critical_above=numbers["critical_above"],
        warning_below=numbers["warning_below"],
        critical_below=numbers["critical_below"],
        unit=unit,
        must_match=item.get("must_match"),
        must_not_match=item.get("must_not_match"),
        warning_codes=tuple(codes),
        max_findings=max_findings,
        timeout=numbers["timeout"] or DEFAULT_TIMEOUT,
        enabled=enabled,
    ), []


def _template_problem(template: str, allowed: set[str]) -> str | None:
    try:
        template.format(**dict.fromkeys(allowed, "x"))
    except KeyError as exc:
        return f"uses {{{exc.args[0]}}}; it may use {', '.join('{' + a + '}' for a in sorted(allowed))}"
    except (ValueError, IndexError) as exc:
        return f"is not a valid template ({exc}); write a literal brace as {{{{ or }}}}"
    return None


# ---------------------------------------------------------------- the script a node runs


def build_script(checks: list[Check], token: str) -> str:
    """One POSIX sh script: every check in the background with its own limit, then the outputs."""
    marker = f"@@stat-bot-{token}"
    lines = [
        f"M='{marker}'",
        'D=$(mktemp -d 2>/dev/null || mktemp -d -t stat-bot.XXXXXX) || { echo "$M nodir"; exit 97; }',
        "trap 'rm -rf \"$D\"' EXIT",
        "if command -v timeout >/dev/null 2>&1; then T=1; else T=; fi",
        'limit() { if [ -n "$T" ]; then timeout -k 2 "$1" sh -c "$2"; else sh -c "$2"; fi; }',
    ]
    for index, check in enumerate(checks):
        seconds = f"{check.timeout:g}"
        lines.append(
            f'( limit {seconds} {shlex.quote(check.command)} >"$D/{index}.out" '
            f'2>"$D/{index}.err" </dev/null; echo $? >"$D/{index}.rc" ) </dev/null &'
        )
    lines.append("wait")
    lines.append(f"i=0; while [ $i -lt {len(checks)} ]; do")
    lines.append(
        '  echo "$M begin $i"; cat "$D/$i.out" 2>/dev/null; echo; '
        'echo "$M rc $i $(cat "$D/$i.rc" 2>/dev/null)"; head -c 2000 "$D/$i.err" 2>/dev/null; '
        'echo; echo "$M end $i"; i=$((i + 1))'
    )
    lines.append("done")
    return "\n".join(lines) + "\n"


def remote_command(script: str) -> str:
    """Run `script` with sh whatever the login shell (csh, bash...): base64 through a pipe."""
    encoded = base64.b64encode(script.encode()).decode()
    return f"echo {encoded} | base64 -d | sh"


@dataclass
class Section:
    stdout: str
    exit_code: int | None
    stderr: str


def parse_output(output: str, token: str, count: int) -> dict[int, Section]:
    marker = re.escape(f"@@stat-bot-{token}")
    pattern = re.compile(
        rf"^{marker} begin (\d+)\n(.*?)\n{marker} rc \1 (-?\d*)\n(.*?)\n{marker} end \1$",
        re.DOTALL | re.MULTILINE,
    )
    sections: dict[int, Section] = {}
    for match in pattern.finditer(output):
        index = int(match.group(1))
        if index < count:
            code = match.group(3)
            sections[index] = Section(match.group(2), int(code) if code else None, match.group(4))
    return sections


# ---------------------------------------------------------------- judging


def judge(check: Check, section: Section | None) -> list[Finding]:
    """The findings one check's output gives (a broken check is a warning, never silence)."""
    if section is None:
        return [_broken(check, "printed no result (the script was cut short?)")]
    code = section.exit_code
    if code == TIMED_OUT:
        return [_broken(check, f"did not finish within {check.timeout:g} s")]
    if check.judge == "exit_code":
        return _judge_exit(check, section)
    if code != 0:
        return [_broken(check, f"failed (exit {code}): {_first(section.stderr) or 'no message'}")]
    return JUDGE_FUNCTIONS[check.judge](check, section)


def _broken(check: Check, words: str) -> Finding:
    return Finding("warning", check.name, f"check {check.name} {words}")


def _first(text: str) -> str:
    line = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return line[:OUTPUT_LIMIT]


def _lines(text: str) -> list[str]:
    return [line.strip()[:OUTPUT_LIMIT] for line in text.splitlines() if line.strip()]


def _capped(check: Check, findings: list[Finding]) -> list[Finding]:
    if len(findings) <= check.max_findings:
        return findings
    kept = findings[: check.max_findings]
    more = len(findings) - check.max_findings
    worst_left = (
        "critical" if any(f.severity == "critical" for f in findings[len(kept) :]) else "warning"
    )
    kept.append(Finding(worst_left, check.name, f"{check.component}: and {more} more"))
    return kept


def _shown(value: float) -> str:
    return f"{value:g}"


def _judge_number(check: Check, section: Section) -> list[Finding]:
    findings: list[Finding] = []
    for line in _lines(section.stdout):
        label, _, raw = line.rpartition(" ")
        try:
            value = float(raw)
        except ValueError:
            findings.append(_broken(check, f"printed {line!r}, not a number"))
            continue
        limit = _exceeded(check, value)
        if limit is None:
            continue
        severity, words, threshold = limit
        fields = {"label": label.strip(), "value": _shown(value) + check.unit}
        component = check.component.format(**fields)
        text = check.text.format(component=component, **fields)
        findings.append(
            Finding(
                severity, component, f"{text}, {severity} {words} {_shown(threshold)}{check.unit}"
            )
        )
    return _capped(check, findings)


def _exceeded(check: Check, value: float) -> tuple[Severity, str, float] | None:
    if check.critical_above is not None and value > check.critical_above:
        return "critical", "above", check.critical_above
    if check.critical_below is not None and value < check.critical_below:
        return "critical", "below", check.critical_below
    if check.warning_above is not None and value > check.warning_above:
        return "warning", "above", check.warning_above
    if check.warning_below is not None and value < check.warning_below:
        return "warning", "below", check.warning_below
    return None


def _judge_lines(check: Check, section: Section) -> list[Finding]:
    return _capped(
        check,
        [
            Finding(
                check.severity,
                check.component,
                check.text.format(component=check.component, line=line),
            )
            for line in _lines(section.stdout)
        ],
    )


def _judge_regex(check: Check, section: Section) -> list[Finding]:
    lines = _lines(section.stdout)
    findings: list[Finding] = []
    if check.must_match is not None:
        pattern = re.compile(check.must_match)
        if not any(pattern.search(line) for line in lines):
            findings.append(
                Finding(
                    check.severity,
                    check.component,
                    f"{check.component}: expected output matching {check.must_match!r}, got "
                    f"{_first(section.stdout) or 'nothing'!r}",
                )
            )
    if check.must_not_match is not None:
        pattern = re.compile(check.must_not_match)
        findings.extend(
            Finding(
                check.severity,
                check.component,
                check.text.format(component=check.component, line=line),
            )
            for line in lines
            if pattern.search(line)
        )
    return _capped(check, findings)


def _judge_exit(check: Check, section: Section) -> list[Finding]:
    code = section.exit_code
    if code == 0:
        return []
    severity: Severity = "warning" if code in check.warning_codes else "critical"
    output = _first(section.stdout) or _first(section.stderr) or f"exit {code}"
    text = check.text.format(component=check.component, output=output, code=code)
    return [Finding(severity, check.component, text)]


JUDGE_FUNCTIONS = {"number": _judge_number, "lines": _judge_lines, "regex": _judge_regex}


# ---------------------------------------------------------------- running


def findings_from_output(checks: list[Check], output: str, token: str) -> list[Finding] | None:
    """Judge a node's script output; None when no section came back (not our script's output)."""
    sections = parse_output(output, token, len(checks))
    if not sections:
        return None
    findings: list[Finding] = []
    for index, check in enumerate(checks):
        findings.extend(judge(check, sections.get(index)))
    return findings


def run_ssh_checks(
    hosts: Iterable[str], checks: list[Check], runner: SshRunner, fanout: int = 64
) -> dict[str, list[Finding] | CheckFailure]:
    """Run every check on every host, one SSH session a host; findings or why it could not."""
    hosts = list(hosts)
    if not checks:
        return {host: [] for host in hosts}
    token = secrets.token_hex(8)
    command = remote_command(build_script(checks, token))
    limit = runner.cfg.timeout + max(check.timeout for check in checks) + 2
    results = runner.run_many(hosts, command, fanout=fanout, timeout=limit)
    return {host: _outcome(checks, result, token) for host, result in results.items()}


def _outcome(checks: list[Check], result: Result, token: str) -> list[Finding] | CheckFailure:
    if result.error is not None:
        return CheckFailure(result.error_kind or "error", result.error)
    findings = findings_from_output(checks, result.stdout, token)
    if findings is None:
        why = _first(result.stderr) or _first(result.stdout) or f"exit {result.exit_code}"
        return CheckFailure(
            "malformed", f"{result.host}: the check script did not run (needs sh and base64): {why}"
        )
    return findings
