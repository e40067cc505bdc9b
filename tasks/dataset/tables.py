"""The dataset's tables as Delta Lake tables (delta-rs): create, append a run, read rows.

One table per name in ``SCHEMAS``, in the folder of that name in a result store
(``ResultStore.table_location``), partitioned by ``date``. Every append of a run is one
commit carrying the app transaction ``app_id(run_id)``: a table whose log already has
it holds the run, so appending the run again is a no-op, and two writers racing with
the same run id end with one copy (delta-rs rejects the second commit). Appends of
different runs commit side by side (delta-rs retries them on a newer log version).

Each table's properties hold ``basebench.schema_version``; readers upgrade older tables
as they read them (``conform_table``) and refuse newer ones, writers append only to a
table of the current version. Every commit says who wrote it and which run it holds
(``basebench.writer``, ``basebench.run_id`` in the commit info).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib.metadata import version as package_version
from typing import Final

import pyarrow as pa
import pyarrow.dataset as ds
from deltalake import CommitProperties, DeltaTable, Transaction, WriterProperties, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError

from tasks.dataset.layout import APP_VERSION, PublishError, app_id
from tasks.dataset.schema import (
    PARTITION,
    SCHEMA_VERSION,
    SCHEMAS,
    SchemaVersionError,
    conform_table,
)
from tasks.dataset.stores import ResultStore, TableLocation

SCHEMA_VERSION_PROPERTY = "basebench.schema_version"
# Time travel (``DeltaTable(..., version=N)``) needs the log entries of version N: keep
# them for ten years instead of Delta's default 30 days. Data files are never removed
# by basebench (it only appends), so every version stays readable. Opening a table
# reads every commit since the last checkpoint (several times over, in delta-rs 1.6):
# a checkpoint every 10 commits instead of 100 keeps that to a few dozen requests.
TABLE_PROPERTIES = {
    "delta.logRetentionDuration": "interval 3650 days",
    "delta.checkpointInterval": "10",
    SCHEMA_VERSION_PROPERTY: str(SCHEMA_VERSION),
}
COMPRESSION: Final = "ZSTD"
# How often an append starts over after a commit conflict that delta-rs cannot resolve
# by itself (a concurrent table creation or metadata change).
CONFLICT_ATTEMPTS = 5

# What delta-rs raises: DeltaError and its subclasses, OSError for the object store.
DELTA_ERRORS = (DeltaError, OSError, pa.ArrowException)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_BACKTRACE = re.compile(r" 0: \S")
LOG_FOLDER = "_delta_log"


@dataclass(frozen=True)
class Commit:
    """What appending one run to one table did."""

    table: str
    rows: int
    written: bool  # False: the table already held the run (its app transaction)


def describe(exc: BaseException) -> str:
    """delta-rs's multi-line, coloured error as one plain line, without the backtrace
    some of its errors append (`` 0: <unknown> 1: ...``)."""
    text = " ".join(_ANSI.sub("", str(exc)).replace("↳", "").split())
    return _BACKTRACE.split(text, maxsplit=1)[0]


def bad_log_entries(store: ResultStore, name: str) -> list[str]:
    """Store paths of the commit log entries of table ``name`` that are not JSON lines
    (a corrupt or truncated commit), for an error that names them."""
    bad = []
    for path in store.list(f"{name}/{LOG_FOLDER}"):
        if not path.endswith(".json"):
            continue
        try:
            for line in store.read(path).decode("utf-8").splitlines():
                if line.strip():
                    json.loads(line)
        except (ValueError, OSError):
            bad.append(path)
    return bad


def open_table(store: ResultStore, name: str, version: int | None = None) -> DeltaTable | None:
    """Table ``name`` of ``store`` (at ``version``, default the latest); None if absent."""
    location = store.table_location(name)
    try:
        return DeltaTable(location.uri, version=version, storage_options=location.storage_options)
    except TableNotFoundError:
        return None


def dataset(store: ResultStore, table: DeltaTable, name: str) -> ds.Dataset:
    """A pyarrow dataset over the table's current files, read through the store's native
    filesystem (see ``TableLocation.filesystem``)."""
    return table.to_pyarrow_dataset(filesystem=store.table_location(name).filesystem)


def schema_version(table: DeltaTable, where: str) -> int:
    """The table's ``basebench.schema_version``; ``SchemaVersionError`` when absent or bad."""
    raw = table.metadata().configuration.get(SCHEMA_VERSION_PROPERTY)
    if raw is None:
        raise SchemaVersionError(
            f"{where}: no {SCHEMA_VERSION_PROPERTY} in the table properties; not a basebench table?"
        )
    try:
        return int(raw)
    except ValueError:
        raise SchemaVersionError(
            f"{where}: {SCHEMA_VERSION_PROPERTY} {raw!r} is not a whole number"
        ) from None


def holds_run(table: DeltaTable, run_id: str) -> bool:
    """True when the table's log has the run's app transaction (the run is in it)."""
    committed = table.transaction_version(app_id(run_id))
    return committed is not None and committed >= APP_VERSION


def append_run(store: ResultStore, name: str, rows: pa.Table, run_id: str) -> Commit:
    """Append one run's ``rows`` to table ``name`` in one commit, creating the table first
    if needed; nothing when the table already holds the run.

    Raises ``PublishError`` naming the table when the store fails or the table's
    schema version is not this basebench's.
    """
    location = store.table_location(name)
    where = store.location(name)
    properties = CommitProperties(
        custom_metadata={
            "basebench.writer": f"basebench {package_version('basebench')}",
            "basebench.run_id": run_id,
            SCHEMA_VERSION_PROPERTY: str(SCHEMA_VERSION),
        },
        app_transactions=[Transaction(app_id(run_id), APP_VERSION)],
    )
    last: Exception | None = None
    for _ in range(CONFLICT_ATTEMPTS):
        try:
            table = _create_or_open(location, name)
            _check_writable(table, where)
            if holds_run(table, run_id):
                return Commit(name, rows.num_rows, written=False)
            write_deltalake(
                table,
                rows,
                mode="append",
                partition_by=[PARTITION],
                # Columns a newer basebench adds (nullable, by the policy) join the table.
                schema_mode="merge",
                writer_properties=WriterProperties(compression=COMPRESSION),
                commit_properties=properties,
            )
            return Commit(name, rows.num_rows, written=True)
        except CommitFailedError as exc:
            last = exc  # a concurrent commit won; read the log again and decide again
        except SchemaVersionError as exc:
            raise PublishError(str(exc)) from exc
        except DELTA_ERRORS as exc:
            raise PublishError(f"append run {run_id} to {where}: {describe(exc)}") from exc
    raise PublishError(
        f"append run {run_id} to {where}: still conflicting after {CONFLICT_ATTEMPTS} "
        f"attempts: {describe(last) if last else 'no detail'}"
    )


def _create_or_open(location: TableLocation, name: str) -> DeltaTable:
    # Opening first: create(mode="ignore") would open an existing table too, but reads
    # its log twice as often.
    try:
        return DeltaTable(location.uri, storage_options=location.storage_options)
    except TableNotFoundError:
        pass
    # mode="ignore": a table another writer created meanwhile is opened as it is. Two
    # first writers racing make one fail with CommitFailedError: append_run starts over.
    return DeltaTable.create(
        location.uri,
        SCHEMAS[name],
        mode="ignore",
        partition_by=[PARTITION],
        name=name,
        description=f"basebench {name} (docs/dataset.md)",
        configuration=TABLE_PROPERTIES,
        storage_options=location.storage_options,
        raise_if_key_not_exists=False,  # basebench.* properties are ours, not Delta's
    )


def _check_writable(table: DeltaTable, where: str) -> None:
    found = schema_version(table, where)
    if found > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"{where} has schema version {found}, newer than this basebench writes "
            f"({SCHEMA_VERSION}); upgrade basebench to publish to it"
        )
    if found < SCHEMA_VERSION:
        raise SchemaVersionError(
            f"{where} has schema version {found}, older than this basebench writes "
            f"({SCHEMA_VERSION}); run `basebench migrate` on the output first"
        )


def read_rows(
    store: ResultStore,
    name: str,
    run_ids: list[str] | None = None,
    version: int | None = None,
    unreadable: list[str] | None = None,
) -> pa.Table:
    """Rows of ``run_ids`` (all when None) in table ``name``, as the current schema.

    A missing table reads as empty. Raises ``PublishError`` for an unreadable table or
    one whose schema version this basebench cannot read. A data file that cannot be
    read (corrupt, truncated) is named with the runs it holds: when it holds none of
    ``run_ids`` it is passed over; else the error names it, unless ``unreadable`` is
    given, which collects such problems and the other files are read.
    """
    where = store.location(name)
    try:
        table = open_table(store, name, version)
        if table is None:
            return SCHEMAS[name].empty_table()
        found = schema_version(table, where)
        wanted = None if run_ids is None else ds.field("run_id").isin(run_ids)
        files = dataset(store, table, name)
        try:
            data = files.to_table(filter=wanted)
        except DELTA_ERRORS:
            data = _read_file_by_file(table, files, wanted, run_ids, where, unreadable)
        return conform_table(name, data, where, found)
    except ValueError as exc:  # SchemaVersionError or a missing required column
        raise PublishError(str(exc)) from exc
    except DELTA_ERRORS as exc:
        bad = bad_log_entries(store, name) if version is None else []
        if not bad:
            raise PublishError(f"read {where}: {describe(exc)}") from exc
        problem = (
            f"{store.location(bad[0])}: corrupt commit log entry of table {name} "
            f"({describe(exc)}); the table cannot be read past it: restore that file"
        )
        return _read_before(store, name, run_ids, bad[0], problem, unreadable)


def _read_before(
    store: ResultStore,
    name: str,
    run_ids: list[str] | None,
    bad_entry: str,
    problem: str,
    unreadable: list[str] | None,
) -> pa.Table:
    # The runs committed before a corrupt log entry are still readable at the version
    # before it: given when they are all that is asked for (or problems are collected).
    before = int(bad_entry.rsplit("/", 1)[-1].split(".")[0]) - 1
    if before < 0:
        raise PublishError(problem)
    rows = read_rows(store, name, run_ids, version=before)
    found = set(rows.column("run_id").to_pylist())
    if run_ids is not None and set(run_ids) <= found:
        return rows
    if unreadable is None:
        raise PublishError(f"{problem}; runs committed before it stay readable")
    unreadable.append(f"{problem}; runs committed after it are left out")
    return rows


def _read_file_by_file(
    table: DeltaTable,
    files: ds.Dataset,
    wanted: ds.Expression | None,
    run_ids: list[str] | None,
    where: str,
    unreadable: list[str] | None,
) -> pa.Table:
    # The slow path, after a whole-table read failed: which file is bad, and which
    # runs can still be read without it (a file's run ids from the log's statistics).
    runs_in = _runs_by_file(table)
    pieces = []
    for fragment in files.get_fragments():
        low, high = runs_in.get(fragment.path, (None, None))
        known = run_ids is not None and low is not None and high is not None
        if known and not any(low <= run <= high for run in run_ids or []):  # type: ignore[operator]
            continue
        try:
            pieces.append(fragment.to_table(filter=wanted, schema=files.schema))
        except DELTA_ERRORS as exc:
            holds = f"run {low}" if low and low == high else f"runs {low} to {high}"
            problem = (
                f"{where}/{fragment.path}: unreadable data file ({describe(exc)}); it holds "
                f"rows of {holds if low else 'runs not recorded in the log'}"
            )
            if unreadable is None:
                raise PublishError(f"{problem}; runs in other files stay readable") from exc
            unreadable.append(f"{problem}; those runs are left out")
    return pa.concat_tables(pieces) if pieces else files.schema.empty_table()


def _runs_by_file(table: DeltaTable) -> dict[str, tuple[str | None, str | None]]:
    """data file path -> (least, greatest) run id in it, from the log's statistics."""
    actions = pa.table(table.get_add_actions(flatten=True))
    if "min.run_id" not in actions.column_names or "max.run_id" not in actions.column_names:
        return {}
    rows = actions.select(["path", "min.run_id", "max.run_id"]).to_pylist()
    return {row["path"]: (row["min.run_id"], row["max.run_id"]) for row in rows}


def count_rows(store: ResultStore, name: str, run_id: str) -> int:
    """Rows of one run in table ``name`` (0 when the table does not exist)."""
    where = store.location(name)
    try:
        table = open_table(store, name)
        if table is None:
            return 0
        rows = dataset(store, table, name).count_rows(filter=ds.field("run_id") == run_id)
        return int(rows)
    except DELTA_ERRORS as exc:
        raise PublishError(f"count rows of run {run_id} in {where}: {describe(exc)}") from exc


__all__ = [
    "SCHEMA_VERSION_PROPERTY",
    "TABLE_PROPERTIES",
    "Commit",
    "append_run",
    "count_rows",
    "dataset",
    "describe",
    "holds_run",
    "open_table",
    "read_rows",
    "schema_version",
]
