"""Rescan stage: a cell's stored SBOM scanned again against the current DB, no image needed.

The image is not rebuilt, pulled or started: the cell's CycloneDX SBOM (its ``sbom_path``
in the source run) is read from the result store and scanned with ``trivy sbom``. What
the source run measured of the image (identity, digests, size, content, whether its base
was forged) is carried into the new cell record, so a rescan publishes, compares and
reports like any other run; timing is not carried (nothing was built or started).

A cell of the source run without an SBOM (it failed or was skipped before its scan) is
carried with its status, stage and error: a rescan cannot measure what was never built.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.dataset.reader import (
    BENCHMARK_KINDS,
    RunNotFound,
    find_run,
    list_runs,
    read_table,
)
from tasks.dataset.schema import ORIGIN_BASE
from tasks.dataset.stores import ResultStore
from tasks.records import (
    BuildResult,
    Cell,
    CellResult,
    InspectResult,
    Stage,
    Status,
)
from tasks.scanners.base import ScanError
from tasks.scanners.trivy import TrivyScanner

# The error of a cell carried as the source run left it (no SBOM to scan) starts so.
NOT_RESCANNED = "not rescanned: "
# Results columns measured by inspect: carried from the source run as they are.
INSPECTED = (
    "size_bytes",
    "compressed_bytes",
    "layers",
    "user",
    "runs_as_root",
    "has_shell",
    "has_package_manager",
    "setuid_files",
    "files",
    "base_forged",
    "builder_forged",
    "setuid_or_setgid_files",
)


@dataclass(frozen=True)
class SourceRun:
    """The run a rescan scans again: its ``runs`` row, results rows and base layers."""

    run: dict[str, Any]
    cells: tuple[dict[str, Any], ...]  # results rows, in the order published
    base_layers: dict[str, tuple[str, ...]]  # cell id -> its base image's layer diff ids

    @property
    def run_id(self) -> str:
        return str(self.run["run_id"])


def pick_source(store: ResultStore, run_id: str | None = None) -> dict[str, Any]:
    """The ``runs`` row to rescan: ``run_id``, or the latest run that is not a rescan.

    Rescanning a rescan is allowed when asked for by id (its SBOMs are the same images').
    """
    if run_id is not None:
        return find_run(store, run_id)
    built = [run for run in list_runs(store) if run.get("kind") in BENCHMARK_KINDS]
    if not built:
        raise RunNotFound(
            f"no complete benchmark run in {store.location()} to rescan; run `basebench run` first"
        )
    return built[-1]


def require_db(cache_dir: Path) -> None:
    """Raise ``ScanError`` unless ``cache_dir`` is a Trivy cache dir holding a DB."""
    if not (cache_dir / "db" / "trivy.db").is_file():
        raise ScanError(
            f"no Trivy DB in {cache_dir} (db/trivy.db is missing): pass --db DIR, a Trivy "
            "cache dir holding db/, or write the fixture DB with `basebench infra up`"
        )


def load_source(store: ResultStore, run: dict[str, Any]) -> SourceRun:
    """The results rows of ``run`` and, per cell, the layers its packages inherited."""
    results = read_table(store, "results", [run["run_id"]])
    packages = read_table(store, "packages", [run["run_id"]])
    return SourceRun(run, tuple(_records(results)), _base_layers(packages))


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: _plain(v) for k, v in row.items()} for row in frame.to_dict("records")]


def _plain(value: Any) -> Any:
    """pandas' missing values (NA, NaN, NaT) as None; numpy scalars as Python ones."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, np.ndarray):  # a list column (program_libraries, ...)
        return [_plain(item) for item in value]
    return value.item() if hasattr(value, "item") else value


def _base_layers(packages: pd.DataFrame) -> dict[str, tuple[str, ...]]:
    # The source run knew which layers came from the base (its packages' ``origin``); a
    # layer with no package does not matter, since origins are only ever asked of the
    # layers packages and findings are in. No origin known: no base layers (nulls).
    inherited = packages[(packages["origin"] == ORIGIN_BASE) & packages["layer_diff_id"].notna()]
    layers: dict[str, set[str]] = {}
    for cell_id, layer in zip(inherited["cell_id"], inherited["layer_diff_id"], strict=True):
        layers.setdefault(str(cell_id), set()).add(str(layer))
    return {cell_id: tuple(sorted(found)) for cell_id, found in layers.items()}


def carried_cell(row: Mapping[str, Any]) -> Cell:
    """The matrix coordinate of a source results row."""
    return Cell(
        cell_id=row["cell_id"],
        app=row["app"],
        language=row["language"],
        toolchain_version=row["toolchain_version"],
        base=row["base"],
        variant=row["variant"],
        builder_ref=row["builder_ref"],
        base_ref=row["base_ref"],
        cgo_enabled=bool(row["cgo_enabled"]),
        linkage=row.get("linkage") or "",
    )


def carried_build(
    row: Mapping[str, Any], source_run_id: str, base_layers: Iterable[str]
) -> BuildResult | None:
    """The image the source run built (its id and digests), without a build time."""
    if row.get("image_id") is None:
        return None
    return BuildResult(
        run_id=source_run_id,
        image_id=row["image_id"],
        tag="",
        build_seconds=None,
        builder_digest=row.get("builder_digest"),
        base_digest=row.get("base_digest"),
        build_tool=row.get("build_tool") or "",
        base_layers=tuple(base_layers),
    )


def carried_inspect(row: Mapping[str, Any]) -> InspectResult | None:
    """What the source run's inspect stage measured; None when it never ran."""
    if row.get("size_bytes") is None:
        return None
    carried: dict[str, Any] = {name: row.get(name) for name in INSPECTED}
    return InspectResult(**carried)


def _carried_as_is(row: Mapping[str, Any], source_run_id: str, now: datetime) -> CellResult:
    error = row.get("error") or f"no SBOM in run {source_run_id}"
    return CellResult(
        cell=carried_cell(row),
        status=Status(row["status"]) if row["status"] != Status.OK else Status.SKIPPED,
        host=row["host"],
        started_at=now,
        finished_at=now,
        failed_stage=Stage(row["failed_stage"]) if row.get("failed_stage") else None,
        error=f"{NOT_RESCANNED}{error}",
    )


def scan_failures(cells: Iterable[CellResult]) -> int:
    """Cells whose rescan failed (not those carried failed from the source run)."""
    return sum(
        1
        for cell in cells
        if cell.status is Status.FAILED and not (cell.error or "").startswith(NOT_RESCANNED)
    )


@task(name="rescan", task_run_name="{row[cell_id]}", cache_policy=NO_CACHE)
def rescan_cell(
    row: dict[str, Any],
    source: SourceRun,
    scanner: TrivyScanner,
    store: ResultStore,
    workdir: Path,
) -> CellResult:
    """Scan the stored SBOM of one source cell against the scanner's DB.

    A scan that fails makes the cell ``failed`` at stage ``scan`` with the image facts
    still carried; a cell without an SBOM keeps the source run's status.
    """
    started = datetime.now(UTC)
    cell = carried_cell(row)
    sbom_path = row.get("sbom_path")
    if not sbom_path:
        return _carried_as_is(row, source.run_id, started)
    build = carried_build(row, source.run_id, source.base_layers.get(cell.cell_id, ()))
    inspect = carried_inspect(row)
    try:
        with tempfile.TemporaryDirectory(prefix="rescan-", dir=workdir) as folder:
            local = Path(folder) / "sbom.cdx.json"
            local.write_bytes(store.read(sbom_path))
            scan = scanner.scan_sbom(local, f"{cell.label} ({sbom_path})")
    except (ScanError, OSError) as exc:
        return CellResult(
            cell, Status.FAILED, row["host"], started, datetime.now(UTC), failed_stage=Stage.SCAN,
            error=str(exc), build=build, inspect=inspect,
        )  # fmt: skip
    finished = datetime.now(UTC)
    return CellResult(
        cell, Status.OK, row["host"], started, finished, build=build, inspect=inspect, scan=scan
    )
