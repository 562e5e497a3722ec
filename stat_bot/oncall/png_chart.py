"""The handoff mail's chart: alerts per day, stacked by severity, as a PNG.

Mail clients do not render SVG (the dashboard's charts), so the mail carries a PNG,
drawn by matplotlib's Agg backend through its object API: no pyplot, so no global
figure state and no display is touched when a job draws it.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

DPI = 100
AXIS = (120, 120, 120)


def _rgb(colour: tuple[int, int, int]) -> tuple[float, float, float]:
    red, green, blue = colour
    return red / 255, green / 255, blue / 255


def stacked_bars(
    columns: Sequence[Mapping[str, int]],
    colours: Mapping[str, tuple[int, int, int]],
    order: Sequence[str],
    *,
    labels: Sequence[str] | None = None,
    width: int = 560,
    height: int = 220,
) -> bytes:
    """One bar per column (a day), stacked bottom-up in `order`, with a legend when there
    is more than one name; `width` x `height` pixels."""
    figure = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    xs = list(range(len(columns)))
    bottoms = [0] * len(columns)
    for name in order:
        counts = [column.get(name, 0) for column in columns]
        if not any(counts):
            continue
        axes.bar(
            xs, counts, bottom=bottoms, width=0.7, label=name,
            color=_rgb(colours.get(name, AXIS)), antialiased=False,
        )  # fmt: skip
        bottoms = [b + c for b, c in zip(bottoms, counts, strict=True)]
    axes.set_xticks(xs, list(labels) if labels is not None else [str(x + 1) for x in xs])
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_ylim(0, max(bottoms, default=0) + 1)
    axes.set_ylabel("firings")
    axes.grid(axis="y", color=(0.88, 0.88, 0.88))
    axes.set_axisbelow(True)
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)
    if sum(1 for name in order if any(c.get(name) for c in columns)) > 1:
        # Beside the plot, not over it: it never hides the first days' bars.
        axes.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small", frameon=False)
    figure.tight_layout()
    out = io.BytesIO()
    figure.savefig(out, format="png", dpi=DPI)
    return out.getvalue()
