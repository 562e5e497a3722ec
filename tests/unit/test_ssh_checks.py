"""SSH checks as data: validation messages, judging outputs, the script's sections."""

from __future__ import annotations

from pathlib import Path

import pytest

from stat_bot.hardware.health import Finding, State
from stat_bot.hardware.ssh_checks import (
    CheckFailure,
    ChecksError,
    Section,
    build_script,
    checks_from_data,
    findings_from_output,
    judge,
    load_checks,
    parse_output,
)

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "workspace" / "hw" / "ssh_checks.yaml"


def one(**fields: object):
    return checks_from_data([{"name": "c", "command": "true", **fields}])[0]


def out(stdout: str, code: int = 0, stderr: str = "") -> Section:
    return Section(stdout, code, stderr)


def test_the_shipped_checks_load_and_cover_what_admins_look_at_first():
    names = [check.name for check in load_checks(SHIPPED)]
    assert names == [
        "load",
        "memory",
        "readonly_mounts",
        "disk_space",
        "inodes",
        "required_services",
        "failed_units",
        "kernel_errors",
        "highspeed_links",
    ]


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ({"name": "x", "command": "true"}, "check 'x' (#1): field 'judge' must be one of number"),
        ({"name": "Bad Name", "command": "t", "judge": "lines"}, "field 'name' must be lower-case"),
        ({"name": "x", "judge": "lines"}, "check 'x' (#1): field 'command' must be a non-empty"),
        (
            {"name": "x", "command": "t", "judge": "number"},
            "field 'warning_above' or another threshold",
        ),
        (
            {"name": "x", "command": "t", "judge": "number", "critical_above": "high"},
            "field 'critical_above' must be a number, not 'high'",
        ),
        ({"name": "x", "command": "t", "judge": "regex"}, "field 'must_match' or must_not_match"),
        (
            {"name": "x", "command": "t", "judge": "regex", "must_match": "(["},
            "field 'must_match' is not a valid regular expression",
        ),
        (
            {"name": "x", "command": "t", "judge": "lines", "severity": "bad"},
            "field 'severity' must be warning or critical, not 'bad'",
        ),
        (
            {"name": "x", "command": "t", "judge": "lines", "text": "{value}"},
            "field 'text' uses {value}; it may use {component}, {line}",
        ),
        (
            {"name": "x", "command": "t", "judge": "lines", "treshold": 3},
            "field 'treshold' is not a check field",
        ),
        (
            {"name": "x", "command": "t", "judge": "lines", "timeout": 0},
            "field 'timeout' must be more than 0 seconds",
        ),
        (
            {"name": "x", "command": "t", "judge": "exit_code", "warning_codes": "1"},
            "field 'warning_codes' must be a list of exit codes",
        ),
    ],
)
def test_a_wrong_check_is_named_with_its_field(item, message):
    with pytest.raises(ChecksError) as caught:
        checks_from_data([item], "site.yaml")
    assert message in str(caught.value)
    assert str(caught.value).startswith("site.yaml: ")


def test_every_problem_is_listed_and_duplicate_names_are_refused():
    items = [
        {"name": "a", "command": "t", "judge": "lines"},
        {"name": "a", "command": "t", "judge": "lines"},
        {"name": "b", "command": "", "judge": "lines"},
    ]
    with pytest.raises(ChecksError) as caught:
        checks_from_data(items)
    assert caught.value.problems == [
        "check 'a' (#2): the name is used twice",
        "check 'b' (#3): field 'command' must be a non-empty shell command",
    ]


def test_a_file_that_is_not_a_list_of_checks_says_what_it_wants(tmp_path: Path):
    path = tmp_path / "checks.yaml"
    path.write_text("load: 3\n")
    with pytest.raises(ChecksError, match="expected a top-level `checks:` list"):
        load_checks(path)
    path.write_text("checks: [\n")
    with pytest.raises(ChecksError, match="not valid YAML"):
        load_checks(path)
    with pytest.raises(ChecksError, match="cannot read it"):
        load_checks(tmp_path / "missing.yaml")


def test_a_disabled_check_is_left_out():
    checks = checks_from_data(
        [
            {"name": "a", "command": "t", "judge": "lines", "enabled": False},
            {"name": "b", "command": "t", "judge": "lines"},
        ]
    )
    assert [c.name for c in checks] == ["b"]


def test_number_thresholds_give_the_worst_severity_with_the_limit_in_words():
    check = one(
        judge="number",
        component="Disk {label}",
        text="{label} {value} full",
        unit="%",
        warning_above=90,
        critical_above=95,
    )
    findings = judge(check, out("/ 25\n/var 92\n/scratch 97.5\n"))
    assert findings == [
        Finding("warning", "Disk /var", "/var 92% full, warning above 90%"),
        Finding("critical", "Disk /scratch", "/scratch 97.5% full, critical above 95%"),
    ]


def test_number_below_thresholds_and_an_unreadable_value():
    check = one(
        judge="number",
        component="Memory",
        text="available memory {value}",
        unit="%",
        warning_below=10,
        critical_below=5,
    )
    assert judge(check, out("50\n")) == []
    assert judge(check, out("7.5\n")) == [
        Finding("warning", "Memory", "available memory 7.5%, warning below 10%")
    ]
    assert judge(check, out("3\n")) == [
        Finding("critical", "Memory", "available memory 3%, critical below 5%")
    ]
    assert judge(check, out("lots\n")) == [
        Finding("warning", "c", "check c printed 'lots', not a number")
    ]


def test_lines_are_each_a_problem_up_to_max_findings():
    check = one(judge="lines", severity="critical", text="kernel: {line}", max_findings=2)
    assert judge(check, out("")) == []
    assert judge(check, out("a\n\nb\nc\nd\n")) == [
        Finding("critical", "c", "kernel: a"),
        Finding("critical", "c", "kernel: b"),
        Finding("critical", "c", "c: and 2 more"),
    ]


def test_regex_must_match_and_must_not_match():
    must = one(judge="regex", must_match=r"^synchronized: yes", component="NTP")
    assert judge(must, out("synchronized: yes\n")) == []
    assert judge(must, out("synchronized: no\n")) == [
        Finding(
            "warning",
            "NTP",
            "NTP: expected output matching '^synchronized: yes', got 'synchronized: no'",
        )
    ]
    never = one(judge="regex", must_not_match="ECC|MCE", text="{component}: {line}")
    assert judge(never, out("fine\nEDAC MC0: 1 CE ECC error\n")) == [
        Finding("warning", "c", "c: EDAC MC0: 1 CE ECC error")
    ]


def test_exit_code_judge_is_nagios_style():
    check = one(judge="exit_code", component="GPU", text="{component}: {output} (exit {code})")
    assert judge(check, out("OK\n", 0)) == []
    assert judge(check, out("GPU 2 hot\n", 1)) == [
        Finding("warning", "GPU", "GPU: GPU 2 hot (exit 1)")
    ]
    assert judge(check, out("", 2, "GPU 3 gone\n")) == [
        Finding("critical", "GPU", "GPU: GPU 3 gone (exit 2)")
    ]


def test_a_broken_or_slow_check_is_a_warning_not_silence():
    check = one(judge="lines", timeout=3)
    assert judge(check, out("", 127, "sh: 1: nvidia-smi: not found\n")) == [
        Finding("warning", "c", "check c failed (exit 127): sh: 1: nvidia-smi: not found")
    ]
    assert judge(check, out("", 124)) == [
        Finding("warning", "c", "check c did not finish within 3 s")
    ]
    assert judge(check, None) == [
        Finding("warning", "c", "check c printed no result (the script was cut short?)")
    ]


def test_sections_need_the_run_token_so_output_cannot_forge_them():
    checks = checks_from_data(
        [
            {"name": "a", "command": "t", "judge": "lines"},
            {"name": "b", "command": "t", "judge": "lines"},
        ]
    )
    output = (
        "@@stat-bot-tok begin 0\nreal line\n@@stat-bot-forged end 0\n\n@@stat-bot-tok rc 0 0\n"
        "\n@@stat-bot-tok end 0\n"
        "@@stat-bot-tok begin 1\n\n@@stat-bot-tok rc 1 0\n\n@@stat-bot-tok end 1\n"
    )
    sections = parse_output(output, "tok", 2)
    assert sections[0].stdout == "real line\n@@stat-bot-forged end 0\n"
    assert sections[1] == Section("", 0, "")
    assert findings_from_output(checks, "no markers at all", "tok") is None


def test_the_script_quotes_each_command_and_limits_it():
    checks = checks_from_data(
        [{"name": "q", "command": "echo 'it''s' \"$HOME\"", "judge": "lines", "timeout": 7}]
    )
    script = build_script(checks, "tok")
    assert "limit 7 'echo '\"'\"'it'\"'\"''\"'\"'s'\"'\"' \"$HOME\"'" in script
    assert "M='@@stat-bot-tok'" in script


def test_failures_map_to_node_states():
    assert CheckFailure("unreachable", "x").state is State.UNREACHABLE
    assert CheckFailure("auth_refused", "x").state is State.AUTH_REFUSED
    assert CheckFailure("host_key", "x").state is State.AUTH_REFUSED
    assert CheckFailure("timeout", "x").state is State.TIMEOUT
    assert CheckFailure("malformed", "x").state is State.MALFORMED
    assert CheckFailure("error", "x").state is State.UNKNOWN


def test_a_failure_can_be_a_finding_when_the_bmc_answered():
    failure = CheckFailure("unreachable", "n01 (127.0.0.1:22): connection refused")
    assert failure.finding() == Finding(
        "warning", "SSH", "SSH: n01 (127.0.0.1:22): connection refused"
    )
    assert failure.finding("critical").severity == "critical"
