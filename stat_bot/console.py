"""A terminal chat with the local Slack: type as a Slack user, read what the bot posts.

Local mode's way in for someone without a Slack workspace: `stat-bot run`
offers it in its own terminal, and `stat-bot console` joins a running local
mode from another. Lines typed go to the emulator as if typed in Slack's
#general (`@stat-bot` becomes a real mention); everything posted, edited or
reacted to anywhere in the workspace is printed as it happens, Block Kit and
files rendered as text. Buttons (a guarded job's Confirm/Cancel) are numbered
as they appear, `[1] Confirm  [2] Cancel`, and `/click 1` clicks one, as Slack
would send it to the bot; selects (an incident's status, a role's Assign) are numbered
too and `/choose 3 monitoring` picks an option (or a user). `/incident ...` is sent as
the slash command, and `/react <emoji>` reacts to the last message shown.
"""

from __future__ import annotations

import contextlib
import re
import sys
import threading
import time
from collections.abc import Callable
from typing import IO, Any

from stat_bot.integrations.slack_emulator.client import EmulatorClient, EmulatorError
from stat_bot.report.notifiers import render_block

FILE_PREVIEW_LINES = 20
MENTION = re.compile(r"<@([UW][A-Z0-9]+)(?:\|[^>]*)?>")
HELP = """\
Type a message as you would in Slack's #general, for example:
  @stat-bot help
  @stat-bot system hello Ada
  @stat-bot status
Commands of this console:
  /dm <text>        send <text> to the bot as a direct message (no mention needed)
  /as <user> <text> send as another user (admin, guest, visitor)
  /channel <name>   post in another channel from now on
  /click <n> [user] click button [n] of a message above (as you, or as <user>)
  /choose <n> <option|user>  pick an option of select [n] (a status; a user to assign)
  /react <emoji>    react to the last message shown (:rotating_light: opens an incident)
  /incident <text>  the /incident slash command (opens an incident channel)
  /alert <firing|resolved> <AlertName> [label=value ...]
                    post as Alertmanager's Slack app would, in the current channel (a
                    channel in ONCALL_ALERT_CHANNELS makes it an alert)
  /help             this text
  /quit             leave (Ctrl-D too)"""


PAGING_BOT = "alertmanager"  # the console's paging tool: another app's bot user


def alertmanager_attachment(status: str, name: str, labels: dict[str, str]) -> dict[str, Any]:
    """One alert as Alertmanager's slack_configs post it: the default title
    (`[FIRING:1] NodeDown (x1000c0s0b0n0)`: the group's label values), colour, and the
    labels listed in the text the way common site templates do."""
    values = " ".join(labels.values())
    title = f"[{status.upper()}{':1' if status == 'firing' else ''}] {name}"
    title += f" ({values})" if values else ""
    lines = [f"*Alert:* {name}", "*Details:*"]
    lines += [f" • *{key}:* `{value}`" for key, value in sorted(labels.items())]
    return {
        "title": title,
        "text": "\n".join(lines),
        "fallback": title,
        "color": "danger" if status == "firing" else "good",
        "mrkdwn_in": ["fallback", "pretext", "text"],
    }


def readable(text: str, names: dict[str, str]) -> str:
    """Slack's `<@U123>` mentions as `@name`, the way Slack shows them."""
    return MENTION.sub(lambda m: f"@{names.get(m[1], m[1])}", text)


def happening(event: dict[str, Any], names: dict[str, str]) -> str | None:
    """What a feed event about the workspace (not a message) says, None for a message's."""
    who = names.get(event.get("user") or "", event.get("user") or "?")
    kind = event.get("kind")
    if kind == "channel_created":
        return f"{who} created the channel"
    if kind == "delete":
        return f"{who} deleted a message"
    if kind == "channel_archived":
        return f"{who} archived the channel"
    if kind == "topic":
        return f"{who} set the channel {event.get('which', 'topic')}: {event.get('value', '')}"
    if kind == "member_joined":
        joined = ", ".join(names.get(u, u) for u in event.get("users") or [])
        return f"{who} added {joined}"
    if kind == "view_opened":
        view = event.get("view") or {}
        return f"a form opened for {who}: {view.get('title', '')} ({view.get('callback_id', '')})"
    return None


def render(event: dict[str, Any], names: dict[str, str]) -> str:
    """One feed event as terminal lines: where, who, and the message as it reads."""
    channel = event.get("channel_name") or event.get("channel", "?")
    where = f"#{channel}" if not str(event.get("channel", "")).startswith("D") else "(DM)"
    said = happening(event, names)
    if said is not None or "message" not in event:
        return f"{where} {said or event.get('kind')}"
    message = event["message"]
    who = names.get(message.get("user") or "", message.get("user") or "?")
    thread = (
        "  ↳ " if message.get("thread_ts") and message.get("thread_ts") != message["ts"] else " "
    )
    kind = event.get("kind", "message")
    if kind == "reaction":
        reactor = names.get(event.get("user") or "", event.get("user") or "?")
        return f"{where}{thread}{reactor} reacted :{event.get('reaction')}:"
    if kind == "pin":
        pinner = names.get(event.get("user") or "", event.get("user") or "?")
        return f"{where}{thread}{pinner} pinned a message by {who}"
    body: list[str] = []
    blocks = message.get("blocks") or []
    if blocks and any(b.get("type") != "rich_text" for b in blocks):
        for block in blocks:
            body.extend(readable(line, names) for line in render_block(block))
    elif message.get("text"):
        body.extend(readable(str(message["text"]), names).splitlines())
    for attachment in message.get("attachments") or []:  # other apps' (a paging tool's)
        for key in ("pretext", "title", "text"):
            if attachment.get(key):
                body.extend(readable(str(attachment[key]), names).splitlines())
        for field in attachment.get("fields") or []:
            body.append(f"{field.get('title')}: {field.get('value')}")
    for file in message.get("files") or []:
        body.append(f"[file {file.get('name')}, {file.get('size', 0):,} bytes]")
        preview = str(file.get("preview") or "").splitlines()
        body.extend(preview[:FILE_PREVIEW_LINES])
        if len(preview) > FILE_PREVIEW_LINES:
            body.append(f"... ({len(preview) - FILE_PREVIEW_LINES} more lines)")
    edited = " (edited)" if kind == "edit" else ""
    if kind == "ephemeral":
        seer = event.get("ephemeral_to") or ""
        edited = f" (only visible to {names.get(seer, seer)})"
    head = f"{where}{thread}{who}{edited}:"
    if len(body) == 1 and len(body[0]) < 100:
        return f"{head} {body[0]}"
    return "\n".join([head, *("    " + line for line in body)])


class Console:
    """Reads lines from `stdin`, posts them, and prints the workspace's feed to `stdout`."""

    def __init__(
        self,
        client: EmulatorClient,
        *,
        stdin: IO[str] | None = None,
        stdout: IO[str] | None = None,
        user: str = "admin",
        channel: str = "general",
    ) -> None:
        self.client = client
        self.stdin = stdin or sys.stdin
        self.stdout = stdout or sys.stdout
        self.user = user
        self.channel = channel
        self.stop = threading.Event()
        self._paging_bot = False  # the console's paging bot user exists
        self._lock = threading.Lock()
        self._names: dict[str, str] = {}
        # Buttons seen so far, by the number shown: (channel, message ts, action_id, value).
        self._buttons: dict[int, tuple[str, str, str, str, str]] = {}
        self._last: tuple[str, str] | None = None  # the last message shown: /react

    def say(self, text: str) -> None:
        with self._lock:
            self.stdout.write(text + "\n")
            self.stdout.flush()

    def follow(
        self, *, since_now: bool = True, poll: float = 0.1, cursor: int | None = None
    ) -> None:
        """Print the feed until stopped (run on a thread), from `cursor` if given."""
        if cursor is None:
            cursor = self.client.feed_cursor() if since_now else 0
        while not self.stop.is_set():
            try:
                events, cursor = self.client.feed(cursor, wait=1.0)
            except OSError:
                if self.stop.wait(1.0):
                    return
                continue
            for event in events:
                self._learn(event)
                self.say(render(event, self._names) + self._number_buttons(event))
            if not events:
                self.stop.wait(poll)

    def _number_buttons(self, event: dict[str, Any]) -> str:
        """`[1] Confirm  [2] Cancel` under a message with buttons and selects, remembered
        for /click and /choose."""
        message = event.get("message") or {}
        if event.get("kind") in ("reaction", "pin"):
            return ""  # the message itself was shown, buttons numbered, when posted
        if message.get("ts"):
            self._last = (str(event.get("channel")), str(message.get("ts")))
        shown = []
        for block in message.get("blocks") or []:
            elements = list(block.get("elements") or []) if block.get("type") == "actions" else []
            if isinstance(block.get("accessory"), dict):
                elements.append(block["accessory"])
            for element in elements:
                kind = element.get("type")
                if kind not in ("button", "static_select", "users_select"):
                    continue
                number = len(self._buttons) + 1
                self._buttons[number] = (
                    str(event.get("channel")),
                    str(message.get("ts")),
                    str(element.get("action_id", "")),
                    str(element.get("value", "")),
                    str(kind),
                )
                if kind == "button":
                    label = (element.get("text") or {}).get("text", "?")
                elif kind == "static_select":
                    values = [str(o.get("value")) for o in element.get("options") or []]
                    label = "choose: " + "|".join(values)
                else:
                    label = (element.get("placeholder") or {}).get("text", "choose") + ": a user"
                shown.append(f"[{number}] {label}")
        if not shown:
            return ""
        return "\n    " + "  ".join(shown) + "   (type /click <n> or /choose <n> <option>)"

    def click(self, line: str) -> None:
        """`/click <n> [user]`: press a numbered button, as this console's user or another."""
        parts = line.split()
        if len(parts) not in (2, 3) or not parts[1].isdigit():
            self.say("usage: /click <n> [user]  (n: a button's number, shown as [n])")
            return
        number = int(parts[1])
        if number not in self._buttons:
            self.say(f"no button [{number}] yet; buttons are numbered as they are shown")
            return
        channel, ts, action_id, value, kind = self._buttons[number]
        if kind != "button":
            self.say(f"[{number}] is a select: /choose {number} <option>")
            return
        user = parts[2] if len(parts) == 3 else self.user
        try:
            self.client.click(user, channel, ts, action_id, value=value)
        except Exception as error:
            self.say(f"(could not click: {error})")

    def choose(self, line: str) -> None:
        """`/choose <n> <option>`: pick an option of a numbered select (or a user to assign)."""
        parts = line.split()
        if len(parts) != 3 or not parts[1].isdigit():
            self.say("usage: /choose <n> <option>  (n: a select's number, shown as [n])")
            return
        number = int(parts[1])
        if number not in self._buttons or self._buttons[number][4] == "button":
            self.say(f"no select [{number}]; buttons are pressed with /click")
            return
        channel, ts, action_id, _, kind = self._buttons[number]
        choice = parts[2].removeprefix("@")
        try:
            if kind == "users_select":
                self.client.click(self.user, channel, ts, action_id, select_user=choice)
            else:
                self.client.click(self.user, channel, ts, action_id, option=choice)
        except Exception as error:
            self.say(f"(could not choose: {error})")

    def react(self, line: str) -> None:
        parts = line.split()
        if len(parts) != 2 or self._last is None:
            self.say("usage: /react <emoji>  (reacts to the last message shown)")
            return
        channel, ts = self._last
        try:
            self.client.react(self.user, channel, ts, parts[1].strip(":"))
        except Exception as error:
            self.say(f"(could not react: {error})")

    def alert(self, line: str) -> None:
        """Post as a paging tool's Slack app (the `alertmanager` bot user, made on first
        use) a message in Alertmanager's default slack_configs shape."""
        parts = line.split()[1:]
        labels = dict(p.split("=", 1) for p in parts[2:] if "=" in p)
        if (
            len(parts) < 2
            or parts[0] not in ("firing", "resolved")
            or len(labels) != len(parts) - 2
        ):
            self.say("usage: /alert <firing|resolved> <AlertName> [label=value ...]")
            return
        try:
            if not self._paging_bot:
                with contextlib.suppress(EmulatorError):  # name_taken: made before
                    self.client.add_user(PAGING_BOT, is_bot=True, real_name="Alertmanager")
                self._paging_bot = True
            self.client.post(
                PAGING_BOT,
                self.channel,
                "",
                attachments=[alertmanager_attachment(parts[0], parts[1], labels)],
            )
        except Exception as error:
            self.say(f"(could not post the alert: {error})")

    def command(self, line: str) -> None:
        name, _, text = line.partition(" ")
        try:
            self.client.command(self.user, self.channel, name, text)
        except Exception as error:
            self.say(f"(could not send {name}: {error})")

    def _learn(self, event: dict[str, Any]) -> None:
        for user_id, name in (event.get("names") or {}).items():
            self._names[user_id] = name

    def run(self, on_quit: Callable[[], None] | None = None, *, since_now: bool = True) -> None:
        """The read-post loop; returns on /quit or end of input."""
        # Where the feed ends now, read before the first line is posted so it shows too.
        cursor = self.client.feed_cursor() if since_now else 0
        follower = threading.Thread(
            target=self.follow, kwargs={"cursor": cursor}, name="console-feed", daemon=True
        )
        follower.start()
        self.say(HELP)
        try:
            while not self.stop.is_set():
                line = self.stdin.readline()
                if not line:
                    break
                if not self.handle(line.strip()):
                    break
        finally:
            time.sleep(0.2)  # let the last replies print
            self.stop.set()
            if on_quit is not None:
                on_quit()

    def handle(self, line: str) -> bool:
        """Act on one typed line; False to quit."""
        if not line:
            return True
        if line in ("/quit", "/exit"):
            return False
        if line == "/help":
            self.say(HELP)
            return True
        user, channel, text = self.user, self.channel, line
        if line.startswith("/dm "):
            channel, text = "dm", line[4:]
        elif line.startswith("/as "):
            parts = line.split(maxsplit=2)
            if len(parts) < 3:
                self.say("usage: /as <user> <text>")
                return True
            user, text = parts[1], parts[2]
        elif line == "/click" or line.startswith("/click "):
            self.click(line)
            return True
        elif line == "/choose" or line.startswith("/choose "):
            self.choose(line)
            return True
        elif line == "/react" or line.startswith("/react "):
            self.react(line)
            return True
        elif line == "/incident" or line.startswith("/incident "):
            self.command(line)
            return True
        elif line == "/alert" or line.startswith("/alert "):
            self.alert(line)
            return True
        elif line.startswith("/channel "):
            self.channel = line.split(maxsplit=1)[1].lstrip("#")
            self.say(f"(posting in #{self.channel} from now on)")
            return True
        elif line.startswith("/"):
            self.say(f"unknown console command {line.split()[0]!r}; /help lists them")
            return True
        try:
            self.client.post(user, channel, text)
        except Exception as error:
            self.say(f"(could not post: {error})")
        return True
