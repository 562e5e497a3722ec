"""stat_bot.integrations.slurm against a real slurmctld (tests/slurm_fixtures.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from stat_bot.integrations.slurm import (
    Slurm,
    SlurmError,
    SlurmUnavailableError,
    UnknownNodeError,
    parse_node_line,
    slurm_name,
)
from tests.slurm_fixtures import NODE_NAMES, SlurmCluster

pytestmark = pytest.mark.slurm


def test_all_nodes_idle_after_start(slurm_cluster: SlurmCluster) -> None:
    states = slurm_cluster.slurm().node_states()
    assert sorted(states) == NODE_NAMES
    assert all(state.base == "IDLE" and not state.drained for state in states.values())


def test_drain_sets_idle_drain_with_reason_and_resume_clears_it(
    slurm_cluster: SlurmCluster,
) -> None:
    slurm = slurm_cluster.slurm()
    slurm.drain(["nid000003"], "STAT#12: PSU 2: Critical")
    state = slurm.node_states(["nid000003"])["nid000003"]
    assert state.base == "IDLE"
    assert "DRAIN" in state.flags
    assert state.drained
    assert state.reason == "STAT#12: PSU 2: Critical"
    assert state.reason_user  # who drained it, as scontrol records
    others = slurm.node_states(["nid000002", "nid000004"])
    assert not any(s.drained for s in others.values())

    slurm.resume(["nid000003"])
    state = slurm.node_states(["nid000003"])["nid000003"]
    assert not state.drained
    assert state.reason == ""
    assert state.base == "IDLE"


def test_drain_many_nodes_at_once(slurm_cluster: SlurmCluster) -> None:
    slurm = slurm_cluster.slurm()
    slurm.drain(["nid000005", "nid000006"], "  STAT#3:   fans  ")
    states = slurm.node_states(["nid000005", "nid000006"])
    assert [s.reason for s in states.values()] == ["STAT#3: fans", "STAT#3: fans"]


def test_unknown_node_is_refused_before_anything_changes(slurm_cluster: SlurmCluster) -> None:
    slurm = slurm_cluster.slurm()
    with pytest.raises(UnknownNodeError) as caught:
        slurm.drain(["nid000001", "nid000099"], "STAT#1: x")
    assert caught.value.names == ["nid000099"]
    assert "Slurm does not know nid000099" in str(caught.value)
    assert not slurm.node_states(["nid000001"])["nid000001"].drained


def test_controller_down_is_said_in_words(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    conf = tmp_path / "slurm.conf"
    text = slurm_cluster.conf.read_text()
    # the same cluster, a port where nothing listens
    conf.write_text(text.replace(f"SlurmctldPort={slurm_cluster.ctld_port}", "SlurmctldPort=9"))
    slurm = Slurm("scontrol", {"SLURM_CONF": str(conf)})
    with pytest.raises(SlurmError, match=r"slurmctld\) does not answer"):
        slurm.node_states()


def test_no_scontrol_says_slurm_is_not_available(tmp_path: Path) -> None:
    slurm = Slurm(str(tmp_path / "no-scontrol"))
    assert not slurm.available()
    with pytest.raises(SlurmUnavailableError, match="Slurm is not available on this host"):
        slurm.drain(["nid000001"], "x")


def test_missing_slurm_conf_is_named_at_once(tmp_path: Path) -> None:
    slurm = Slurm("scontrol", {"SLURM_CONF": str(tmp_path / "nope.conf")})
    if not slurm.path():
        pytest.skip("scontrol is not installed")
    with pytest.raises(SlurmUnavailableError, match="does not exist"):
        slurm.node_states()


def test_no_slurm_conf_anywhere_is_named_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLURM_CONF", raising=False)
    monkeypatch.setattr("stat_bot.integrations.slurm.DEFAULT_CONFS", ("/nonexistent/slurm.conf",))
    slurm = Slurm("scontrol")
    if not slurm.path():
        pytest.skip("scontrol is not installed")
    with pytest.raises(SlurmUnavailableError, match="set SLURM_CONF"):
        slurm.node_states()


def test_parse_reason_with_equals_signs_and_later_fields() -> None:
    line = (
        "NodeName=nid000007 CPUTot=1 State=IDLE+DRAIN+NOT_RESPONDING Partitions=batch "
        "Reason=STAT#9: a=b c [root@2026-12-02T01:03:38] Comment=hello"
    )
    state = parse_node_line(line)
    assert state is not None
    assert (state.name, state.state, state.reason) == (
        "nid000007",
        "IDLE+DRAIN+NOT_RESPONDING",
        "STAT#9: a=b c",
    )
    assert state.reason_user == "root"
    assert state.fields["Comment"] == "hello"
    assert state.words == "IDLE+DRAIN+NOT_RESPONDING (STAT#9: a=b c)"
    assert parse_node_line("garbage") is None


def test_slurm_name_prefers_hostname_then_nid() -> None:
    assert slurm_name("nid000003", 3) == "nid000003"
    assert slurm_name(None, 12) == "nid000012"
    assert slurm_name(None, None) is None
