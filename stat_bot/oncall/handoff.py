"""The weekly on-call handoff: what the week brought, for whoever takes over.

Gathered from the queue (alerts and their firings, incidents, failed jobs, the last
hardware sweep), Trac (tickets opened and closed) and, at merge, the runbook index
(`runbooks`: alert id -> the runbook answer shown for it, with its rating). Rendered
three ways: Slack mrkdwn (outside text escaped), plain text, and HTML whose chart is a
PNG the mail carries inline (`cid:`), since mail clients do not show SVG.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from stat_bot.hardware.health import NodeHealth
from stat_bot.hardware.report import escape, link
from stat_bot.hardware.sweep import SweepDiff, compare
from stat_bot.integrations.trac import TracClient, TracError
from stat_bot.jobs.model import Job, JobStatus
from stat_bot.oncall import png_chart
from stat_bot.oncall.stats import AlertStats, alert_stats, colour, duration
from stat_bot.oncall.weeks import Week
from stat_bot.queue.base import Queue
from stat_bot.queue.incident_model import Incident

CHART_CID = "alerts-per-day@stat-bot"
FAILED = (JobStatus.FAILED, JobStatus.TIMED_OUT, JobStatus.LOST)
SWEEP_SCOPE = "all"  # the daily sweep's scope (job_configs.py, hw namespace)
SHOWN = 15  # incidents, failed jobs, tickets listed at most


class RunbookAnswer(Protocol):
    """The runbook section shown for an alert, and how people rated it: the queue's
    RunbookAnswerSummary (Queue.runbook_answers), or a plain Runbook in tests."""

    title: str
    url: str | None
    helpful: int
    not_helpful: int


@dataclass(frozen=True, slots=True)
class Runbook:
    """A plain RunbookAnswer (tests; the queue returns its own)."""

    title: str
    url: str | None
    helpful: int = 0
    not_helpful: int = 0


@dataclass(frozen=True, slots=True)
class TracWeek:
    opened: list[dict[str, str]]
    closed: list[dict[str, str]]
    url: str


@dataclass
class Handoff:
    week: Week
    made_at: float
    stats: AlertStats
    runbooks: Mapping[int, RunbookAnswer]
    incidents: list[Incident]
    failed_jobs: list[Job]
    trac: TracWeek | None
    trac_note: str  # why there is no Trac part (not configured, not answering)
    sweep: SweepDiff | None
    sweep_at: float | None
    notes: list[str] = field(default_factory=list)


def gather(
    queue: Queue,
    week: Week,
    *,
    trac: TracClient | None,
    runbooks: Mapping[int, RunbookAnswer] | None = None,
    now: float | None = None,
) -> Handoff:
    """Everything the handoff says about `week`."""
    alerts = queue.alerts_between(week.start, week.end)
    stats = alert_stats(week, alerts, queue.alert_firings(week.start, week.end))
    incidents = [
        i for i in queue.incidents(resolved_since=week.start, limit=500) if i.opened_at < week.end
    ]
    failed = [
        j
        for j in queue.jobs(statuses=FAILED, limit=1000)
        if j.finished_at is not None and week.start <= j.finished_at < week.end
    ]
    trac_week, trac_note = None, ""
    if trac is None:
        trac_note = "Trac is not configured (TRAC_URL): no tickets in this summary."
    else:
        first, last = (week.day_of(week.start), week.day_of(week.end - 1))
        span = f"{first.isoformat()}..{(last.fromordinal(last.toordinal() + 1)).isoformat()}"
        try:
            columns = ["id", "summary", "status", "priority"]
            opened = trac.query(columns=columns, order="id", time=span)
            closed = trac.query(columns=columns, order="id", status="closed", changetime=span)
            trac_week = TracWeek(opened, closed, trac.url)
        except TracError as error:
            trac_note = f"Trac did not answer: {error}"
    last = queue.last_sweep(SWEEP_SCOPE)
    diff, sweep_at = None, None
    if last is not None:
        previous = queue.last_sweep(SWEEP_SCOPE, before_id=last.id)
        before = [NodeHealth.from_dict(d) for d in previous.results] if previous else None
        diff = compare(before, [NodeHealth.from_dict(d) for d in last.results])
        sweep_at = last.finished_at
    return Handoff(
        week=week,
        made_at=queue.now() if now is None else now,
        stats=stats,
        runbooks=dict(
            queue.runbook_answers([f.alert.id for f in stats.frequent])
            if runbooks is None
            else runbooks
        ),
        incidents=incidents,
        failed_jobs=failed,
        trac=trac_week,
        trac_note=trac_note,
        sweep=diff,
        sweep_at=sweep_at,
    )


# what each rendering says, in one place -------------------------------------------------
def _fired(count: int) -> str:
    return "once" if count == 1 else f"{count} times"


def _when(at: float, h: Handoff) -> str:
    return datetime.fromtimestamp(at, h.week.tz).strftime("%a %d %b %H:%M")


def _title(h: Handoff) -> str:
    first = datetime.fromtimestamp(h.week.start, h.week.tz).strftime("%a %d %b %Y %H:%M")
    last = datetime.fromtimestamp(h.week.end, h.week.tz).strftime("%a %d %b %Y %H:%M")
    return f"On-call handoff: {h.week.label} ({first} to {last}, {h.week.tz.key})"


def _counts(pairs: list[tuple[str, int]]) -> str:
    return ", ".join(f"{name}: {n}" for name, n in pairs) or "none"


def _times(h: Handoff) -> str:
    s = h.stats
    ack = (
        f"median {duration(s.acknowledge[0])}, p90 {duration(s.acknowledge[1])}"
        if s.acknowledge
        else "none acknowledged"
    )
    res = (
        f"median {duration(s.resolve[0])}, p90 {duration(s.resolve[1])}"
        if s.resolve
        else "none resolved"
    )
    return f"Time to acknowledge: {ack}. Time to resolve: {res}."


def _rating(r: RunbookAnswer) -> str:
    return f"{r.helpful} helpful, {r.not_helpful} not helpful"


def _incident_line(i: Incident, h: Handoff) -> tuple[str, str]:
    if i.resolved_at is None:
        took = f"open for {duration(h.made_at - i.opened_at)}"
    else:
        took = f"resolved after {duration(i.resolved_at - i.opened_at)}"
    return f"#{i.id} {i.description}", f"opened {_when(i.opened_at, h)}, {took}"


def _job_line(j: Job, h: Handoff) -> str:
    at = _when(j.finished_at or j.created_at, h)
    return f"job {j.id} {j.namespace} {j.job_type}: {j.status} ({at})"


def _sweep_line(h: Handoff) -> str:
    if h.sweep is None or h.sweep_at is None:
        return "No hardware sweep recorded yet."
    changes = [
        f"{c.xname} {c.before.state if c.before else 'new'} -> {c.after.state}"
        for c in (h.sweep.new + h.sweep.changed + h.sweep.recovered)[:SHOWN]
    ]
    head = f"Last sweep ({SWEEP_SCOPE}, {_when(h.sweep_at, h)}): {h.sweep.summary()}"
    return head + (": " + "; ".join(changes) if changes else "")


def plain_text(h: Handoff) -> str:
    """The mail's text/plain part."""
    s = h.stats
    lines = [_title(h), ""]
    lines.append(f"Alerts fired {_fired(s.firings)}.")
    lines.append(f"By service: {_counts(s.by_service)}")
    lines.append(f"By severity: {_counts(s.by_severity)}")
    lines.append(_times(h))
    lines.append("Per day: " + ", ".join(f"{d:%a} {sum(c.values())}" for d, c in s.per_day))
    lines += ["", "Most frequent alerts:"]
    for n, f in enumerate(s.frequent, 1):
        lines.append(
            f"{n:2}. {f.alert.title} ({f.alert.service or 'no service'}, {f.alert.severity or 'no severity'}): {f.fired}x"
        )
        runbook = h.runbooks.get(f.alert.id)
        if runbook is not None:
            lines.append(
                f"    runbook: {runbook.title} {runbook.url or ''} ({_rating(runbook)})".rstrip()
            )
    if not s.frequent:
        lines.append("    none")
    lines += ["", f"Incidents ({len(h.incidents)}):"]
    lines += [f"  {a}: {b}" for a, b in (_incident_line(i, h) for i in h.incidents[:SHOWN])] or [
        "  none"
    ]
    lines += ["", f"Failed jobs ({len(h.failed_jobs)}):"]
    lines += [f"  {_job_line(j, h)}" for j in h.failed_jobs[:SHOWN]] or ["  none"]
    lines += ["", "Trac:"]
    if h.trac is None:
        lines.append(f"  {h.trac_note}")
    else:
        lines.append(f"  opened {len(h.trac.opened)}, closed {len(h.trac.closed)}")
        for kind, rows in (("opened", h.trac.opened), ("closed", h.trac.closed)):
            lines += [f"  {kind} #{t.get('id')} {t.get('summary', '')}" for t in rows[:SHOWN]]
    lines += ["", _sweep_line(h)]
    return "\n".join(lines) + "\n"


def slack_text(h: Handoff) -> str:
    """The channel's message: mrkdwn, everything from outside escaped."""
    s = h.stats
    e = escape
    lines = [f"*{e(_title(h))}*"]
    lines.append(
        f"*Alerts:* fired {_fired(s.firings)} · by service: {e(_counts(s.by_service))} · by severity: {e(_counts(s.by_severity))}"
    )
    lines.append(e(_times(h)))
    lines.append("*Per day:* " + ", ".join(f"{d:%a} {sum(c.values())}" for d, c in s.per_day))
    lines.append("*Most frequent alerts:*")
    for n, f in enumerate(s.frequent, 1):
        where = " · ".join(e(x) for x in (f.alert.service, f.alert.severity) if x)
        line = f"{n}. {e(f.alert.title)}{' (' + where + ')' if where else ''}: *{f.fired}x*"
        runbook = h.runbooks.get(f.alert.id)
        if runbook is not None:
            line += f" — runbook {link(runbook.url, runbook.title)} ({_rating(runbook)})"
        lines.append(line)
    if not s.frequent:
        lines.append("none")
    lines.append(f"*Incidents ({len(h.incidents)}):*")
    lines += [
        f"• {e(a)}: {e(b)}" for a, b in (_incident_line(i, h) for i in h.incidents[:SHOWN])
    ] or ["none"]
    lines.append(f"*Failed jobs ({len(h.failed_jobs)}):*")
    lines += [f"• {e(_job_line(j, h))}" for j in h.failed_jobs[:SHOWN]] or ["none"]
    if h.trac is None:
        lines.append(f"*Trac:* {e(h.trac_note)}")
    else:
        lines.append(f"*Trac:* opened {len(h.trac.opened)}, closed {len(h.trac.closed)}")
        for kind, rows in (("opened", h.trac.opened), ("closed", h.trac.closed)):
            lines += [
                f"• {kind} <{h.trac.url}/ticket/{int(t['id'])}|#{int(t['id'])}> {e(t.get('summary', ''))}"
                for t in rows[:SHOWN]
                if str(t.get("id", "")).isdigit()
            ]
    lines.append(f"*Hardware:* {e(_sweep_line(h))}")
    return "\n".join(lines)


def chart_png(h: Handoff) -> bytes:
    s = h.stats
    return png_chart.stacked_bars(
        [c for _, c in s.per_day],
        {name: colour(name) for name in s.severities},
        s.severities,
        labels=[f"{d:%a %d}" for d, _ in s.per_day],
    )


def html_text(h: Handoff, cid: str = CHART_CID) -> str:
    """The mail's HTML part; its chart is the PNG referenced by `cid`."""
    s = h.stats
    q = html.escape

    def rgb(name: str) -> str:
        return "#{:02x}{:02x}{:02x}".format(*colour(name))

    legend = " ".join(f'<span style="color:{rgb(n)}">&#9632;</span> {q(n)}' for n in s.severities)
    days = "".join(f"<td>{d:%a %d}<br><b>{sum(c.values())}</b></td>" for d, c in s.per_day)
    rows = []
    for n, f in enumerate(s.frequent, 1):
        runbook = h.runbooks.get(f.alert.id)
        rb = ""
        if runbook is not None:
            name = q(runbook.title)
            if runbook.url and runbook.url.startswith(("http://", "https://")):
                name = f'<a href="{q(runbook.url)}">{name}</a>'
            rb = f"{name} ({q(_rating(runbook))})"
        rows.append(
            f"<tr><td>{n}</td><td>{q(f.alert.title)}</td><td>{q(f.alert.service)}</td>"
            f"<td>{q(f.alert.severity)}</td><td>{f.fired}</td><td>{rb}</td></tr>"
        )

    def items(lines: list[str]) -> str:
        return (
            "<ul>" + "".join(f"<li>{q(x)}</li>" for x in lines) + "</ul>"
            if lines
            else "<p>none</p>"
        )

    if h.trac is None:
        trac = f"<p>{q(h.trac_note)}</p>"
    else:
        trac = f"<p>opened {len(h.trac.opened)}, closed {len(h.trac.closed)}</p>" + items(
            [
                f"{k} #{t.get('id')} {t.get('summary', '')}"
                for k, r in (("opened", h.trac.opened), ("closed", h.trac.closed))
                for t in r[:SHOWN]
            ]
        )
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{q(_title(h))}</title></head>
<body style="font-family:sans-serif">
<h2>{q(_title(h))}</h2>
<p>Alerts fired <b>{_fired(s.firings)}</b>. {q(_times(h))}</p>
<h3>Alerts per day</h3>
<img src="cid:{q(cid)}" alt="Alerts per day, stacked by severity" width="560" height="200">
<p>{legend}</p>
<table><tr>{days}</tr></table>
<h3>By service</h3><p>{q(_counts(s.by_service))}</p>
<h3>By severity</h3><p>{q(_counts(s.by_severity))}</p>
<h3>Most frequent alerts</h3>
<table border="1" cellpadding="4" cellspacing="0">
<tr><th>#</th><th>Alert</th><th>Service</th><th>Severity</th><th>Fired</th><th>Runbook</th></tr>
{"".join(rows) or '<tr><td colspan="6">none</td></tr>'}
</table>
<h3>Incidents ({len(h.incidents)})</h3>{items([f"{a}: {b}" for a, b in (_incident_line(i, h) for i in h.incidents[:SHOWN])])}
<h3>Failed jobs ({len(h.failed_jobs)})</h3>{items([_job_line(j, h) for j in h.failed_jobs[:SHOWN]])}
<h3>Trac</h3>{trac}
<h3>Hardware</h3><p>{q(_sweep_line(h))}</p>
</body></html>
"""
