"""Change over a matrix's nightly history, per cell and metric.

The metrics followed are those of ``tasks.metrics`` with ``history``. Exact ones (size,
layers, packages, vulnerability count, files no package owns) change exactly: every
night whose value differs from the night before is reported. Timed ones (build time,
startup, idle memory) are judged by E-divisive change points with a significance test,
so a slow drift or a step is caught while one noisy night is not.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

from tasks.analysis.statistics import ChangePoint, e_divisive
from tasks.dataset.reader import RunNotFound, find_run, list_runs, matrix_history, read_table
from tasks.dataset.stores import ResultStore
from tasks.metrics import METRIC, METRICS, Kind, with_totals
from tasks.records import cell_label

HISTORY_METRICS = tuple(metric.column for metric in METRICS if metric.history)
MIN_RUNS = 6  # E-divisive needs at least 3 nights on each side of a change
MIN_RATIO = 0.05  # a change point must also move the median by 5 % to be reported


@dataclass(frozen=True)
class HistoryChange:
    """A metric of one cell changed at ``run_id`` (the first run of the new level)."""

    cell_id: str
    cell: str
    metric: str
    run_id: str
    started_at: str
    before: float
    after: float
    method: str  # "exact" or "e-divisive"
    p_value: float | None = None

    @property
    def ratio(self) -> float:
        """Relative change, ``after / before - 1`` (inf from zero)."""
        if self.before == 0:
            return 0.0 if self.after == 0 else math.inf
        return self.after / self.before - 1

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": self.ratio}


def history_changes(
    results: pd.DataFrame,
    run_order: list[str],
    metrics: tuple[str, ...] = HISTORY_METRICS,
    alpha: float = 0.05,
) -> list[HistoryChange]:
    """Every change in ``results`` (rows of the runs in ``run_order``, oldest first).

    Only cells whose run status was ``ok`` count; a cell that failed one night has a gap
    there, not a zero. Build time, startup and memory are judged only over the runs in
    which the cell ran on its latest host class.
    """
    order = {run_id: n for n, run_id in enumerate(run_order)}
    results = with_totals(results)
    ok = results[(results["status"] == "ok") & results["run_id"].isin(order)]
    changes: list[HistoryChange] = []
    for cell_id, rows in ok.groupby("cell_id", sort=True):
        rows = rows.sort_values("run_id", key=lambda ids: ids.map(order))
        for metric in metrics:
            exact = METRIC[metric].kind is Kind.EXACT
            # Timings compare only on the host class the cell ran on last.
            series = (rows if exact else _same_host_class(rows))[["run_id", "started_at", metric]]
            series = series.dropna()
            if series.empty:
                continue
            finder = _exact_changes if exact else _change_points
            changes += finder(str(cell_id), cell_label(rows.iloc[-1]), metric, series, alpha)
    return changes


def _same_host_class(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows of a cell that ran on the host class of its latest row (null: unknown,
    for runs published before classes were recorded, is a class of its own)."""
    if "host_class" not in rows:
        return rows
    classes = rows["host_class"].astype(object).where(rows["host_class"].notna(), "")
    return rows[classes == classes.iloc[-1]]


def _exact_changes(
    cell_id: str, cell: str, metric: str, series: pd.DataFrame, alpha: float
) -> list[HistoryChange]:
    values = series[metric].astype(float).tolist()
    return [
        _change(cell_id, cell, metric, series.iloc[n], values[n - 1], values[n], "exact")
        for n in range(1, len(values))
        if values[n] != values[n - 1]
    ]


def noisy_change_points(
    values: list[float], alpha: float = 0.05, min_ratio: float = MIN_RATIO
) -> list[ChangePoint]:
    """E-divisive change points that are significant at ``alpha`` AND move the median by
    at least ``min_ratio``: evidence and magnitude, as for compare's startup verdict."""
    if len(values) < MIN_RUNS:
        return []
    return [
        point
        for point in e_divisive(values, alpha=alpha)
        if point.before and abs(point.after / point.before - 1) >= min_ratio
    ]


def _change_points(
    cell_id: str, cell: str, metric: str, series: pd.DataFrame, alpha: float
) -> list[HistoryChange]:
    values = series[metric].astype(float).tolist()
    return [
        _change(cell_id, cell, metric, series.iloc[p.index], p.before, p.after, "e-divisive", p)
        for p in noisy_change_points(values, alpha)
    ]


def _change(
    cell_id: str,
    cell: str,
    metric: str,
    row: pd.Series,
    before: float,
    after: float,
    method: str,
    point: Any = None,
) -> HistoryChange:
    return HistoryChange(
        cell_id=cell_id,
        cell=cell,
        metric=metric,
        run_id=str(row["run_id"]),
        started_at=pd.Timestamp(row["started_at"]).isoformat(),
        before=before,
        after=after,
        method=method,
        p_value=None if point is None else point.p_value,
    )


def load_history(store: ResultStore, matrix: str | None = None) -> tuple[pd.DataFrame, list[str]]:
    """(results rows, run ids oldest first) of ``matrix`` (default: the latest run's)."""
    runs = matrix_history(store, find_run(store) if matrix is None else _latest_of(store, matrix))
    run_ids = [m["run_id"] for m in runs]
    return read_table(store, "results", run_ids), run_ids


def _latest_of(store: ResultStore, matrix: str) -> dict[str, Any]:
    runs = [m for m in list_runs(store) if m.get("matrix") == matrix]
    if not runs:
        raise RunNotFound(
            f"--matrix {matrix}: no complete run of that matrix in {store.location()}"
        )
    return runs[-1]
