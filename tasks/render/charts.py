"""Inline SVG charts for the HTML report: horizontal bars (stacked, with whiskers) and lines.

Plain string building, no JavaScript and nothing fetched: the page must open offline.
Every chart is a ``<figure class="chart" id="chart-<name>">`` whose ``<h2>`` is its
visible title. Each category (cell) is one ``<g class="bar" data-cell=...>``; a cell
without a value keeps its group and says "not measured", so every cell is accounted for.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from html import escape

LABEL_WIDTH = 280
PLOT_WIDTH = 520
ROW_HEIGHT = 26
BAR_HEIGHT = 16
TOP = 30
# Colour-blind-friendly categorical palette (Okabe-Ito), for lines.
PALETTE = (
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#CC79A7",
    "#56B4E9",
    "#D55E00",
    "#F0E442",
    "#000000",
)
BAR_COLOUR = "#0072B2"

Format = Callable[[float], str]


@dataclass(frozen=True)
class Segment:
    """One coloured part of a bar; ``name`` shows in the legend and the tooltip."""

    name: str
    value: float
    colour: str = BAR_COLOUR


@dataclass(frozen=True)
class Bar:
    """One category (a cell); no segments means the value was not measured."""

    key: str  # data-cell attribute, e.g. the cell_id
    label: str
    segments: tuple[Segment, ...] = ()
    whisker: tuple[float, float] | None = None  # min and max drawn as a line


@dataclass(frozen=True)
class Series:
    """One line: a value per x position (None = no value at that position)."""

    key: str
    label: str
    values: tuple[float | None, ...]
    colour: str = field(default=BAR_COLOUR)


def figure(name: str, title: str, svg: str, note: str = "") -> str:
    """A chart wrapped with its visible title (and an optional note under it)."""
    caption = f"<h2>{escape(title)}</h2>" + (f'<p class="note">{escape(note)}</p>' if note else "")
    return f'<figure class="chart" id="chart-{escape(name)}">{caption}{svg}</figure>'


def nice_ticks(maximum: float, count: int = 5) -> list[float]:
    """Round tick values from 0 to at least ``maximum`` (steps of 1, 2 or 5 x 10^k)."""
    if maximum <= 0:
        return [0.0, 1.0]
    raw = maximum / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    return [i * step for i in range(math.ceil(maximum / step - 1e-9) + 1)]


def bar_chart(
    name: str,
    title: str,
    bars: Sequence[Bar],
    fmt: Format,
    note: str = "",
    legend: Sequence[Segment] = (),
) -> str:
    """Horizontal bars, one row per category; segments stack left to right."""
    tops = [sum(s.value for s in b.segments) for b in bars]
    tops += [b.whisker[1] for b in bars if b.whisker]
    ticks = nice_ticks(max(tops, default=0.0))
    scale = PLOT_WIDTH / ticks[-1]
    height = TOP + ROW_HEIGHT * len(bars) + 30
    parts = [_legend(legend), *_grid(ticks, scale, height, fmt)]
    for row, bar in enumerate(bars):
        parts.append(_bar_row(bar, TOP + row * ROW_HEIGHT, scale, fmt))
    return figure(name, title, _svg(title, LABEL_WIDTH + PLOT_WIDTH + 90, height, parts), note)


def _bar_row(bar: Bar, y: float, scale: float, fmt: Format) -> str:
    label = (
        f'<text class="label" x="{LABEL_WIDTH - 8}" y="{y + BAR_HEIGHT - 3}" '
        f'text-anchor="end">{escape(bar.label)}</text>'
    )
    inner = [label]
    x = float(LABEL_WIDTH)
    for segment in bar.segments:
        width = segment.value * scale
        inner.append(
            f'<rect class="segment" data-segment="{escape(segment.name)}" x="{x:.1f}" y="{y}" '
            f'width="{width:.1f}" height="{BAR_HEIGHT}" fill="{segment.colour}">'
            f"<title>{escape(bar.label)}: {escape(segment.name)} {fmt(segment.value)}</title>"
            "</rect>"
        )
        x += width
    if bar.whisker:
        low, high = (LABEL_WIDTH + v * scale for v in bar.whisker)
        mid = y + BAR_HEIGHT / 2
        inner.append(
            f'<path class="whisker" d="M{low:.1f},{mid} H{high:.1f} M{low:.1f},{y + 3} '
            f'V{y + BAR_HEIGHT - 3} M{high:.1f},{y + 3} V{y + BAR_HEIGHT - 3}" '
            'stroke="#222" stroke-width="1.5" fill="none"/>'
        )
        x = max(x, high)
    total = sum(s.value for s in bar.segments)
    text = fmt(total) if bar.segments else "not measured"
    inner.append(f'<text class="value" x="{x + 6:.1f}" y="{y + BAR_HEIGHT - 3}">{text}</text>')
    return f'<g class="bar" data-cell="{escape(bar.key)}">{"".join(inner)}</g>'


def _grid(ticks: list[float], scale: float, height: float, fmt: Format) -> list[str]:
    lines = []
    for tick in ticks:
        x = LABEL_WIDTH + tick * scale
        lines.append(
            f'<line class="grid" x1="{x:.1f}" x2="{x:.1f}" y1="{TOP - 6}" y2="{height - 24}" '
            'stroke="#ddd"/>'
            f'<text class="tick" x="{x:.1f}" y="{height - 8}" text-anchor="middle">'
            f"{fmt(tick)}</text>"
        )
    return lines


def _legend(entries: Sequence[Segment], x: float = LABEL_WIDTH) -> str:
    items = []
    for entry in entries:
        items.append(
            f'<rect x="{x:.1f}" y="6" width="12" height="12" fill="{entry.colour}"/>'
            f'<text x="{x + 16:.1f}" y="16">{escape(entry.name)}</text>'
        )
        x += 24 + 8 * len(entry.name)
    return f'<g class="legend">{"".join(items)}</g>' if items else ""


def line_chart(
    name: str,
    title: str,
    x_labels: Sequence[str],
    series: Sequence[Series],
    fmt: Format,
    note: str = "",
) -> str:
    """One line per series over the x positions (e.g. runs by date), with a legend."""
    values = [v for s in series for v in s.values if v is not None]
    ticks = nice_ticks(max(values, default=0.0))
    plot_height = 220
    legend_top = TOP + plot_height + 40
    height = legend_top + 18 * len(series) + 10
    left = 90
    step = PLOT_WIDTH / max(len(x_labels) - 1, 1)

    def y_of(value: float) -> float:
        return TOP + plot_height - value / ticks[-1] * plot_height

    parts = []
    for tick in ticks:
        y = y_of(tick)
        parts.append(
            f'<line class="grid" x1="{left}" x2="{left + PLOT_WIDTH}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="#ddd"/><text class="tick" x="{left - 6}" y="{y + 4:.1f}" '
            f'text-anchor="end">{fmt(tick)}</text>'
        )
    for index, label in enumerate(x_labels):
        parts.append(
            f'<text class="tick" x="{left + index * step:.1f}" y="{TOP + plot_height + 18}" '
            f'text-anchor="middle">{escape(label)}</text>'
        )
    for row, line in enumerate(series):
        parts.append(_line(line, left, step, y_of, fmt))
        y = legend_top + row * 18
        parts.append(
            f'<g class="legend"><rect x="{left}" y="{y - 10}" width="12" height="12" '
            f'fill="{line.colour}"/><text x="{left + 18}" y="{y}">{escape(line.label)}</text></g>'
        )
    width = left + PLOT_WIDTH + 60
    return figure(name, title, _svg(title, width, height, parts), note)


def _line(
    line: Series, left: float, step: float, y_of: Callable[[float], float], fmt: Format
) -> str:
    points = [
        (left + index * step, y_of(value), value)
        for index, value in enumerate(line.values)
        if value is not None
    ]
    path = " ".join(f"{x:.1f},{y:.1f}" for x, y, _ in points)
    dots = "".join(
        f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{line.colour}">'
        f"<title>{escape(line.label)}: {fmt(value)}</title></circle>"
        for x, y, value in points
    )
    return (
        f'<g class="series" data-cell="{escape(line.key)}">'
        f'<polyline points="{path}" fill="none" stroke="{line.colour}" stroke-width="2"/>'
        f"{dots}</g>"
    )


def _svg(title: str, width: float, height: float, parts: Sequence[str]) -> str:
    return (
        f'<svg width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" role="img" aria-label="{escape(title)}">'
        f"{''.join(parts)}</svg>"
    )
