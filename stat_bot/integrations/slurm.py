"""Slurm through `scontrol`: read node states, drain and resume nodes.

    slurm = Slurm(scontrol="scontrol", env={"SLURM_CONF": "/etc/slurm/slurm.conf"})
    states = slurm.node_states(["nid000003"])   # {"nid000003": NodeState("IDLE", ...)}
    slurm.drain(["nid000003"], "STAT#12: PSU 2: Critical")
    slurm.resume(["nid000003"])

Why the command line and not a library: `scontrol` is what every Slurm site has, in
the version its controller speaks (pyslurm must match the site's libslurm exactly,
and slurmrestd is rarely run). 22.05 has no `--json`, so `scontrol -o show node`
(one line a node) is parsed here.

Node names in Slurm are hostnames (or nids): `slurm_name(hostname, nid)` says which
name the inventory's node has. Every failure is a SlurmError whose message says what
happened in words (no scontrol, unknown node, controller down), so a job can print it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

DEFAULT_TIMEOUT = 30.0
# Where scontrol looks for slurm.conf without SLURM_CONF (Debian/EL builds; configless
# clients' cache). Without any of them scontrol retries for 60 s before giving up.
DEFAULT_CONFS = (
    "/etc/slurm/slurm.conf",
    "/etc/slurm-llnl/slurm.conf",
    "/run/slurm/conf/slurm.conf",
)
# scontrol prints `Reason=<text> [<user>@<time>]`: the bracket ends the free text.
REASON = re.compile(r"(?:^|\s)Reason=(?P<text>.*?) \[(?P<user>[^@\]\s]*)@(?P<time>[^\]]*)\]")
# Flags in State=IDLE+DRAIN+NOT_RESPONDING that mean the node takes no new jobs.
DRAIN_FLAGS = ("DRAIN", "DRAINING", "DRAINED")


class SlurmError(RuntimeError):
    """scontrol failed; the message says why in words and what to do about it."""


class SlurmUnavailableError(SlurmError):
    """There is no scontrol here (or no usable slurm.conf): Slurm actions cannot run."""


class UnknownNodeError(SlurmError):
    """Slurm does not know one or more of the nodes; `names` are those."""

    def __init__(self, message: str, names: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.names = list(names)


@dataclass(frozen=True)
class NodeState:
    """One node as `scontrol -o show node` reports it."""

    name: str
    state: str  # IDLE+DRAIN, ALLOCATED, DOWN+NOT_RESPONDING...
    reason: str = ""  # without scontrol's [user@time] suffix
    reason_user: str = ""
    reason_time: str = ""
    fields: Mapping[str, str] = field(default_factory=dict)

    @property
    def base(self) -> str:
        """The state without its flags: IDLE, ALLOCATED, MIXED, DOWN..."""
        return self.state.split("+", 1)[0]

    @property
    def flags(self) -> tuple[str, ...]:
        return tuple(self.state.split("+")[1:])

    @property
    def drained(self) -> bool:
        """Drained or draining: Slurm starts no new job on it."""
        return any(flag in DRAIN_FLAGS for flag in self.flags) or self.base in DRAIN_FLAGS

    @property
    def down(self) -> bool:
        return self.base == "DOWN" or "DOWN" in self.flags

    @property
    def words(self) -> str:
        """`IDLE+DRAIN (STAT#12: PSU 2: Critical)`: for before/after lines in reports."""
        return f"{self.state} ({self.reason})" if self.reason else self.state


def slurm_name(hostname: str | None, nid: int | None = None) -> str | None:
    """The name Slurm knows a node by: its hostname, else `nid000012` from its nid."""
    if hostname:
        return hostname
    if nid is not None:
        return f"nid{nid:06d}"
    return None


def parse_node_line(line: str) -> NodeState | None:
    """One line of `scontrol -o show node` as a NodeState (None for a line that is not one)."""
    line = line.strip()
    if not line.startswith("NodeName="):
        return None
    reason = REASON.search(line)
    head = line[: reason.start()] if reason else line
    tail = line[reason.end() :] if reason else ""
    fields: dict[str, str] = {}
    for word in (head + " " + tail).split():
        key, sep, value = word.partition("=")
        if sep:
            fields[key] = value
    if reason is None and "Reason=" in line:  # a reason without [user@time]: to the end
        fields["Reason"] = line.split("Reason=", 1)[1].strip()
    return NodeState(
        name=fields.get("NodeName", ""),
        state=fields.get("State", "UNKNOWN"),
        reason=reason.group("text").strip() if reason else fields.get("Reason", ""),
        reason_user=reason.group("user") if reason else "",
        reason_time=reason.group("time") if reason else "",
        fields=fields,
    )


class Slurm:
    """The site's Slurm, reached through `scontrol` with `env` (SLURM_CONF...) added."""

    def __init__(
        self,
        scontrol: str = "scontrol",
        env: Mapping[str, str] | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.scontrol = scontrol or "scontrol"
        self.env = dict(env or {})
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"Slurm(scontrol={self.scontrol!r})"

    def _environ(self) -> dict[str, str]:
        return {**os.environ, **self.env}

    def path(self) -> str | None:
        """Where scontrol is (None: not on this host)."""
        return shutil.which(self.scontrol, path=self._environ().get("PATH"))

    def available(self) -> bool:
        """Whether scontrol is here: the site runs Slurm on this host, drain can work."""
        return self.path() is not None

    def unavailable_reason(self, action: str = "drain and resume need") -> str | None:
        """Why Slurm cannot be used here, in words; None when it can (as far as we can tell)."""
        if self.path() is None:
            return (
                f"Slurm is not available on this host (no {self.scontrol}); {action} scontrol "
                "and the site's slurm.conf: install slurm-client, or set SLURM_SCONTROL to its path"
            )
        conf = self._environ().get("SLURM_CONF", "").strip()
        if conf and not os.path.isfile(conf):
            # scontrol would retry for 60 s before saying so
            return f"SLURM_CONF={conf} does not exist: point it at the site's slurm.conf"
        if not conf and not any(os.path.isfile(path) for path in DEFAULT_CONFS):
            return (
                f"Slurm is not set up on this host (no slurm.conf in {DEFAULT_CONFS[0]}); "
                "set SLURM_CONF to the cluster's slurm.conf"
            )
        return None

    def _run(self, args: Sequence[str]) -> subprocess.CompletedProcess[str]:
        reason = self.unavailable_reason()
        if reason:
            raise SlurmUnavailableError(reason)
        try:
            return subprocess.run(
                [self.scontrol, *args],
                capture_output=True,
                text=True,
                env=self._environ(),
                timeout=self.timeout,
                check=False,
            )
        except FileNotFoundError:
            raise SlurmUnavailableError(
                self.unavailable_reason() or f"{self.scontrol} cannot be run"
            ) from None
        except subprocess.TimeoutExpired:
            raise SlurmError(
                f"scontrol {' '.join(args[:2])} did not answer in {self.timeout:g} s: "
                "is slurmctld up and reachable from this host?"
            ) from None

    def _failed(self, result: subprocess.CompletedProcess[str], doing: str) -> SlurmError:
        text = (result.stderr or result.stdout).strip()
        last = text.splitlines()[-1] if text else f"exit status {result.returncode}"
        if "Unable to contact slurm controller" in text or "Connection refused" in text:
            return SlurmError(
                f"cannot {doing}: the Slurm controller (slurmctld) does not answer ({last}); "
                "check that it runs and that SLURM_CONF names this cluster's slurm.conf"
            )
        if "Invalid node name" in text or "not found" in text:
            return UnknownNodeError(f"cannot {doing}: Slurm does not know that node ({last})")
        if "Access/permission denied" in text or "Invalid user" in text:
            return SlurmError(
                f"cannot {doing}: Slurm refused ({last}); drain and resume need a Slurm "
                "operator or admin (SlurmUser, root, or AdminLevel=Operator in sacctmgr)"
            )
        return SlurmError(f"cannot {doing}: {last}")

    def node_states(self, names: Iterable[str] | None = None) -> dict[str, NodeState]:
        """Each named node's state (all nodes for None). UnknownNodeError names any Slurm lacks."""
        result = self._run(["-o", "show", "node"])
        if result.returncode != 0:
            raise self._failed(result, "read node states")
        states = {}
        for line in result.stdout.splitlines():
            state = parse_node_line(line)
            if state is not None:
                states[state.name] = state
        if names is None:
            return states
        wanted = list(dict.fromkeys(names))
        missing = [name for name in wanted if name not in states]
        if missing:
            raise UnknownNodeError(
                f"Slurm does not know {', '.join(missing)}: Slurm names nodes by hostname "
                "(or nid); check the inventory's hostname column",
                missing,
            )
        return {name: states[name] for name in wanted}

    def _update(self, names: Sequence[str], words: Sequence[str], doing: str) -> None:
        result = self._run(["update", f"nodename={','.join(names)}", *words])
        if result.returncode != 0:
            raise self._failed(result, doing)

    def drain(self, names: Sequence[str], reason: str) -> None:
        """Drain the nodes: running jobs finish, no new ones start; `reason` is shown by sinfo -R.

        Unknown names are refused (UnknownNodeError) before anything changes.
        """
        reason = " ".join(reason.split())
        if not reason:
            raise SlurmError("a drain needs a reason (Slurm refuses one without)")
        if names:
            self.node_states(names)
            self._update(names, ["state=drain", f"reason={reason}"], f"drain {','.join(names)}")

    def resume(self, names: Sequence[str]) -> list[str]:
        """Return the drained (or down) ones of the nodes to service; Slurm clears the reason.

        Slurm refuses to resume a node that is neither ("Invalid node state"), so those
        are left as they are; the names resumed are returned.
        """
        if not names:
            return []
        states = self.node_states(names)
        chosen = [name for name, state in states.items() if state.drained or state.down]
        if chosen:
            self._update(chosen, ["state=resume"], f"resume {','.join(chosen)}")
        return chosen
