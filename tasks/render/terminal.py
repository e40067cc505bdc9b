"""Terminal output: a progress bar over cells, the run's table, and a comparison."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tasks.analysis.attribution import attribution_lines
from tasks.analysis.compare import Comparison, origin_summary
from tasks.analysis.history import HistoryChange
from tasks.dataset.reader import record_table
from tasks.lifecycle import RunOutcome
from tasks.metrics import CELL_METRICS, METRIC, laid_out, present, severities_text
from tasks.records import (
    SEVERITIES,
    CellResult,
    RunKind,
    RunRecord,
    Status,
    cell_label,
    status_label,
)
from tasks.units import format_count

# Piped output gets room for the whole table rather than rich's 80-column default (the
# nightly matrix's longest line is 180 columns).
console = Console(width=None if Console().is_terminal else 200)


@contextmanager
def progress_bar(total: int) -> Iterator[Callable[[CellResult], None]]:
    """A bar over ``total`` cells; call the yielded function once per finished cell."""
    columns = (TextColumn("cells"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        bar = progress.add_task("cells", total=total)
        yield lambda result: progress.advance(bar)


Row = dict[str, Any]


def _by_origin(row: Row) -> str:
    # Unique ids inherited from the base / added by the build, e.g. ``4/1``; ``-`` when the
    # cell was not scanned or its base's layers are unknown.
    base, build = row.get("vulns_from_base"), row.get("vulns_from_build")
    return f"{format_count(base)}/{format_count(build)}" if present(base) else "-"


# The classic comparison, one line per cell: the cells metrics of ``tasks.metrics`` in
# order, vulnerabilities by severity and by origin.
SUMMARY_COLUMNS: list[tuple[str, Callable[[Row], str]]] = [
    ("app", lambda r: str(r["app"])),
    ("toolchain", lambda r: f"{r['language']}{r['toolchain_version']}"),
    ("base", lambda r: str(r["base"])),
    *laid_out(
        CELL_METRICS,
        lambda m: (m.label, lambda r: m.text(r[m.column])),
        [
            ("vulns C/H/M/L", lambda r: severities_text(r, SEVERITIES[:4])),  # no UNKNOWN
            ("vulns base/build", _by_origin),
        ],
    ),
    ("status", status_label),
]
COLUMNS = tuple(name for name, _ in SUMMARY_COLUMNS)


def summary_row(row: Row) -> list[str]:
    """One line of the summary from a ``results`` row (``record_table``)."""
    return [text(row) for _, text in SUMMARY_COLUMNS]


def run_title(run: RunRecord) -> str:
    """``basebench run <id> (<matrix>)``; a rescan names its source run."""
    if run.kind is RunKind.RESCAN:
        return f"basebench rescan {run.run_id} of run {run.source_run_id} ({run.matrix})"
    return f"basebench run {run.run_id} ({run.matrix})"


def render_summary(outcome: RunOutcome) -> None:
    """Print the comparison table, why cells did not complete, where results went, how
    the run compares with the previous one (a rescan: with its source run) and whether
    its vulnerability DB was stale."""
    run = outcome.record
    rows = record_table(run, "results").to_dict("records")  # matrix order
    table = Table(title=run_title(run))
    for column in COLUMNS:
        left = column in ("app", "toolchain", "base", "status")
        table.add_column(column, justify="left" if left else "right", no_wrap=True)
    for row in rows:
        table.add_row(*summary_row(row))
    console.print(table)
    # Errors and paths are plain text: "[/bin/sh -c ...]" in a build log is no rich markup.
    for row in rows:
        if row["status"] != Status.OK:
            line = f"{cell_label(row)}: {row['status']}: {row['error']}"
            console.print(line, highlight=False, markup=False)
    console.print(outcome.published.message, highlight=False, markup=False)
    if outcome.comparison is not None:
        console.print(render_comparison(outcome.comparison), highlight=False, markup=False)
    if run.db_staleness():
        console.print(run.db_staleness(), highlight=False, markup=False)


def render_comparison(comparison: Comparison) -> str:
    """The human-readable comparison: one line per change, then the verdict."""
    lines = [f"compare {comparison.base_run} -> {comparison.head_run}"]
    if comparison.changes:
        width = max(len(c.cell) for c in comparison.changes)
        lines += [
            f"{'REGRESSION' if c.regression else 'change':<10}  {c.kind:<16}  "
            f"{c.cell:<{width}}  {c.summary}"
            for c in comparison.changes
        ]
    else:
        lines.append("no changes")
    lines.extend(origin_summary(comparison))
    lines.extend(attribution_lines(list(comparison.vulnerability_changes)))
    count = len(comparison.regressions)
    lines.append(f"{count} regression(s)" if count else "clean: no regression")
    return "\n".join(lines)


def render_history(changes: list[HistoryChange]) -> str:
    """One line per change, oldest first within each cell and metric."""
    if not changes:
        return "no changes"
    width = max(len(c.cell) for c in changes)
    lines = []
    for c in changes:
        text = METRIC[c.metric].text
        evidence = f"p={c.p_value:.3f}" if c.p_value is not None else "exact"
        lines.append(
            f"{c.cell:<{width}}  {c.metric:<17}  {c.started_at[:10]}  {c.run_id}  "
            f"{text(c.before)} -> {text(c.after)} ({c.ratio:+.1%}, {evidence})"
        )
    return "\n".join(lines)
