"""Publish a run's tables as Parquet into a result store, and read completed runs back.

Layout (Hive-style partitions, one file per table per run)::

    <table>/date=YYYY-MM-DD/run_id=<id>/part-0.parquet
    manifests/run_id=<id>.json        written LAST: a run without it is incomplete

Readers here only see runs that have a manifest. Publishing a run_id again first hides
the run (manifest removed), deletes its old files in every date partition, writes the
new files and then the manifest, so a rerun replaces and never duplicates.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from tasks.records import RunRecord
from tasks.stores import ResultStore
from tasks.tables import (
    SCHEMA_VERSION,
    SCHEMA_VERSION_KEY,
    SCHEMAS,
    TABLES,
    build_tables,
    run_date,
)

MANIFESTS = "manifests"
COMPRESSION = "zstd"
# A run id becomes part of paths and S3 keys: keep it to safe characters.
RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_MANIFEST_NAME = re.compile(r"^run_id=(?P<run_id>.+)\.json$")

_PANDAS_TYPES = {
    pa.int32(): pd.Int32Dtype(),
    pa.int64(): pd.Int64Dtype(),
    pa.bool_(): pd.BooleanDtype(),
}


class PublishError(RuntimeError):
    """Publishing or reading results failed; the message names the store location."""


def table_path(table: str, date: str, run_id: str) -> str:
    """Store path of one table's file for one run, e.g. ``results/date=…/run_id=…/part-0…``."""
    return f"{table}/date={date}/run_id={run_id}/part-0.parquet"


def manifest_path(run_id: str) -> str:
    """Store path of a run's manifest."""
    return f"{MANIFESTS}/run_id={run_id}.json"


def publish(run: RunRecord, store: ResultStore) -> str:
    """Write every table of ``run`` as Parquet, then its manifest; return the manifest location.

    Raises ``ValueError`` for a run id that cannot be a path, ``PublishError`` when the
    store fails (the run then has no manifest, so readers do not see a partial run).
    """
    check_run_id(run.run_id)
    # Everything that can fail on bad records happens before the store is touched.
    tables = build_tables(run)
    date = run_date(run).isoformat()
    files = {name: (table_path(name, date, run.run_id), table) for name, table in tables.items()}
    payloads = {path: _to_parquet(table) for path, table in files.values()}
    manifest = _manifest(run, date, {name: (p, t.num_rows) for name, (p, t) in files.items()})
    try:
        store.delete(manifest_path(run.run_id))  # hide the old run before touching its files
        _delete_run_files(store, run.run_id)
        for path, data in payloads.items():
            store.write(path, data)
        store.write(manifest_path(run.run_id), json.dumps(manifest, indent=2).encode())
    except OSError as exc:
        raise PublishError(f"publish run {run.run_id} to {store.location()}: {exc}") from exc
    return store.location(manifest_path(run.run_id))


def check_run_id(run_id: str) -> None:
    """Raise ``ValueError`` unless ``run_id`` is safe as a path and S3 key component."""
    if not RUN_ID_PATTERN.fullmatch(run_id):
        raise ValueError(
            f"run_id {run_id!r} is not allowed: use 1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )


def _to_parquet(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression=COMPRESSION)
    return bytes(sink.getvalue().to_pybytes())


def _manifest(run: RunRecord, date: str, files: dict[str, tuple[str, int]]) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "matrix": run.matrix,
        "date": date,
        "schema_version": SCHEMA_VERSION,
        "started_at": _iso(run.started_at),
        "finished_at": _iso(run.finished_at),
        "published_at": datetime.now(UTC).isoformat(),
        **_cell_counts(run),
        "tables": {name: {"path": path, "rows": rows} for name, (path, rows) in files.items()},
    }


def _cell_counts(run: RunRecord) -> dict[str, int]:
    statuses = [str(result.status) for result in run.cells]
    return {
        "cells": len(statuses),
        "cells_ok": statuses.count("ok"),
        "cells_failed": statuses.count("failed"),
        "cells_skipped": statuses.count("skipped"),
    }


def _iso(value: datetime) -> str:
    return (
        value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    ).isoformat()


def _delete_run_files(store: ResultStore, run_id: str) -> None:
    # Look in every date partition: a rerun may start on another day than the first try.
    partition = f"run_id={run_id}"
    for table in TABLES:
        folders = {
            path.rsplit("/", 1)[0]
            for path in store.list(table)
            if partition in path.split("/")[:-1]
        }
        for folder in sorted(folders):
            store.delete(folder)


def list_runs(store: ResultStore) -> list[dict[str, Any]]:
    """Manifests of every completed run, oldest start first."""
    try:
        paths = store.list(MANIFESTS)
    except OSError as exc:
        raise PublishError(f"list runs in {store.location(MANIFESTS)}: {exc}") from exc
    manifests = [_read_manifest(store, path) for path in paths if _is_manifest(path)]
    return sorted(manifests, key=lambda m: (m["started_at"], m["run_id"]))


def _is_manifest(path: str) -> bool:
    folder, _, name = path.rpartition("/")
    return folder == MANIFESTS and _MANIFEST_NAME.fullmatch(name) is not None


def _read_manifest(store: ResultStore, path: str) -> dict[str, Any]:
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
    parts = [_read_part(store, path, schema) for path in paths]
    combined = pa.concat_tables(parts) if parts else schema.empty_table()
    frame = combined.to_pandas(types_mapper=_PANDAS_TYPES.get)
    for field in schema:
        if pa.types.is_map(field.type):
            frame[field.name] = [None if v is None else dict(v) for v in frame[field.name]]
    return frame


def _read_part(store: ResultStore, path: str, schema: pa.Schema) -> pa.Table:
    location = store.location(path)
    try:
        data = store.read(path)
    except OSError as exc:
        raise PublishError(f"read {location}: {exc}") from exc
    try:
        part = pq.read_table(pa.BufferReader(data))
    except (pa.ArrowException, OSError) as exc:
        raise PublishError(f"{location} is not a readable Parquet file: {exc}") from exc
    version = (part.schema.metadata or {}).get(SCHEMA_VERSION_KEY, b"?").decode()
    if version != str(SCHEMA_VERSION):
        raise PublishError(
            f"{location} has schema version {version}; this basebench reads {SCHEMA_VERSION}"
        )
    # Parquet round trips rename nested fields (map entries); cast back to the exact schema.
    return part.cast(schema)
