"""The HTML report: one self-contained page over published results, the answer first.

A writer over the ``results``, ``packages``, ``vulnerabilities`` and ``runs`` tables
(plus an optional ``Comparison``): ``render_report`` is pure; ``load_report_input``
reads a store and picks what to show. Sections, in reading order: the answer per
language, the compare verdict, small multiples per language, trends over the matrix's
runs, what changed (since the previous run, between bases), every cell in a table.
The page has no scripts and loads nothing: inline CSS and inline SVG only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from html import escape
from typing import Any

import pandas as pd

from tasks.analysis.attribution import attribution_lines
from tasks.analysis.compare import CompareError, Comparison, compare_runs, origin_summary
from tasks.analysis.compare import RunData as CompareData
from tasks.dataset.reader import (
    RunNotFound,
    find_run,
    matrix_history,
    previous_run,
    read_table,
)
from tasks.dataset.stores import ResultStore
from tasks.metrics import CELL_METRICS, laid_out, present, severities_text, with_totals
from tasks.records import RunKind, cell_label, stale_db_message, status_label
from tasks.render.answer import answer_section
from tasks.render.diffs import RunContents, diffs_section
from tasks.render.multiples import base_order, language_charts, language_name, toolchain_grid
from tasks.render.trends import trends_section
from tasks.units import format_count

_CSS = """
body { font-family: system-ui, sans-serif; margin: 24px; color: #222; max-width: 1100px; }
h1 { font-size: 22px; } h2 { font-size: 19px; margin: 28px 0 8px; }
h3 { font-size: 15px; margin: 0 0 4px; } h4 { font-size: 14px; margin: 12px 0 4px; }
.multiples, .panels { display: flex; flex-wrap: wrap; gap: 8px 28px; align-items: flex-start; }
figure { margin: 12px 0; }
p.note, p.unit, p.context { color: #555; font-size: 12px; margin: 0 0 4px; }
p.headline { font-size: 18px; font-weight: bold; margin: 4px 0; }
svg text { font-size: 11px; fill: #222; }
table { border-collapse: collapse; font-size: 13px; margin: 6px 0 12px; }
th, td { border-bottom: 1px solid #ddd; padding: 3px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.regression { color: #b00020; font-weight: bold; }
.diff ul { margin: 0; font-size: 13px; }
.stale { color: #b00020; font-weight: bold; border: 2px solid #b00020; padding: 6px; }
"""


@dataclass(frozen=True)
class ReportInput:
    """Everything a report shows: the run, its matrix's history, the previous run's
    contents (for the diffs) and the compare verdict."""

    run: RunContents
    history: pd.DataFrame  # results rows of the matrix's runs up to this one
    runs: pd.DataFrame | None  # their runs rows (for the start times)
    comparison: Comparison | None = None
    previous: RunContents | None = None
    run_row: dict[str, Any] | None = None  # the run's ``runs`` row: its kind, its DB's age


def render_report(data: ReportInput, title: str | None = None) -> str:
    """One HTML page for ``data.run``."""
    results = with_totals(data.run.results)
    heading = title or f"basebench report: run {data.run.run_id}"
    sections = [
        f"<h1>{escape(heading)}</h1>",
        _run_line(results),
        _run_html(data.run_row) if data.run_row else "",
        answer_section(results),
        _verdict_html(data.comparison) if data.comparison else "",
        _languages_section(results, data.run.vulnerabilities),
        trends_section(data.history, data.runs) if len(data.history) else "",
        diffs_section(data.run, data.previous),
        _summary_table(_sorted_cells(results)),
    ]
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(heading)}</title><style>{_CSS}</style></head>"
        f"<body>{''.join(sections)}</body></html>\n"
    )


def _run_line(results: pd.DataFrame) -> str:
    statuses = results["status"].value_counts().to_dict()
    matrix = ", ".join(sorted(set(results["matrix"])))
    return (
        f'<p class="run">matrix {escape(matrix)}: {len(results)} cells, '
        f"{statuses.get('ok', 0)} ok, {statuses.get('failed', 0)} failed, "
        f"{statuses.get('skipped', 0)} skipped</p>"
    )


def _languages_section(results: pd.DataFrame, vulnerabilities: pd.DataFrame) -> str:
    parts = ['<section id="languages"><h2>Per language</h2>']
    for language in sorted({str(x) for x in results["language"]}):
        rows = results[results["language"] == language].to_dict("records")
        parts.append(
            f'<section class="language" id="lang-{escape(language)}">'
            f"<h2>{escape(language_name(language))}</h2>"
            f'<div class="multiples">{"".join(language_charts(language, rows, vulnerabilities))}'
            f"</div>{toolchain_grid(language, rows)}</section>"
        )
    return "".join(parts) + "</section>"


def _sorted_cells(results: pd.DataFrame) -> list[dict[str, Any]]:
    # By language, then as the charts read: largest base first, oldest toolchain first.
    records = results.to_dict("records")
    ordered = []
    for language in sorted({str(r["language"]) for r in records}):
        mine = [r for r in records if r["language"] == language]
        bases = base_order(mine)
        ordered += sorted(mine, key=lambda r: (bases.index(str(r["base"])), cell_label(r)))
    return ordered


def _summary_table(rows: list[dict[str, Any]]) -> str:
    header = "".join(f"<th>{escape(name)}</th>" for name, _ in CELLS_COLUMNS)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(text(r))}</td>" for _, text in CELLS_COLUMNS) + "</tr>"
        for r in rows
    )
    return (
        '<section id="all-cells"><h2>Every cell</h2><table id="cells"><thead><tr>'
        f"{header}</tr></thead><tbody>{body}</tbody></table></section>"
    )


def _origin_cell(row: dict[str, Any], origin: str) -> str:
    vulns, packages = row.get(f"vulns_from_{origin}"), row.get(f"packages_from_{origin}")
    if not present(vulns) or not present(packages):
        return "-"
    return f"{format_count(vulns)} / {format_count(packages)}"


Column = tuple[str, Callable[[dict[str, Any]], str]]
# The every-cell table: the cell, then the cells metrics of ``tasks.metrics`` in order.
CELLS_COLUMNS: list[Column] = [
    ("cell", cell_label),
    ("variant", lambda r: str(r["variant"])),
    ("status", status_label),
    *laid_out(
        CELL_METRICS,
        lambda m: (m.label, lambda r: m.text(r[m.column])),
        [
            ("vulns C/H/M/L/U", severities_text),
            ("inherited from the base (vulns / packages)", lambda r: _origin_cell(r, "base")),
            ("added by the build (vulns / packages)", lambda r: _origin_cell(r, "build")),
        ],
    ),
]


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


def load_report_input(
    store: ResultStore, run_id: str | None = None, against: str | None = None
) -> ReportInput:
    """The run to show (default: the latest), its matrix's earlier runs, and the run its
    diffs and verdict are against: ``against`` (any complete run), by default what
    compare takes: a rescan's source run, else the previous run of its matrix."""
    try:
        shown = find_run(store, run_id)
        other = find_run(store, against, "--against") if against is not None else None
    except RunNotFound as exc:
        raise CompareError(f"{exc}; nothing to report" if run_id is None else str(exc)) from exc
    if other is not None and other["run_id"] == shown["run_id"]:
        raise CompareError(f"--against {against}: that is the run shown; pick an earlier run")
    same_matrix = [m["run_id"] for m in matrix_history(store, shown)]
    history = read_table(store, "results", same_matrix)
    run = _contents(store, shown["run_id"], history)
    if other is None:
        source = shown.get("source_run_id")
        try:
            other = find_run(store, source) if source else previous_run(store, shown)
        except RunNotFound:  # a rescan whose source run is gone: no verdict, no diffs
            other = None
    previous = None if other is None else _contents(store, other["run_id"], history)
    comparison = None
    if previous is not None:
        comparison = compare_runs(_compare_data(store, previous), _compare_data(store, run))
    runs = read_table(store, "runs", same_matrix)
    return ReportInput(run, history, runs, comparison, previous, shown)


def _contents(store: ResultStore, run_id: str, history: pd.DataFrame) -> RunContents:
    results = history[history["run_id"] == run_id].reset_index(drop=True)
    if results.empty:  # a run of another matrix
        results = read_table(store, "results", [run_id])
    return RunContents(
        run_id,
        results,
        read_table(store, "packages", [run_id]),
        read_table(store, "vulnerabilities", [run_id]),
    )


def _compare_data(store: ResultStore, run: RunContents) -> CompareData:
    samples = read_table(store, "samples", [run.run_id])
    return CompareData(run.run_id, run.results, samples, run.vulnerabilities, run.packages)


def build_report(
    store: ResultStore, run_id: str | None = None, against: str | None = None
) -> tuple[str, str]:
    """(run id, HTML page) for ``run_id`` (default: the latest complete run), its diffs
    and verdict against ``against`` (default: the previous run of its matrix)."""
    data = load_report_input(store, run_id, against)
    return data.run.run_id, render_report(data)
