"""The manifest layout that basebench wrote before the Delta tables: read it, move it.

    <table>/date=YYYY-MM-DD/run_id=<id>/part-0.parquet
    manifests/run_id=<id>.json        written LAST: a run without it is incomplete

``tasks.dataset.migrate`` moves such runs into the tables and ``basebench publish``
accepts a folder kept in this layout. ``publish_manifest_layout`` is that writer,
unchanged, kept for the migration's tests and the writer benchmark; nothing else
writes this layout any more.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from tasks.dataset.layout import PublishError, check_run_id
from tasks.dataset.schema import (
    PARTITION,
    SCHEMA_VERSION,
    SCHEMAS,
    TABLES,
    build_tables,
    conform_table,
    run_date,
)
from tasks.dataset.stores import ResultStore
from tasks.records import RunRecord

MANIFESTS = "manifests"
MANIFEST_NAME = re.compile(r"^run_id=(?P<run_id>.+)\.json$")
# A table's data file of one run: <table>/date=<date>/run_id=<id>/part-0.parquet
DATA_FILE = re.compile(r"^(?P<table>[a-z]+)/date=[^/]+/run_id=(?P<run_id>[^/]+)/part-0\.parquet$")
COMPRESSION = "zstd"
# Columns that came with the Delta tables: files of the manifest layout never had them.
ADDED_WITH_TABLES = frozenset(
    {
        PARTITION,
        "packages_from_base",
        "packages_from_build",
        "setuid_or_setgid_files",
        "unowned_files",
        "vulns_from_base",
        "vulns_from_build",
        "scan_report_path",
        "sbom_path",
        "sarif_path",
        "purl",
        "layer_diff_id",
        "origin",
    }
)


def table_path(table: str, date: str, run_id: str) -> str:
    """Store path of one table's file for one run, e.g. ``results/date=…/run_id=…/part-0…``."""
    return f"{table}/date={date}/run_id={run_id}/part-0.parquet"


def manifest_path(run_id: str) -> str:
    """Store path of a run's manifest."""
    return f"{MANIFESTS}/run_id={run_id}.json"


def publish_manifest_layout(run: RunRecord, store: ResultStore) -> str:
    """Write ``run`` the way basebench did before the tables; the manifest's location.

    Each table as one Parquet file with the columns of that time (``date`` was a Hive
    partition in the path; ``ADDED_WITH_TABLES`` did not exist), then the manifest. A
    run_id published again replaces the earlier copy.
    """
    check_run_id(run.run_id)
    tables = {
        name: table.drop_columns([c for c in table.column_names if c in ADDED_WITH_TABLES])
        for name, table in build_tables(run).items()
    }
    day = run_date(run).isoformat()
    files = {name: (table_path(name, day, run.run_id), table) for name, table in tables.items()}
    payloads = {path: _to_parquet(table) for path, table in files.values()}
    manifest = _manifest(run, day, {name: (p, t.num_rows) for name, (p, t) in files.items()})
    try:
        store.delete(manifest_path(run.run_id))  # hide the old run before touching its files
        remove_data_files(store, run.run_id)
        for path, data in payloads.items():
            store.write(path, data)
        store.write(manifest_path(run.run_id), json.dumps(manifest, indent=2).encode())
    except OSError as exc:
        raise PublishError(f"publish run {run.run_id} to {store.location()}: {exc}") from exc
    return store.location(manifest_path(run.run_id))


def list_manifests(store: ResultStore) -> list[dict[str, Any]]:
    """Manifests of every complete run in the manifest layout, oldest start first."""
    try:
        paths = store.list(MANIFESTS)
    except OSError as exc:
        raise PublishError(f"list runs in {store.location(MANIFESTS)}: {exc}") from exc
    manifests = [read_manifest(store, path) for path in paths if _is_manifest(path)]
    return sorted(manifests, key=lambda m: (m["started_at"], m["run_id"]))


def has_manifests(store: ResultStore) -> bool:
    """True when ``store`` holds any run in the manifest layout."""
    try:
        return any(_is_manifest(path) for path in store.list(MANIFESTS))
    except OSError as exc:
        raise PublishError(f"list runs in {store.location(MANIFESTS)}: {exc}") from exc


def _is_manifest(path: str) -> bool:
    folder, _, name = path.rpartition("/")
    return folder == MANIFESTS and MANIFEST_NAME.fullmatch(name) is not None


def read_manifest(store: ResultStore, path: str) -> dict[str, Any]:
    """One manifest; ``PublishError`` names it when it is unreadable or not basebench's."""
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


def read_run(store: ResultStore, manifest: dict[str, Any]) -> dict[str, pa.Table]:
    """Every table of one manifest-layout run, upgraded to the current schema (the
    ``date`` column from the manifest), in ``TABLES`` order; tables a manifest lacks
    (none in practice) are empty."""
    day = date.fromisoformat(manifest.get("date") or manifest["started_at"][:10])
    tables: dict[str, pa.Table] = {}
    for name in TABLES:
        entry = manifest["tables"].get(name)
        if entry is None:
            tables[name] = SCHEMAS[name].empty_table()
            continue
        location = store.location(entry["path"])
        try:
            part = pq.read_table(pa.BufferReader(store.read(entry["path"])))
        except OSError as exc:
            raise PublishError(f"read {location}: {exc}") from exc
        except pa.ArrowException as exc:
            raise PublishError(f"{location} is not a readable Parquet file: {exc}") from exc
        if PARTITION not in part.column_names:
            part = part.append_column(PARTITION, pa.array([day] * part.num_rows, pa.date32()))
        try:
            tables[name] = conform_table(name, part, location)
        except ValueError as exc:  # SchemaVersionError or a missing required column
            raise PublishError(str(exc)) from exc
    return tables


Remover = Callable[[ResultStore, str], int]


def remove_run(store: ResultStore, run_id: str) -> int:
    """Remove a run's manifest, then its data files; how many files went."""
    check_run_id(run_id)
    removed = store.delete(manifest_path(run_id))  # first: the run is no longer listed
    return removed + remove_data_files(store, run_id)


def data_files(store: ResultStore) -> dict[str, list[str]]:
    """run id -> store paths of its manifest-layout data files, manifest or not."""
    found: dict[str, list[str]] = {}
    for table in TABLES:
        try:
            paths = store.list(table)
        except OSError as exc:
            raise PublishError(f"list {store.location(table)}: {exc}") from exc
        for path in paths:
            if match := DATA_FILE.fullmatch(path):
                found.setdefault(match["run_id"], []).append(path)
    return found


def remove_data_files(store: ResultStore, run_id: str) -> int:
    """Remove ``run_id``'s data files in every table and date partition."""
    removed = 0
    for path in data_files(store).get(run_id, []):
        removed += store.delete(path.rsplit("/", 1)[0])
    return removed


def _to_parquet(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression=COMPRESSION)
    return bytes(sink.getvalue().to_pybytes())


def _manifest(run: RunRecord, day: str, files: dict[str, tuple[str, int]]) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "matrix": run.matrix,
        "date": day,
        "schema_version": SCHEMA_VERSION,
        "started_at": _iso(run.started_at),
        "finished_at": _iso(run.finished_at),
        "published_at": datetime.now(UTC).isoformat(),
        **run.cell_counts(),
        "tables": {name: {"path": path, "rows": rows} for name, (path, rows) in files.items()},
    }


def _iso(value: datetime) -> str:
    return (
        value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    ).isoformat()
