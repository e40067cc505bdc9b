"""Terminal output: a progress bar over cells, the run's table, and a comparison."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tasks.analysis.attribution import attribution_lines
from tasks.analysis.compare import Comparison, origin_summary
from tasks.analysis.history import HistoryChange
from tasks.dataset.schema import ORIGIN_BASE, ORIGIN_BUILD, origin
from tasks.records import CellResult, RunKind, RunRecord, Status
from tasks.render.units import format_bytes, format_count, format_seconds

if TYPE_CHECKING:
    from flows.benchmark import BenchmarkOutcome
    from flows.rescan_run import RescanOutcome

# Piped output gets room for the whole table rather than rich's 80-column default.
console = Console(width=None if Console().is_terminal else 140)


@contextmanager
def progress_bar(total: int) -> Iterator[Callable[[CellResult], None]]:
    """A bar over ``total`` cells; call the yielded function once per finished cell."""
    columns = (TextColumn("cells"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        bar = progress.add_task("cells", total=total)
        yield lambda result: progress.advance(bar)


def vulns_by_origin(result: CellResult) -> str:
    """Unique vulnerability ids inherited from the base / added by the build, e.g. ``4/1``;
    ``-`` when the cell was not scanned or its base's layers are unknown."""
    base_layers = result.build.base_layers if result.build else ()
    if result.scan is None or not base_layers:
        return "-"
    counts = {
        where: len(
            {
                f.vulnerability_id
                for f in result.scan.findings
                if origin(f.layer_diff_id, base_layers) == where
            }
        )
        for where in (ORIGIN_BASE, ORIGIN_BUILD)
    }
    return f"{counts[ORIGIN_BASE]}/{counts[ORIGIN_BUILD]}"


def summary_row(result: CellResult) -> list[str]:
    """One line of the classic comparison: size, packages, vulns C/H/M/L and where they
    came from, startup."""
    cell, inspect, scan, probe = result.cell, result.inspect, result.scan, result.probe
    vulns = "-"
    if scan:
        counts = scan.vulns_by_severity()
        vulns = "/".join(str(counts[s]) for s in ("CRITICAL", "HIGH", "MEDIUM", "LOW"))
    return [
        cell.app,
        f"{cell.language}{cell.toolchain_version}",
        cell.base,
        format_bytes(inspect.size_bytes if inspect else None),
        format_bytes(inspect.compressed_bytes if inspect else None),
        str(len(scan.packages)) if scan else "-",
        vulns,
        vulns_by_origin(result),
        format_seconds(statistics.median(probe.startup_seconds) if probe else None),
        format_bytes(probe.idle_memory_bytes if probe else None),
        str(result.status) + (f" ({result.failed_stage})" if result.failed_stage else ""),
    ]


COLUMNS = (
    "app", "toolchain", "base", "size", "compressed", "packages", "vulns C/H/M/L",
    "vulns base/build", "startup", "memory", "status",
)  # fmt: skip


def run_title(run: RunRecord) -> str:
    """``basebench run <id> (<matrix>)``; a rescan names its source run."""
    if run.kind is RunKind.RESCAN:
        return f"basebench rescan {run.run_id} of run {run.source_run_id} ({run.matrix})"
    return f"basebench run {run.run_id} ({run.matrix})"


def render_summary(outcome: BenchmarkOutcome | RescanOutcome) -> None:
    """Print the comparison table, why cells did not complete, where results went, how
    the run compares with the previous one (a rescan: with its source run) and whether
    its vulnerability DB was stale."""
    run = outcome.record
    table = Table(title=run_title(run))
    for column in COLUMNS:
        left = column in ("app", "toolchain", "base", "status")
        table.add_column(column, justify="left" if left else "right", no_wrap=True)
    for result in run.cells:  # matrix order
        table.add_row(*summary_row(result))
    console.print(table)
    # Errors and paths are plain text: "[/bin/sh -c ...]" in a build log is no rich markup.
    for result in run.cells:
        if result.status is not Status.OK:
            line = f"{result.cell.label}: {result.status}: {result.error}"
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
        formatter = format_seconds if c.metric.endswith("seconds") else format_bytes
        if c.metric in ("layers", "packages", "vulns_total"):
            formatter = format_count
        evidence = f"p={c.p_value:.3f}" if c.p_value is not None else "exact"
        lines.append(
            f"{c.cell:<{width}}  {c.metric:<17}  {c.started_at[:10]}  {c.run_id}  "
            f"{formatter(c.before)} -> {formatter(c.after)} ({c.ratio:+.1%}, {evidence})"
        )
    return "\n".join(lines)
