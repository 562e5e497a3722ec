"""jobs/config_file.py: every long-running process re-reads job_configs.py when it changes."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from stat_bot.jobs.config import ConfigError, parse_config
from stat_bot.jobs.config_file import ConfigFile
from tests.conftest import write_configs


def config(*job_types: str) -> dict:
    return {"t": {"jobs": {j: {"run_args_template": "true"} for j in job_types}}}


def test_a_change_is_loaded_on_the_next_look(tmp_path: Path):
    path = write_configs(tmp_path / "job_configs.py", config("one"))
    configs = ConfigFile(path)
    first = configs.current()
    assert configs.current() is first  # unchanged: the same object, nothing loaded
    assert configs.version == 0
    with capture_logs() as logs:
        write_configs(path, config("one", "two"))
        assert configs.current().has_job("t", "two")
    assert configs.version == 1
    assert [e["event"] for e in logs] == ["job_configs.py changed; loaded again"]


def test_a_file_renamed_over_it_is_loaded(tmp_path: Path):
    path = write_configs(tmp_path / "job_configs.py", config("one"))
    configs = ConfigFile(path)
    new = write_configs(tmp_path / "new.py", config("two"))
    os.replace(new, path)  # as editors and deploy tools save
    assert configs.current().has_job("t", "two")
    assert not configs.current().has_job("t", "one")


def test_a_broken_edit_keeps_the_last_good_config_and_is_logged_once(tmp_path: Path):
    path = write_configs(tmp_path / "job_configs.py", config("one"))
    configs = ConfigFile(path)
    with capture_logs() as logs:
        write_configs(path, "raw_config = {\n")  # saved mid-edit
        for _ in range(3):
            assert configs.current().has_job("t", "one")
        write_configs(path, config("one") | {"bad name": {}})
        assert configs.current().has_job("t", "one")
    errors = [e for e in logs if e["log_level"] == "error"]
    assert len(errors) == 2  # once per broken version, not once per look
    assert errors[0]["event"].startswith("job_configs.py changed but does not load; keeping")
    assert errors[0]["problems"] == ["line 1: syntax error: '{' was never closed"]
    assert "bad name" in errors[1]["problems"][0]
    assert configs.version == 0
    write_configs(path, config("three"))
    assert configs.current().has_job("t", "three")
    assert configs.version == 1


def test_a_deleted_file_keeps_the_last_good_config(tmp_path: Path):
    path = write_configs(tmp_path / "job_configs.py", config("one"))
    configs = ConfigFile(path)
    path.unlink()
    with capture_logs() as logs:
        assert configs.current().has_job("t", "one")
    assert "no such file" in logs[0]["problems"][0]


def test_a_file_that_does_not_load_at_start_is_refused(tmp_path: Path):
    path = write_configs(tmp_path / "job_configs.py", "raw_config = 1\n")
    with pytest.raises(ConfigError, match="raw_config must be a dict"):
        ConfigFile(path)


def test_a_fixed_config_is_never_read_again(tmp_path: Path):
    configs = parse_config(config("one"))
    fixed = ConfigFile.fixed(configs)
    assert fixed.current() is configs


def test_threads_looking_at_once_load_a_change_once(tmp_path: Path):
    path = write_configs(tmp_path / "job_configs.py", config("one"))
    configs = ConfigFile(path)
    write_configs(path, config("two"))
    seen: list[bool] = []
    threads = [
        threading.Thread(target=lambda: seen.append(configs.current().has_job("t", "two")))
        for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == [True] * 8
    assert configs.version == 1
