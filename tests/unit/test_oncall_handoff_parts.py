"""The handoff's pieces that need no peer: ISO weeks, the Monday 09:00 schedule in
TIMEZONE, the PNG chart, percentiles, and the Slack text's escaping."""

from __future__ import annotations

import struct
import zlib
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

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


def png_rows(data: bytes) -> tuple[int, int, list[bytes]]:
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = struct.unpack(">II", data[16:24])
    idat = data.index(b"IDAT")
    (length,) = struct.unpack(">I", data[idat - 4 : idat])
    raw = zlib.decompress(data[idat + 4 : idat + 4 + length])
    stride = 1 + 3 * width
    return width, height, [raw[i * stride + 1 : (i + 1) * stride] for i in range(height)]


def test_the_png_chart_draws_taller_bars_for_more_alerts() -> None:
    red, blue = (200, 0, 0), (0, 0, 200)
    data = stacked_bars(
        [{"critical": 2, "info": 2}, {"info": 1}], {"critical": red, "info": blue},
        ["critical", "info"], width=40, height=60,
    )  # fmt: skip
    width, height, rows = png_rows(data)
    assert (width, height) == (40, 60)

    def column(x: int, colour: tuple[int, int, int]) -> int:
        return sum(1 for row in rows if row[3 * x : 3 * x + 3] == bytes(colour))

    assert column(14, blue) == 2 * column(24, blue) == 20  # first bar: 2 info, second: 1
    assert column(14, red) == column(14, blue)  # stacked: 2 critical above 2 info
    assert column(24, red) == 0


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
