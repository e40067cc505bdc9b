"""Turn a ``RunRecord`` into the five Arrow tables that basebench publishes.

Pure functions over plain records: no I/O here (``tasks.dataset.writer`` writes the tables).
Every schema is explicit and carries ``basebench.schema_version`` and ``basebench.table``
in its metadata; the Delta tables keep the version as a table property
(``tasks.dataset.tables``), files of the older manifest layout in their own metadata.

Versioning policy (``conform_table`` applies it to every table and file read back):

- Adding a nullable column does not bump ``SCHEMA_VERSION``: older files simply lack
  it and read back with nulls there.
- Renaming, retyping or removing a column bumps ``SCHEMA_VERSION`` to N+1 and registers
  ``UPGRADES[N]``, which turns a version-N table into a version-N+1 one, so files of
  every version from ``OLDEST_READABLE_VERSION`` on stay readable.
- A file with a newer version than ``SCHEMA_VERSION`` is refused with a clear error
  (``SchemaVersionError``): an older basebench cannot know what the new columns mean.

Timestamps are stored as UTC; a naive ``datetime`` in a record is taken to be UTC already.
A part that a cell never reached (a failed or skipped cell) gives null columns, never 0.

Every table has ``date`` (the UTC date the run started), the partition column of the
Delta tables: it lives in the table's log and paths, never inside the data files.

``origin`` says where a package or finding comes from: ``base`` when its layer is one of
the runtime base image's layers (``BuildResult.base_layers``), ``build`` when the build
added that layer, null when either is unknown.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime
from typing import Any

import pyarrow as pa

from tasks.dataset.layout import document_path
from tasks.records import SEVERITIES, CellResult, InspectResult, RunRecord, ScanResult

SCHEMA_VERSION = 1
# Files as old as this are still read (upgraded step by step through UPGRADES).
OLDEST_READABLE_VERSION = 1
SCHEMA_VERSION_KEY = b"basebench.schema_version"
TABLE_KEY = b"basebench.table"

# pyperf's rule: a benchmark whose stdev reaches 10 % of its mean is reported as unstable.
UNSTABLE_STDEV_RATIO = 0.1

_TIMESTAMP = pa.timestamp("us", tz="UTC")

# The partition column of every table, and the values of ``origin``.
PARTITION = "date"
ORIGIN_BASE, ORIGIN_BUILD = "base", "build"
# Results columns that are the inspect stage's fields as they are (the program's apart).
INSPECTED = tuple(f.name for f in dataclasses.fields(InspectResult) if f.name != "program")
# Names of a cell's scan documents beside the tables, by results column.
DOCUMENT_COLUMNS = {
    "scan_report_path": "trivy.json",
    "sbom_path": "sbom.cdx.json",
    "sarif_path": "report.sarif",
}


def _schema(table: str, fields: list[pa.Field]) -> pa.Schema:
    metadata = {SCHEMA_VERSION_KEY: str(SCHEMA_VERSION).encode(), TABLE_KEY: table.encode()}
    return pa.schema(fields, metadata=metadata)


def _required(name: str, type_: pa.DataType) -> pa.Field:
    return pa.field(name, type_, nullable=False)


def _optional(name: str, type_: pa.DataType) -> pa.Field:
    return pa.field(name, type_, nullable=True)


_S = pa.string()
_I32 = pa.int32()
_I64 = pa.int64()
_F64 = pa.float64()
_B = pa.bool_()
_DATE = pa.date32()

RESULTS_SCHEMA = _schema(
    "results",
    [
        # identity
        _required("run_id", _S),
        _required(PARTITION, _DATE),
        _required("cell_id", _S),
        _required("matrix", _S),
        _required("app", _S),
        _required("language", _S),
        _required("toolchain_version", _S),
        _required("base", _S),
        _required("variant", _S),
        _required("cgo_enabled", _B),
        _optional("linkage", _S),
        _required("base_ref", _S),
        _optional("base_digest", _S),
        _required("builder_ref", _S),
        _optional("builder_digest", _S),
        _required("host", _S),
        _optional("host_class", _S),
        _optional("image_id", _S),
        # size
        _optional("size_bytes", _I64),
        _optional("compressed_bytes", _I64),
        _optional("layers", _I32),
        # content
        _optional("os_family", _S),
        _optional("os_version", _S),
        _optional("packages", _I32),
        _optional("packages_by_type", pa.map_(_S, _I32)),
        _optional("packages_from_base", _I32),
        _optional("packages_from_build", _I32),
        _optional("files", _I64),
        _optional("unowned_files", _I64),
        _optional("has_shell", _B),
        _optional("has_package_manager", _B),
        _optional("setuid_files", _I32),
        _optional("setuid_or_setgid_files", _I32),
        _optional("runs_as_root", _B),
        _optional("user", _S),
        _optional("base_forged", _B),
        _optional("builder_forged", _B),
        _optional("program_path", _S),
        _optional("program_linkage", _S),
        _optional("program_interpreter", _S),
        _optional("program_libraries", pa.list_(_S)),
        _optional("program_cgo", _B),
        # security
        _optional("vulns_critical", _I32),
        _optional("vulns_high", _I32),
        _optional("vulns_medium", _I32),
        _optional("vulns_low", _I32),
        _optional("vulns_unknown", _I32),
        _optional("vuln_findings", _I32),
        _optional("vulns_fixable", _I32),
        _optional("vulns_from_base", _I32),
        _optional("vulns_from_build", _I32),
        _optional("scanner", _S),
        _optional("scanner_version", _S),
        _optional("scanner_db_updated_at", _TIMESTAMP),
        *(_optional(column, _S) for column in DOCUMENT_COLUMNS),
        # time
        _optional("build_seconds", _F64),
        _optional("build_tool", _S),
        _optional("build_concurrent_stages", pa.list_(_S)),
        _optional("startup_seconds", _F64),
        _optional("startup_min_seconds", _F64),
        _optional("startup_max_seconds", _F64),
        _optional("startup_stdev_seconds", _F64),
        _optional("startup_unstable", _B),
        _optional("startup_concurrent_stages", pa.list_(_S)),
        _optional("idle_memory_bytes", _I64),
        _optional("idle_memory_error", _S),
        # status
        _required("status", _S),
        _optional("failed_stage", _S),
        _optional("error", _S),
        _required("attempts", _I32),
        _required("started_at", _TIMESTAMP),
        _required("finished_at", _TIMESTAMP),
    ],
)

SAMPLES_SCHEMA = _schema(
    "samples",
    [
        _required("run_id", _S),
        _required(PARTITION, _DATE),
        _required("cell_id", _S),
        _required("repetition", _I32),
        _required("startup_seconds", _F64),
        _optional("concurrent_stages", pa.list_(_S)),
    ],
)

VULNERABILITIES_SCHEMA = _schema(
    "vulnerabilities",
    [
        _required("run_id", _S),
        _required(PARTITION, _DATE),
        _required("cell_id", _S),
        _required("vulnerability_id", _S),
        _required("package", _S),
        _required("installed_version", _S),
        _optional("fixed_version", _S),
        _required("severity", _S),
        _required("status", _S),
        _optional("purl", _S),
        _optional("layer_diff_id", _S),
        _optional("origin", _S),
    ],
)

PACKAGES_SCHEMA = _schema(
    "packages",
    [
        _required("run_id", _S),
        _required(PARTITION, _DATE),
        _required("cell_id", _S),
        _required("name", _S),
        _required("version", _S),
        _required("source_name", _S),
        _required("type", _S),
        _optional("purl", _S),
        _optional("layer_diff_id", _S),
        _optional("origin", _S),
    ],
)

MACHINE_TYPE = pa.struct(
    [
        _required("host", _S),
        _optional("host_class", _S),
        _optional("cpu_model", _S),
        _optional("cpus", _I32),
        _optional("memory_bytes", _I64),
        _optional("kernel", _S),
        _optional("platform", _S),
        _optional("engine_version", _S),
        _optional("storage_driver", _S),
        _optional("builder", _S),
    ]
)

RUNS_SCHEMA = _schema(
    "runs",
    [
        _required("run_id", _S),
        _required(PARTITION, _DATE),
        _required("matrix", _S),
        _required("config_hash", _S),
        _required("started_at", _TIMESTAMP),
        _required("finished_at", _TIMESTAMP),
        _required("versions", pa.map_(_S, _S)),
        _required("hosts", pa.list_(_S)),
        _required("cells", _I32),
        _required("cells_ok", _I32),
        _required("cells_failed", _I32),
        _required("cells_skipped", _I32),
        # what kind of run, and the vulnerability DB it scanned against
        _optional("kind", _S),
        _optional("source_run_id", _S),
        _optional("scanner_db_version", _I32),
        _optional("scanner_db_updated_at", _TIMESTAMP),
        _optional("scanner_db_age_seconds", _I64),
        _optional("scanner_db_max_age_hours", _F64),
        _optional("scanner_db_stale", _B),
        _optional("filters", _S),
        _optional("image_sources", _S),
        _optional("machines", pa.list_(MACHINE_TYPE)),
    ],
)

SCHEMAS: dict[str, pa.Schema] = {
    "results": RESULTS_SCHEMA,
    "samples": SAMPLES_SCHEMA,
    "vulnerabilities": VULNERABILITIES_SCHEMA,
    "packages": PACKAGES_SCHEMA,
    "runs": RUNS_SCHEMA,
}
TABLES: tuple[str, ...] = tuple(SCHEMAS)

Row = dict[str, Any]


def build_tables(run: RunRecord) -> dict[str, pa.Table]:
    """All five tables of one run, keyed by table name (``TABLES`` order).

    Raises ``ValueError`` naming the table and column if a required value is missing.
    """
    row_builders: dict[str, Callable[[RunRecord], list[Row]]] = {
        "results": _results_rows,
        "samples": _samples_rows,
        "vulnerabilities": _vulnerability_rows,
        "packages": _package_rows,
        "runs": lambda r: [_run_row(r)],
    }
    day = run_date(run)
    return {
        name: _to_table(name, [{**row, PARTITION: day} for row in build(run)])
        for name, build in row_builders.items()
    }


def run_date(run: RunRecord) -> date:
    """The partition date of a run: the UTC date of its start."""
    return _utc(run.started_at).date()


def _to_table(name: str, rows: list[Row]) -> pa.Table:
    schema = SCHEMAS[name]
    table = pa.Table.from_pylist(rows, schema=schema)
    for field in schema:
        if not field.nullable and table.column(field.name).null_count:
            raise ValueError(f"table {name}: column {field.name} is required but has nulls")
    return table


def _utc(value: datetime) -> datetime:
    # Naive datetimes are taken as UTC: records are stamped with UTC by the flow.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _results_rows(run: RunRecord) -> list[Row]:
    return [
        {
            "run_id": run.run_id,
            "matrix": run.matrix,
            **_identity(result),
            "host_class": run.host_class(result.host),
            **_size_and_content(result),
            **_security(result.scan),
            **_origins(result),
            **_documents(run.run_id, result),
            **_timing(result),
            **_status(result),
        }
        for result in run.cells
    ]


def origin(layer_diff_id: str, base_layers: Iterable[str]) -> str | None:
    """``base`` when ``layer_diff_id`` is one of the base image's layers, ``build`` when
    the build added it; None when the layer or the base's layers are unknown."""
    layers = set(base_layers)
    if not layer_diff_id or not layers:
        return None
    return ORIGIN_BASE if layer_diff_id in layers else ORIGIN_BUILD


def _base_layers(result: CellResult) -> tuple[str, ...]:
    return result.build.base_layers if result.build else ()


def _origins(result: CellResult) -> Row:
    """Packages and unique vulnerability ids the image inherited vs the build added."""
    base_layers = _base_layers(result)
    if result.scan is None or not base_layers:  # not scanned, or no base layers known
        return dict.fromkeys(
            ("packages_from_base", "packages_from_build", "vulns_from_base", "vulns_from_build")
        )
    row: Row = {}
    for where in (ORIGIN_BASE, ORIGIN_BUILD):
        row[f"packages_from_{where}"] = sum(
            1 for p in result.scan.packages if origin(p.layer_diff_id, base_layers) == where
        )
        row[f"vulns_from_{where}"] = len(
            {
                f.vulnerability_id
                for f in result.scan.findings
                if origin(f.layer_diff_id, base_layers) == where
            }
        )
    return row


def _documents(run_id: str, result: CellResult) -> Row:
    """Where the cell's scan documents are stored, relative to the output; null if none."""
    kept = result.scan is not None and result.scan.documents is not None
    return {
        column: document_path(run_id, result.cell.cell_id, name) if kept else None
        for column, name in DOCUMENT_COLUMNS.items()
    }


def _identity(result: CellResult) -> Row:
    cell, build = result.cell, result.build
    return {
        "cell_id": cell.cell_id,
        "app": cell.app,
        "language": cell.language,
        "toolchain_version": cell.toolchain_version,
        "base": cell.base,
        "variant": cell.variant,
        "cgo_enabled": cell.cgo_enabled,
        "linkage": cell.linkage or None,
        "base_ref": cell.base_ref,
        "base_digest": build.base_digest if build else None,
        "builder_ref": cell.builder_ref,
        "builder_digest": build.builder_digest if build else None,
        "host": result.host,
        "image_id": build.image_id if build else None,
    }


def _size_and_content(result: CellResult) -> Row:
    inspect, scan = result.inspect, result.scan
    row: Row = {
        "os_family": scan.os_family if scan else None,
        "os_version": scan.os_version if scan else None,
        "packages": len(scan.packages) if scan else None,
        "packages_by_type": scan.packages_by_type() if scan else None,
    }
    row.update({name: getattr(inspect, name) if inspect else None for name in INSPECTED})
    program = inspect.program if inspect else None
    row |= {
        "program_path": program.path if program else None,
        "program_linkage": program.linkage if program else None,
        "program_interpreter": program.interpreter if program else None,
        "program_libraries": list(program.libraries) if program else None,
        "program_cgo": program.cgo if program else None,
    }
    return row


def _security(scan: ScanResult | None) -> Row:
    by_severity: dict[str, int | None] = dict.fromkeys(SEVERITIES)
    if scan:
        by_severity.update(scan.vulns_by_severity())
    return {
        **{f"vulns_{severity.lower()}": count for severity, count in by_severity.items()},
        "vuln_findings": len(scan.findings) if scan else None,
        "vulns_fixable": scan.fixable() if scan else None,
        "scanner": scan.scanner if scan else None,
        "scanner_version": scan.scanner_version if scan else None,
        "scanner_db_updated_at": (
            _utc(scan.db_updated_at) if scan and scan.db_updated_at else None
        ),
    }


def _timing(result: CellResult) -> Row:
    samples = result.probe.startup_seconds if result.probe else ()
    return {
        "build_seconds": result.build.build_seconds if result.build else None,
        "build_tool": result.build.build_tool if result.build else None,
        "build_concurrent_stages": list(result.build.concurrent_stages) if result.build else None,
        **startup_stats(samples),
        "startup_concurrent_stages": (
            list(result.probe.concurrent_stages) if result.probe else None
        ),
        "idle_memory_bytes": result.probe.idle_memory_bytes if result.probe else None,
        "idle_memory_error": result.probe.idle_memory_error if result.probe else None,
    }


def startup_stats(samples: Iterable[float]) -> dict[str, float | bool | None]:
    """Median, min, max, sample stdev and the pyperf-style unstable flag of startup times.

    No samples gives all nulls; one sample has no spread, so stdev and the flag are null.
    """
    values = list(samples)
    stats: dict[str, float | bool | None] = {
        "startup_seconds": statistics.median(values) if values else None,
        "startup_min_seconds": min(values) if values else None,
        "startup_max_seconds": max(values) if values else None,
        "startup_stdev_seconds": None,
        "startup_unstable": None,
    }
    if len(values) >= 2:
        stdev = statistics.stdev(values)
        stats["startup_stdev_seconds"] = stdev
        stats["startup_unstable"] = stdev >= UNSTABLE_STDEV_RATIO * statistics.fmean(values)
    return stats


def _status(result: CellResult) -> Row:
    return {
        "status": str(result.status),
        "failed_stage": str(result.failed_stage) if result.failed_stage else None,
        "error": result.error,
        "attempts": result.attempts,
        "started_at": _utc(result.started_at),
        "finished_at": _utc(result.finished_at),
    }


def _samples_rows(run: RunRecord) -> list[Row]:
    return [
        {
            "run_id": run.run_id,
            "cell_id": result.cell.cell_id,
            "repetition": repetition,
            "startup_seconds": seconds,
            "concurrent_stages": list(result.probe.concurrent_stages),
        }
        for result in run.cells
        if result.probe
        for repetition, seconds in enumerate(result.probe.startup_seconds, start=1)
    ]


def _vulnerability_rows(run: RunRecord) -> list[Row]:
    return [
        {
            "run_id": run.run_id,
            "cell_id": result.cell.cell_id,
            "vulnerability_id": finding.vulnerability_id,
            "package": finding.package,
            "installed_version": finding.installed_version,
            "fixed_version": finding.fixed_version or None,  # "" means no fix is known
            "severity": finding.severity,
            "status": finding.status,
            "purl": finding.purl or None,
            "layer_diff_id": finding.layer_diff_id or None,
            "origin": origin(finding.layer_diff_id, _base_layers(result)),
        }
        for result in run.cells
        if result.scan
        for finding in result.scan.findings
    ]


def _package_rows(run: RunRecord) -> list[Row]:
    return [
        {
            "run_id": run.run_id,
            "cell_id": result.cell.cell_id,
            "name": package.name,
            "version": package.version,
            "source_name": package.source_name,
            "type": package.type,
            "purl": package.purl or None,
            "layer_diff_id": package.layer_diff_id or None,
            "origin": origin(package.layer_diff_id, _base_layers(result)),
        }
        for result in run.cells
        if result.scan
        for package in result.scan.packages
    ]


def _run_row(run: RunRecord) -> Row:
    return {
        "run_id": run.run_id,
        "matrix": run.matrix,
        "config_hash": run.config_hash,
        "started_at": _utc(run.started_at),
        "finished_at": _utc(run.finished_at),
        "versions": dict(run.versions),
        "hosts": list(run.hosts),
        **run.cell_counts(),
        "kind": str(run.kind),
        "source_run_id": run.source_run_id,
        "scanner_db_version": run.db.version if run.db else None,
        "scanner_db_updated_at": (
            _utc(run.db.updated_at) if run.db and run.db.updated_at else None
        ),
        "scanner_db_age_seconds": run.db_age_seconds(),
        "scanner_db_max_age_hours": run.max_db_age_hours,
        "scanner_db_stale": run.db_stale(),
        "filters": run.filters,
        "image_sources": run.image_sources or None,
        "machines": [
            {**dataclasses.asdict(machine), "host_class": machine.host_class}
            for machine in run.machines
        ],
    }


class SchemaVersionError(ValueError):
    """A file's schema version cannot be read by this basebench (too new, too old, absent)."""


# UPGRADES[n](table_name, table) turns a version-n table into a version-(n+1) table.
# Empty while SCHEMA_VERSION is 1; register a step with every bump.
UPGRADES: dict[int, Callable[[str, pa.Table], pa.Table]] = {}


def file_schema_version(schema: pa.Schema, location: str) -> int:
    """The ``basebench.schema_version`` in a file's schema metadata, as an int."""
    raw = (schema.metadata or {}).get(SCHEMA_VERSION_KEY)
    if raw is None:
        raise SchemaVersionError(
            f"{location}: no basebench.schema_version in the file metadata; not a basebench file?"
        )
    try:
        return int(raw.decode())
    except ValueError:
        raise SchemaVersionError(
            f"{location}: basebench.schema_version {raw.decode(errors='replace')!r} "
            "is not a whole number"
        ) from None


def conform_table(
    name: str, table: pa.Table, location: str, version: int | None = None
) -> pa.Table:
    """Rows read back, upgraded to the current ``SCHEMAS[name]`` (see the policy).

    ``version`` is the schema version the rows were written with: a Delta table's
    property; by default the one in the Parquet file's metadata (the manifest layout).
    Raises ``SchemaVersionError`` for a version newer than ``SCHEMA_VERSION`` or older
    than ``OLDEST_READABLE_VERSION``, and ``ValueError`` when a required column is missing.
    """
    if version is None:
        version = file_schema_version(table.schema, location)
    readable = f"{OLDEST_READABLE_VERSION}..{SCHEMA_VERSION}"
    if version > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"{location} has schema version {version}, newer than this basebench reads "
            f"({readable}); upgrade basebench to read it"
        )
    if version < OLDEST_READABLE_VERSION:
        raise SchemaVersionError(
            f"{location} has schema version {version}, older than this basebench reads "
            f"({readable}); read it with an older basebench"
        )
    for step in range(version, SCHEMA_VERSION):
        table = UPGRADES[step](name, table)
    return _align(name, table, location)


def _align(name: str, table: pa.Table, location: str) -> pa.Table:
    # Same columns, same order, same types as the current schema; columns added later
    # (nullable by the policy) become nulls; unknown extra columns are dropped.
    schema = SCHEMAS[name]
    columns = []
    for field in schema:
        if field.name in table.column_names:
            columns.append(table.column(field.name))
        elif field.nullable:
            columns.append(pa.nulls(table.num_rows, field.type))
        else:
            raise ValueError(f"{location}: required column {field.name} of table {name} is missing")
    # Parquet round trips rename nested fields (map entries); the cast restores them.
    return pa.Table.from_arrays(columns, names=schema.names).cast(schema)
