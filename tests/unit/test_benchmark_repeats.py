"""`bench --repeat N`: each target judged over the runs, by the median or by the worst run.

The benchmarks themselves are not run by the suite (they need a quiet machine); what is
checked here is the arithmetic that turns N runs into one verdict, since a wrong median or
a floor judged by the median would print PASS for a path that missed its target.
"""

from __future__ import annotations

import pytest

from benchmarks.__main__ import parse
from benchmarks.common import Figure, Repeats


def runs(*values: float, **kw: object) -> Repeats:
    repeats = Repeats()
    for value in values:
        repeats.add("queue", [Figure("ratio", value, "", 0.6, digits=2, **kw)])  # type: ignore[arg-type]
    return repeats


def test_a_target_is_judged_by_the_median_of_the_runs() -> None:
    ((name, judged, how),) = runs(0.55, 0.7, 0.62).summary()
    assert (name, how, judged.value, judged.verdict) == ("queue", "median", 0.62, "PASS")
    assert "0.55, 0.62, 0.70" in judged.note
    assert "spread 0.15" in judged.note


def test_one_bad_run_in_three_does_not_decide_a_median() -> None:
    ((_, judged, _),) = runs(0.3, 0.61, 0.65).summary()
    assert judged.passed is True


def test_a_floor_is_judged_by_the_worst_run() -> None:
    ((_, judged, how),) = runs(0.9, 0.59, 0.8, worst=True).summary()
    assert (how, judged.value, judged.verdict) == ("worst", 0.59, "MISS")


def test_the_worst_of_a_lower_is_better_figure_is_its_highest() -> None:
    repeats = Repeats()
    for value in (0.8, 1.4, 0.9):
        repeats.add("latency", [Figure("over bare", value, " ms", 1.0, False, 2, worst=True)])
    ((_, judged, _),) = repeats.summary()
    assert (judged.value, judged.verdict) == (1.4, "MISS")


def test_figures_without_a_target_are_not_judged() -> None:
    repeats = Repeats()
    repeats.add("queue", [Figure("jobs/s", 3000, "/s"), Figure("ratio", 0.7, "", 0.6)])
    assert [f.label for _, f, _ in repeats.summary()] == ["ratio"]


def test_repeat_must_be_at_least_one(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse(["queue", "--repeat", "0"])
    assert exited.value.code == 2
    assert "--repeat must be 1 or more" in capsys.readouterr().err
