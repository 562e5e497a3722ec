"""Alert messages that paging tools' Slack apps post, read into AlertEvents.

Many sites get their alerts in Slack before anything else: PagerDuty's Slack app posts
each incident into a channel (and edits that message as the incident is acknowledged
and resolved), Alertmanager's `slack_configs` post each alert group. The bot watches
the channels in ONCALL_ALERT_CHANNELS (bot/slack_alerts.py) and reads those messages
here, so the on-call view counts them like the webhooks' alerts.

Two shapes are read, from the message's text, its attachments (title, text, fallback,
pretext, fields) and its blocks (section text and fields, context):

- PagerDuty: a link to `https://<subdomain>.pagerduty.com/incidents/<ID>` and/or the
  incident number (`#1234`), a status word (Triggered, Acknowledged, Resolved; also in a
  "Status" field), the incident's title (the link's text or the attachment's title),
  and "Service" / "Urgency" / "Priority" fields or `Service: ...` lines. The incident
  (its id, else its number) is the fingerprint, so its resolution finds its firing.
- Alertmanager's default Slack template: a title `[FIRING:2] NodeDown (x1000c0s0b0n0
  critical)` or `[RESOLVED] NodeDown (...)` (the group's label values), a title_link to
  Alertmanager, colour danger/good; labels where the site's template lists them in the
  text (`• *xname:* `x1000c0s0b0n0``, `- xname = x1000c0s0b0n0`) or in fields. A Slack
  message carries an alert *group*, not each alert: the fingerprint is the group's title
  without its status, so `[RESOLVED] NodeDown (...)` resolves `[FIRING:1] NodeDown (...)`.

Anything else is not an alert: `read_alert` answers None (the listener logs it at debug
and goes on); a message can never make it raise.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from stat_bot.queue.alert_model import AlertEvent, AlertStatus

SOURCE = "slack"  # the alerts' source; the fingerprint says which tool posted it
MAX_FIELD = 1000
MAX_TEXT = 40_000  # Slack's own limit is 40,000 characters of text
MAX_PARTS = 200  # attachments, blocks, fields looked at: a real alert has a handful
MAX_LABELS = 50

PAGERDUTY_LINK = re.compile(
    r"https://(?P<host>[A-Za-z0-9-]{1,63}\.pagerduty\.com)/incidents/(?P<id>[A-Za-z0-9]{1,32})"
)
NUMBER = re.compile(r"(?:\[\s*#(?P<a>\d{1,10})\s*\]|#(?P<b>\d{1,10})\b)")
PD_STATUS = {
    "triggered": AlertStatus.FIRING,
    "reopened": AlertStatus.FIRING,
    "escalated": AlertStatus.FIRING,
    "resolved": AlertStatus.RESOLVED,
    "acknowledged": None,  # still firing; not a change the alert records
}
PD_STATUS_WORD = re.compile(r"\b(triggered|reopened|escalated|resolved|acknowledged)\b", re.I)
AM_TITLE = re.compile(r"^\s*\[(?P<status>FIRING|RESOLVED)(?::(?P<count>\d+))?\]\s*(?P<rest>.*)$")
SLACK_LINK = re.compile(r"<(?P<url>[^|>\s]+)(?:\|(?P<text>[^>]*))?>")
LABEL_LINE = re.compile(
    r"^[\s•\-*>]*\*?(?P<key>[A-Za-z_][A-Za-z0-9_ ]{0,40}?)\*?\s*(?::|=)\s*\*?\s*`?(?P<value>[^`\n]*?)`?\s*$"
)
LABEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
# The words of Alertmanager Slack templates that are not labels (`*Alert:*` is often the
# summary, so the alertname comes from an `alertname` line or the title's group).
TEMPLATE_WORDS = {
    "alert": "",
    "alertname": "alertname",
    "summary": "",
    "description": "",
    "details": "",
    "started": "",
    "ended": "",
    "start time": "",
    "end time": "",
    "value": "",
    "runbook": "",
    "graph": "",
    "labels": "",
    "annotations": "",
    "alerts firing": "",
    "alerts resolved": "",
}


@dataclass(frozen=True, slots=True)
class SlackAlert:
    """One alert read from a message: the event, the tool that posted it, and whether the
    message only acknowledged it (PagerDuty's Acknowledged: nothing to record)."""

    tool: str  # pagerduty | alertmanager
    event: AlertEvent | None
    status_word: str


def _unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _plain(text: str) -> str:
    """Slack markup to words: `<url|text>` -> text, `*bold*` -> bold."""
    text = SLACK_LINK.sub(lambda m: m["text"] if m["text"] is not None else m["url"], text)
    return _unescape(text).replace("*", "").replace("_", " ").strip()


def _texts(value: Any) -> Iterator[str]:
    """Every piece of text in a block or an attachment (bounded)."""
    if isinstance(value, str):
        yield value[:MAX_TEXT]
    elif isinstance(value, Mapping):
        for key in ("text", "title", "pretext", "fallback", "value"):
            if key in value:
                yield from _texts(value[key])
        for key in ("fields", "elements"):
            parts = value.get(key)
            if isinstance(parts, list):
                for part in parts[:MAX_PARTS]:
                    yield from _texts(part)


def _fields(message: Mapping[str, Any]) -> dict[str, str]:
    """Attachment fields ({title, value}) and `*Title*\\nvalue` block fields, by lower title."""
    found: dict[str, str] = {}
    for attachment in _list(message.get("attachments")):
        for field in _list(attachment.get("fields")):
            title, value = field.get("title"), field.get("value")
            if isinstance(title, str) and isinstance(value, str):
                found.setdefault(_plain(title).lower().rstrip(":"), _plain(value))
    for block in _list(message.get("blocks")):
        for field in _list(block.get("fields")):
            text = field.get("text") if isinstance(field.get("text"), str) else None
            if text and "\n" in text:
                title, value = text.split("\n", 1)
                found.setdefault(_plain(title).lower().rstrip(":"), _plain(value))
    return found


def _list(value: Any) -> list[Mapping[str, Any]]:
    if not isinstance(value, list):
        return []
    return [v for v in value[:MAX_PARTS] if isinstance(v, Mapping)]


def _all_text(message: Mapping[str, Any]) -> list[str]:
    texts = list(_texts(message.get("text") or ""))
    for part in (*_list(message.get("attachments")), *_list(message.get("blocks"))):
        texts.extend(_texts(part))
    return [t for t in texts if t]


def _clip(text: str) -> str:
    return " ".join(text.split())[:MAX_FIELD]


def read_alert(message: Mapping[str, Any], at_ts: str | None = None) -> SlackAlert | None:
    """The alert a paging tool's message reports, or None if it is not one we can read.

    `message` is a Slack message event (or the `message` of a `message_changed`); its `ts`
    is the alert's time, or `at_ts` when given (an edit's own time: a PagerDuty message
    edited to Resolved resolved the alert then, not when it was first posted).
    """
    try:
        at = float(str(at_ts or message.get("ts")))
    except ValueError:
        return None
    if not at > 0:
        return None
    try:
        return _alertmanager(message, at) or _pagerduty(message, at)
    except (TypeError, ValueError, AttributeError, KeyError):
        return None  # a shape we did not foresee: not an alert we can read


# Alertmanager ------------------------------------------------------------------------------
def _alertmanager(message: Mapping[str, Any], at: float) -> SlackAlert | None:
    titles = [
        a.get("title") for a in _list(message.get("attachments")) if isinstance(a.get("title"), str)
    ]
    titles += [
        b["text"].get("text")
        for b in _list(message.get("blocks"))
        if b.get("type") == "header" and isinstance(b.get("text"), Mapping)
    ]
    titles.append(message.get("text"))
    found = None
    for title in titles:
        if isinstance(title, str):
            found = AM_TITLE.match(_plain(title.split("\n", 1)[0])[:MAX_FIELD])
            if found:
                break
    if found is None:
        return None
    group = _clip(found["rest"]) or "alert"
    status = AlertStatus.FIRING if found["status"] == "FIRING" else AlertStatus.RESOLVED
    labels = _labels(message)
    name = labels.get("alertname") or group.split(" ", 1)[0]
    labels.setdefault("alertname", name)
    url = None
    for attachment in _list(message.get("attachments")):
        link = attachment.get("title_link")
        if isinstance(link, str) and link.startswith(("http://", "https://")):
            url = link[:MAX_FIELD]
            break
    digest = hashlib.sha256(group.encode()).hexdigest()[:16]
    event = AlertEvent(
        source=SOURCE,
        fingerprint=f"alertmanager:{digest}",
        title=group,
        status=status,
        at=at,
        service=labels.get("service") or labels.get("job") or "",
        severity=labels.get("severity") or "",
        labels=labels,
        url=url,
        starts_known=False,  # the message's time: a repeat while firing is a reminder
    )
    return SlackAlert("alertmanager", event, found["status"].lower())


def _labels(message: Mapping[str, Any]) -> dict[str, str]:
    """`name: value` lines of the text and attachments, and attachment fields, as labels."""
    labels: dict[str, str] = {}

    def add(key: str, value: str) -> None:
        key = key.strip()
        folded = key.lower()
        if folded in TEMPLATE_WORDS:
            key = TEMPLATE_WORDS[folded]
        elif key[:1].isupper() and key[1:].islower():
            key = folded  # "*Severity:*" in a template is the severity label
        value = _clip(_plain(value))
        if key and LABEL_NAME.match(key) and value and len(labels) < MAX_LABELS:
            labels.setdefault(key, value)

    for attachment in _list(message.get("attachments")):
        for field in _list(attachment.get("fields")):
            if isinstance(field.get("title"), str) and isinstance(field.get("value"), str):
                add(_plain(field["title"]).rstrip(":"), field["value"])
    texts = [message.get("text")] + [a.get("text") for a in _list(message.get("attachments"))]
    texts += [
        b["text"].get("text")
        for b in _list(message.get("blocks"))
        if isinstance(b.get("text"), Mapping)
    ]
    for text in texts:
        if not isinstance(text, str):
            continue
        for line in _unescape(text[:MAX_TEXT]).splitlines()[:MAX_PARTS]:
            line = SLACK_LINK.sub(lambda m: m["text"] if m["text"] is not None else m["url"], line)
            found = LABEL_LINE.match(line)
            if found:
                add(found["key"], found["value"])
    return labels


# PagerDuty ---------------------------------------------------------------------------------
def _pagerduty(message: Mapping[str, Any], at: float) -> SlackAlert | None:
    texts = _all_text(message)
    raw = "\n".join(texts)
    link = PAGERDUTY_LINK.search(raw)
    fields = _fields(message)
    status_text = fields.get("status", "")
    word = PD_STATUS_WORD.search(status_text) or PD_STATUS_WORD.search(_plain(raw))
    if word is None or (link is None and "pagerduty" not in raw.lower()):
        return None
    number_match = NUMBER.search(_plain(raw))
    number = (number_match["a"] or number_match["b"]) if number_match else None
    if link is None and number is None:
        return None
    status_word = word[1].lower()
    status = PD_STATUS[status_word]
    title = _pd_title(message, link, number)
    labels: dict[str, str] = {}
    if number:
        labels["number"] = number
    urgency = fields.get("urgency") or _line_value(raw, "urgency")
    if urgency:
        labels["urgency"] = _clip(urgency).lower()
    priority = fields.get("priority") or _line_value(raw, "priority")
    if priority:
        labels["priority"] = _clip(priority)
    service = fields.get("service") or _line_value(raw, "service") or ""
    incident = link["id"] if link else None
    fingerprint = f"pagerduty:{incident or '#' + str(number)}"
    event = None
    if status is not None:
        event = AlertEvent(
            source=SOURCE,
            fingerprint=fingerprint,
            title=title or f"PagerDuty incident {incident or '#' + str(number)}",
            status=status,
            at=at,
            service=_clip(service),
            severity=labels.get("priority") or labels.get("urgency") or "",
            labels=labels,
            url=link[0] if link else None,
            starts_known=False,
        )
    return SlackAlert("pagerduty", event, status_word)


def _line_value(text: str, key: str) -> str:
    for line in _plain(text).splitlines():
        found = re.match(rf"^\s*{key}\s*:\s*(.+)$", line, re.I)
        if found:
            return found[1].strip()
    return ""


def _pd_title(message: Mapping[str, Any], link: re.Match[str] | None, number: str | None) -> str:
    """The incident's title: the incident link's text, else the first attachment title or
    text line, without the status word and the incident number."""
    candidates: list[str] = []
    for text in _all_text(message):
        for found in SLACK_LINK.finditer(text):
            if link is not None and found["url"].startswith(link[0]) and found["text"]:
                candidates.insert(0, found["text"])
    for attachment in _list(message.get("attachments")):
        if isinstance(attachment.get("title"), str):
            candidates.append(attachment["title"])
    candidates.append(str(message.get("text") or ""))
    candidates.extend(str(a.get("fallback") or "") for a in _list(message.get("attachments")))
    for candidate in candidates:
        title = _plain(candidate.split("\n", 1)[0])
        title = re.sub(r"^\s*\[?\s*#\d+\s*\]?\s*[:\-\u2013]?\s*", "", title)
        title = re.sub(
            r"^\s*(?:incident\s+)?(triggered|reopened|escalated|resolved|acknowledged)\b"
            r"(?:\s+by\s+\S+)?\s*[:\-\u2013]?\s*",
            "",
            title,
            flags=re.I,
        )
        title = re.sub(r"^\s*\[?\s*#\d+\s*\]?\s*[:\-\u2013]?\s*", "", title)
        title = _clip(title)
        if title and not PAGERDUTY_LINK.fullmatch(title):
            return title
    return ""
