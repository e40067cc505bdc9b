"""The HTML report: one self-contained page of charts and tables over published results.

A writer over the ``results`` and ``runs`` tables (plus an optional ``Comparison``):
``render_report`` is pure; ``build_report`` reads a store and picks what to show.
The page has no scripts and loads nothing: inline CSS and inline SVG only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from html import escape
from typing import Any

import pandas as pd

from tasks.analysis.attribution import attribution_lines
from tasks.analysis.compare import (
    CompareError,
    Comparison,
    compare_with_previous,
    origin_summary,
)
from tasks.dataset.reader import RunNotFound, find_run, matrix_history, read_table
from tasks.dataset.stores import ResultStore
from tasks.records import SEVERITIES, RunKind, cell_label, stale_db_message
from tasks.render.charts import PALETTE, Bar, Segment, Series, bar_chart, line_chart
from tasks.render.units import format_bytes, format_count, format_seconds

SEVERITY_COLOURS = {
    "CRITICAL": "#7b0d1e",
    "HIGH": "#d62728",
    "MEDIUM": "#ff7f0e",
    "LOW": "#e6c229",
    "UNKNOWN": "#9e9e9e",
}
# Where a cell's vulnerabilities came from (results.vulns_from_base / vulns_from_build).
ORIGIN_COLOURS = {"inherited from the base": "#0072B2", "added by the build": "#D55E00"}
# Chart name -> visible title; tests and readers find charts by these.
CHART_TITLES = {
    "size": "Image size per cell",
    "vulnerabilities": "Vulnerabilities per cell by severity",
    "origin": "Vulnerabilities per cell: inherited from the base vs added by the build",
    "startup": "Startup time per cell (median, min-max)",
    "memory": "Idle memory per cell",
    "packages": "Packages per cell",
    "trend-size": "Image size across runs",
    "trend-vulnerabilities": "Vulnerabilities across runs",
}

_CSS = """
body { font-family: system-ui, sans-serif; margin: 24px; color: #222; }
h1 { font-size: 22px; } h2 { font-size: 17px; margin: 0 0 4px; }
figure.chart { margin: 24px 0; }
p.note { color: #555; font-size: 13px; margin: 0 0 6px; }
svg text { font-size: 12px; fill: #222; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border-bottom: 1px solid #ddd; padding: 4px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.regression { color: #b00020; font-weight: bold; }
.stale { color: #b00020; font-weight: bold; border: 2px solid #b00020; padding: 6px; }
"""


def _present(value: Any) -> bool:
    return not bool(pd.isna(value))  # None, NaN and pd.NA all mean "not measured"


def render_report(
    results: pd.DataFrame,
    history: pd.DataFrame | None = None,
    runs: pd.DataFrame | None = None,
    comparison: Comparison | None = None,
    title: str | None = None,
    run: dict[str, Any] | None = None,
) -> str:
    """One HTML page for the run in ``results`` (rows of one run's ``results`` table).

    ``history`` is the ``results`` rows of several runs and ``runs`` their ``runs`` rows,
    for the trend lines (ordered by run start); ``comparison`` adds the compare verdict;
    ``run`` (the run's ``runs`` row) says what kind of run it is and how old its DB was.
    """
    rows = _sorted_cells(results)
    run_ids = sorted(set(results["run_id"]))
    heading = title or f"basebench report: run {', '.join(run_ids)}"
    sections = [
        f"<h1>{escape(heading)}</h1>",
        _run_html(run) if run else "",
        _verdict_html(comparison) if comparison else "",
        _summary_table(rows),
        *_cell_charts(rows),
        *(_trend_charts(history, runs) if history is not None and len(history) else ()),
    ]
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(heading)}</title><style>{_CSS}</style></head>"
        f"<body>{''.join(sections)}</body></html>\n"
    )


def _sorted_cells(results: pd.DataFrame) -> list[dict[str, Any]]:
    # Largest image first: the classic chart reads from the fat builder to distroless.
    records = results.to_dict("records")
    return sorted(
        records,
        key=lambda r: (-(r["size_bytes"] if _present(r["size_bytes"]) else -1), cell_label(r)),
    )


def _bars(
    rows: list[dict[str, Any]], segments: Callable[[dict[str, Any]], list[Segment]]
) -> list[Bar]:
    return [Bar(r["cell_id"], cell_label(r), tuple(segments(r))) for r in rows]


def _single(column: str) -> Callable[[dict[str, Any]], list[Segment]]:
    def segments(row: dict[str, Any]) -> list[Segment]:
        value = row[column]
        return [Segment(column, float(value))] if _present(value) else []

    return segments


def _severity_segments(row: dict[str, Any]) -> list[Segment]:
    if not _present(row["vulns_critical"]):
        return []
    return [Segment(s, float(row[f"vulns_{s.lower()}"]), SEVERITY_COLOURS[s]) for s in SEVERITIES]


def _origin_segments(row: dict[str, Any]) -> list[Segment]:
    # Null for cells not scanned, and for runs published before origins were kept.
    if not _present(row.get("vulns_from_base")):
        return []
    counts = (float(row["vulns_from_base"]), float(row["vulns_from_build"]))
    return [
        Segment(name, count, colour)
        for (name, colour), count in zip(ORIGIN_COLOURS.items(), counts, strict=True)
    ]


def _cell_charts(rows: list[dict[str, Any]]) -> list[str]:
    legend = [Segment(s, 0, SEVERITY_COLOURS[s]) for s in SEVERITIES]
    startup = [
        Bar(
            r["cell_id"],
            cell_label(r),
            (Segment("median", float(r["startup_seconds"])),),
            (float(r["startup_min_seconds"]), float(r["startup_max_seconds"])),
        )
        if _present(r["startup_seconds"])
        else Bar(r["cell_id"], cell_label(r))
        for r in rows
    ]
    return [
        bar_chart(
            "size",
            CHART_TITLES["size"],
            _bars(rows, _single("size_bytes")),
            format_bytes,
            note="uncompressed image size",
        ),
        bar_chart(
            "vulnerabilities",
            CHART_TITLES["vulnerabilities"],
            _bars(rows, _severity_segments),
            format_count,
            note="unique vulnerability ids",
            legend=legend,
        ),
        bar_chart(
            "origin",
            CHART_TITLES["origin"],
            _bars(rows, _origin_segments),
            format_count,
            note="unique vulnerability ids in the runtime base image's layers and in the "
            "layers the build added (an id found in both counts in both)",
            legend=[Segment(name, 0, colour) for name, colour in ORIGIN_COLOURS.items()],
        ),
        bar_chart(
            "startup",
            CHART_TITLES["startup"],
            startup,
            format_seconds,
            note="container start to first HTTP response; whiskers span min to max",
        ),
        bar_chart(
            "memory",
            CHART_TITLES["memory"],
            _bars(rows, _single("idle_memory_bytes")),
            format_bytes,
        ),
        bar_chart(
            "packages",
            CHART_TITLES["packages"],
            _bars(rows, _single("packages")),
            format_count,
            note="packages found by the scanner, all types",
        ),
    ]


def _trend_charts(history: pd.DataFrame, runs: pd.DataFrame | None) -> list[str]:
    order = _run_order(history, runs)
    labels = [label for _, label in order]
    position = {run_id: i for i, (run_id, _) in enumerate(order)}
    history = history.assign(vulns_total=sum(history[f"vulns_{s.lower()}"] for s in SEVERITIES))
    charts = []
    for name, column, fmt in (
        ("trend-size", "size_bytes", format_bytes),
        ("trend-vulnerabilities", "vulns_total", format_count),
    ):
        series = []
        for index, (cell_id, group) in enumerate(sorted(history.groupby("cell_id"))):
            values: list[float | None] = [None] * len(order)
            for row in group.to_dict("records"):
                if _present(row[column]):
                    values[position[row["run_id"]]] = float(row[column])
            if all(v is None for v in values):
                continue  # never measured (skipped cell): no line, no legend entry
            colour = PALETTE[index % len(PALETTE)]
            label = cell_label(group.iloc[-1])
            series.append(Series(str(cell_id), label, tuple(values), colour))
        charts.append(
            line_chart(
                name,
                CHART_TITLES[name],
                labels,
                series,
                fmt,
                note="one line per cell, runs ordered by start time",
            )
        )
    return charts


def _run_order(history: pd.DataFrame, runs: pd.DataFrame | None) -> list[tuple[str, str]]:
    """(run_id, x label) by run start; the label is the start date and time in UTC."""
    # A run's start from the runs table; a run missing there uses its earliest cell.
    starts = history.groupby("run_id")["started_at"].min().to_dict()
    if runs is not None:
        starts.update(zip(runs["run_id"], runs["started_at"], strict=True))
    ids = sorted(set(history["run_id"]), key=lambda r: (starts[r], r))
    return [(r, pd.Timestamp(starts[r]).strftime("%Y-%m-%d %H:%M")) for r in ids]


def _summary_table(rows: list[dict[str, Any]]) -> str:
    header = (
        "cell",
        "variant",
        "status",
        "size",
        "packages",
        "vulns C/H/M/L/U",
        "inherited from the base (vulns / packages)",
        "added by the build (vulns / packages)",
        "startup",
        "idle memory",
    )
    body = []
    for r in rows:
        vulns = (
            "/".join(format_count(r[f"vulns_{s.lower()}"]) for s in SEVERITIES)
            if _present(r["vulns_critical"])
            else "-"
        )
        cells = (
            cell_label(r),
            r["variant"],
            r["status"] + (f" ({r['failed_stage']})" if _present(r["failed_stage"]) else ""),
            format_bytes(r["size_bytes"]) if _present(r["size_bytes"]) else "-",
            format_count(r["packages"]) if _present(r["packages"]) else "-",
            vulns,
            _origin_cell(r, "base"),
            _origin_cell(r, "build"),
            format_seconds(r["startup_seconds"]) if _present(r["startup_seconds"]) else "-",
            format_bytes(r["idle_memory_bytes"]) if _present(r["idle_memory_bytes"]) else "-",
        )
        body.append("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in cells) + "</tr>")
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    return (
        '<h2>Cells</h2><table id="cells"><thead><tr>'
        f"{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    )


def _origin_cell(row: dict[str, Any], origin: str) -> str:
    vulns, packages = row.get(f"vulns_from_{origin}"), row.get(f"packages_from_{origin}")
    if not _present(vulns) or not _present(packages):
        return "-"
    return f"{format_count(vulns)} / {format_count(packages)}"


def _run_html(run: dict[str, Any]) -> str:
    """What kind of run this is, and a stale-DB warning when its DB was over the limit."""
    parts = []
    if run.get("kind") == RunKind.RESCAN:
        parts.append(
            f'<p class="kind">Rescan of run {escape(str(run["source_run_id"]))}: its stored '
            "SBOMs scanned against the current vulnerability DB; no image was built, so "
            "build and startup times are not measured.</p>"
        )
    age, limit = run.get("scanner_db_age_seconds"), run.get("scanner_db_max_age_hours")
    if run.get("scanner_db_stale") is True and age is not None and limit is not None:
        message = stale_db_message(float(age), float(limit))
        parts.append(f'<p class="stale" id="stale-db">{escape(message)}</p>')
    return "".join(parts)


def _verdict_html(comparison: Comparison) -> str:
    verdict = (
        f'<p class="regression">REGRESSION: {len(comparison.regressions)} regression(s)</p>'
        if comparison.regressed
        else "<p>No regression.</p>"
    )
    items = "".join(
        f'<li class="{"regression" if c.regression else "change"}">'
        f"{escape(c.cell)}: {escape(c.summary)}</li>"
        for c in comparison.changes
    )
    origins = "".join(
        f'<p class="origins">{escape(line)}</p>' for line in origin_summary(comparison)
    )
    origins += "".join(
        f'<p class="causes">{escape(line)}</p>'
        for line in attribution_lines(list(comparison.vulnerability_changes))
    )
    return (
        f'<section id="compare"><h2>Compared with run {escape(comparison.base_run)}</h2>'
        f"{verdict}<ul>{items}</ul>{origins}</section>"
    )


@dataclass(frozen=True)
class ReportInput:
    """What ``build_report`` read from a store: the run shown and its history."""

    run_id: str
    results: pd.DataFrame
    history: pd.DataFrame
    runs: pd.DataFrame
    comparison: Comparison | None
    run: dict[str, Any] | None = None  # the shown run's ``runs`` row


def load_report_input(store: ResultStore, run_id: str | None = None) -> ReportInput:
    """The run to show (default: the latest), its matrix's earlier runs and the verdict."""
    try:
        shown = find_run(store, run_id)
    except RunNotFound as exc:
        raise CompareError(f"{exc}; nothing to report" if run_id is None else str(exc)) from exc
    same_matrix = [m["run_id"] for m in matrix_history(store, shown)]
    history = read_table(store, "results", same_matrix)
    comparison = compare_with_previous(store, shown["run_id"])
    return ReportInput(
        shown["run_id"],
        history[history["run_id"] == shown["run_id"]],
        history,
        read_table(store, "runs", same_matrix),
        comparison,
        shown,
    )


def build_report(store: ResultStore, run_id: str | None = None) -> tuple[str, str]:
    """(run id, HTML page) for ``run_id`` (default: the latest complete run)."""
    data = load_report_input(store, run_id)
    html = render_report(data.results, data.history, data.runs, data.comparison, run=data.run)
    return data.run_id, html
