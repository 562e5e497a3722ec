"""`hw check` with SSH set up: Redfish first, then the site's SSH checks on nodes that are on.

A real sshd on loopback (tests/sshd_fixtures.py) stands in for the nodes' operating
systems, the project's Redfish emulator for their BMCs; the checks file is the
test's own, so what it finds does not depend on this machine's load or disks.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import STAT_BOT
from tests.integration.test_hw_tasks import Site, answer, body, environment, made_site, run
from tests.redfish_fixtures import RedfishFleet
from tests.sshd_fixtures import SshServer

CHECKS = """\
checks:
  - name: scratch
    component: Disk /scratch
    command: echo 95
    judge: number
    text: "{component} {value}"
    unit: "%"
    warning_above: 90
"""
# Node -> the host its SSH checks reach: the sshd, the sshd by another name, an address
# nothing listens on, and a node the emulator has powered off (never asked over SSH).
HOSTS = {
    "x1000c0s0b0n0": "127.0.0.1",
    "x1000c0s0b0n1": "localhost",
    "x1000c0s3b0n0": "127.0.0.9",
    "x1000c0s2b0n1": "127.0.0.8",
}


@pytest.fixture
def site(tmp_path: Path, database_url: str) -> Iterator[Site]:
    with made_site(tmp_path, database_url) as made:
        yield made


def test_ssh_findings_join_redfish_for_nodes_that_are_on(
    redfish_fleet: RedfishFleet, sshd: SshServer, tmp_path: Path, site: Site
) -> None:
    inventory = tmp_path / "inventory.csv"
    with redfish_fleet.process.inventory.open(newline="") as source:
        rows = [row for row in csv.DictReader(source) if row["xname"] in HOSTS]
    with inventory.open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "hostname": HOSTS[row["xname"]]})
    workspace = tmp_path / "workspace"
    (workspace / "hw").mkdir(parents=True)
    (workspace / "hw" / "ssh_checks.yaml").write_text(CHECKS)
    env = environment(redfish_fleet, site)
    env.update(
        HW_INVENTORY=str(inventory),
        WORKSPACE_DIR=str(workspace),
        SSH_USER=sshd.user,
        SSH_KEY_FILE=str(sshd.key_file),
        SSH_PORT=str(sshd.port),
        SSH_KNOWN_HOSTS="off",
        SSH_TIMEOUT="15",
    )
    result = answer(run(env, STAT_BOT, "task", "hw-check", ",".join(HOSTS)))
    assert result["text"] == "4 nodes: 4 warning"
    text = body(result)
    assert "*x1000c0s0b0n0* (127.0.0.1): Disk /scratch 95%, warning above 90%" in text
    assert "*x1000c0s0b0n1* (localhost): Disk /scratch 95%, warning above 90%" in text
    assert "*x1000c0s3b0n0* (127.0.0.9): SSH: 127.0.0.9:" in text
    off = next(line for line in text.splitlines() if "*x1000c0s2b0n1*" in line)
    assert "Power state: Off" in off
    assert "SSH" not in off
    assert "SSH checks on 3 node(s) that are on" in text
    kept = site.queue().node_health(["x1000c0s0b0n0"])["x1000c0s0b0n0"]
    assert kept.state == "warning"
    assert kept.data["findings"][0]["component"] == "Disk /scratch"
