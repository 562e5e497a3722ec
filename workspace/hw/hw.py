"""The `hw` namespace's commands that need no database: inventory, firmware, sel, power.

    python3 hw.py inventory TARGET
    python3 hw.py firmware TARGET
    python3 hw.py sel TARGET COUNT
    python3 hw.py power TARGET on|off|restart|status

Like every workspace script it knows nothing of STAT bot's service: it reads
HW_INVENTORY, REDFISH_USERNAME, REDFISH_PASSWORD (or REDFISH_PASSWORD_FILE),
REDFISH_VERIFY_TLS, REDFISH_TIMEOUT and HW_FANOUT from its environment, asks the
BMCs through stat_bot.integrations.redfish, and prints a `blocks` answer (Block
Kit, with every row as CSV beside it when the list is long). A BMC that cannot be
asked is listed with its reason; a setting that cannot be used ends the script with
a message on stderr saying how to fix it.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from stat_bot.hardware import credentials, report
from stat_bot.hardware.inventory import InventoryError, Node
from stat_bot.hardware.targets import TargetError, fold, select_from, unusable

ACTIONS = ("on", "off", "restart", "status")
MAX_SEL = 1000  # entries per node: a bound on what one BMC can make the answer hold


class HwError(Exception):
    """The site's set-up is broken (an inventory or a setting that cannot be used): printed
    to stderr, exit status 1, so the failure reaches tech support."""


class MistakeError(Exception):
    """The request cannot be done as asked (no inventory, a target outside it, a bad
    count): answered in the asker's thread, exit status 0."""


def env(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def nodes_for(target: str) -> list[Node]:
    path = env("HW_INVENTORY")
    try:
        return select_from(path, target)
    except TargetError as error:
        raise MistakeError(str(error)) from None
    except InventoryError as error:
        raise HwError(unusable(path, error)) from None


def redfish_config() -> Any:
    from stat_bot.integrations.redfish import RedfishConfig

    try:
        password = credentials.password(env("REDFISH_PASSWORD"), env("REDFISH_PASSWORD_FILE"))
        verify = credentials.verify_tls(env("REDFISH_VERIFY_TLS", "true"))
    except credentials.CredentialsError as error:
        raise HwError(str(error)) from None
    try:
        timeout = float(env("REDFISH_TIMEOUT", "10") or "10")
    except ValueError:
        raise HwError("REDFISH_TIMEOUT must be a number of seconds, such as 10") from None
    return RedfishConfig(
        username=env("REDFISH_USERNAME"),
        password=password,
        verify_tls=verify,
        timeout=timeout,
    )


def fanout() -> int:
    try:
        return max(1, int(env("HW_FANOUT", "64") or "64"))
    except ValueError:
        raise HwError("HW_FANOUT must be a whole number, such as 64") from None


def unreadable(item: Any) -> str | None:
    """`BMC unreachable: <reason>` for a node whose BMC could not be asked, else None."""
    state = str(getattr(item, "state", "ok"))
    if state in ("ok", "warning", "critical"):
        return None
    from stat_bot.hardware.health import State

    words = State(state).words
    return f"{words}: {item.reason}" if getattr(item, "reason", None) else words


def as_csv(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(report.csv_row(row) for row in rows)
    return out.getvalue()


def answer(
    title: str,
    summary: str,
    lines: list[str],
    *,
    csv_name: str,
    header: Sequence[str],
    rows: Sequence[Sequence[Any]],
    note: str = "",
) -> dict[str, Any]:
    blocks = [report.header(title), report.section(f"*{report.escape(summary)}*")]
    shown = lines[: report.MAX_LISTED]
    blocks += report.sections(report.listed(shown, len(lines), "lines"))
    if note:
        blocks.append(report.context(note))
    file = None
    if len(lines) > report.MAX_LISTED:
        file = {"filename": csv_name, "content": as_csv(header, rows), "title": title}
    return report.answer(summary, blocks, file)


def failed_line(item: Any, why: str) -> str:
    return f":black_circle: {report.who(item.xname, item.hostname)}: {report.escape(why)}"


# -- commands -------------------------------------------------------------------------------


def inventory(target: str) -> dict[str, Any]:
    from stat_bot.integrations.redfish import inventory_many

    nodes = nodes_for(target)
    items = inventory_many(nodes, redfish_config(), fanout())
    lines, rows, failed = [], [], 0
    for item in items:
        if why := unreadable(item):
            failed += 1
            lines.append(failed_line(item, why))
        else:
            memory = f"{item.memory_gib:g} GiB" if item.memory_gib is not None else "? GiB"
            cpus = f"{item.cpu_count or '?'} x {item.cpu_model or 'CPU'}"
            text = " · ".join(
                str(part)
                for part in (
                    f"{item.manufacturer or ''} {item.model or ''}".strip() or "model ?",
                    f"serial {item.serial or '?'}",
                    cpus,
                    memory,
                    f"BIOS {item.bios_version or '?'}",
                    f"power {item.power_state or '?'}",
                )
            )
            lines.append(f"{report.who(item.xname, item.hostname)}: {report.escape(text)}")
        rows.append(
            [
                item.xname,
                item.hostname,
                str(item.state),
                item.manufacturer,
                item.model,
                item.serial,
                item.cpu_count,
                item.cpu_model,
                item.memory_gib,
                item.bios_version,
                item.power_state,
                item.reason,
            ]
        )
    count = len(items)
    summary = f"{count} node{'s' if count != 1 else ''}: {count - failed} read"
    summary += f", {failed} could not be read" if failed else ""
    return answer(
        f"hw inventory {target}",
        summary,
        lines,
        csv_name="hw-inventory.csv",
        header=(
            "xname",
            "hostname",
            "state",
            "manufacturer",
            "model",
            "serial",
            "cpu_count",
            "cpu_model",
            "memory_gib",
            "bios_version",
            "power_state",
            "reason",
        ),
        rows=rows,
    )


def firmware(target: str) -> dict[str, Any]:
    from stat_bot.hardware.firmware import firmware_differences
    from stat_bot.integrations.redfish import firmware as read_firmware

    nodes = nodes_for(target)
    items = read_firmware(nodes, redfish_config(), fanout())
    by_xname = {item.xname: item for item in items}
    fleet = {item.xname: item.firmware for item in items if unreadable(item) is None}
    differences = firmware_differences(fleet)
    lines = []
    rows: list[list[Any]] = []
    odd: dict[str, list[str]] = {}
    for difference in differences:
        odd.setdefault(difference.xname, []).append(difference.text)
        rows.append(
            [
                difference.xname,
                by_xname[difference.xname].hostname,
                difference.component,
                difference.version,
                difference.majority,
                difference.majority_count,
                difference.reporting,
            ]
        )
    for xname, texts in odd.items():
        item = by_xname[xname]
        lines.append(
            f":large_yellow_circle: {report.who(xname, item.hostname)}: "
            + report.escape("; ".join(texts))
        )
    failed = [item for item in items if unreadable(item)]
    lines += [failed_line(item, unreadable(item) or "") for item in failed]
    components = len({c for versions in fleet.values() for c in versions})
    if differences:
        summary = (
            f"{len(odd)} of {len(fleet)} nodes differ from the fleet's majority "
            f"({len(differences)} component versions)"
        )
    elif fleet:
        summary = f"{len(fleet)} nodes: every component runs the fleet's majority version"
    else:
        summary = "no node's firmware could be read"
    if failed:
        summary += f"; {len(failed)} could not be read"
    return answer(
        f"hw firmware {target}",
        summary,
        lines,
        csv_name="hw-firmware.csv",
        header=("xname", "hostname", "component", "version", "majority", "running_it", "reporting"),
        rows=rows,
        note=f"{components} components compared across {report.escape(fold(fleet) or '-')}",
    )


def sel(target: str, count_text: str) -> dict[str, Any]:
    from stat_bot.integrations.redfish import sel_many

    try:
        count = int(count_text)
    except ValueError:
        raise MistakeError(f"count must be a whole number, not {count_text!r}") from None
    if not 1 <= count <= MAX_SEL:
        raise MistakeError(
            f"count must be between 1 and {MAX_SEL:,}, not {count:,}: "
            f"e.g. `hw sel {report.clip(target, 60)} {MAX_SEL}` (a long list comes as a CSV file)"
        )
    nodes = nodes_for(target)
    logs = sel_many(nodes, redfish_config(), count, fanout())
    lines, rows = [], []
    for log in logs:
        if why := unreadable(log):
            lines.append(failed_line(log, why))
            rows.append([log.xname, log.hostname, "", "", "", why])
            continue
        if not log.entries:
            lines.append(f"{report.who(log.xname, log.hostname)}: no entries")
        for entry in log.entries:
            icon = {"Critical": ":red_circle:", "Warning": ":large_yellow_circle:"}.get(
                entry.severity or "", ":white_circle:"
            )
            lines.append(
                f"{icon} {report.who(log.xname, log.hostname)} {report.escape(entry.created or '?')} "
                f"{report.escape(report.clip(entry.message, 300))}"
            )
            rows.append(
                [log.xname, log.hostname, entry.id, entry.created, entry.severity, entry.message]
            )
    total = sum(len(log.entries) for log in logs)
    summary = f"{len(logs)} node{'s' if len(logs) != 1 else ''}: {total} event-log entries"
    failed = sum(1 for log in logs if unreadable(log))
    summary += f"; {failed} could not be read" if failed else ""
    return answer(
        f"hw sel {target}",
        summary,
        lines,
        csv_name="hw-sel.csv",
        header=("xname", "hostname", "id", "created", "severity", "message"),
        rows=rows,
        note=f"the latest {count} entries per node, newest first",
    )


def power(target: str, action: str) -> dict[str, Any]:
    from stat_bot.integrations.redfish import power_many

    action = action.lower()
    if action not in ACTIONS:
        raise MistakeError(f"the power action must be one of {', '.join(ACTIONS)}, not {action!r}")
    nodes = nodes_for(target)
    results = power_many(nodes, redfish_config(), action, fanout=fanout())
    lines, rows = [], []
    done = 0
    hostname = {n.xname: n.hostname for n in nodes}
    for result in results:
        name = report.who(result.xname, hostname.get(result.xname))
        was = result.power_state or "?"
        if not result.ok:
            why = unreadable(result) or result.reason or "not done"
            if unreadable(result) is None and result.reason:
                why = result.reason
            lines.append(f":black_circle: {name}: {report.escape(why)}")
        elif action == "status":
            done += 1
            icon = ":large_green_circle:" if was == "On" else ":white_circle:"
            lines.append(f"{icon} {name}: {report.escape(was)}")
        else:
            done += 1
            what = (
                f"{result.reset_type} sent (was {was})"
                if result.reset_type
                else result.reason or f"was {was}"
            )
            lines.append(f":white_check_mark: {name}: {report.escape(what)}")
        rows.append([result.xname, was, result.ok, result.reset_type, result.reason])
    count = len(results)
    noun = f"{count} node{'s' if count != 1 else ''}"
    if action == "status":
        on = sum(1 for r in results if r.power_state == "On")
        summary = f"{noun}: {on} on, {sum(1 for r in results if r.power_state == 'Off')} off"
        unread = count - done
        summary += f", {unread} could not be read" if unread else ""
    else:
        summary = f"power {action} on {noun}: {done} done"
        summary += f", {count - done} not done" if count - done else ""
    return answer(
        f"hw power {target} {action}",
        summary,
        lines,
        csv_name="hw-power.csv",
        header=("xname", "power_state_before", "ok", "reset_type", "reason"),
        rows=rows,
        note="a BMC changes the power state a few seconds after the request"
        if action != "status"
        else "",
    )


COMMANDS: dict[str, tuple[int, Callable[..., dict[str, Any]]]] = {
    "inventory": (1, inventory),
    "firmware": (1, firmware),
    "sel": (2, sel),
    "power": (2, power),
}
USAGE = "usage: hw.py inventory|firmware TARGET | sel TARGET COUNT | power TARGET ACTION"


def main(argv: Sequence[str]) -> int:
    if not argv or argv[0] not in COMMANDS:
        print(USAGE, file=sys.stderr)
        return 2
    arity, command = COMMANDS[argv[0]]
    args = list(argv[1:])
    if len(args) != arity:
        print(USAGE, file=sys.stderr)
        return 2
    try:
        result = command(*args)
    except MistakeError as error:
        result = report.mistake(str(error))
    except HwError as error:
        print(f"hw {argv[0]}: {error}", file=sys.stderr)
        return 1
    print(json.dumps(result, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
