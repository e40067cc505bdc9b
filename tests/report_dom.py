"""Read the charts of a report page back: titles, units, groups, bars per cell, segments,
line series and change points.

Parses HTML with the standard library, so tests can check a page as written and the
DOM that Chromium serialises after rendering it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from html.parser import HTMLParser


@dataclass
class Chart:
    """What one ``<figure class="chart">`` holds."""

    title: str = ""
    unit: str = ""  # the text of its p.unit, e.g. "unit: seconds"
    groups: list[str] = field(default_factory=list)  # group headings (bases), in order
    bars: list[str] = field(default_factory=list)  # data-cell of each g.bar, in order
    segments: dict[str, list[tuple[str, float]]] = field(
        default_factory=lambda: defaultdict(list)
    )  # cell -> [(segment name, width in px)]
    whiskers: list[str] = field(default_factory=list)  # cells that have one
    series: dict[str, int] = field(default_factory=dict)  # cell -> points on its line
    change_points: int = 0  # dashed change-point markers
    values: dict[str, str] = field(default_factory=dict)  # cell -> value text at the bar end


class _ChartParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.charts: dict[str, Chart] = {}
        self.chart: Chart | None = None
        self.cell: str | None = None
        self.in_title = False
        self.in_unit = False
        self.in_group = False
        self.in_value = False
        self.scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        classes = a.get("class", "").split()
        if tag == "script":
            self.scripts += 1
        if tag == "figure" and "chart" in classes:
            self.chart = self.charts.setdefault(a["id"].removeprefix("chart-"), Chart())
        elif self.chart is None:
            return
        elif tag == "h3":
            self.in_title = True
        elif tag == "p" and "unit" in classes:
            self.in_unit = True
        elif tag == "text" and "group" in classes:
            self.in_group = True
            self.chart.groups.append("")
        elif tag == "line" and "change-point" in classes:
            self.chart.change_points += 1
        elif tag == "g" and ("bar" in classes or "series" in classes):
            self.cell = a["data-cell"]
            if "bar" in classes:
                self.chart.bars.append(self.cell)
            else:
                self.chart.series[self.cell] = int(a["data-points"])
        elif tag == "rect" and "segment" in classes and self.cell:
            self.chart.segments[self.cell].append((a["data-segment"], float(a["width"])))
        elif tag == "path" and "whisker" in classes and self.cell:
            self.chart.whiskers.append(self.cell)
        elif tag == "text" and "value" in classes:
            self.in_value = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "figure":
            self.chart = None
        elif tag == "h3":
            self.in_title = False
        elif tag == "p":
            self.in_unit = False
        elif tag == "g":
            self.cell = None
        elif tag == "text":
            self.in_value = self.in_group = False

    def handle_data(self, data: str) -> None:
        if self.chart is None:
            return
        if self.in_title:
            self.chart.title += data
        if self.in_unit:
            self.chart.unit += data
        if self.in_group:
            self.chart.groups[-1] += data
        if self.in_value and self.cell:
            self.chart.values[self.cell] = data


def parse_charts(html: str) -> tuple[dict[str, Chart], int]:
    """(chart name -> Chart, number of <script> tags) of a report page."""
    parser = _ChartParser()
    parser.feed(html)
    return parser.charts, parser.scripts
