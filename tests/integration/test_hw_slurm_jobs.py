"""`hw drain` / `hw resume` / `hw slurm`: workspace/hw/slurm_cmd.py against a real slurmctld."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.slurm_fixtures import SlurmCluster

pytestmark = pytest.mark.slurm
ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "workspace" / "hw" / "slurm_cmd.py"


@pytest.fixture
def inventory(tmp_path: Path) -> Path:
    """Four nodes of chassis x1000c0 as nid000001-4, and one with no hostname or nid."""
    lines = ["xname,bmc,hostname,nid,system"]
    for n in range(4):
        slot, node = divmod(n, 2)
        lines.append(f"x1000c0s{slot}b0n{node},127.0.0.1:1,nid{n + 1:06d},{n + 1},n{n}")
    lines.append("x1000c1s0b0n0,127.0.0.1:2,,,")
    path = tmp_path / "inventory.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def run(cluster: SlurmCluster | None, inventory: Path, *args: str, **extra: str):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM", "HW_"))}
    env.update({"HW_INVENTORY": str(inventory), **extra})
    if cluster is not None:
        env.update(cluster.env)
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=SCRIPT.parent,
        timeout=120,
    )


def test_drain_a_slot_then_resume_it_reporting_before_and_after(
    slurm_cluster: SlurmCluster, inventory: Path
) -> None:
    done = run(slurm_cluster, inventory, "drain", "x1000c0s1", "STAT#12:", "PSU", "2:", "Critical")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "Drained nid[000003-000004] in Slurm (STAT#12: PSU 2: Critical):"
    assert lines[1].startswith("x1000c0s1b0n0 (nid000003): IDLE")
    assert lines[1].endswith("-> IDLE+DRAIN+NOT_RESPONDING (STAT#12: PSU 2: Critical)")
    states = slurm_cluster.slurm().node_states()
    assert [n for n, s in states.items() if s.drained] == ["nid000003", "nid000004"]

    shown = run(slurm_cluster, inventory, "state", "x1000c0s1b0n1")
    assert "x1000c0s1b0n1 (nid000004): IDLE+DRAIN" in shown.stdout

    back = run(slurm_cluster, inventory, "resume", "x1000c0")
    assert back.returncode == 0, back.stderr
    out = back.stdout.splitlines()
    assert out[0] == "Resumed nid[000003-000004] in Slurm:"
    assert "(STAT#12: PSU 2: Critical) -> IDLE" in out[1]
    assert out[-1] == "left as they are (not drained): nid[000001-000002]"
    assert not any(s.drained for s in slurm_cluster.slurm().node_states().values())


def test_resume_of_nodes_not_drained_changes_nothing(
    slurm_cluster: SlurmCluster, inventory: Path
) -> None:
    done = run(slurm_cluster, inventory, "resume", "nid000001")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "Nothing to resume: nid000001 not drained nor down in Slurm"


def test_mistakes_are_one_line_and_change_nothing(
    slurm_cluster: SlurmCluster, inventory: Path
) -> None:
    """Answered in the asker's thread (exit 0, stdout), not failures for tech support."""
    unknown = run(slurm_cluster, inventory, "drain", "x1000c7", "why")
    assert unknown.returncode == 0
    assert unknown.stdout.startswith(":warning: not in the inventory")
    nameless = run(slurm_cluster, inventory, "drain", "x1000c1", "why")
    assert nameless.returncode == 0
    assert "no hostname or nid in the inventory for x1000c1s0b0n0" in nameless.stdout
    no_reason = run(slurm_cluster, inventory, "drain", "x1000c0s0b0n0")
    assert no_reason.returncode == 2
    assert "a drain needs a reason" in no_reason.stderr
    assert not any(s.drained for s in slurm_cluster.slurm().node_states().values())


def test_without_scontrol_it_says_slurm_is_not_available(inventory: Path, tmp_path: Path) -> None:
    done = run(
        None, inventory, "drain", "x1000c0s0b0n0", "why", SLURM_SCONTROL=str(tmp_path / "nope")
    )
    assert done.returncode == 0
    assert done.stdout.startswith(":warning: Slurm is not available on this host (no ")


def test_without_inventory_it_says_what_to_set(tmp_path: Path) -> None:
    done = run(None, tmp_path / "x.csv", "resume", "all", HW_INVENTORY="")
    assert done.returncode == 0
    assert done.stdout.startswith(":warning: HW_INVENTORY is not set")
