"""The site's node inventory: which xname is which host, nid, and Redfish BMC.

`HW_INVENTORY` names a CSV (or YAML) file with the columns `xname,bmc,hostname,nid,system`.
It is the one place the hardware jobs learn where a node's BMC is, so every problem in
it is reported with its line number (by `stat-bot check-config` and by every job that
loads it) instead of surfacing later as "BMC unreachable".
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from stat_bot.hardware.xnames import Xname, XnameError, parse_xname

COLUMNS = ("xname", "bmc", "hostname", "nid", "system")
REQUIRED = ("xname", "bmc")


class InventoryError(ValueError):
    """The inventory cannot be used; `problems` are `file:line: what is wrong` lines."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


@dataclass(frozen=True)
class Node:
    """One compute node: its xname and how to reach its BMC and its operating system."""

    xname: str
    bmc: str
    hostname: str | None = None
    nid: int | None = None
    system: str | None = None
    line: int = 0

    @cached_property
    def parsed(self) -> Xname:
        return parse_xname(self.xname)

    @property
    def bmc_url(self) -> str:
        """`scheme://host[:port]`: a bare host or host:port means https, as real BMCs serve."""
        return bmc_url(self.bmc)

    @property
    def label(self) -> str:
        """How a person recognises the node in a report: xname and, when known, hostname."""
        return f"{self.xname} ({self.hostname})" if self.hostname else self.xname


def bmc_url(bmc: str) -> str:
    value = bmc.strip().rstrip("/")
    if "://" not in value:
        value = f"https://{value}"
    parts = urlsplit(value)
    return f"{parts.scheme}://{parts.netloc}"


def _bmc_problem(bmc: str) -> str | None:
    if not bmc.strip():
        return "has no bmc: give the BMC's host, host:port or URL"
    value = bmc.strip()
    if "://" in value and not value.startswith(("https://", "http://")):
        return f"bmc {value!r}: only https:// (the default) or http:// (emulators) URLs are allowed"
    try:
        parts = urlsplit(value if "://" in value else f"https://{value}")
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError as error:
        return f"bmc {value!r} is not a host, host:port or URL ({error})"
    if parts.username is not None or parts.password is not None:
        # Never echo the value: it holds a password.
        return (
            "bmc carries credentials (user:password@): remove them and set REDFISH_USERNAME "
            "and REDFISH_PASSWORD instead"
        )
    if not parts.hostname:
        return f"bmc {value!r} has no host name"
    return None


@dataclass
class Inventory:
    """Nodes in natural xname order, with the lookups targets need."""

    nodes: list[Node] = field(default_factory=list)
    source: str = ""

    def __post_init__(self) -> None:
        self.nodes.sort(key=lambda node: node.parsed.sort_key)
        self.by_xname = {node.xname: node for node in self.nodes}
        self.by_hostname = {node.hostname: node for node in self.nodes if node.hostname}
        self.by_nid = {node.nid: node for node in self.nodes if node.nid is not None}

    def __len__(self) -> int:
        return len(self.nodes)

    def under(self, xname: Xname) -> list[Node]:
        """Every node that is `xname` or below it."""
        return [node for node in self.nodes if xname.contains(node.parsed)]

    def find(self, name: str) -> Node | None:
        """A node by xname, hostname or nid (`nid000012`, `12`)."""
        name = name.strip()
        node = self.by_xname.get(name.lower()) or self.by_hostname.get(name)
        if node is None:
            digits = name.removeprefix("nid")
            if digits.isdigit():
                node = self.by_nid.get(int(digits))
        return node


def _rows(path: Path, text: str) -> list[tuple[int, dict[str, str]]]:
    """The file's records with their line numbers, from CSV or YAML (by suffix)."""
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            line = f"{mark.line + 1}" if mark else "?"
            raise InventoryError([f"{path}:{line}: not valid YAML ({error})"]) from None
        if isinstance(data, dict):
            data = data.get("nodes")
        if not isinstance(data, list):
            raise InventoryError(
                [
                    f"{path}:1: expected a list of nodes (or `nodes:` with a list) with the keys "
                    + ", ".join(COLUMNS)
                ]
            )
        lines = _yaml_item_lines(text)
        rows = []
        for index, item in enumerate(data):
            line = lines[index] if index < len(lines) else 0
            if not isinstance(item, dict):
                raise InventoryError(
                    [f"{path}:{line}: each node must be a mapping of {', '.join(COLUMNS)}"]
                )
            rows.append((line, {str(k): "" if v is None else str(v) for k, v in item.items()}))
        return rows
    reader = csv.reader(io.StringIO(text))
    rows = []
    header: list[str] | None = None
    for record in reader:
        line = reader.line_num
        if not record or not "".join(record).strip() or record[0].lstrip().startswith("#"):
            continue
        if header is None:
            header = [name.strip().lower() for name in record]
            missing = [name for name in REQUIRED if name not in header]
            unknown = [name for name in header if name not in COLUMNS]
            if missing or unknown:
                problems = []
                if missing:
                    problems.append(f"missing column(s) {', '.join(missing)}")
                if unknown:
                    problems.append(f"unknown column(s) {', '.join(unknown)}")
                raise InventoryError(
                    [
                        f"{path}:{line}: header: {'; '.join(problems)}; the columns are "
                        + ",".join(COLUMNS)
                    ]
                )
            continue
        if len(record) > len(header):
            rows.append((line, {"__extra__": str(len(record))}))
            continue
        rows.append(
            (line, {name: value.strip() for name, value in zip(header, record, strict=False)})
        )
    if header is None:
        raise InventoryError(
            [f"{path}:1: empty: the first line must be the header " + ",".join(COLUMNS)]
        )
    return rows


def _yaml_item_lines(text: str) -> list[int]:
    """Line numbers of a YAML sequence's items, for messages (the loader drops them)."""
    lines = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.lstrip()
        if stripped.startswith("- ") or stripped == "-":
            indent = len(line) - len(stripped)
            if not lines or indent <= lines[0][1]:
                lines.append((number, indent))
    return [number for number, _ in lines]


def parse_inventory(path: Path, text: str) -> tuple[Inventory, list[str]]:
    """Every node that is right, and a problem line for every one that is not."""
    problems: list[str] = []
    nodes: list[Node] = []
    seen_xname: dict[str, int] = {}
    seen_host: dict[str, int] = {}
    seen_nid: dict[int, int] = {}
    seen_system: dict[tuple[str, str], int] = {}
    for line, row in _rows(path, text):
        where = f"{path}:{line}"
        if "__extra__" in row:
            problems.append(f"{where}: {row['__extra__']} fields, more than the header's columns")
            continue
        # Every problem of the row is reported, not only the first, so one round of fixes
        # makes the file load.
        found: list[str] = []
        xname_text = row.get("xname", "").strip()
        xname: Xname | None = None
        try:
            xname = parse_xname(xname_text)
        except XnameError as error:
            found.append(str(error))
        if xname is not None and xname.kind != "node":
            found.append(
                f"{xname.text} is a {xname.kind.replace('_', ' ')}, not a node "
                "(node xnames end in bN nN, e.g. x1000c0s0b0n0)"
            )
            xname = None
        bmc = row.get("bmc", "").strip()
        problem = _bmc_problem(bmc)
        if problem:
            found.append(f"{xname.text if xname else xname_text or '(no xname)'} {problem}")
        hostname = row.get("hostname", "").strip() or None
        nid_text = row.get("nid", "").strip().removeprefix("nid")
        nid = None
        if nid_text:
            if nid_text.isdigit():
                nid = int(nid_text)
            else:
                found.append(f"nid {row.get('nid')!r} is not a number (e.g. 12 or nid000012)")
        system = row.get("system", "").strip() or None
        for kind, key, seen in (
            ("xname", xname.text if xname else None, seen_xname),
            ("hostname", hostname, seen_host),
            ("nid", nid, seen_nid),
            ("bmc and system", None if problem else (bmc_url(bmc), system or ""), seen_system),
        ):
            if key is None:
                continue
            if key in seen:
                shown = key
                if kind == "bmc and system":
                    shown = f"{key[0]} system {key[1] or '(default)'}"
                found.append(f"duplicate {kind} {shown} (first on line {seen[key]})")
            else:
                seen[key] = line
        problems += [f"{where}: {text}" for text in found]
        if found or xname is None:
            continue
        nodes.append(Node(xname.text, bmc, hostname, nid, system, line))
    return Inventory(nodes, str(path)), problems


def load_inventory(path: Path | str) -> Inventory:
    """The inventory, or InventoryError with every problem: a job must not act on half of it."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as error:
        raise InventoryError([f"{path}: cannot be read ({error.strerror or error})"]) from None
    inventory, problems = parse_inventory(path, text)
    if problems:
        raise InventoryError(problems)
    return inventory


def inventory_problems(path: Path | str) -> list[str]:
    try:
        load_inventory(path)
    except InventoryError as error:
        return error.problems
    return []


def write_inventory(path: Path, nodes: Iterable[Node]) -> None:
    """Write a CSV inventory (local mode generates one for its emulated BMCs)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for node in nodes:
        writer.writerow(
            [
                node.xname,
                node.bmc,
                node.hostname or "",
                "" if node.nid is None else node.nid,
                node.system or "",
            ]
        )
    path.write_text(out.getvalue(), encoding="utf-8")
