"""The handoff's pieces that need no peer: ISO weeks, the Monday 09:00 schedule in
TIMEZONE, the PNG chart, percentiles, and the Slack text's escaping."""

from __future__ import annotations

import io
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from matplotlib.image import imread

from stat_bot.jobs.config_file import load_config
from stat_bot.jobs.schedules import next_due
from stat_bot.oncall import handoff
from stat_bot.oncall.png_chart import stacked_bars
from stat_bot.oncall.stats import alert_stats, percentile
from stat_bot.oncall.weeks import WeekError, iso_week, shifted, week_label
from stat_bot.queue.alert_model import Alert, AlertFiring, AlertStatus

ROOT = Path(__file__).resolve().parents[2]
BERLIN = ZoneInfo("Europe/Berlin")


def test_an_iso_week_runs_monday_to_monday_in_the_time_zone() -> None:
    week = iso_week("2026-W48", BERLIN)
    start = datetime.fromtimestamp(week.start, BERLIN)
    assert (start.isoformat(), week.end - week.start) == ("2026-11-23T00:00:00+01:00", 7 * 86400)
    assert [d.day for d in week.days()] == [23, 24, 25, 26, 27, 28, 29]
    assert shifted("2026-W01", -1, BERLIN) == "2025-W52"
    assert shifted("2026-W53", 1, BERLIN) == "2027-W01"
    assert week_label(week.start, BERLIN) == "2026-W48"


@pytest.mark.parametrize("bad", ["2026-48", "W48", "2026-W00", "2025-W53", "2026-W48x"])
def test_a_malformed_week_says_how_to_write_it(bad: str) -> None:
    with pytest.raises(WeekError) as caught:
        iso_week(bad, BERLIN)
    assert "W" in str(caught.value)


def test_the_weekly_schedule_is_monday_nine_in_the_sites_time_zone() -> None:
    configs = load_config(ROOT / "job_configs.py")
    (schedule,) = [s for s in configs.schedules() if s.key == "oncall.weekly-handoff"]
    assert schedule.spec.cron == "0 9 * * 1"
    # Wednesday 2 Dec 2026 noon in Berlin -> Monday 7 Dec 09:00 Berlin (08:00 UTC)
    now = datetime(2026, 12, 2, 12, 0, tzinfo=BERLIN).timestamp()
    due = datetime.fromtimestamp(next_due(schedule.spec.cron, BERLIN, now), BERLIN)
    assert due.isoformat() == "2026-12-07T09:00:00+01:00"
    # across the spring clock change: still 09:00 local (07:00 UTC in summer time)
    spring = datetime(2027, 3, 25, 12, 0, tzinfo=BERLIN).timestamp()
    after = datetime.fromtimestamp(next_due(schedule.spec.cron, BERLIN, spring), ZoneInfo("UTC"))
    assert after.isoformat() == "2027-03-29T07:00:00+00:00"


def test_the_png_chart_draws_taller_bars_for_more_alerts() -> None:
    red, blue = (200, 0, 0), (0, 0, 200)
    data = stacked_bars(
        [{"critical": 2, "info": 2}, {"info": 1}], {"critical": red, "info": blue},
        ["critical", "info"], labels=["Mon 30", "Tue 01"], width=400, height=300,
    )  # fmt: skip
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    pixels = (imread(io.BytesIO(data), format="png")[:, :, :3] * 255).round().astype(int)
    assert pixels.shape[:2] == (300, 400)

    def heights(colour: tuple[int, int, int]) -> list[int]:
        """Per pixel column, how many pixels have this colour (a bar's height there)."""
        return [int(n) for n in (pixels == colour).all(axis=2).sum(axis=0)]

    blue, red_ = heights(blue), heights(red)
    # The bars: runs of columns with tall blue (the legend's swatches are a few pixels).
    bars: list[list[int]] = []
    for x, tall in enumerate(h > 20 for h in blue):
        if tall and bars and bars[-1][-1] == x - 1:
            bars[-1].append(x)
        elif tall:
            bars.append([x])
    assert len(bars) == 2, bars
    first, second = (sorted(blue[x] for x in bar)[len(bar) // 2] for bar in bars)
    assert 1.85 < first / second < 2.15  # 2 info, then 1 info (edges round to pixels)
    stacked = sorted(red_[x] for x in bars[0])[len(bars[0]) // 2]
    assert 0.9 < stacked / first < 1.1  # 2 critical stacked on the 2 info
    assert max(red_[x] for x in bars[1]) == 0


def test_percentiles_are_nearest_rank() -> None:
    assert percentile([5.0], 0.9) == 5.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.0
    assert percentile(list(map(float, range(1, 11))), 0.9) == 9.0


def alert(id_: int, title: str, severity: str = "critical") -> Alert:
    return Alert(
        id_, "alertmanager", f"f{id_}", title, "slurm", severity, {}, AlertStatus.FIRING,
        0.0, 0.0, None, 1, None, 0.0,
    )  # fmt: skip


def test_slack_text_escapes_outside_text_and_links_the_runbook() -> None:
    week = iso_week("2026-W48", BERLIN)
    hostile = alert(1, "<!channel> disk <http://evil|click>")
    stats = alert_stats(week, [hostile], [AlertFiring(1, week.start + 3600)])
    summary = handoff.Handoff(
        week=week, made_at=week.end, stats=stats,
        runbooks={1: handoff.Runbook("Disk <full>", "https://wiki.example/Disk", 3, 1)},
        incidents=[], failed_jobs=[], trac=None, trac_note="Trac is not configured (TRAC_URL).",
        sweep=None, sweep_at=None,
    )  # fmt: skip
    text = handoff.slack_text(summary)
    assert "<!channel>" not in text
    assert "<http://evil" not in text
    assert "&lt;!channel&gt;" in text
    assert (
        "runbook <https://wiki.example/Disk|Disk &lt;full&gt;> (3 helpful, 1 not helpful)" in text
    )
    plain = handoff.plain_text(summary)
    assert "runbook: Disk <full> https://wiki.example/Disk (3 helpful, 1 not helpful)" in plain
    html = handoff.html_text(summary)
    assert '<a href="https://wiki.example/Disk">Disk &lt;full&gt;</a>' in html
    assert "&lt;!channel&gt;" in html
