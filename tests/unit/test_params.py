"""Command placeholders: parsing `[...]` and checking what people type against it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stat_bot.jobs.config import parse_command
from stat_bot.jobs.params import PLACEHOLDER, Param, ParamError, parse_placeholder


def placeholder(text: str) -> Param:
    match = PLACEHOLDER.fullmatch(text)
    assert match is not None, text
    return parse_placeholder(match)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[name]", Param("name")),
        ("[count:int]", Param("count", "int")),
        ("[ratio:float]", Param("ratio", "float")),
        ("[node:xname]", Param("node", "xname")),
        ("[interval:1h|2h|5h|1d]", Param("interval", choices=("1h", "2h", "5h", "1d"))),
        ("[name=world]", Param("name", default="world")),
        ("[count:int=3]", Param("count", "int", default="3")),
        ("[text...]", Param("text", rest=True)),
        ("[text...=nothing]", Param("text", default="nothing", rest=True)),
    ],
)
def test_placeholder_forms(text, expected):
    assert placeholder(text) == expected


def test_optional_means_has_default():
    assert placeholder("[name=world]").optional
    assert not placeholder("[name]").optional


def test_empty_default_is_still_a_default():
    param = placeholder("[name=]")
    assert param.optional
    assert param.convert(param.default or "") == ""


@pytest.mark.parametrize(
    ("value", "expected"), [("5", "5"), ("-3", "-3"), ("007", "7"), ("+12", "12")]
)
def test_int_is_normalised(value, expected):
    assert placeholder("[count:int]").convert(value) == expected


@pytest.mark.parametrize("value", ["five", "5.0", "0x10", "", "1e3"])
def test_int_refuses_what_is_not_a_whole_number(value):
    with pytest.raises(ParamError) as caught:
        placeholder("[count:int]").convert(value)
    message = str(caught.value)
    assert "[count] must be a whole number" in message
    assert repr(value) in message


@given(st.integers())
def test_int_round_trips(number):
    assert placeholder("[n:int]").convert(str(number)) == str(number)


def test_float():
    param = placeholder("[ratio:float]")
    assert param.convert("2.5") == "2.5"
    assert param.convert("3") == "3.0"
    with pytest.raises(ParamError, match=r"\[ratio\] must be a number"):
        param.convert("two")


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1h", "1h"), ("1H", "1h"), ("1d", "1d"), ("5H", "5h")],
)
def test_choices_match_case_insensitively_and_normalise(value, expected):
    assert placeholder("[interval:1h|2h|5h|1d]").convert(value) == expected


def test_choices_keep_the_configured_spelling():
    assert placeholder("[env:Prod|Dev]").convert("prod") == "Prod"


def test_choice_outside_the_list_lists_them():
    with pytest.raises(ParamError) as caught:
        placeholder("[interval:1h|2h|5h|1d]").convert("3h")
    assert str(caught.value) == "[interval] must be one of 1h, 2h, 5h, 1d; got '3h'"


@pytest.mark.parametrize(
    "value",
    [
        "x1000",
        "x1000c0",
        "x1000c0s0b0n0",
        "x1000c0s0b0n0p1",
        "x1000c0r7b0",
        "x1000c0r3j15p0",
        "x3000c0w14",
        "x1000m0p0",
        "x9000c1s7b1n1",
        "x1000c0b0",
        "x1000c0s0b0",
    ],
)
def test_xname_accepts_components(value):
    assert placeholder("[node:xname]").convert(value) == value


@pytest.mark.parametrize("value", ["X1000C0S0B0N0", "x1000C0s0B0n0", "X3000C0W14"])
def test_xname_case_is_normalised_to_lower(value):
    assert placeholder("[node:xname]").convert(value) == value.lower()


@pytest.mark.parametrize(
    "value",
    [
        "x",
        "c0",
        "x1000c0s",
        "x1000q0",
        "1000c0",
        "x10000",
        "x1000c0s0b0n0p",
        "x1000c0s0b0n0p1x",
        " x1000",
        "x1000,x1001",
        "",
    ],
)
def test_xname_refuses_non_components(value):
    with pytest.raises(ParamError) as caught:
        placeholder("[node:xname]").convert(value)
    message = str(caught.value)
    assert message.startswith("[node] must be an xname")
    assert "x1000c0s0b0n0" in message
    assert repr(value) in message


def test_str_is_taken_as_is():
    assert placeholder("[name]").convert("Ada Lovelace; rm -rf /") == "Ada Lovelace; rm -rf /"


@pytest.mark.parametrize(
    ("param", "expected"),
    [
        ("[name]", "text"),
        ("[count:int]", "a whole number"),
        ("[interval:1h|2h]", "one of 1h, 2h"),
        ("[text...]", "text (the rest of the line)"),
        ("[name=world]", "text; default 'world'"),
        ("[node:xname]", "an xname such as x1000c0s0b0n0"),
    ],
)
def test_describe_reads_as_a_person_would(param, expected):
    assert placeholder(param).describe() == expected


def test_default_is_checked_against_type():
    with pytest.raises(ValueError, match=r"default of \[n\] must be a whole number"):
        placeholder("[n:int=lots]")


def test_unknown_type_lists_types():
    with pytest.raises(ValueError, match="unknown type 'date'; use one of str, int, float, xname"):
        placeholder("[when:date]")


def test_parse_command_splits_literals_and_placeholders():
    tokens = parse_command("Say  Hello [name=world]")
    assert tokens == ("say", "hello", Param("name", default="world", rest=True))


@pytest.mark.parametrize(
    ("command", "rest"),
    [
        (
            "board [org] [number] [statuses]",
            [False, False, True],
        ),  # ebmbot: the last takes the rest
        ("go [n:int]", [False]),  # typed: one word
        ("go [when:1h|2h]", [False]),  # choices: one word
        ("go [node:xname] [note]", [False, True]),
        ("go [text...]", [True]),
    ],
)
def test_the_last_plain_placeholder_takes_the_rest_of_the_line(command, rest):
    params = [t for t in parse_command(command) if isinstance(t, Param)]
    assert [p.rest for p in params] == rest


def test_parse_command_allows_several_defaults_at_the_end():
    tokens = parse_command("go [a] [b=1] [c:int=2]")
    assert [t.name for t in tokens[1:]] == ["a", "b", "c"]  # type: ignore[union-attr]
