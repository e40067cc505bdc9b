"""Read complete runs back from a result store's tables, and choose runs.

A convenience on top of the Delta tables (any Delta reader works without basebench,
see docs/analytics.md): ``list_runs`` reads the ``runs`` table, which every publish
commits last, and ``read_table`` returns only rows of runs listed there, as pandas with
nullable dtypes. Choosing runs (the latest, one by id, the previous run of the same
matrix) is defined here once, for compare, report and every other reader.
"""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from tasks.dataset import legacy
from tasks.dataset.layout import PublishError
from tasks.dataset.schema import SCHEMAS, TABLES, build_tables
from tasks.dataset.stores import ResultStore
from tasks.dataset.tables import read_rows
from tasks.records import RunRecord

_log = logging.getLogger("basebench")

_PANDAS_TYPES = {
    pa.int32(): pd.Int32Dtype(),
    pa.int64(): pd.Int64Dtype(),
    pa.bool_(): pd.BooleanDtype(),
}


# ``runs.kind`` of a benchmark; runs published before the column existed have null there.
BENCHMARK_KINDS = (None, "benchmark")


class RunNotFound(LookupError):
    """No complete run fits the request; the message names the store and what to pass."""


def list_runs(store: ResultStore) -> list[dict[str, Any]]:
    """Every complete run (its ``runs`` row as a dict), oldest start first.

    ``date``, ``started_at`` and ``finished_at`` are ISO strings. A data file of
    ``runs`` that cannot be read is logged with the runs it holds, which are left out.
    Raises ``PublishError``
    when the store still holds runs in the manifest layout (``basebench migrate``).
    """
    if legacy.has_manifests(store):
        raise PublishError(
            f"{store.location()} holds runs in the manifest layout of an older basebench; "
            f"move them into the tables first: basebench migrate {store.location()}"
        )
    unreadable: list[str] = []
    rows = read_rows(store, "runs", unreadable=unreadable).to_pylist()
    for problem in unreadable:  # the other runs stay readable; this one is named
        _log.warning("basebench: %s", problem)
    for row in rows:
        for column in ("date", "started_at", "finished_at"):
            row[column] = row[column].isoformat()
        row["versions"] = dict(row["versions"])
    return sorted(rows, key=_order)


def read_table(store: ResultStore, table: str, run_ids: list[str] | None = None) -> pd.DataFrame:
    """One table over all complete runs (or only ``run_ids``) as a DataFrame, oldest run
    first and each run's rows in the order written.

    Integer and boolean columns use pandas' nullable dtypes, so a null stays null;
    map columns become dicts. Rows of a run missing from ``runs`` are never read.
    """
    if table not in SCHEMAS:
        raise ValueError(f"unknown table {table!r}; allowed: {', '.join(TABLES)}")
    complete = [run["run_id"] for run in list_runs(store)]
    wanted = complete if run_ids is None else [r for r in complete if r in set(run_ids)]
    rows = read_rows(store, table, wanted) if wanted else SCHEMAS[table].empty_table()
    # Runs in list_runs order; a stable sort keeps each run's rows as written.
    rank = pc.index_in(rows["run_id"], value_set=pa.array(wanted, pa.string()))
    order = pc.sort_indices(pa.table({"rank": rank}), sort_keys=[("rank", "ascending")])
    return _frame(table, rows.take(order))


def record_table(run: RunRecord, table: str) -> pd.DataFrame:
    """Table ``table`` of ``run`` (published or not) as ``read_table`` reads it back: the
    rows every writer reads, the terminal's summary as the report of the stored run."""
    return _frame(table, build_tables(run)[table])


def _frame(table: str, rows: pa.Table) -> pd.DataFrame:
    frame = rows.to_pandas(types_mapper=_PANDAS_TYPES.get)
    for field in SCHEMAS[table]:
        if pa.types.is_map(field.type):
            frame[field.name] = [None if v is None else dict(v) for v in frame[field.name]]
    return frame


def find_run(
    store: ResultStore, run_id: str | None = None, option: str = "--run"
) -> dict[str, Any]:
    """The ``runs`` row of run ``run_id``, or of the latest complete run when None.

    ``option`` names the command-line option in the error, e.g. ``--base``.
    """
    runs = list_runs(store)
    if run_id is not None:
        for run in runs:
            if run["run_id"] == run_id:
                return run
        raise RunNotFound(f"{option} {run_id}: no complete run with that id in {store.location()}")
    if not runs:
        raise RunNotFound(f"no complete runs in {store.location()}")
    return runs[-1]


# Two runs compare only when these agree: the same matrix, run with the same ``--only``
# filters, from the same registries. Unknown (null, a run published before they were
# recorded) agrees only with unknown. Host classes are judged per cell (compare).
COMPARABLE_BY = ("matrix", "filters", "image_sources")


def differences(run: dict[str, Any], other: dict[str, Any]) -> list[str]:
    """Why two ``runs`` rows are not comparable, one phrase each; empty when they are."""
    return [
        f"{key} {run.get(key)!r} vs {other.get(key)!r}"
        for key in COMPARABLE_BY
        if run.get(key) != other.get(key)
    ]


def matrix_history(store: ResultStore, until: dict[str, Any]) -> list[dict[str, Any]]:
    """The runs comparable with ``until`` (``COMPARABLE_BY``) up to and including it,
    oldest first."""
    return [
        run
        for run in list_runs(store)
        if not differences(run, until) and _order(run) <= _order(until)
    ]


def previous_run(store: ResultStore, run: dict[str, Any]) -> dict[str, Any] | None:
    """The comparable run just before ``run``; None when there is none.

    A benchmark's previous run is the previous benchmark: a rescan in between measured no
    build or startup time, so it cannot stand in for the night before.
    """
    earlier = matrix_history(store, run)[:-1]
    if run.get("kind") in BENCHMARK_KINDS:
        earlier = [r for r in earlier if r.get("kind") in BENCHMARK_KINDS]
    return earlier[-1] if earlier else None


def _order(run: dict[str, Any]) -> tuple[str, str]:
    return run["started_at"], run["run_id"]
