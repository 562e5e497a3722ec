"""The dashboard's charts as SVG made on the server: no chart library, no script, no CDN.

Two questions people ask at a glance: "how busy has it been, and how much failed?"
(jobs per hour, stacked by status) and "which jobs are slow?" (run time per job
type). Colours come from classes in app.css (the CSP forbids inline styles);
every bar carries its numbers in `data-*` attributes and a `<title>` tooltip, so
what the picture shows can be read (and tested) exactly.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from markupsafe import Markup, escape

from stat_bot.jobs.model import JobStatus
from stat_bot.queue.base import JobTiming
from stat_bot.views import seconds as _seconds

# Stacking order, bottom up: what ended well first, what is still to come on top.
STATUS_ORDER = (
    JobStatus.SUCCEEDED,
    JobStatus.FAILED,
    JobStatus.TIMED_OUT,
    JobStatus.LOST,
    JobStatus.CANCELLED,
    JobStatus.RUNNING,
    JobStatus.QUEUED,
)
HOUR = 3600.0


def seconds(value: float) -> str:
    """A run time as people read it: `40 ms` for quick jobs, else as the CLI says it."""
    return f"{value * 1000:.0f} ms" if value < 1 else _seconds(value)


def _attrs(**values: object) -> str:
    """`name="value"` pairs, escaped; `data_x` becomes `data-x`."""
    return " ".join(f'{k.replace("_", "-")}="{escape(str(v))}"' for k, v in values.items())


def _nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 5 x 10^n at or above `value`: a round top for an axis."""
    if value <= 0:
        return 1.0
    step = 1.0
    while step * 10 <= value:
        step *= 10
    while step > value:
        step /= 10
    for factor in (1, 2, 5, 10):
        if step * factor >= value:
            return step * factor
    return step * 10


@dataclass(frozen=True)
class HourlyCounts:
    """Jobs created in each hour of a window, by status (the jobs' status now)."""

    starts: list[float]  # each hour's start, oldest first
    counts: list[Counter[JobStatus]]

    @classmethod
    def build(cls, timings: Iterable[JobTiming], now: float, hours: int) -> HourlyCounts:
        last = (now // HOUR) * HOUR
        starts = [last - (hours - 1 - i) * HOUR for i in range(hours)]
        counts: list[Counter[JobStatus]] = [Counter() for _ in starts]
        for t in timings:
            index = int((t.created_at - starts[0]) // HOUR)
            if 0 <= index < hours:
                counts[index][t.status] += 1
        return cls(starts, counts)

    def totals(self) -> Counter[JobStatus]:
        total: Counter[JobStatus] = Counter()
        for c in self.counts:
            total.update(c)
        return total


def jobs_per_hour_svg(data: HourlyCounts, tz: ZoneInfo) -> Markup:
    """Stacked bars, one per hour; a legend with each status's total."""
    width, height, left, bottom, top = 720, 240, 36, 28, 10
    plot_w, plot_h = width - left - 8, height - bottom - top
    peak = max((sum(c.values()) for c in data.counts), default=0)
    ceiling = _nice_ceiling(peak)
    slot = plot_w / max(1, len(data.starts))
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height + 24}" role="img" '
        f'aria-labelledby="jph-title" {_attrs(data_chart="jobs-per-hour")}>',
        '<title id="jph-title">Jobs per hour by status</title>',
        f'<line class="axis" x1="{left}" y1="{top + plot_h}" x2="{width - 8}" y2="{top + plot_h}"/>',
        f'<text class="tick" x="{left - 4}" y="{top + 4}" text-anchor="end">{ceiling:g}</text>',
        f'<text class="tick" x="{left - 4}" y="{top + plot_h}" text-anchor="end">0</text>',
    ]
    for i, (start, counts) in enumerate(zip(data.starts, data.counts, strict=True)):
        x = left + i * slot + 1
        y = top + plot_h
        label = datetime.fromtimestamp(start, tz).strftime("%H:%M")
        for status in STATUS_ORDER:
            n = counts.get(status, 0)
            if not n:
                continue
            h = plot_h * n / ceiling
            y -= h
            attrs = _attrs(
                data_status=status, data_hour=datetime.fromtimestamp(start, tz).isoformat(),
                data_count=n,
            )  # fmt: skip
            parts.append(
                f'<rect class="bar s-{status}" x="{x:.1f}" y="{y:.1f}" width="{slot - 2:.1f}" '
                f'height="{h:.1f}" {attrs}><title>{escape(label)}: {n} {status}</title></rect>'
            )
        if i % 3 == 0:
            parts.append(
                f'<text class="tick" x="{x + slot / 2:.1f}" y="{top + plot_h + 16}" '
                f'text-anchor="middle">{escape(label)}</text>'
            )
    totals = data.totals()
    x = left
    for status in STATUS_ORDER:
        n = totals.get(status, 0)
        parts.append(
            f'<g class="legend" {_attrs(data_status=status, data_total=n)}>'
            f'<rect class="s-{status}" x="{x}" y="{height + 8}" width="10" height="10"/>'
            f'<text x="{x + 14}" y="{height + 17}">{status} {n}</text></g>'
        )
        x += 96
    parts.append("</svg>")
    return Markup("".join(parts))


@dataclass(frozen=True)
class TypeTiming:
    """How long one job type's finished jobs ran."""

    job: str
    count: int
    median: float
    longest: float


def run_times(timings: Iterable[JobTiming]) -> list[TypeTiming]:
    """Per job type: runs, median and longest run time; slowest median first."""
    by_type: dict[str, list[float]] = defaultdict(list)
    for t in timings:
        if t.started_at is not None and t.finished_at is not None:
            by_type[f"{t.namespace} {t.job_type}"].append(max(0.0, t.finished_at - t.started_at))
    found = [
        TypeTiming(job, len(values), statistics.median(values), max(values))
        for job, values in by_type.items()
    ]
    return sorted(found, key=lambda t: (-t.median, t.job))


def run_time_svg(types: list[TypeTiming]) -> Markup:
    """A bar per job type: the median run time, and a whisker out to the longest run."""
    row, label_w, width = 26, 180, 720
    plot_w = width - label_w - 150
    height = max(1, len(types)) * row + 8
    longest = max((t.longest for t in types), default=0.0) or 1.0
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-labelledby="rt-title" {_attrs(data_chart="run-time")}>',
        '<title id="rt-title">Run time per job type: median bar, longest whisker</title>',
    ]
    for i, t in enumerate(types):
        y = 4 + i * row
        bar = max(1.0, plot_w * t.median / longest)
        reach = plot_w * t.longest / longest
        attrs = _attrs(
            data_type=t.job, data_count=t.count, data_median=f"{t.median:.3f}",
            data_longest=f"{t.longest:.3f}",
        )  # fmt: skip
        text = f"median {seconds(t.median)}, longest {seconds(t.longest)}, {t.count} runs"
        parts.append(
            f'<g class="timing" {attrs}><title>{escape(t.job)}: {escape(text)}</title>'
            f'<text class="label" x="{label_w - 6}" y="{y + 15}" text-anchor="end">'
            f"{escape(t.job)}</text>"
            f'<line class="whisker" x1="{label_w}" y1="{y + 10}" x2="{label_w + reach:.1f}" '
            f'y2="{y + 10}"/>'
            f'<rect class="bar timing-bar" x="{label_w}" y="{y + 3}" width="{bar:.1f}" '
            f'height="14"/>'
            f'<text class="value" x="{label_w + max(bar, reach) + 6:.1f}" y="{y + 15}">'
            f"{escape(seconds(t.median))} ({t.count})</text></g>"
        )
    if not types:
        parts.append('<text class="empty" x="10" y="20">no finished jobs in this window</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def severity_class(severity: str) -> str:
    """The CSS class of a severity's colour (app.css): known ones by name, others grey."""
    known = ("critical", "error", "warning", "info")
    return f"sev-{severity.lower()}" if severity.lower() in known else "sev-other"


def alerts_per_day_svg(per_day: list[tuple[Any, dict[str, int]]], severities: list[str]) -> Markup:
    """Alert firings per day, stacked by severity (the order given, bottom up); a legend
    with each severity's total. Numbers in `data-*` attributes, as the jobs chart."""
    width, height, left, bottom, top = 720, 240, 36, 28, 10
    plot_w, plot_h = width - left - 8, height - bottom - top
    peak = max((sum(c.values()) for _, c in per_day), default=0)
    ceiling = _nice_ceiling(peak)
    slot = plot_w / max(1, len(per_day))
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height + 24}" role="img" '
        f'aria-labelledby="apd-title" {_attrs(data_chart="alerts-per-day")}>',
        '<title id="apd-title">Alerts per day by severity</title>',
        f'<line class="axis" x1="{left}" y1="{top + plot_h}" x2="{width - 8}" y2="{top + plot_h}"/>',
        f'<text class="tick" x="{left - 4}" y="{top + 4}" text-anchor="end">{ceiling:g}</text>',
        f'<text class="tick" x="{left - 4}" y="{top + plot_h}" text-anchor="end">0</text>',
    ]
    totals: Counter[str] = Counter()
    for i, (day, counts) in enumerate(per_day):
        x = left + i * slot + 2
        y = top + plot_h
        label = day.strftime("%a %d")
        for severity in severities:
            n = counts.get(severity, 0)
            if not n:
                continue
            totals[severity] += n
            h = plot_h * n / ceiling
            y -= h
            attrs = _attrs(data_severity=severity, data_day=day.isoformat(), data_count=n)
            parts.append(
                f'<rect class="bar {severity_class(severity)}" x="{x:.1f}" y="{y:.1f}" '
                f'width="{slot - 4:.1f}" height="{h:.1f}" {attrs}>'
                f"<title>{escape(label)}: {n} {escape(severity)}</title></rect>"
            )
        parts.append(
            f'<text class="tick" x="{x + slot / 2:.1f}" y="{top + plot_h + 16}" '
            f'text-anchor="middle">{escape(label)}</text>'
        )
    x = left
    for severity in severities:
        n = totals.get(severity, 0)
        parts.append(
            f'<g class="legend" {_attrs(data_severity=severity, data_total=n)}>'
            f'<rect class="{severity_class(severity)}" x="{x}" y="{height + 8}" width="10" '
            f'height="10"/><text x="{x + 14}" y="{height + 17}">{escape(severity)} {n}</text></g>'
        )
        x += 110
    if not severities:
        parts.append(f'<text class="empty" x="{left + 10}" y="{top + 20}">no alerts fired</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
