"""Terminal output of a run: a progress bar over cells and the comparison table."""

from __future__ import annotations

import statistics
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from flows import benchmark
from tasks.matrix import MatrixConfig
from tasks.records import CellResult, RunRecord, Status
from tasks.stores import open_store

console = Console()


@contextmanager
def progress_bar(total: int) -> Iterator[None]:
    """Show one tick per finished cell while the flow runs."""
    columns = (TextColumn("cells"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        bar = progress.add_task("cells", total=total)

        def tick(result: CellResult) -> None:
            progress.advance(bar)
            if result.status is not Status.OK:
                progress.console.print(f"{result.cell.label}: {result.status}: {result.error}")

        benchmark.cell_listeners.append(tick)
        try:
            yield
        finally:
            benchmark.cell_listeners.remove(tick)


def _mb(size: int | None) -> str:
    return f"{size / 1e6:,.1f} MB" if size is not None else "-"


def summary_row(result: CellResult) -> list[str]:
    """One line of the classic comparison: size, packages, vulns C/H/M/L, startup."""
    inspect, scan, probe = result.inspect, result.scan, result.probe
    vulns = "-"
    if scan:
        counts = scan.vulns_by_severity()
        vulns = "/".join(str(counts[s]) for s in ("CRITICAL", "HIGH", "MEDIUM", "LOW"))
    startup = f"{statistics.median(probe.startup_seconds):.3f} s" if probe else "-"
    return [
        result.cell.label,
        result.cell.variant,
        _mb(inspect.size_bytes if inspect else None),
        str(len(scan.packages)) if scan else "-",
        vulns,
        startup,
        str(result.status) + (f" ({result.failed_stage})" if result.failed_stage else ""),
    ]


def render_summary(run: RunRecord, config: MatrixConfig) -> None:
    """Print the comparison table and where the results went."""
    table = Table(title=f"basebench run {run.run_id} ({run.matrix})")
    for column in ("cell", "variant", "size", "packages", "vulns C/H/M/L", "startup", "status"):
        table.add_column(column, justify="left" if column in ("cell", "status") else "right")
    for result in sorted(run.cells, key=lambda r: (r.cell.toolchain_version, r.cell.base)):
        table.add_row(*summary_row(result))
    console.print(table)
    for result in run.cells:
        if result.status is not Status.OK:
            console.print(f"[bold]{result.cell.label}[/]: {result.status}: {result.error}")
    console.print(f"results: {open_store(config.output, config.s3).location('')}")
