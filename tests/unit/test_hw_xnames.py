"""xnames: parsing with messages that name the wrong part, order, and containment."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stat_bot.hardware.xnames import XnameError, is_xname, lock_key, overlaps, parse_xname


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("x1000", "cabinet"),
        ("x1000c0", "chassis"),
        ("x1000c0s0b0", "node_bmc"),
        ("x1000c0s0b0n0", "node"),
        ("x1000c0r7b0", "router_bmc"),
        ("x1000c0s0b0n0p1", "processor"),
        ("x1000c0s0b0n0d3", "dimm"),
        ("X3000C0S19B1N0", "node"),
        ("x9999c99s99b9n9", "node"),
    ],
)
def test_kinds(text, kind):
    assert parse_xname(text).kind == kind
    assert parse_xname(text).text == text.lower()


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "empty"),
        ("1000c0", "'1000c0' at the start"),
        ("x1000q0", "'q' after 'x1000' (cabinet) is not allowed; expected c (chassis)"),
        ("x1000c", "chassis 'c' after 'x1000' needs a number"),
        ("x1000c0s0n0", "'n' after 'x1000c0s0' (slot) is not allowed; expected b (node bmc)"),
        ("x1000c01", "chassis number '01' in 'c01' must be 0-99"),
        ("x1000c0s0b0n10", "node number '10' in 'n10' must be 0-9"),
        ("x10000", "cabinet number '10000'"),
        ("x1000c0s0b0n0x", "'x' after 'x1000c0s0b0n0' (node) is not allowed"),
        (" x1000", "' x1000' at the start"),
        ("x1000-c0", "'-c0' after 'x1000'"),
    ],
)
def test_refusals_name_the_wrong_part(text, words):
    with pytest.raises(XnameError) as caught:
        parse_xname(text)
    assert words in str(caught.value)
    assert not is_xname(text)


def test_parent_children_and_ancestors():
    node = parse_xname("x1000c0s3b0n1")
    assert node.parent.text == "x1000c0s3b0"
    assert [a.text for a in node.ancestors()] == ["x1000", "x1000c0", "x1000c0s3", "x1000c0s3b0"]
    assert parse_xname("x1000").parent is None
    assert parse_xname("x1000c0s3b0").child("n", 1) == node


def test_containment_is_by_parts_not_text():
    assert parse_xname("x1000c1").contains(parse_xname("x1000c1s0b0n0"))
    assert not parse_xname("x1000c1").contains(parse_xname("x1000c10s0b0n0"))
    assert overlaps(parse_xname("x1000c0s0b0n0"), parse_xname("x1000c0"))
    assert not overlaps(parse_xname("x1000c0s0b0n0"), parse_xname("x1000c0s0b0n1"))
    assert not lock_key(parse_xname("x1000c10")).startswith(lock_key(parse_xname("x1000c1")))
    assert lock_key(parse_xname("x1000c1s2")).startswith(lock_key(parse_xname("x1000c1")))


def test_natural_order():
    names = ["x1000c10s0b0n0", "x1000c2s0b0n0", "x1000c2", "x999c0s1b0n1", "x1000c2s0b0n1"]
    ordered = sorted((parse_xname(n) for n in names), key=lambda x: x.sort_key)
    assert [x.text for x in ordered] == [
        "x999c0s1b0n1",
        "x1000c2",
        "x1000c2s0b0n0",
        "x1000c2s0b0n1",
        "x1000c10s0b0n0",
    ]


nodes = st.builds(
    lambda x, c, s, b, n: f"x{x}c{c}s{s}b{b}n{n}",
    st.integers(0, 9999),
    st.integers(0, 99),
    st.integers(0, 99),
    st.integers(0, 9),
    st.integers(0, 9),
)


@given(nodes, nodes)
def test_overlap_is_prefix_of_parts_property(a, b):
    xa, xb = parse_xname(a), parse_xname(b)
    assert overlaps(xa, xb) == (a == b)
    for ancestor in xa.ancestors():
        assert overlaps(ancestor, xa)
        assert lock_key(xa).startswith(lock_key(ancestor))
        assert overlaps(ancestor, xb) == lock_key(xb).startswith(lock_key(ancestor))
