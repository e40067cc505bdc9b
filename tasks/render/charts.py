"""Inline SVG charts for the HTML report: grouped horizontal bars and trend panels.

Plain string building, no JavaScript and nothing fetched: the page must open offline.
Every chart is a ``<figure class="chart" id="chart-<name>">`` with a visible title
(``<h3>``) and its unit (``<p class="unit">``). Each category (a cell) is one
``<g class="bar" data-cell=...>``; a cell without a value keeps its group and says
"not measured", so every cell is accounted for. A trend line is a
``<g class="series" data-cell=...>``.

Layout is computed here, not by the browser: text widths are estimated generously
(``text_width``) so labels never overlap; the report's Chromium test measures them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

FONT_PX = 11
# A generous estimate of one character's advance at FONT_PX in a sans-serif face.
CHAR_PX = 7.0
LABEL_WIDTH = 86  # sub-bar labels (toolchain versions) right-aligned in this column
PLOT_WIDTH = 300
VALUE_ROOM = 84  # the value text after the longest bar
ROW_HEIGHT = 18
BAR_HEIGHT = 11
LEGEND_ROW = 18
# Colour-blind-friendly categorical palette (Okabe-Ito), for toolchains.
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


def text_width(text: str) -> float:
    """Estimated width in px of ``text`` at the charts' font size (an upper bound)."""
    return CHAR_PX * len(text)


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
    label: str  # shown left of the bar (a toolchain version), and in tooltips
    segments: tuple[Segment, ...] = ()
    whisker: tuple[float, float] | None = None  # min and max drawn as a line
    tooltip: str = ""  # what the bar is, e.g. the cell's full label


@dataclass(frozen=True)
class Group:
    """Bars under one heading (a base), one per toolchain."""

    label: str
    bars: tuple[Bar, ...]


@dataclass(frozen=True)
class Line:
    """One trend line: a value per run (None = no value that night) with an optional
    band (low, high per run) drawn behind it."""

    key: str
    label: str
    values: tuple[float | None, ...]
    colour: str = BAR_COLOUR
    low: tuple[float | None, ...] = ()
    high: tuple[float | None, ...] = ()


@dataclass(frozen=True)
class Mark:
    """A change point: a vertical marker at run ``index`` with a tooltip."""

    index: int
    colour: str
    text: str


def figure(name: str, title: str, unit: str, svg: str, width: float, note: str = "") -> str:
    """A chart wrapped with its visible title, its unit and an optional note; the
    figure is as wide as its chart, so captions wrap instead of widening it."""
    caption = f'<h3>{escape(title)}</h3><p class="unit">unit: {escape(unit)}</p>' + (
        f'<p class="note">{escape(note)}</p>' if note else ""
    )
    return (
        f'<figure class="chart" id="chart-{escape(name)}" style="width: {width:.0f}px">'
        f"{caption}{svg}</figure>"
    )


def nice_ticks(maximum: float, count: int = 5, integer: bool = False) -> list[float]:
    """Round tick values from 0 to at least ``maximum`` (steps of 1, 2 or 5 x 10^k);
    ``integer``: steps of at least 1 (counts have no halves)."""
    if maximum <= 0:
        return [0.0, 1.0]
    step = _nice_step(maximum / count)
    if integer:
        step = max(step, 1.0)
    return [i * step for i in range(math.ceil(maximum / step - 1e-9) + 1)]


def nice_range(low: float, high: float, count: int = 3) -> list[float]:
    """Round ticks covering ``low`` .. ``high`` (not from 0: a trend shows its changes).

    A (nearly) flat series, spanning less than 2 % of its level, gets a range of +-5 %
    around its middle: a few bytes of difference are not drawn as a cliff."""
    if high - low < 0.02 * max(abs(low), abs(high)):
        middle = (low + high) / 2
        pad = abs(middle) * 0.05 or 1.0
        low, high = middle - pad, middle + pad
    step = _nice_step((high - low) / count)
    first = math.floor(low / step + 1e-9)
    last = math.ceil(high / step - 1e-9)
    return [n * step for n in range(first, last + 1)]


def _nice_step(raw: float) -> float:
    power = 10.0 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def legend(entries: Sequence[tuple[str, str]], left: float, width: float, top: float) -> str:
    """Legend entries (name, colour) left to right, wrapping onto new rows within
    ``width``; the rows start at ``top``."""
    return _legend_rows(entries, left, width, top)[0]


def _legend_rows(
    entries: Sequence[tuple[str, str]], left: float, width: float, top: float
) -> tuple[str, int]:
    items, x, row = [], left, 0
    for name, colour in entries:
        room = 16 + text_width(name) + 12
        if x > left and x + room > left + width:
            x, row = left, row + 1
        y = top + row * LEGEND_ROW
        items.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="11" height="11" fill="{colour}"/>'
            f'<text x="{x + 15:.1f}" y="{y + 10:.1f}">{escape(name)}</text>'
        )
        x += room
    rows = row + 1 if items else 0
    return (f'<g class="legend">{"".join(items)}</g>' if items else ""), rows


def bar_chart(
    name: str,
    title: str,
    unit: str,
    groups: Sequence[Group],
    fmt: Format,
    note: str = "",
    legend_entries: Sequence[tuple[str, str]] = (),
    tick_count: int = 4,
    integer: bool = False,
) -> str:
    """Horizontal bars in groups: each group's heading on a line of its own, then one
    row per bar labelled on the left; segments stack left to right."""
    bars = [b for g in groups for b in g.bars]
    tops = [sum(s.value for s in b.segments) for b in bars]
    tops += [b.whisker[1] for b in bars if b.whisker]
    ticks = nice_ticks(max(tops, default=0.0), tick_count, integer)
    scale = PLOT_WIDTH / ticks[-1]
    width = LABEL_WIDTH + PLOT_WIDTH + VALUE_ROOM
    legend_svg, legend_rows = _legend_rows(legend_entries, 8, width - 16, 4)
    top = 8 + legend_rows * LEGEND_ROW
    rows: list[str] = []
    y = float(top)
    for group in groups:
        rows.append(
            f'<text class="group" x="8" y="{y + 13:.1f}" font-weight="bold">'
            f"{escape(group.label)}</text>"
        )
        y += ROW_HEIGHT
        for bar in group.bars:
            rows.append(_bar_row(bar, y + (ROW_HEIGHT - BAR_HEIGHT) / 2, scale, fmt))
            y += ROW_HEIGHT
    height = y + 26
    parts = [legend_svg, *_grid(ticks, scale, top, height, fmt), *rows]
    return figure(name, title, unit, _svg(title, width, height, parts), width, note)


def _bar_row(bar: Bar, y: float, scale: float, fmt: Format) -> str:
    baseline = y + BAR_HEIGHT - 1
    tooltip = bar.tooltip or bar.label
    inner = [
        f'<text class="label" x="{LABEL_WIDTH - 6}" y="{baseline:.1f}" '
        f'text-anchor="end">{escape(bar.label)}</text>'
    ]
    x = float(LABEL_WIDTH)
    for segment in bar.segments:
        width = segment.value * scale
        inner.append(
            f'<rect class="segment" data-segment="{escape(segment.name)}" x="{x:.1f}" '
            f'y="{y:.1f}" width="{width:.1f}" height="{BAR_HEIGHT}" fill="{segment.colour}">'
            f"<title>{escape(tooltip)}: {escape(segment.name)} {fmt(segment.value)}</title>"
            "</rect>"
        )
        x += width
    if bar.whisker:
        low, high = (LABEL_WIDTH + v * scale for v in bar.whisker)
        mid = y + BAR_HEIGHT / 2
        inner.append(
            f'<path class="whisker" d="M{low:.1f},{mid:.1f} H{high:.1f} M{low:.1f},{y + 1:.1f} '
            f'V{y + BAR_HEIGHT - 1:.1f} M{high:.1f},{y + 1:.1f} V{y + BAR_HEIGHT - 1:.1f}" '
            'stroke="#222" stroke-width="1.5" fill="none"/>'
        )
        x = max(x, high)
    total = sum(s.value for s in bar.segments)
    text = fmt(total) if bar.segments else "not measured"
    inner.append(f'<text class="value" x="{x + 5:.1f}" y="{baseline:.1f}">{text}</text>')
    return f'<g class="bar" data-cell="{escape(bar.key)}">{"".join(inner)}</g>'


def _grid(ticks: list[float], scale: float, top: float, height: float, fmt: Format) -> list[str]:
    lines = []
    for tick in ticks:
        x = LABEL_WIDTH + tick * scale
        lines.append(
            f'<line class="grid" x1="{x:.1f}" x2="{x:.1f}" y1="{top:.1f}" y2="{height - 22:.1f}" '
            'stroke="#ddd"/>'
            f'<text class="tick" x="{x:.1f}" y="{height - 8:.1f}" text-anchor="middle">'
            f"{fmt(tick)}</text>"
        )
    return lines


# Trend panels: small, one per language and base, lines per toolchain.
PANEL_LEFT = 70  # room for y tick labels such as "1000 MB"
PANEL_PLOT_WIDTH = 300
PANEL_PLOT_HEIGHT = 110
DATE_GAP = 12  # px between two date labels at least


def thinned_labels(labels: Sequence[str], step: float) -> list[int]:
    """Indexes of the x labels to show so that no two (``step`` px apart per index)
    come closer than their width plus ``DATE_GAP``; the first is always shown."""
    if not labels:
        return []
    widest = max(text_width(label) for label in labels)
    every = max(1, math.ceil((widest + DATE_GAP) / max(step, 1e-9)))
    return list(range(0, len(labels), every))


def trend_panel(
    name: str,
    title: str,
    unit: str,
    x_labels: Sequence[str],
    lines: Sequence[Line],
    fmt: Format,
    marks: Sequence[Mark] = (),
    note: str = "",
) -> str:
    """One small panel: a line per series over the runs, its band behind it, change
    points as dashed vertical markers, thinned date labels under the axis."""
    values = [v for line in lines for v in (*line.values, *line.low, *line.high) if v is not None]
    low, high = min(values, default=0.0), max(values, default=1.0)
    ticks = nice_range(low, high)
    while len({fmt(t) for t in ticks}) < len(ticks):  # two ticks would read the same
        low, high = 2 * ticks[0] - ticks[-1], 2 * ticks[-1] - ticks[0]
        ticks = nice_range(low, high)
    width = PANEL_LEFT + PANEL_PLOT_WIDTH + 24
    legend_svg, legend_rows = _legend_rows(
        [(line.label, line.colour) for line in lines], PANEL_LEFT, PANEL_PLOT_WIDTH, 4
    )
    top = 12 + legend_rows * LEGEND_ROW
    bottom = top + PANEL_PLOT_HEIGHT
    step = PANEL_PLOT_WIDTH / max(len(x_labels) - 1, 1)

    def x_of(index: int) -> float:
        return PANEL_LEFT + index * step

    def y_of(value: float) -> float:
        return bottom - (value - ticks[0]) / (ticks[-1] - ticks[0]) * PANEL_PLOT_HEIGHT

    parts = [legend_svg]
    for tick in ticks:
        y = y_of(tick)
        parts.append(
            f'<line class="grid" x1="{PANEL_LEFT}" x2="{PANEL_LEFT + PANEL_PLOT_WIDTH}" '
            f'y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/><text class="tick" x="{PANEL_LEFT - 6}" '
            f'y="{y + 4:.1f}" text-anchor="end">{fmt(tick)}</text>'
        )
    for index in thinned_labels(x_labels, step):
        parts.append(
            f'<text class="tick date" x="{x_of(index):.1f}" y="{bottom + 20:.1f}" '
            f'text-anchor="middle">{escape(x_labels[index])}</text>'
        )
    for mark in marks:
        x = x_of(mark.index)
        parts.append(
            f'<line class="change-point" x1="{x:.1f}" x2="{x:.1f}" y1="{top:.1f}" '
            f'y2="{bottom:.1f}" stroke="{mark.colour}" stroke-width="1.5" '
            f'stroke-dasharray="4 3"><title>{escape(mark.text)}</title></line>'
        )
    for line in lines:
        parts.append(_trend_line(line, x_of, y_of, fmt))
    height = bottom + 30  # the date labels sit low enough to clear the lowest y tick
    return figure(name, title, unit, _svg(title, width, height, parts), width, note)


def _trend_line(
    line: Line, x_of: Callable[[int], float], y_of: Callable[[float], float], fmt: Format
) -> str:
    points = [(i, v) for i, v in enumerate(line.values) if v is not None]
    path = " ".join(
        f"{'L' if n and points[n - 1][0] == i - 1 else 'M'}{x_of(i):.1f},{y_of(v):.1f}"
        for n, (i, v) in enumerate(points)
    )
    band = ""
    spans = [
        (i, lo, hi)
        for i, (lo, hi) in enumerate(zip(line.low, line.high, strict=True))
        if lo is not None and hi is not None
    ]
    if spans:
        upper = " ".join(f"{x_of(i):.1f},{y_of(hi):.1f}" for i, _, hi in spans)
        lower = " ".join(f"{x_of(i):.1f},{y_of(lo):.1f}" for i, lo, _ in reversed(spans))
        band = (
            f'<polygon class="band" points="{upper} {lower}" fill="{line.colour}" '
            'fill-opacity="0.15" stroke="none"/>'
        )
    last = fmt(points[-1][1]) if points else "no value"
    return (
        f'<g class="series" data-cell="{escape(line.key)}" data-points="{len(points)}">{band}'
        f'<path d="{path}" fill="none" stroke="{line.colour}" stroke-width="1.8">'
        f"<title>{escape(line.label)}: latest {last}</title></path></g>"
    )


def _svg(title: str, width: float, height: float, parts: Sequence[str]) -> str:
    return (
        f'<svg width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" role="img" aria-label="{escape(title)}">'
        f"{''.join(parts)}</svg>"
    )
