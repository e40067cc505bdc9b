"""Terminal output of a run: a progress bar over cells and the comparison table."""

from __future__ import annotations

import statistics
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from flows import benchmark
from flows.benchmark import BenchmarkOutcome
from flows.report_command import render_text
from tasks.records import CellResult, Status

# Piped output gets room for the whole table rather than rich's 80-column default.
console = Console(width=None if Console().is_terminal else 140)


@contextmanager
def progress_bar(total: int) -> Iterator[None]:
    """Show one tick per finished cell while the flow runs."""
    columns = (TextColumn("cells"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        bar = progress.add_task("cells", total=total)

        def tick(result: CellResult) -> None:
            progress.advance(bar)

        benchmark.cell_listeners.append(tick)
        try:
            yield
        finally:
            benchmark.cell_listeners.remove(tick)


def _mb(size: int | None) -> str:
    return f"{size / 1e6:,.1f} MB" if size is not None else "-"


def summary_row(result: CellResult) -> list[str]:
    """One line of the classic comparison: size, packages, vulns C/H/M/L, startup."""
    cell, inspect, scan, probe = result.cell, result.inspect, result.scan, result.probe
    vulns = "-"
    if scan:
        counts = scan.vulns_by_severity()
        vulns = "/".join(str(counts[s]) for s in ("CRITICAL", "HIGH", "MEDIUM", "LOW"))
    return [
        cell.app,
        f"{cell.language}{cell.toolchain_version}",
        cell.base,
        _mb(inspect.size_bytes if inspect else None),
        _mb(inspect.compressed_bytes if inspect else None),
        str(len(scan.packages)) if scan else "-",
        vulns,
        f"{statistics.median(probe.startup_seconds):.3f} s" if probe else "-",
        _mb(probe.idle_memory_bytes if probe else None),
        str(result.status) + (f" ({result.failed_stage})" if result.failed_stage else ""),
    ]


COLUMNS = (
    "app", "toolchain", "base", "size", "compressed", "packages", "vulns C/H/M/L",
    "startup", "memory", "status",
)  # fmt: skip


def render_summary(outcome: BenchmarkOutcome) -> None:
    """Print the comparison table, why cells did not complete, where results went and
    how the run compares with the previous one."""
    run = outcome.record
    table = Table(title=f"basebench run {run.run_id} ({run.matrix})")
    for column in COLUMNS:
        left = column in ("app", "toolchain", "base", "status")
        table.add_column(column, justify="left" if left else "right", no_wrap=True)
    for result in run.cells:  # matrix order
        table.add_row(*summary_row(result))
    console.print(table)
    for result in run.cells:
        if result.status is not Status.OK:
            console.print(f"{result.cell.label}: {result.status}: {result.error}", highlight=False)
    console.print(outcome.published.message, highlight=False)
    if outcome.comparison is not None:
        console.print(render_text(outcome.comparison), highlight=False)
