"""Text -> command and typed arguments, or a refusal that says what to type instead."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from stat_bot.jobs.config import JobConfigs, parse_config
from stat_bot.jobs.matching import MatchError, match_command, normalise, split_words

RAW = {
    "hw": {
        "jobs": {
            "check": {"run_args_template": "check {node}"},
            "count": {"run_args_template": "count {n}"},
            "every": {"run_args_template": "every {interval}"},
            "hello": {"run_args_template": "echo hello {name}"},
            "say": {"run_args_template": "echo {text}"},
            "sayhello": {"run_args_template": "echo hello {text}"},
            "pair": {"run_args_template": "pair {a} {b}"},
            "status": {"run_args_template": "status"},
        },
        "slack": [
            {"command": "check [node:xname]", "job_type": "check", "help": "Checks a node"},
            {"command": "count [n:int]", "job_type": "count"},
            {"command": "every [interval:1h|2h|5h|1d]", "job_type": "every"},
            {"command": "hello [name=world]", "job_type": "hello"},
            {"command": "say [text...]", "job_type": "say"},
            {"command": "say hello [text...]", "job_type": "sayhello"},
            {"command": "pair [a] [b]", "job_type": "pair"},
            {"command": "node status", "job_type": "status"},
        ],
    },
    "trac": {
        "jobs": {"new": {"run_args_template": "new"}, "list": {"run_args_template": "list"}},
        "slack": [
            {"command": "new ticket", "job_type": "new", "help": "Opens a ticket"},
            {"command": "list tickets", "job_type": "list"},
        ],
    },
    "system": {"jobs": {}},
}


@pytest.fixture(scope="module")
def configs() -> JobConfigs:
    return parse_config(RAW)


def refusal(configs: JobConfigs, text: str) -> MatchError:
    with pytest.raises(MatchError) as caught:
        match_command(configs, text)
    return caught.value


def test_simple_command(configs):
    match = match_command(configs, "trac new ticket")
    assert (match.namespace, match.job_type, match.args) == ("trac", "new", {})


def test_words_are_case_insensitive(configs):
    match = match_command(configs, "TRAC New Ticket")
    assert match.job_type == "new"


@pytest.mark.parametrize(
    "text", ["hw count 5.", "  hw   count   5  ", "hw count 5 .", "\thw count 5\n", "hw count 5. "]
)
def test_trailing_full_stop_and_extra_whitespace_are_tolerated(configs, text):
    match = match_command(configs, text)
    assert (match.job_type, match.args) == ("count", {"n": "5"})


def test_typed_arguments_are_normalised(configs):
    assert match_command(configs, "hw check X1000C0S0B0N0").args == {"node": "x1000c0s0b0n0"}
    assert match_command(configs, "hw every 1D").args == {"interval": "1d"}
    assert match_command(configs, "hw count 007").args == {"n": "7"}


def test_default_is_used_when_argument_is_absent(configs):
    assert match_command(configs, "hw hello").args == {"name": "world"}
    assert match_command(configs, "hw hello Bob").args == {"name": "Bob"}


def test_rest_of_line_keeps_inner_spacing(configs):
    match = match_command(configs, "hw say  the node   is on fire.")
    assert match.args == {"text": "the node   is on fire"}


@pytest.mark.parametrize(
    ("text", "args"),
    [
        ('hw pair "a b" c', {"a": "a b", "b": "c"}),
        ("hw pair \u201ca b\u201d \u201cc d\u201d", {"a": "a b", "b": "c d"}),
        ("hw pair 'a b' c", {"a": "a b", "b": "c"}),
        ('hw pair "" c', {"a": "", "b": "c"}),
        ('hw pair a "it\'s here"', {"a": "a", "b": "it's here"}),
    ],
)
def test_quoted_multi_word_arguments(configs, text, args):
    assert match_command(configs, text).args == args


def test_a_quoted_rest_argument_loses_its_quotes(configs):
    assert match_command(configs, 'hw say "two words"').args == {"text": "two words"}


def test_more_specific_command_wins(configs):
    match = match_command(configs, "hw say hello there")
    assert (match.job_type, match.args) == ("sayhello", {"text": "there"})
    match = match_command(configs, "hw say goodbye there")
    assert (match.job_type, match.args) == ("say", {"text": "goodbye there"})


def test_literal_command_beats_a_typed_one_with_the_same_first_word(configs):
    assert match_command(configs, "hw node status").job_type == "status"


def test_empty_text(configs):
    error = refusal(configs, "   ")
    assert "Nothing to do" in error.message


def test_unknown_namespace_suggests_close_ones(configs):
    error = refusal(configs, "tarc lsit")
    assert "I don't know the namespace 'tarc'" in error.message
    assert "Namespaces: hw, system, trac" in error.message
    assert error.suggestions == ["trac help"]
    assert "The closest commands:\n• `trac help`" in str(error)


def test_unknown_namespace_suggests_the_command_it_resembles(configs):
    error = refusal(configs, "tarc new ticket")
    assert error.message.startswith("I didn't understand `tarc new ticket`.")
    assert error.suggestions[0] == "trac new ticket - Opens a ticket"
    assert "The closest commands:\n• `trac new ticket`: Opens a ticket" in str(error)


def test_unknown_namespace_far_from_any_has_no_suggestion(configs):
    error = refusal(configs, "zzzzzz go")
    assert error.suggestions == []
    assert "closest" not in str(error)


def test_unknown_command_suggests_close_commands(configs):
    error = refusal(configs, "trac new tiket")
    assert "I didn't understand `trac new tiket`" in error.message
    assert "`trac help`" in error.message
    assert error.suggestions[0] == "trac new ticket - Opens a ticket"


def test_unknown_command_with_arguments_still_suggests(configs):
    error = refusal(configs, "hw chek x1000c0s0b0n0")
    assert error.suggestions
    assert error.suggestions[0] == "hw check [node:xname] - Checks a node"


def test_wrong_type_names_placeholder_and_expectation(configs):
    error = refusal(configs, "hw count five")
    assert "`hw count [n:int]`" in error.message
    assert "[n] must be a whole number" in error.message
    assert "'five'" in error.message
    assert error.suggestions == ["hw count [n:int]"]


def test_wrong_xname_says_what_an_xname_looks_like(configs):
    error = refusal(configs, "hw check x1000c0s")
    assert "[node] must be an xname" in error.message
    assert "x1000c0s0b0n0" in error.message


def test_wrong_choice_lists_choices(configs):
    error = refusal(configs, "hw every 3h")
    assert "[interval] must be one of 1h, 2h, 5h, 1d; got '3h'" in error.message


def test_missing_argument_is_named(configs):
    error = refusal(configs, "hw pair a")
    assert "missing [b]" in error.message
    assert "expected text" in error.message
    error = refusal(configs, "hw count")
    assert "missing [n]: expected a whole number" in error.message


def test_missing_rest_argument(configs):
    error = refusal(configs, "hw say")
    assert "missing [text]" in error.message
    assert "(the rest of the line)" in error.message


def test_the_last_placeholder_takes_the_rest_of_the_line_as_in_ebmbot(configs):
    # ebmbot matches each [param] with (.+?) anchored at the end.
    match = match_command(configs, "hw pair a b c d")
    assert match.args == {"a": "a", "b": "b c d"}
    assert match_command(configs, "hw hello Ada Lovelace").args == {"name": "Ada Lovelace"}
    # Quotes still make one word of several, wherever the placeholder is.
    assert match_command(configs, 'hw pair "a b" c').args == {"a": "a b", "b": "c"}
    assert match_command(configs, 'hw pair a "b c"').args == {"a": "a", "b": "b c"}


def test_ebmbot_board_example(configs):
    board = parse_config(
        {
            "gh": {
                "jobs": {"board": {"run_args_template": "board {org} {number} {statuses}"}},
                "slack": [{"command": "board [org] [number] [statuses]", "job_type": "board"}],
            }
        }
    )
    match = match_command(board, "gh board a 1 todo doing")
    assert match.args == {"org": "a", "number": "1", "statuses": "todo doing"}


def test_extra_words_after_a_typed_placeholder_are_refused(configs):
    error = refusal(configs, "hw count 5 6")
    assert "unexpected extra words '6'" in error.message
    error = refusal(configs, "hw every 1h now")
    assert "unexpected extra words 'now'" in error.message


def test_extra_words_after_a_command_without_placeholders(configs):
    error = refusal(configs, "trac new ticket now")
    assert "unexpected extra words 'now'" in error.message
    assert "quotes" not in error.message


def test_namespace_without_commands(configs):
    error = refusal(configs, "system hello")
    assert "`system help`" in error.message


def test_split_words_honours_quotes():
    words = split_words("a \"b c\" \u201cd e\u201d 'f g' h")
    assert [w.value for w in words] == ["a", "b c", "d e", "f g", "h"]
    assert [w.start for w in words] == [0, 2, 8, 14, 20]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("hi.", "hi"), ("hi . ", "hi"), ("  hi  ", "hi"), ("wait...", "wait..."), ("v1.2", "v1.2")],
)
def test_normalise(text, expected):
    assert normalise(text) == expected


QUOTES = "\"'\u201c\u201d"

# Text a person could type as the rest of a line: no surrounding whitespace, no closing
# full stop (dropped as punctuation), not opening with a quote (a quoted single word is
# unwrapped, which is the point of quoting).
rest_values = (
    st.text(
        st.characters(exclude_categories=("Cs",), exclude_characters="\x00"),
        min_size=1,
        max_size=40,
    )
    .map(str.strip)
    .filter(lambda s: s and not s.endswith(".") and s[0] not in QUOTES)
)

SAY = parse_config(
    {
        "ns": {
            "jobs": {"say": {"run_args_template": "echo {text}"}},
            "slack": [{"command": "say [text...]", "job_type": "say"}],
        }
    }
)


@settings(max_examples=300, deadline=None)
@given(value=rest_values)
@example(value="a  b\tc")
@example(value='say "hello" to $(whoami)')
@example(value="x1000c0 is on fire!")
@example(value="hello \u201cworld\u201d it's")
@example(value="trailing ..")
@example(value="a\nb")
def test_rest_of_line_returns_the_value_unchanged(value):
    match = match_command(SAY, f"ns say {value}")
    assert match.args == {"text": value}
