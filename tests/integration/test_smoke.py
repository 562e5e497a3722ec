"""The README's promise: `stat-bot exec "system hello Ada"` prints `Hello Ada`."""

import subprocess

from tests.conftest import ROOT, STAT_BOT


def test_exec_system_hello_prints_greeting(tmp_path):
    env_state = {"STATE_DIR": str(tmp_path / "var"), "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [STAT_BOT, "exec", "system hello Ada"],
        cwd=ROOT,
        env=env_state,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "Hello Ada"
