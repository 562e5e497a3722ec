"""The STAT relay's form and interval parsing: what is accepted, normalised and refused, and how."""

from __future__ import annotations

from typing import Any

import pytest

from stat_bot.web.errors import ApiError
from stat_bot.web.stat_relay import (
    ACTIONS,
    INTERVALS,
    PRIORITIES,
    TICKET_TYPES,
    interval_name,
    parse_interval,
    parse_ticket,
    ticket_message,
)
from stat_bot.web.ticket_choices import TicketChoices

VALID = {
    "summary": "Node will not boot",
    "type": "Hardware",
    "priority": "High",
    "xname": "x1000c0s0b0n0",
    "action": "new",
}


def refusal(body: object) -> ApiError:
    with pytest.raises(ApiError) as caught:
        parse_ticket(body)
    assert caught.value.status == 400
    return caught.value


def test_a_valid_form_is_accepted_as_is() -> None:
    ticket = parse_ticket(VALID)
    assert ticket.model_dump() == VALID


def test_choices_are_matched_without_regard_to_case_and_spelled_as_the_form_does() -> None:
    ticket = parse_ticket(
        {
            "summary": "  Link flapping  ",
            "type": "feature request",
            "priority": " low ",
            "xname": "X1000C0R7J101P0",
            "action": "RESOLVED",
        }
    )
    assert ticket.summary == "Link flapping"
    assert ticket.type == "Feature Request"
    assert ticket.priority == "Low"
    assert ticket.xname == "x1000c0r7j101p0"
    assert ticket.action == "resolved"


@pytest.mark.parametrize("value", TICKET_TYPES)
def test_every_ticket_type_is_accepted(value: str) -> None:
    assert parse_ticket({**VALID, "type": value.upper()}).type == value


@pytest.mark.parametrize(("field", "values"), [("priority", PRIORITIES), ("action", ACTIONS)])
def test_every_priority_and_action_is_accepted(field: str, values: tuple[str, ...]) -> None:
    for value in values:
        assert getattr(parse_ticket({**VALID, field: value.swapcase()}), field) == value


@pytest.mark.parametrize("field", ["summary", "type", "priority", "xname", "action"])
def test_a_missing_field_is_named_with_what_it_expects(field: str) -> None:
    body = {k: v for k, v in VALID.items() if k != field}
    error = refusal(body)
    assert error.field == field
    assert error.error.startswith(f"{field} is required")


@pytest.mark.parametrize(
    ("field", "allowed"),
    [("type", TICKET_TYPES), ("priority", PRIORITIES), ("action", ACTIONS)],
)
def test_a_choice_outside_the_list_names_the_allowed_values(
    field: str, allowed: tuple[str, ...]
) -> None:
    error = refusal({**VALID, field: "urgent-ish"})
    assert error.field == field
    assert "'urgent-ish'" in error.error
    for value in allowed:
        assert value in error.error


@pytest.mark.parametrize("summary", ["", "   ", "\n\t"])
def test_a_blank_summary_is_refused(summary: str) -> None:
    error = refusal({**VALID, "summary": summary})
    assert error.field == "summary"
    assert "blank" in error.error


def test_a_summary_over_200_characters_is_refused_but_200_is_fine() -> None:
    assert len(parse_ticket({**VALID, "summary": "a" * 200}).summary) == 200
    error = refusal({**VALID, "summary": "a" * 201})
    assert error.field == "summary"
    assert "at most 200 characters (got 201)" in error.error


@pytest.mark.parametrize("xname", ["node12", "x1000c0s99999", "x1000q0", "n0", "x1000c0s0b0n0;id"])
def test_an_xname_off_the_grammar_is_refused(xname: str) -> None:
    error = refusal({**VALID, "xname": xname})
    assert error.field == "xname"
    assert "x1000c0s0b0n0" in error.error  # an example of what is expected
    assert repr(xname) in error.error


def test_an_xname_is_trimmed_and_lower_cased() -> None:
    assert parse_ticket({**VALID, "xname": " X3000M0P1 "}).xname == "x3000m0p1"


def test_a_blank_xname_says_to_name_the_component() -> None:
    error = refusal({**VALID, "xname": " "})
    assert error.field == "xname"
    assert "blank" in error.error


@pytest.mark.parametrize("field", ["summary", "type", "priority", "xname", "action"])
@pytest.mark.parametrize("value", [5, None, ["Bug"], {"a": 1}, True])
def test_a_value_that_is_not_text_is_refused(field: str, value: Any) -> None:
    error = refusal({**VALID, field: value})
    assert error.field == field
    assert "must be text" in error.error


def test_unknown_fields_are_named_before_anything_else() -> None:
    body = {k: v for k, v in VALID.items() if k != "summary"}
    error = refusal({**body, "Summary": "typo", "status": "new"})
    assert error.field == "Summary"
    assert "Summary, status" in error.error
    assert "summary, type, priority, xname, action" in error.error


@pytest.mark.parametrize("body", [None, [], ["summary"], "text", 5])
def test_a_body_that_is_not_an_object_is_refused(body: object) -> None:
    error = refusal(body)
    assert error.field is None
    assert "JSON object" in error.error


def test_the_first_bad_field_in_form_order_is_reported() -> None:
    error = refusal({**VALID, "priority": "x", "action": "x"})
    assert error.field == "priority"


def test_the_message_has_every_value_in_fields_and_a_text_fallback() -> None:
    message = ticket_message(parse_ticket(VALID), "alice")
    (section,) = message.blocks or []
    assert section["type"] == "section"
    assert "Node will not boot" in section["text"]["text"]
    fields = [f["text"] for f in section["fields"]]
    assert fields == [
        "*Type*\nHardware",
        "*Priority*\nHigh",
        "*XName*\nx1000c0s0b0n0",
        "*Action*\nnew",
        "*Submitted by*\nalice",
    ]
    for value in [*VALID.values(), "alice"]:
        assert value in message.text


def test_slack_markup_in_the_form_cannot_mention_everyone_or_fake_a_link() -> None:
    ticket = parse_ticket({**VALID, "summary": "<!channel> see <http://evil|here> & more"})
    message = ticket_message(ticket, "<@U1>")
    everything = message.text + repr(message.blocks)
    assert "<!channel>" not in everything
    assert "<http://evil" not in everything
    assert "<@U1>" not in everything
    assert "&lt;!channel&gt; see &lt;http://evil|here&gt; &amp; more" in message.text


# -- /set-interval's body ------------------------------------------------------------------


@pytest.mark.parametrize(("name", "seconds"), INTERVALS.items())
def test_each_dropdown_interval_gives_its_seconds(name: str, seconds: int) -> None:
    assert parse_interval({"interval": name}) == seconds
    assert parse_interval({"interval": name.upper()}) == seconds
    assert interval_name(seconds) == name


def test_default_clears_the_override() -> None:
    assert parse_interval({"interval": "default"}) is None
    assert parse_interval({"interval": " Default "}) is None


@pytest.mark.parametrize(
    ("body", "seconds"),
    [
        ({"minutes": 90}, 5400),
        ({"minutes": "90"}, 5400),
        ({"minutes": 5}, 300),
        ({"minutes": 10080}, 604800),
        ({"minutes": 60.0}, 3600),
        ({"interval": 60}, 3600),  # HPC-STAT's page sent minutes in `interval`
        ({"interval": "120"}, 7200),
        ({"interval": "1h", "csrf_token": "t"}, 3600),  # a form post carries its token
    ],
)
def test_minutes_are_accepted_as_numbers_or_digits(body: dict[str, Any], seconds: int) -> None:
    assert parse_interval(body) == seconds


def test_a_number_of_minutes_has_no_dropdown_name() -> None:
    assert interval_name(5400) is None
    assert interval_name(None) is None


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({}, "interval", "interval is required"),
        ({"interval": "3h"}, "interval", "one of 1h, 2h, 5h, 1d, default"),
        ({"interval": ""}, "interval", "one of 1h, 2h, 5h, 1d, default"),
        ({"interval": None}, "interval", "whole number of minutes"),
        ({"interval": True}, "interval", "whole number of minutes"),
        ({"interval": 4}, "interval", "from 5 to 10080"),
        ({"minutes": 0}, "minutes", "from 5 to 10080"),
        ({"minutes": -60}, "minutes", "from 5 to 10080"),
        ({"minutes": "-60"}, "minutes", "whole number"),
        ({"minutes": 10081}, "minutes", "from 5 to 10080"),
        ({"minutes": 1.5}, "minutes", "whole number"),
        ({"minutes": "soon"}, "minutes", "whole number"),
        ({"minutes": [60]}, "minutes", "whole number"),
        ({"interval": "1h", "minutes": 60}, "minutes", "not both"),
        ({"interval": "1h", "every": 2}, "every", "unknown field every"),
    ],
)
def test_bad_intervals_are_refused_naming_the_field(
    body: dict[str, Any], field: str, words: str
) -> None:
    with pytest.raises(ApiError) as caught:
        parse_interval(body)
    assert caught.value.status == 400
    assert caught.value.field == field
    assert words in caught.value.error


def test_every_field_at_fault_is_reported_at_once() -> None:
    error = refusal(
        {"summary": " ", "type": "", "priority": "urgent", "xname": "", "action": "new"}
    )
    assert error.errors is not None
    assert list(error.errors) == ["summary", "type", "priority", "xname"]  # the form's order
    assert (error.field, error.error) == ("summary", error.errors["summary"])
    assert "'urgent'" in error.errors["priority"]
    assert error.body()["errors"] == error.errors


def test_the_sites_own_choices_are_accepted_beside_hpc_stats() -> None:
    site = TicketChoices(("defect", "enhancement", "task"), ("blocker", "major"))
    assert parse_ticket({**VALID, "type": "DEFECT", "priority": "blocker"}, site).type == "defect"
    assert parse_ticket(VALID, site).type == "Hardware"  # HPC-STAT's form keeps working
    with pytest.raises(ApiError) as caught:
        parse_ticket({**VALID, "type": "bogus"}, site)
    assert "defect, enhancement, task" in caught.value.error
