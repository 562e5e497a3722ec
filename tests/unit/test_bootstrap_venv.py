"""bootstrap.py keeps `.venv` on the interpreter that runs it.

The benchmarks' figures depend on the Python build (an unoptimized source build spends
about a third more CPU on STAT bot's Python than Debian's python3), so running
bootstrap with another interpreter must not quietly reuse a `.venv` another one made.
"""

from __future__ import annotations

import importlib.util
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
    made(bootstrap.VENV, sys.executable)
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
