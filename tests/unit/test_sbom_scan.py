"""The rescan stage's bookkeeping, without trivy: what is carried from the source run."""

from __future__ import annotations

from pathlib import Path

from tasks.dataset.stores import LocalStore
from tasks.dataset.writer import publish
from tasks.records import Stage, Status
from tasks.scanners.trivy import TrivyScanner
from tasks.stages.sbom_scan import (
    NOT_RESCANNED,
    SourceRun,
    carried_build,
    carried_inspect,
    load_source,
    pick_source,
    rescan_cell,
    scan_failures,
)
from tests.records_factory import BASE_LAYER, make_run


def source_of(tmp_path: Path) -> SourceRun:
    store = LocalStore(tmp_path / "results")
    publish(make_run(), store)  # ok, unstable, failed (at scan) and skipped cells
    return load_source(store, pick_source(store))


def test_image_facts_are_carried_and_build_time_is_not(tmp_path: Path) -> None:
    source = source_of(tmp_path)
    ok = source.cells[0]
    build = carried_build(ok, "run-1", source.base_layers[ok["cell_id"]])
    assert build is not None
    assert (build.image_id, build.base_digest, build.builder_digest) == (
        "sha256:aaa",
        "sha256:base",
        "sha256:bld",
    )
    assert (build.build_seconds, build.base_layers) == (None, (BASE_LAYER,))
    inspect = carried_inspect(ok)
    assert inspect is not None
    assert (inspect.size_bytes, inspect.user, inspect.base_forged) == (26_000_000, "nonroot", True)
    skipped = source.cells[3]
    assert (carried_build(skipped, "run-1", ()), carried_inspect(skipped)) == (None, None)


def test_cells_without_an_sbom_keep_the_source_status(tmp_path: Path) -> None:
    source = source_of(tmp_path)
    store = LocalStore(tmp_path / "results")
    assert source.run_id == "run-1"
    scanner = TrivyScanner(tmp_path / "trivy", 60)
    failed, skipped = (
        rescan_cell.fn(row, source, scanner, store, tmp_path) for row in source.cells[2:]
    )
    assert (failed.status, failed.failed_stage) == (Status.FAILED, Stage.SCAN)
    assert failed.error == f"{NOT_RESCANNED}scan: trivy exited 1: database not found"
    assert (skipped.status, skipped.failed_stage) == (Status.SKIPPED, None)
    assert skipped.error == (
        f"{NOT_RESCANNED}alpine: no registry serves docker.io/library/alpine:3.20 here"
    )
    assert scan_failures([failed, skipped]) == 0


def test_an_sbom_gone_from_the_store_fails_the_scan_with_the_facts_kept(tmp_path: Path) -> None:
    source = source_of(tmp_path)
    row = {**source.cells[0], "sbom_path": "documents/run-1/gone/sbom.cdx.json"}
    store = LocalStore(tmp_path / "results")
    result = rescan_cell.fn(row, source, TrivyScanner(tmp_path / "trivy", 60), store, tmp_path)
    assert (result.status, result.failed_stage) == (Status.FAILED, Stage.SCAN)
    assert "documents/run-1/gone/sbom.cdx.json" in str(result.error)
    assert result.inspect is not None and result.inspect.size_bytes == 26_000_000
    assert result.scan is None
    assert scan_failures([result]) == 1
