"""Incident templates and incident.json: what loads, and what is refused with which words."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from stat_bot.incidents.templates import SHIPPED, TEMPLATES, TemplateError, load


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    copy = tmp_path / "templates"
    shutil.copytree(SHIPPED, copy)
    return copy


def test_the_shipped_folder_loads_with_janus_roles_and_statuses() -> None:
    templates = load(None)
    assert [r.key for r in templates.roles] == ["commander", "comms", "tech"]
    assert [r.name for r in templates.roles] == [
        "Incident commander",
        "Communications liaison",
        "Technical lead",
    ]
    assert templates.statuses == ("investigating", "identified", "monitoring", "resolved")
    assert templates.resolved_status == "resolved"
    assert set(templates.blocks) == set(TEMPLATES)


def test_render_fills_placeholders_and_escapes_what_people_typed() -> None:
    templates = load(None)
    blocks = templates.render(
        "update",
        {"text": "<!channel> & <https://evil|click>", "incident_id": 4, "status": "identified"},
    )
    text = json.dumps(blocks)
    assert "&lt;!channel&gt; &amp; &lt;https://evil|click&gt;" in text
    assert "Incident 4 is *identified*" in text
    raw = templates.render(
        "update",
        {"text": "<@U1> took it", "incident_id": 4, "status": "x"},
        raw=frozenset({"text"}),
    )
    assert "<@U1> took it" in json.dumps(raw)


def test_an_unknown_placeholder_is_refused_naming_file_and_placeholder(folder: Path) -> None:
    (folder / "digest.json").write_text(
        json.dumps([{"type": "section", "text": {"type": "mrkdwn", "text": "{incident_idd}"}}])
    )
    with pytest.raises(TemplateError) as error:
        load(folder)
    assert "digest.json" in str(error.value)
    assert "{incident_idd}" in str(error.value)
    assert "{incident_id}" in str(error.value)  # and says what it may use


@pytest.mark.parametrize(
    ("name", "content", "words"),
    [
        ("control.json", "{not json", "not valid JSON (line 1"),
        ("control.json", '{"type": "section"}', "JSON list of Block Kit blocks"),
        (
            "incident.json",
            '{"roles": [], "statuses": ["a", "b"]}',
            '"roles" must be a non-empty list',
        ),
        (
            "incident.json",
            '{"roles": [{"key": "Bad Key", "name": "n", "description": "d"}], "statuses": ["a", "b"]}',
            "role key 'Bad Key'",
        ),
        (
            "incident.json",
            '{"roles": [{"key": "ic", "name": "n", "description": "d"}], "statuses": ["a", "b"], "resolved_status": "c"}',
            "resolved_status 'c' is not one of",
        ),
        (
            "incident.json",
            '{"roles": [{"key": "ic", "name": "n", "description": "d"}], "statuses": ["a"]}',
            "at least two statuses",
        ),
    ],
)
def test_broken_files_are_refused_in_words(
    folder: Path, name: str, content: str, words: str
) -> None:
    (folder / name).write_text(content)
    with pytest.raises(TemplateError) as error:
        load(folder)
    assert name in str(error.value)
    assert words in str(error.value)


def test_a_missing_file_or_folder_says_where_to_copy_from(folder: Path, tmp_path: Path) -> None:
    (folder / "role_dm.json").unlink()
    with pytest.raises(TemplateError, match=r"role_dm\.json is missing: copy it from"):
        load(folder)
    with pytest.raises(TemplateError, match="is not a folder"):
        load(tmp_path / "nowhere")


def test_roles_and_statuses_are_found_by_key_or_name() -> None:
    templates = load(None)
    assert templates.role("Commander").key == "commander"  # type: ignore[union-attr]
    assert templates.role("technical lead").key == "tech"  # type: ignore[union-attr]
    assert templates.role("janitor") is None
    assert templates.status("Monitoring") == "monitoring"
    assert templates.status("fixed") is None


def test_plain_broadcasts_are_defused_and_plain_text_is_left_as_typed() -> None:
    templates = load(None)
    blocks = templates.render(
        "update", {"text": "ping @channel and @here", "incident_id": 1, "status": "x"}
    )
    text = json.dumps(blocks, ensure_ascii=False)
    assert "@\u2060channel" in text
    assert "@\u2060here" in text
    assert "@channel" not in text
    header = templates.render("control", {"incident_id": "A&B <7>" + "x" * 300, "status": "s"})[0]
    assert header["text"]["text"].startswith("Incident A&B <7>x")  # plain_text: no &amp;
    assert len(header["text"]["text"]) == 150  # Slack's limit for a header
