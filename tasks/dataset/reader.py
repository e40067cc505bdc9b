"""Read completed runs back from a result store: manifests, tables, and run selection.

Only runs with a manifest are ever read (see ``tasks.dataset.layout``). Choosing runs
(the latest, one by id, the previous run of the same matrix) is defined here once, for
compare, report and every other reader.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from tasks.dataset.layout import MANIFEST_NAME, MANIFESTS, PublishError
from tasks.dataset.schema import SCHEMAS, TABLES, conform_table
from tasks.dataset.stores import ResultStore

_PANDAS_TYPES = {
    pa.int32(): pd.Int32Dtype(),
    pa.int64(): pd.Int64Dtype(),
    pa.bool_(): pd.BooleanDtype(),
}


class RunNotFound(LookupError):
    """No complete run fits the request; the message names the store and what to pass."""


def list_runs(store: ResultStore) -> list[dict[str, Any]]:
    """Manifests of every completed run, oldest start first."""
    try:
        paths = store.list(MANIFESTS)
    except OSError as exc:
        raise PublishError(f"list runs in {store.location(MANIFESTS)}: {exc}") from exc
    manifests = [read_manifest(store, path) for path in paths if _is_manifest(path)]
    return sorted(manifests, key=lambda m: (m["started_at"], m["run_id"]))


def _is_manifest(path: str) -> bool:
    folder, _, name = path.rpartition("/")
    return folder == MANIFESTS and MANIFEST_NAME.fullmatch(name) is not None


def read_manifest(store: ResultStore, path: str) -> dict[str, Any]:
    try:
        manifest = json.loads(store.read(path))
    except OSError as exc:
        raise PublishError(f"read manifest {store.location(path)}: {exc}") from exc
    except ValueError as exc:
        raise PublishError(f"manifest {store.location(path)} is not valid JSON: {exc}") from exc
    if not isinstance(manifest, dict) or not {"run_id", "tables", "started_at"} <= manifest.keys():
        raise PublishError(
            f"manifest {store.location(path)} lacks run_id, started_at or tables; "
            "was it written by basebench?"
        )
    return manifest


def table_files(store: ResultStore, table: str, run_ids: list[str] | None = None) -> list[str]:
    """Store paths of ``table``'s files for completed runs (all, or those in ``run_ids``).

    Useful to build a pyarrow dataset (e.g. for DuckDB) over complete runs only.
    """
    if table not in SCHEMAS:
        raise ValueError(f"unknown table {table!r}; allowed: {', '.join(TABLES)}")
    wanted = None if run_ids is None else set(run_ids)
    return [
        manifest["tables"][table]["path"]
        for manifest in list_runs(store)
        if (wanted is None or manifest["run_id"] in wanted) and table in manifest["tables"]
    ]


def read_table(store: ResultStore, table: str, run_ids: list[str] | None = None) -> pd.DataFrame:
    """One table over all completed runs (or only ``run_ids``) as a DataFrame.

    Integer and boolean columns use pandas' nullable dtypes, so a null stays null;
    map columns become dicts. Runs without a manifest are never read.
    """
    paths = table_files(store, table, run_ids)  # rejects unknown table names
    schema = SCHEMAS[table]
    parts = [_read_part(store, path, table) for path in paths]
    combined = pa.concat_tables(parts) if parts else schema.empty_table()
    frame = combined.to_pandas(types_mapper=_PANDAS_TYPES.get)
    for field in schema:
        if pa.types.is_map(field.type):
            frame[field.name] = [None if v is None else dict(v) for v in frame[field.name]]
    return frame


def _read_part(store: ResultStore, path: str, table: str) -> pa.Table:
    location = store.location(path)
    try:
        data = store.read(path)
    except OSError as exc:
        raise PublishError(f"read {location}: {exc}") from exc
    try:
        part = pq.read_table(pa.BufferReader(data))
    except (pa.ArrowException, OSError) as exc:
        raise PublishError(f"{location} is not a readable Parquet file: {exc}") from exc
    try:
        return conform_table(table, part, location)
    except ValueError as exc:  # SchemaVersionError or a missing required column
        raise PublishError(str(exc)) from exc


def find_run(
    store: ResultStore, run_id: str | None = None, option: str = "--run"
) -> dict[str, Any]:
    """The manifest of run ``run_id``, or of the latest complete run when None.

    ``option`` names the command-line option in the error, e.g. ``--base``.
    """
    manifests = list_runs(store)
    if run_id is not None:
        for manifest in manifests:
            if manifest["run_id"] == run_id:
                return manifest
        raise RunNotFound(f"{option} {run_id}: no complete run with that id in {store.location()}")
    if not manifests:
        raise RunNotFound(f"no complete runs in {store.location()}")
    return manifests[-1]


def matrix_history(store: ResultStore, until: dict[str, Any]) -> list[dict[str, Any]]:
    """Manifests of the runs of ``until``'s matrix up to and including it, oldest first."""
    return [
        m
        for m in list_runs(store)
        if m.get("matrix") == until.get("matrix") and _order(m) <= _order(until)
    ]


def previous_run(store: ResultStore, run: dict[str, Any]) -> dict[str, Any] | None:
    """The run of the same matrix just before ``run``; None for a matrix's first run."""
    earlier = matrix_history(store, run)[:-1]
    return earlier[-1] if earlier else None


def _order(manifest: dict[str, Any]) -> tuple[str, str]:
    return manifest["started_at"], manifest["run_id"]
