"""bootstrap.py keeps `.venv` on the interpreter that runs it.

The benchmarks' figures depend on the Python build (BENCHMARKS.md, "The interpreter"), so
running bootstrap with another interpreter must not quietly reuse a `.venv` another one
made; and a `.venv` that could not be made again must not be lost or left half-made.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def bootstrap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """bootstrap.py loaded as a module, its `.venv` in tmp_path and its commands recorded."""
    spec = importlib.util.spec_from_file_location("bootstrap_under_test", ROOT / "bootstrap.py")
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    venv = tmp_path / ".venv"
    monkeypatch.setattr(module, "VENV", venv)
    monkeypatch.setattr(module, "BIN", venv / "bin")
    module.commands = []

    def run(*args: object, **kwargs: object) -> None:
        module.commands.append([str(a) for a in args])
        (venv / "bin").mkdir(parents=True, exist_ok=True)
        (venv / "bin" / "python").write_text("")
        (venv / "pyvenv.cfg").write_text(f"home = /x\nexecutable = {sys.executable}\n")

    monkeypatch.setattr(module, "run", run)
    return module


def made(venv: Path, executable: str) -> None:
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text("")
    (venv / "bin" / "marker").write_text("installed")
    (venv / "pyvenv.cfg").write_text(
        f"home = {Path(executable).parent}\ninclude-system-site-packages = false\n"
        f"version = 3.11.2\nexecutable = {executable}\ncommand = {executable} -m venv x\n"
    )


def test_a_venv_made_by_this_interpreter_is_kept(bootstrap: ModuleType) -> None:
    made(bootstrap.VENV, os.path.realpath(sys.executable))  # as `venv` writes it: resolved
    bootstrap.make_venv()
    assert bootstrap.commands == []
    assert (bootstrap.BIN / "marker").exists()


def test_a_venv_made_by_another_interpreter_is_made_again(
    bootstrap: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    made(bootstrap.VENV, "/opt/other-python/bin/python3.11")
    bootstrap.make_venv()
    assert bootstrap.commands == [[sys.executable, "-m", "venv", str(bootstrap.VENV)]]
    assert not (bootstrap.BIN / "marker").exists()  # nothing of the old one is kept
    err = capsys.readouterr().err
    assert "/opt/other-python/bin/python3.11" in err
    assert sys.executable in err


def test_no_venv_is_made(bootstrap: ModuleType) -> None:
    bootstrap.make_venv()
    assert bootstrap.commands == [[sys.executable, "-m", "venv", str(bootstrap.VENV)]]


def test_symlinks_name_the_same_interpreter(bootstrap: ModuleType, tmp_path: Path) -> None:
    real = tmp_path / "python3.11"
    real.write_text("")
    (tmp_path / "python3").symlink_to(real)
    assert bootstrap.same_interpreter(str(real), str(tmp_path / "python3"))
    assert not bootstrap.same_interpreter(str(real), sys.executable)


def test_a_venv_that_does_not_say_is_kept(bootstrap: ModuleType) -> None:
    """A pyvenv.cfg without `executable` (or none): no reason to throw the venv away."""
    (bootstrap.BIN).mkdir(parents=True)
    (bootstrap.BIN / "python").write_text("")
    assert bootstrap.made_by(bootstrap.VENV) is None
    bootstrap.make_venv()
    assert bootstrap.commands == []
    (bootstrap.VENV / "pyvenv.cfg").write_text("home = /usr/bin\nversion = 3.11.2\n")
    assert bootstrap.made_by(bootstrap.VENV) is None
    bootstrap.make_venv()
    assert bootstrap.commands == []


def test_a_venv_is_kept_when_bootstrap_runs_inside_it(
    bootstrap: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`.venv/bin/python bootstrap.py` from a `--copies` venv: its python is a plain file."""
    made(bootstrap.VENV, "/usr/bin/python3.11")
    monkeypatch.setattr(sys, "prefix", str(bootstrap.VENV))
    monkeypatch.setattr(sys, "executable", str(bootstrap.BIN / "python"))
    monkeypatch.setattr(sys, "_base_executable", str(bootstrap.BIN / "python"), raising=False)
    bootstrap.make_venv()
    assert bootstrap.commands == []
    assert (bootstrap.BIN / "marker").exists()


@pytest.fixture
def venv_fails(bootstrap: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    """`python -m venv` fails at ensurepip (no python3-venv) and apt-get cannot help."""

    def failing_venv(*args: object, **kwargs: object) -> None:
        (bootstrap.BIN).mkdir(parents=True)  # as `venv` does before ensurepip fails
        (bootstrap.BIN / "python").write_text("")
        raise subprocess.CalledProcessError(1, [str(a) for a in args])

    monkeypatch.setattr(bootstrap, "run", failing_venv)
    monkeypatch.setattr(bootstrap.shutil, "which", lambda name: None)  # no apt-get


@pytest.mark.usefixtures("venv_fails")
def test_the_old_venv_comes_back_when_the_new_one_cannot_be_made(bootstrap: ModuleType) -> None:
    made(bootstrap.VENV, "/opt/other-python/bin/python3.11")
    with pytest.raises(SystemExit, match="python3-venv"):
        bootstrap.make_venv()
    assert (bootstrap.BIN / "marker").read_text() == "installed"
    assert bootstrap.made_by(bootstrap.VENV) == "/opt/other-python/bin/python3.11"
    assert not bootstrap.VENV.with_name(".venv.old").exists()


@pytest.mark.usefixtures("venv_fails")
def test_nothing_half_made_is_left_when_no_venv_can_be_made(bootstrap: ModuleType) -> None:
    """Else the next run finds bin/python, takes the venv as made, and pip is missing."""
    with pytest.raises(SystemExit):
        bootstrap.make_venv()
    assert not bootstrap.VENV.exists()
