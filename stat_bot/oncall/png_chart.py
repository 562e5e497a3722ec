"""A stacked bar chart as a PNG, written with the standard library (zlib) alone.

Mail clients do not render SVG (the dashboard's charts), so the handoff mail carries
its chart as a PNG. Bars only: the numbers and the legend are in the mail's HTML
beside it, where text is sharp and readable by screen readers.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Mapping, Sequence

WHITE = (255, 255, 255)
AXIS = (120, 120, 120)
GRID = (225, 225, 225)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data))
        + kind
        + data
        + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def encode_png(pixels: Sequence[bytearray], width: int, height: int) -> bytes:
    """RGB rows (3 bytes a pixel) into a PNG file."""
    raw = b"".join(b"\x00" + bytes(row) for row in pixels)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(raw, 9))
        + _chunk(b"IEND", b"")
    )


def stacked_bars(
    columns: Sequence[Mapping[str, int]],
    colours: Mapping[str, tuple[int, int, int]],
    order: Sequence[str],
    *,
    width: int = 560,
    height: int = 200,
) -> bytes:
    """One bar per column, stacked bottom-up in `order`; scaled to the tallest bar."""
    pixels = [bytearray(WHITE * width) for _ in range(height)]

    def fill(x0: int, y0: int, x1: int, y1: int, colour: tuple[int, int, int]) -> None:
        for y in range(max(0, y0), min(height, y1)):
            row = pixels[y]
            for x in range(max(0, x0), min(width, x1)):
                row[3 * x : 3 * x + 3] = bytes(colour)

    pad, base = 10, height - 10
    tallest = max((sum(c.values()) for c in columns), default=0) or 1
    for quarter in range(1, 5):  # light grid lines at 25 % steps of the tallest bar
        y = base - (base - pad) * quarter // 4
        fill(pad, y, width - pad, y + 1, GRID)
    slot = (width - 2 * pad) / max(1, len(columns))
    for index, column in enumerate(columns):
        x0 = int(pad + index * slot + slot * 0.15)
        x1 = int(pad + (index + 1) * slot - slot * 0.15)
        top = base
        for name in order:
            count = column.get(name, 0)
            if not count:
                continue
            h = max(1, round((base - pad) * count / tallest))
            fill(x0, top - h, x1, top, colours.get(name, AXIS))
            top -= h
    fill(pad, base, width - pad, base + 1, AXIS)
    return encode_png(pixels, width, height)
