"""The inventory: CSV and YAML, every problem with its line, and target selection."""

from __future__ import annotations

from pathlib import Path

import pytest

from stat_bot.hardware.inventory import (
    InventoryError,
    Node,
    inventory_problems,
    load_inventory,
    write_inventory,
)
from stat_bot.hardware.targets import TargetError, check_target, fold, select

CSV = """xname,bmc,hostname,nid,system
# a comment line
x1000c0s1b0n0,bmc-s1.example:8443,nid000003,3,
x1000c0s0b0n1,http://127.0.10.1:8000,nid000002,2,Node1
x1000c0s0b0n0,http://127.0.10.1:8000,nid000001,nid000001,Node0
x1000c1s0b0n0,10.0.0.9,login1,17,
"""


@pytest.fixture
def inventory(tmp_path: Path):
    path = tmp_path / "inventory.csv"
    path.write_text(CSV)
    return load_inventory(path)


def test_csv_loads_in_natural_order_with_urls(inventory):
    assert [n.xname for n in inventory.nodes] == [
        "x1000c0s0b0n0",
        "x1000c0s0b0n1",
        "x1000c0s1b0n0",
        "x1000c1s0b0n0",
    ]
    first = inventory.nodes[0]
    assert (first.hostname, first.nid, first.system, first.line) == ("nid000001", 1, "Node0", 5)
    assert first.bmc_url == "http://127.0.10.1:8000"
    assert inventory.by_xname["x1000c0s1b0n0"].bmc_url == "https://bmc-s1.example:8443"
    assert inventory.by_xname["x1000c1s0b0n0"].bmc_url == "https://10.0.0.9"


def test_yaml_inventory(tmp_path: Path):
    path = tmp_path / "inventory.yaml"
    path.write_text(
        "nodes:\n"
        "  - xname: x1000c0s0b0n0\n    bmc: h0\n    hostname: nid000001\n    nid: 1\n"
        "  - xname: x1000c0s0b0\n    bmc: h1\n"
    )
    with pytest.raises(InventoryError) as caught:
        load_inventory(path)
    assert caught.value.problems == [
        f"{path}:6: x1000c0s0b0 is a node bmc, not a node (node xnames end in bN nN, e.g. "
        "x1000c0s0b0n0)"
    ]
    path.write_text("- {xname: x1000c0s0b0n0, bmc: h0}\n- {xname: x1000c0s0b0n1, bmc: h1}\n")
    assert len(load_inventory(path)) == 2


def test_every_problem_with_its_line(tmp_path: Path):
    path = tmp_path / "inventory.csv"
    path.write_text(
        "xname,bmc,hostname,nid,system\n"
        "x1000c0s0b0n0,h0,n1,1,\n"
        "x1000c0s0b0n0,h9,n9,9,\n"  # 3: duplicate xname
        "x1000c0s0b0n1,h1,n1,2,\n"  # 4: duplicate hostname
        "x1000c0s0b0n2,h2,n2,1,\n"  # 5: duplicate nid
        "x1000c0s0b0n3,h0,n3,3,\n"  # 6: same BMC, no system id to tell them apart
        "x1000c0s0b0n4,,n4,4,\n"  # 7: no bmc
        "x1000c0z0b0n5,h5,n5,5,\n"  # 8: malformed xname
        "x1000c0s0b0n6,h6,n6,six,\n"  # 9: nid not a number
        "x1000c0s0b0n7,h7,n7,7,,extra\n"  # 10: too many fields
        "x1000c0s0b0n8,ftp://h8,n8,8,\n"  # 11: scheme
    )
    problems = inventory_problems(path)
    assert [p.split(":")[1] for p in problems] == [str(n) for n in range(3, 12)]
    text = "\n".join(problems)
    for words in (
        "duplicate xname x1000c0s0b0n0 (first on line 2)",
        "duplicate hostname n1 (first on line 2)",
        "duplicate nid 1 (first on line 2)",
        "duplicate bmc and system https://h0 system (default) (first on line 2)",
        "x1000c0s0b0n4 has no bmc",
        "'z' after 'x1000c0' (chassis) is not allowed",
        "nid 'six' is not a number",
        "6 fields, more than the header's columns",
        "only https:// (the default) or http:// (emulators)",
    ):
        assert words in text


def test_header_and_missing_file(tmp_path: Path):
    path = tmp_path / "inventory.csv"
    path.write_text("name,bmc\nx1000c0s0b0n0,h\n")
    assert inventory_problems(path) == [
        f"{path}:1: header: missing column(s) xname; unknown column(s) name; the columns are "
        "xname,bmc,hostname,nid,system"
    ]
    assert "cannot be read" in inventory_problems(tmp_path / "absent.csv")[0]


def test_write_then_load_round_trip(tmp_path: Path, inventory):
    path = tmp_path / "copy.csv"
    write_inventory(path, inventory.nodes)
    again = load_inventory(path)
    assert [(n.xname, n.bmc, n.hostname, n.nid, n.system) for n in again.nodes] == [
        (n.xname, n.bmc, n.hostname, n.nid, n.system) for n in inventory.nodes
    ]


@pytest.mark.parametrize(
    ("target", "chosen"),
    [
        (None, "x1000c[0-1]s[0-1]b0n[0-1]"),
        ("all", "x1000c[0-1]s[0-1]b0n[0-1]"),
        ("x1000c0s0b0n1", "x1000c0s0b0n1"),
        ("x1000c0", "x1000c0s[0-1]b0n[0-1]"),
        ("x1000c0s0b0", "x1000c0s0b0n[0-1]"),
        ("x1000c[0-1]s0b0n0", "x1000c[0-1]s0b0n0"),
        ("x1000c0s1b0n0,login1", "x1000c0s1b0n0,x1000c1s0b0n0"),
        ("nid[000001-000002]", "x1000c0s0b0n[0-1]"),
        ("nid3", "x1000c0s1b0n0"),
        ("login1", "x1000c1s0b0n0"),
        ("x1000", "x1000c[0-1]s[0-1]b0n[0-1]"),
    ],
)
def test_select(tmp_path: Path, target, chosen):
    nodes = [
        Node(f"x1000c{c}s{s}b0n{n}", f"h{c}{s}{n}", f"n{c}{s}{n}", 1 + 4 * c + 2 * s + n)
        for c in (0, 1)
        for s in (0, 1)
        for n in (0, 1)
    ]
    nodes[3] = Node("x1000c0s1b0n1", "h011", "n011", 4)
    nodes[2] = Node("x1000c0s1b0n0", "h010", "nid000003", 3)
    nodes[4] = Node("x1000c1s0b0n0", "h100", "login1", 5)
    from stat_bot.hardware.inventory import Inventory

    inventory = Inventory(nodes, "test.csv")
    assert fold(n.xname for n in select(inventory, target)) == chosen


def test_select_refuses_what_is_not_there(inventory):
    with pytest.raises(TargetError, match=r"not in the inventory .*: x1000c9,x1000c0s7b0n0"):
        select(inventory, "x1000c0s7b0n0,x1000c9")
    with pytest.raises(TargetError, match="'q' after"):
        select(inventory, "x1000q")
    with pytest.raises(TargetError, match="not a target"):
        select(inventory, "x1000c[0-")
    with pytest.raises(TargetError, match="node groups"):
        select(inventory, "@compute")


def test_check_target_without_inventory():
    assert check_target(" x1000c[0-3]s[0-7]b0n[0-1] ") == "x1000c[0-3]s[0-7]b0n[0-1]"
    assert check_target("ALL") == "all"
    assert check_target("nid[000001-000128],login1") == "nid[000001-000128],login1"
    with pytest.raises(TargetError, match="more than 100,000"):
        check_target("x[0-9999]c[0-99]s[0-99]b0n[0-9]")
    with pytest.raises(TargetError, match="not an xname, hostname or nid"):
        check_target("login1;rm")
    with pytest.raises(TargetError, match="chassis number '01'"):
        check_target("x1000c01")


@pytest.mark.parametrize(
    "hostile",
    ["x[0-99999999]", "n[0-9999999999]", "x[1-3]" * 50, "n[0-99999],m[0-1]", "a" * 5000],
)
def test_huge_targets_are_refused_before_expansion(hostile):
    """NodeSet builds every number of a range: these would hang the job if expanded."""
    with pytest.raises(TargetError, match=r"more than|longer than"):
        check_target(hostile)
