"""The `hw` namespace in local mode as a person and a hostile BMC meet it, through the bot.

Local mode (`stat-bot run --no-console`, its Redfish emulator and Slack emulator);
messages are posted to the local Slack as `admin`, and what the Slack emulator
receives from the bot is checked as Slack would get it: the raw text and blocks.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

from stat_bot.integrations.redfish_emulator import EmulatorControl
from stat_bot.integrations.slack_emulator import EmulatorClient
from tests.e2e.slack_service import message_text
from tests.e2e.test_local_mode import _start_local_mode
from tests.integration.test_hw_tasks import FORBIDDEN, hostile_bmc


def raw(message: dict[str, Any]) -> str:
    """Everything of a message Slack would parse: its text and every string in its blocks."""
    return json.dumps([message.get("text"), message.get("blocks")], ensure_ascii=False)


def test_mistakes_are_answered_and_a_hostile_bmc_cannot_notify_or_link(tmp_path: Path) -> None:
    service, err = _start_local_mode(tmp_path, TRAC_URL="http://127.0.0.1:9/stat")
    try:
        state = tmp_path / "var"
        control = EmulatorControl(json.loads((state / "local-redfish.json").read_text())["control"])
        slack = EmulatorClient(json.loads((state / "local-slack.json").read_text())["url"])
        slack.wait_for_connections(timeout=30)

        def ask(text: str, wanted: str) -> dict[str, Any]:
            asked = slack.post("admin", "general", f"@stat-bot {text}")
            return slack.wait_for_reply(
                *asked,
                lambda m: m["bot_id"] and wanted in message_text(m),
                timeout=90,
            )

        # A person's mistakes: each answered in the thread with what was wrong and the fix.
        mistakes = {
            "hw check x1000c0s0b0n9": "not in the inventory",
            "hw check x1000c0q0": "'q' after 'x1000c0' (chassis) is not allowed; expected s",
            "hw check nid99999": "not in the inventory",
            "hw check no-such-host": "`hw show` lists what it holds",
            "hw check x1000c0s0b0n0 x1000c0s1b0n0": "separate them with commas, not spaces",
            "hw check x[0-99999999]": "check the ranges",
            "hw chek x1000c0": "`hw check [target:target=all]`",
            "hw sel x1000c0s0b0n0 abc": "[count] must be a whole number",
            "hw power x1000c0s0b0n0 explode": "[action] must be one of on, off, restart",
            "hw sel all 100000": "not 100,000: e.g. `hw sel all 1000`",
        }
        for text, wanted in mistakes.items():
            assert "Traceback" not in message_text(ask(text, wanted)), text

        hostile_bmc(control)
        answers = [
            ask("hw check x1000c0s3b0n0", "1 node: 1 critical"),
            ask("hw sel x1000c0s3b0n0 1", "1 node: 1 event-log entries"),
            ask("hw inventory x1000c0s3b0n0", "1 node: 1 read"),
            ask("hw firmware x1000c0s[3-4]", "1 of 4 nodes differ"),
        ]
        for reply in answers:
            got = raw(reply)
            assert "&lt;!channel&gt; &lt;!here&gt; &lt;@U0ADMIN&gt; &lt;http://evil" in got
            for bad in FORBIDDEN:
                assert json.dumps(bad)[1:-1] not in got, (bad, got)
    finally:
        service.send_signal(signal.SIGTERM)
        assert service.wait(40) == 0
    assert "Traceback" not in err.read_text()
