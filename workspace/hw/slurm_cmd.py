"""The `hw` namespace's Slurm actions: drain and resume the nodes a target selects.

    python3 slurm_cmd.py drain TARGET REASON...
    python3 slurm_cmd.py resume TARGET
    python3 slurm_cmd.py state TARGET

Like every workspace script it knows nothing of STAT bot's service: the inventory
comes from HW_INVENTORY, scontrol from SLURM_SCONTROL (default `scontrol`) and the
cluster from SLURM_CONF, as Slurm's own clients read it. Slurm knows nodes by
hostname (or nid), so each selected node's inventory hostname is what is drained.

It prints each node's state before and after, so the report shows what changed.
A mistake (a target outside the inventory, no inventory, no Slurm on this host, a
node Slurm does not know) is answered in the asker's thread: one `:warning:` line on
stdout and exit status 0, like the other hw commands, not a failure for tech
support. Slurm failing (controller down, permission refused) is a failure: one line
on stderr and exit status 1 (2 for a wrong call).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence

from stat_bot.hardware.inventory import InventoryError, Node
from stat_bot.hardware.targets import TargetError, fold, select_from, unusable
from stat_bot.integrations.slurm import (
    NodeState,
    Slurm,
    SlurmError,
    SlurmUnavailableError,
    UnknownNodeError,
    slurm_name,
)

USAGE = "usage: slurm_cmd.py drain TARGET REASON... | resume TARGET | state TARGET"


class RefusedError(Exception):
    """What the person asked cannot be done; the message says why and what to do."""


def nodes_for(target: str, env: Mapping[str, str]) -> list[Node]:
    path = env.get("HW_INVENTORY", "").strip()
    try:
        return select_from(path, target)
    except TargetError as error:
        raise RefusedError(str(error)) from None
    except InventoryError as error:
        raise RefusedError(unusable(path, error)) from None


def slurm_names(nodes: Sequence[Node]) -> dict[str, Node]:
    """Slurm name -> node; refused when a node has neither hostname nor nid."""
    names: dict[str, Node] = {}
    nameless = []
    for node in nodes:
        name = slurm_name(node.hostname, node.nid)
        if name is None:
            nameless.append(node.xname)
        else:
            names[name] = node
    if nameless:
        raise RefusedError(
            f"no hostname or nid in the inventory for {fold(nameless)}: Slurm knows nodes by "
            "hostname, so add the hostname column for them"
        )
    return names


def slurm_from(env: Mapping[str, str]) -> Slurm:
    extra = {key: env[key] for key in ("SLURM_CONF", "PATH") if env.get(key)}
    return Slurm(env.get("SLURM_SCONTROL", "").strip() or "scontrol", extra)


def state_line(node: Node, before: NodeState, after: NodeState | None = None) -> str:
    line = f"{node.label}: {before.words}"
    if after is not None:
        line += f" -> {after.words}"
    return line


def run(argv: Sequence[str], env: Mapping[str, str]) -> tuple[int, str]:
    """(exit status, text for stdout or stderr)."""
    if len(argv) < 2 or argv[0] not in ("drain", "resume", "state"):
        return 2, USAGE
    action, target, words = argv[0], argv[1], argv[2:]
    reason = " ".join(" ".join(words).split())
    if action == "drain" and not reason:
        return 2, "a drain needs a reason: `hw drain TARGET REASON...`, e.g. `PSU 2 failed`"
    if action != "drain" and words:
        return 2, USAGE
    try:
        names = slurm_names(nodes_for(target, env))
        slurm = slurm_from(env)
        before = slurm.node_states(names)
        if action == "state":
            lines = [state_line(names[name], state) for name, state in before.items()]
            return 0, "\n".join([f"{len(lines)} nodes in Slurm:", *lines])
        if action == "drain":
            slurm.drain(list(names), reason)
            head = f"Drained {fold(names)} in Slurm ({reason})"
        else:
            resumed = slurm.resume(list(names))
            if not resumed:
                return 0, f"Nothing to resume: {fold(names)} not drained nor down in Slurm"
            head = f"Resumed {fold(resumed)} in Slurm"
            names = {name: names[name] for name in resumed}
        after = slurm.node_states(names)
    except (RefusedError, SlurmUnavailableError, UnknownNodeError) as error:
        return 0, f":warning: {error}"
    except SlurmError as error:
        return 1, str(error)
    lines = [state_line(names[name], before[name], after[name]) for name in names]
    if action == "resume" and len(names) < len(before):
        lines.append(f"left as they are (not drained): {fold(set(before) - set(names))}")
    return 0, "\n".join([head + ":", *lines])


def main() -> int:
    status, text = run(sys.argv[1:], os.environ)
    print(text, file=sys.stdout if status == 0 else sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
