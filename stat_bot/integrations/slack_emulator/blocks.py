"""Block Kit checks: the limits real Slack refuses with `invalid_blocks`.

A report that renders fine against a lenient fake and is then refused in
production (a section over 3,000 characters, an 11th field) is the bug this
catches early. Only the common block types are checked in depth.
"""

from __future__ import annotations

import json
from typing import Any

from stat_bot.integrations.slack_emulator.workspace import MAX_BLOCKS, SlackError

KNOWN_TYPES = frozenset(
    {
        "actions",
        "context",
        "divider",
        "file",
        "header",
        "image",
        "input",
        "markdown",
        "rich_text",
        "section",
        "table",
        "video",
    }
)


def parse_blocks(value: Any, limit: int = MAX_BLOCKS) -> list[dict[str, Any]] | None:
    """`blocks` as sent (a list, or the JSON string form bodies carry), checked; None if absent.

    `limit`: 50 in a message, 100 in a modal.
    """
    if value is None or value == "":
        return None
    if isinstance(value, str | bytes):
        try:
            value = json.loads(value)
        except ValueError:
            raise SlackError("invalid_blocks_format", "blocks is not valid JSON") from None
    if not isinstance(value, list):
        raise SlackError("invalid_blocks_format", "blocks must be a JSON array")
    if len(value) > limit:
        raise SlackError("invalid_blocks", f"{len(value)} blocks, at most {limit}")
    for index, block in enumerate(value):
        _check_block(block, f"/blocks/{index}")
    return value


def _fail(problem: str, pointer: str) -> SlackError:
    return SlackError("invalid_blocks", f"{problem} [json-pointer:{pointer}]")


def _check_text(obj: Any, pointer: str, limit: int, plain_only: bool = False) -> None:
    if not isinstance(obj, dict) or obj.get("type") not in ("plain_text", "mrkdwn"):
        raise _fail("must be a text object (plain_text or mrkdwn)", pointer)
    if plain_only and obj["type"] != "plain_text":
        raise _fail("must be plain_text", pointer)
    text = obj.get("text")
    if not isinstance(text, str) or not text:
        raise _fail("text must be a non-empty string", f"{pointer}/text")
    if len(text) > limit:
        raise _fail(f"must be at most {limit} characters, got {len(text)}", f"{pointer}/text")


def _check_block(block: Any, pointer: str) -> None:
    if not isinstance(block, dict) or "type" not in block:
        raise _fail("a block must be an object with a type", pointer)
    kind = block["type"]
    if kind not in KNOWN_TYPES:
        raise _fail(f"unknown block type {kind!r}", f"{pointer}/type")
    if len(str(block.get("block_id", ""))) > 255:
        raise _fail("block_id must be at most 255 characters", f"{pointer}/block_id")
    if kind == "section":
        if "text" not in block and "fields" not in block:
            raise _fail("a section needs text or fields", pointer)
        if "text" in block:
            _check_text(block["text"], f"{pointer}/text", 3000)
        fields = block.get("fields", [])
        if not isinstance(fields, list) or len(fields) > 10:
            raise _fail("fields must be a list of at most 10 text objects", f"{pointer}/fields")
        for i, item in enumerate(fields):
            _check_text(item, f"{pointer}/fields/{i}", 2000)
    elif kind == "header":
        _check_text(block.get("text"), f"{pointer}/text", 150, plain_only=True)
    elif kind == "context":
        elements = block.get("elements")
        if not isinstance(elements, list) or not 1 <= len(elements) <= 10:
            raise _fail("context needs 1 to 10 elements", f"{pointer}/elements")
        for i, element in enumerate(elements):
            if isinstance(element, dict) and element.get("type") in ("plain_text", "mrkdwn"):
                _check_text(element, f"{pointer}/elements/{i}", 3000)
    elif kind == "actions":
        elements = block.get("elements")
        if not isinstance(elements, list) or not 1 <= len(elements) <= 25:
            raise _fail("actions needs 1 to 25 elements", f"{pointer}/elements")
    elif kind == "markdown":
        text = block.get("text")
        if not isinstance(text, str) or not text or len(text) > 12000:
            raise _fail("markdown text must be 1 to 12000 characters", f"{pointer}/text")
