"""Small multiples for one language: the same grouping (a base, one bar per toolchain)
in every chart, so a reader's eye moves across metrics, not across layouts; and a
base x toolchain grid when the language has more than one toolchain.

One chart per metric with a ``chart`` in ``tasks.metrics``, in the table's order; the
vulnerability count is two charts of severities, inherited from the base and added by
the build. Writers over one run's ``results`` rows and its ``vulnerabilities`` rows.
"""

from __future__ import annotations

from collections.abc import Callable
from html import escape
from typing import Any

import pandas as pd

from tasks.dataset.schema import ORIGIN_BASE, ORIGIN_BUILD
from tasks.metrics import METRIC, METRICS, VULNS_TOTAL, Metric, laid_out, present
from tasks.records import SEVERITIES, cell_label
from tasks.render.charts import PALETTE, Bar, Group, Segment, bar_chart
from tasks.units import Unit

SEVERITY_COLOURS = {
    "CRITICAL": "#7b0d1e",
    "HIGH": "#d62728",
    "MEDIUM": "#ff7f0e",
    "LOW": "#e6c229",
    "UNKNOWN": "#9e9e9e",
}
# The vulnerability count's two charts: kind -> (origin, title, note).
VULNERABILITY_CHARTS = {
    "vulns-base": (
        ORIGIN_BASE,
        "vulnerabilities inherited from the base, by severity",
        "found in the runtime base image's layers",
    ),
    "vulns-build": (
        ORIGIN_BUILD,
        "vulnerabilities added by the build, by severity",
        "found in the layers the build added (the program, its runtime libraries)",
    ),
}
CHARTED = tuple(metric for metric in METRICS if metric.chart)
SIZE, VULNS = METRIC["size_bytes"], METRIC[VULNS_TOTAL]


# Chart kind -> title after the language's name, in page order; tests and readers find
# charts by these.
MULTIPLE_TITLES = dict(
    laid_out(
        CHARTED,
        lambda metric: (metric.chart, metric.title),
        [(kind, title) for kind, (_, title, _) in VULNERABILITY_CHARTS.items()],
    )
)
LANGUAGE_NAMES = {"go": "Go", "python": "Python", "node": "Node.js", "java": "Java", "rust": "Rust"}

Row = dict[str, Any]


def language_name(language: str) -> str:
    """How a language is written for readers: ``node`` -> ``Node.js``."""
    return LANGUAGE_NAMES.get(language, language.capitalize())


def _version_key(version: str) -> tuple[tuple[int, ...], str]:
    parts = tuple(int(p) if p.isdigit() else -1 for p in version.split("."))
    return parts, version


def toolchains(rows: list[Row]) -> list[str]:
    """The language's toolchain versions in the run, oldest first."""
    return sorted({str(r["toolchain_version"]) for r in rows}, key=_version_key)


def toolchain_colours(rows: list[Row]) -> dict[str, str]:
    """One colour per toolchain version, the same in every chart of the language."""
    return {v: PALETTE[n % len(PALETTE)] for n, v in enumerate(toolchains(rows))}


def base_order(rows: list[Row]) -> list[str]:
    """Bases by their largest image, largest first (from the builder image down to
    distroless, as the classic chart reads); unmeasured bases last, by name."""

    def largest(base: str) -> float:
        sizes = [r["size_bytes"] for r in rows if r["base"] == base]
        return max((float(s) for s in sizes if present(s)), default=-1.0)

    return sorted({str(r["base"]) for r in rows}, key=lambda b: (-largest(b), b))


def _groups(rows: list[Row], bar: Callable[[Row], Bar]) -> list[Group]:
    versions = toolchains(rows)
    groups = []
    for base in base_order(rows):
        mine = sorted(
            (r for r in rows if r["base"] == base),
            key=lambda r: versions.index(str(r["toolchain_version"])),
        )
        groups.append(Group(base, tuple(bar(r) for r in mine)))
    return groups


def origin_counts(vulnerabilities: pd.DataFrame) -> dict[tuple[str, str], dict[str, int]]:
    """(cell_id, origin) -> severity -> unique vulnerability ids (an id found in both a
    base layer and a layer of the build counts once in each)."""
    counts: dict[tuple[str, str], dict[str, int]] = {}
    known = vulnerabilities.dropna(subset=["origin"])
    unique = known.drop_duplicates(["cell_id", "origin", "vulnerability_id", "severity"])
    for (cell_id, where, severity), n in (
        unique.groupby(["cell_id", "origin", "severity"]).size().items()
    ):
        counts.setdefault((str(cell_id), str(where)), {})[str(severity)] = int(n)
    return counts


def language_charts(language: str, rows: list[Row], vulnerabilities: pd.DataFrame) -> list[str]:
    """The small multiples of one language, in ``MULTIPLE_TITLES`` order."""
    colours = toolchain_colours(rows)
    name = language_name(language)
    legend = [(f"{name} {v}", c) for v, c in colours.items()]

    def chart(metric: Metric) -> str:
        return bar_chart(
            f"{language}-{metric.chart}",
            f"{name}: {metric.title}",
            metric.unit_text,
            _groups(rows, lambda row: _bar(metric, row, colours)),
            metric.text,
            note=metric.note,
            legend_entries=legend,
            integer=metric.unit is Unit.COUNT,
        )

    by_origin = origin_counts(vulnerabilities)
    return laid_out(CHARTED, chart, _vulnerability_charts(language, rows, by_origin))


def _bar(metric: Metric, row: Row, colours: dict[str, str]) -> Bar:
    """One cell's bar: its value, and whiskers from its spread (min to max) if it has one."""
    key, label, tooltip = str(row["cell_id"]), str(row["toolchain_version"]), cell_label(row)
    value = row[metric.column]
    if not present(value):
        return Bar(key, label, tooltip=tooltip)
    # A value with a spread is a median.
    segment = Segment("median" if metric.spread else metric.column, float(value), colours[label])
    whisker = None
    if metric.spread:
        whisker = (float(row[metric.spread[0]]), float(row[metric.spread[1]]))
    return Bar(key, label, (segment,), whisker, tooltip)


def _vulnerability_charts(
    language: str, rows: list[Row], by_origin: dict[tuple[str, str], dict[str, int]]
) -> list[str]:
    """Unique vulnerability ids by severity, inherited from the base and added by the build."""
    name = language_name(language)
    legend = [(s, SEVERITY_COLOURS[s]) for s in SEVERITIES]
    charts = []
    for kind, (origin, title, note) in VULNERABILITY_CHARTS.items():

        def bar(row: Row, origin: str = origin) -> Bar:
            label = str(row["toolchain_version"])
            # Null for cells not scanned, and for runs published before origins were kept.
            if not present(row.get("vulns_from_base")):
                return Bar(str(row["cell_id"]), label, tooltip=cell_label(row))
            counts = by_origin.get((str(row["cell_id"]), origin), {})
            segments = tuple(
                Segment(s, float(counts.get(s, 0)), SEVERITY_COLOURS[s]) for s in SEVERITIES
            )
            return Bar(str(row["cell_id"]), label, segments, None, cell_label(row))

        charts.append(
            bar_chart(
                f"{language}-{kind}",
                f"{name}: {title}",
                VULNS.unit_text,
                _groups(rows, bar),
                VULNS.text,
                note=note,
                legend_entries=legend,
                integer=True,
            )
        )
    return charts


def toolchain_grid(language: str, rows: list[Row]) -> str:
    """Base x toolchain: each cell's size and vulnerability count; "" for one toolchain."""
    versions = toolchains(rows)
    if len(versions) < 2:
        return ""
    name = language_name(language)
    by_cell = {(str(r["base"]), str(r["toolchain_version"])): r for r in rows}
    head = "".join(f"<th>{escape(name)} {escape(v)}</th>" for v in versions)
    body = []
    for base in base_order(rows):
        cells = []
        for version in versions:
            row = by_cell.get((base, version))
            cells.append(f"<td>{_grid_cell(row)}</td>")
        body.append(f"<tr><th>{escape(base)}</th>{''.join(cells)}</tr>")
    return (
        f'<figure class="grid" id="grid-{escape(language)}">'
        f"<h3>{escape(name)}: base x toolchain</h3>"
        f'<p class="unit">unit: image size in {SIZE.unit_text}; vulnerabilities in '
        f"{VULNS.unit_text}</p>"
        f"<table><thead><tr><th>base</th>{head}</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table></figure>"
    )


def _grid_cell(row: Row | None) -> str:
    if row is None:
        return "not in the matrix"
    if not present(row["size_bytes"]):
        return escape(str(row["status"]))
    vulns = row.get(VULNS_TOTAL)
    text = SIZE.text(row["size_bytes"])
    if present(vulns):
        text += f"<br>{VULNS.text(vulns)} vulns"
    return text
