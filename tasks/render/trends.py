"""Trends at nightly scale: one small panel per language and base, a line per toolchain.

The startup panel draws each night's median with the night's min-max spread as a band
behind it (the noise a change has to stand out from); the size panel draws the image
size. Change points come from ``tasks.analysis.history`` (the same calls as
``basebench history``): exact for size, E-divisive for startup, marked as dashed lines.
"""

from __future__ import annotations

from html import escape
from typing import Any

import pandas as pd

from tasks.analysis.history import HistoryChange, history_changes
from tasks.metrics import METRIC, present
from tasks.render.charts import Line, Mark, trend_panel
from tasks.render.multiples import base_order, language_name, toolchain_colours, toolchains

# Metric (``tasks.metrics``; a spread draws a band) -> (panel title after
# "<language> on <base>: ", note).
TREND_METRICS: dict[str, tuple[str, str]] = {
    "startup_seconds": ("startup across runs", "median per night; band: that night's min to max"),
    "size_bytes": ("image size across runs", ""),
}
_COLUMNS = {
    "run_id", "cell_id", "status", "started_at", "app", "language", "toolchain_version", "base",
    "size_bytes", "startup_seconds", "startup_min_seconds", "startup_max_seconds",
}  # fmt: skip
MAX_RUNS = 60  # the most recent runs shown in a panel
DATE_FORMAT = "%m-%d"


def run_order(history: pd.DataFrame, runs: pd.DataFrame | None) -> list[tuple[str, pd.Timestamp]]:
    """(run_id, start) by run start; a run missing from ``runs`` uses its earliest cell."""
    starts = history.groupby("run_id")["started_at"].min().to_dict()
    if runs is not None:
        starts.update(zip(runs["run_id"], runs["started_at"], strict=True))
    ids = sorted(set(history["run_id"]), key=lambda r: (starts[r], r))
    return [(r, pd.Timestamp(starts[r])) for r in ids]


def trends_section(history: pd.DataFrame, runs: pd.DataFrame | None) -> str:
    """The trends section over the last ``MAX_RUNS`` runs; "" for fewer than two runs."""
    order = run_order(history, runs)[-MAX_RUNS:]
    if len(order) < 2:
        return ""
    run_ids = [r for r, _ in order]
    position = {r: n for n, r in enumerate(run_ids)}
    history = history[history["run_id"].isin(position)]
    labels = [start.strftime(DATE_FORMAT) for _, start in order]
    # Only the columns the panels and change points read: the results table is wide.
    history = history[[c for c in history.columns if c in _COLUMNS or c.startswith("vulns_")]]
    changes = history_changes(history, run_ids, tuple(TREND_METRICS))
    by_cell: dict[str, list[dict[str, Any]]] = {}
    for row in history[history["status"] == "ok"].to_dict("records"):
        by_cell.setdefault(str(row["cell_id"]), []).append(row)
    first, last = order[0][1], order[-1][1]
    note = f"{len(order)} runs from {first:%Y-%m-%d} to {last:%Y-%m-%d} (UTC, dates as month-day)"
    latest = history[history["run_id"] == run_ids[-1]].to_dict("records")
    parts = [
        f'<section id="trends"><h2>Trends over {len(order)} runs</h2><p class="note">{note}</p>'
    ]
    for language in sorted({str(r["language"]) for r in latest}):
        mine = [r for r in latest if r["language"] == language]
        colours = toolchain_colours(mine)
        panels = []
        for base in base_order(mine):
            cells = {
                str(r["cell_id"]): str(r["toolchain_version"]) for r in mine if r["base"] == base
            }
            for metric in TREND_METRICS:
                panels.append(
                    _panel(
                        language, base, metric, cells, colours, by_cell, position, labels, changes
                    )
                )
        parts.append(
            f'<section class="trend-language" id="trends-{escape(language)}">'
            f'<h3>{escape(language_name(language))}</h3><div class="panels">{"".join(panels)}'
            "</div></section>"
        )
    parts.append(_changes_table(changes))
    return "".join(parts) + "</section>"


def _panel(
    language: str,
    base: str,
    metric: str,
    cells: dict[str, str],
    colours: dict[str, str],
    by_cell: dict[str, list[dict[str, Any]]],
    position: dict[str, int],
    labels: list[str],
    changes: list[HistoryChange],
) -> str:
    title, extra = TREND_METRICS[metric]
    fmt, band = METRIC[metric].text, METRIC[metric].spread
    name = language_name(language)
    versions = toolchains([{"toolchain_version": v} for v in cells.values()])
    ordered = sorted(cells.items(), key=lambda item: versions.index(item[1]))
    lines = []
    for cell_id, version in ordered:
        values: list[float | None] = [None] * len(labels)
        low: list[float | None] = [None] * len(labels)
        high: list[float | None] = [None] * len(labels)
        for row in by_cell.get(cell_id, []):
            n = position[row["run_id"]]
            values[n] = _number(row[metric])
            if band is not None:
                low[n], high[n] = _number(row[band[0]]), _number(row[band[1]])
        lines.append(
            Line(
                cell_id,
                f"{name} {version}",
                tuple(values),
                colours[version],
                tuple(low) if band else (),
                tuple(high) if band else (),
            )
        )
    marks = [
        Mark(
            position[c.run_id],
            colours[cells[c.cell_id]],
            f"{c.cell}: {fmt(c.before)} -> {fmt(c.after)} ({c.ratio:+.1%}) "
            f"from run {c.run_id} ({c.started_at[:10]}, {c.method})",
        )
        for c in changes
        if c.cell_id in cells and c.metric == metric and c.run_id in position
    ]
    panel_note = "; ".join(p for p in (extra, _marks_note(marks)) if p)
    return trend_panel(
        f"trend-{metric.removesuffix('_seconds').removesuffix('_bytes')}-{language}-{base}",
        f"{name} on {base}: {title}",
        METRIC[metric].unit_text,
        labels,
        lines,
        fmt,
        marks,
        panel_note,
    )


def _marks_note(marks: list[Mark]) -> str:
    if not marks:
        return "no change point"
    return f"{len(marks)} change point{'s' if len(marks) > 1 else ''} (dashed)"


def _number(value: Any) -> float | None:
    return float(value) if present(value) else None


def _changes_table(changes: list[HistoryChange]) -> str:
    if not changes:
        return '<p id="trend-changes">No change point in these runs.</p>'
    body = []
    for c in sorted(changes, key=lambda c: (c.started_at, c.cell, c.metric)):
        fmt = METRIC[c.metric].text
        body.append(
            f"<tr><td>{escape(c.started_at[:10])}</td><td>{escape(c.cell)}</td>"
            f"<td>{escape(c.metric)}</td><td>{fmt(c.before)}</td><td>{fmt(c.after)}</td>"
            f"<td>{c.ratio:+.1%}</td><td>{escape(c.method)}</td>"
            f"<td>{escape(c.run_id)}</td></tr>"
        )
    return (
        '<table id="trend-changes"><caption>Change points (as basebench history finds them)'
        "</caption><thead><tr><th>from</th><th>cell</th><th>metric</th><th>before</th>"
        "<th>after</th><th>change</th><th>method</th><th>first run</th></tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table>"
    )
