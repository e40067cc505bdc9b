"""build_tables on hand-made run records: ok, unstable, failed and skipped cells."""

from __future__ import annotations

import dataclasses
import statistics
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from tasks.dataset.schema import (
    SCHEMA_VERSION_KEY,
    SCHEMAS,
    TABLE_KEY,
    TABLES,
    build_tables,
    origin,
    run_date,
    startup_stats,
)
from tasks.dataset.stores import LocalStore
from tasks.dataset.writer import publish
from tasks.records import CellResult, ScanDocuments, Status
from tests.records_factory import (
    APP_LAYER,
    BASE_LAYER,
    FINDINGS,
    NIGHTLY_STDLIB_HIGH,
    STDLIB_PURL,
    T0,
    UNSTABLE,
    deb_purl,
    make_cell,
    make_run,
    ok_result,
)


@pytest.fixture(scope="module")
def tables() -> dict[str, pa.Table]:
    return build_tables(make_run())


def results_by_cell(tables: dict[str, pa.Table]) -> dict[str, dict[str, Any]]:
    return {row["cell_id"]: row for row in tables["results"].to_pylist()}


def test_every_table_has_its_schema_and_version(tables: dict[str, pa.Table]) -> None:
    assert (
        list(tables)
        == list(TABLES)
        == ["results", "samples", "vulnerabilities", "packages", "runs"]
    )
    for name, table in tables.items():
        assert table.schema.equals(SCHEMAS[name], check_metadata=True)
        assert table.schema.metadata[SCHEMA_VERSION_KEY] == b"1"
        assert table.schema.metadata[TABLE_KEY] == name.encode()


def test_row_counts(tables: dict[str, pa.Table]) -> None:
    counts = {name: table.num_rows for name, table in tables.items()}
    # samples: 5 + 3; vulnerabilities: 4 findings; packages: 4 + 2
    assert counts == {"results": 4, "samples": 8, "vulnerabilities": 4, "packages": 6, "runs": 1}


def test_unique_cves_and_findings(tables: dict[str, pa.Table]) -> None:
    row = results_by_cell(tables)["id-distroless-base"]
    assert row["vulns_critical"] == 1  # CVE-2024-0001 in libc6 and libc-bin counts once
    assert row["vulns_high"] == 1
    assert row["vulns_medium"] == 0
    assert row["vulns_low"] == 1
    assert row["vulns_unknown"] == 0
    assert row["vuln_findings"] == 4  # ... but is two package x CVE pairs
    assert row["vulns_fixable"] == 1  # only CVE-2024-0001 has a fixed version


def test_ok_cell_values(tables: dict[str, pa.Table]) -> None:
    row = results_by_cell(tables)["id-distroless-base"]
    assert row["run_id"] == "run-1"
    assert row["matrix"] == "demo"
    assert row["image_id"] == "sha256:aaa"
    assert row["base_digest"] == "sha256:base"
    assert row["builder_digest"] == "sha256:bld"
    assert row["size_bytes"] == 26_000_000
    assert row["compressed_bytes"] == 8_666_666
    assert row["layers"] == 4
    assert row["packages"] == 4
    assert dict(row["packages_by_type"]) == {"debian": 3, "gobinary": 1}
    assert row["os_family"] == "debian"
    assert row["os_version"] == "12.5"
    assert row["user"] == "nonroot"
    assert row["runs_as_root"] is False
    assert row["cgo_enabled"] is True
    assert row["scanner_db_updated_at"] == datetime(2024, 4, 30, 6, 0, tzinfo=UTC)
    assert row["build_seconds"] == 31.5
    assert row["idle_memory_bytes"] == 3_145_728
    assert row["status"] == "ok"
    assert row["failed_stage"] is None
    assert row["error"] is None
    assert row["attempts"] == 1


def test_startup_median_min_max_and_stable(tables: dict[str, pa.Table]) -> None:
    row = results_by_cell(tables)["id-distroless-base"]
    assert row["startup_seconds"] == 0.25
    assert row["startup_min_seconds"] == 0.22
    assert row["startup_max_seconds"] == 0.27
    assert row["startup_stdev_seconds"] == pytest.approx(0.019235384, rel=1e-6)
    assert row["startup_unstable"] is False  # 0.0192 < 10% of the 0.248 mean


def test_unstable_startup_is_flagged(tables: dict[str, pa.Table]) -> None:
    row = results_by_cell(tables)["id-single-stage"]
    assert row["startup_seconds"] == 0.3
    assert row["startup_min_seconds"] == 0.2
    assert row["startup_max_seconds"] == 0.5
    assert row["startup_stdev_seconds"] == pytest.approx(statistics.stdev(UNSTABLE))
    assert row["startup_unstable"] is True  # 0.153 >= 10% of the 0.333 mean
    assert row["vulns_critical"] == 0  # scanned, nothing found: 0, not null
    assert row["vuln_findings"] == 0
    assert row["variant"] == "single-stage"
    assert row["attempts"] == 2


def test_failed_cell_keeps_what_it_measured(tables: dict[str, pa.Table]) -> None:
    row = results_by_cell(tables)["id-bookworm"]
    assert row["status"] == "failed"
    assert row["failed_stage"] == "scan"
    assert row["error"] == "scan: trivy exited 1: database not found"
    assert row["attempts"] == 3
    assert row["size_bytes"] == 120_000_000  # inspect ran
    assert row["build_seconds"] == 12.0
    assert row["base_digest"] is None
    for column in ("vulns_critical", "vuln_findings", "packages", "packages_by_type", "os_family"):
        assert row[column] is None, column  # scan never finished: unknown, not zero
    for column in ("startup_seconds", "startup_unstable", "idle_memory_bytes"):
        assert row[column] is None, column


def test_skipped_cell_has_reason_and_null_measurements(tables: dict[str, pa.Table]) -> None:
    row = results_by_cell(tables)["id-alpine"]
    assert row["status"] == "skipped"
    assert row["error"] == "alpine: no registry serves docker.io/library/alpine:3.20 here"
    assert row["failed_stage"] is None
    assert row["base"] == "alpine"
    measured = [
        name for name in SCHEMAS["results"].names if name.startswith(("size", "vulns", "startup"))
    ]
    assert len(measured) == 15
    unmeasured = [*measured, "image_id", "build_seconds", "build_concurrent_stages"]
    assert all(row[name] is None for name in unmeasured)
    assert row["packages_from_base"] is None and row["scan_report_path"] is None


def test_samples_keep_order_and_repetition(tables: dict[str, pa.Table]) -> None:
    rows = tables["samples"].to_pylist()
    stable = [
        (r["repetition"], r["startup_seconds"])
        for r in rows
        if r["cell_id"] == "id-distroless-base"
    ]
    assert stable == [(1, 0.25), (2, 0.22), (3, 0.27), (4, 0.24), (5, 0.26)]
    assert {r["cell_id"] for r in rows} == {"id-distroless-base", "id-single-stage"}


def test_what_ran_beside_builds_and_probes_is_kept(tables: dict[str, pa.Table]) -> None:
    rows = results_by_cell(tables)
    assert rows["id-single-stage"]["build_concurrent_stages"] == ["inspect", "save", "scan"]
    assert rows["id-distroless-base"]["build_concurrent_stages"] == []  # it built alone
    assert rows["id-single-stage"]["startup_concurrent_stages"] == []
    assert rows["id-bookworm"]["startup_concurrent_stages"] is None  # never probed
    samples = tables["samples"].to_pylist()
    assert len(samples) == 8 and all(r["concurrent_stages"] == [] for r in samples)


def test_vulnerability_rows(tables: dict[str, pa.Table]) -> None:
    rows = tables["vulnerabilities"].to_pylist()
    assert [(r["vulnerability_id"], r["package"], r["fixed_version"]) for r in rows] == [
        ("CVE-2024-0001", "libc6", "2.36-9+deb12u7"),
        ("CVE-2024-0001", "libc-bin", "2.36-9+deb12u7"),
        ("CVE-2024-0002", "libssl3", None),  # "" (no fix known) is stored as null
        ("CVE-2024-0003", "libc6", None),
    ]
    assert {r["cell_id"] for r in rows} == {"id-distroless-base"}
    assert rows[3]["severity"] == "LOW"
    assert rows[3]["status"] == "will_not_fix"


def test_package_rows(tables: dict[str, pa.Table]) -> None:
    rows = tables["packages"].to_pylist()
    base = [
        (r["name"], r["source_name"], r["type"])
        for r in rows
        if r["cell_id"] == "id-distroless-base"
    ]
    assert base == [
        ("libc6", "glibc", "debian"),
        ("libc-bin", "glibc", "debian"),
        ("libssl3", "openssl", "debian"),
        ("stdlib", "stdlib", "gobinary"),
    ]
    single = [r["name"] for r in rows if r["cell_id"] == "id-single-stage"]
    assert single == ["libc6", "libc-bin"]


def test_runs_row(tables: dict[str, pa.Table]) -> None:
    (row,) = tables["runs"].to_pylist()
    assert row["run_id"] == "run-1"
    assert row["config_hash"] == "0123456789abcdef"
    assert (row["cells"], row["cells_ok"], row["cells_failed"], row["cells_skipped"]) == (
        4,
        2,
        1,
        1,
    )
    assert dict(row["versions"]) == {"basebench": "0.1.0", "trivy": "0.76.0", "docker": "20.10.24"}
    assert row["hosts"] == ["local", "tls-1"]
    assert row["started_at"] == T0
    assert row["finished_at"] == T0 + timedelta(minutes=5)


def test_timestamps_become_utc() -> None:
    east = timezone(timedelta(hours=-2))
    start = datetime(2024, 5, 1, 23, 30, tzinfo=east)  # 2024-05-02 01:30 UTC
    run = make_run(started_at=start, cells=())
    (row,) = build_tables(run)["runs"].to_pylist()
    assert row["started_at"] == datetime(2024, 5, 2, 1, 30, tzinfo=UTC)
    assert run_date(run) == date(2024, 5, 2)
    assert run_date(make_run(started_at=datetime(2024, 5, 1, 23, 59))) == date(2024, 5, 1)


def test_empty_run_gives_empty_tables_with_one_runs_row() -> None:
    tables = build_tables(make_run(cells=()))
    assert {name: t.num_rows for name, t in tables.items()} == {
        "results": 0,
        "samples": 0,
        "vulnerabilities": 0,
        "packages": 0,
        "runs": 1,
    }
    (row,) = tables["runs"].to_pylist()
    assert (row["cells"], row["cells_ok"]) == (0, 0)


def test_startup_stats_edge_cases() -> None:
    assert startup_stats([]) == dict.fromkeys(
        (
            "startup_seconds",
            "startup_min_seconds",
            "startup_max_seconds",
            "startup_stdev_seconds",
            "startup_unstable",
        )
    )
    one = startup_stats([0.3])
    assert (one["startup_seconds"], one["startup_min_seconds"], one["startup_max_seconds"]) == (
        0.3,
        0.3,
        0.3,
    )
    assert one["startup_stdev_seconds"] is None  # no spread from one sample
    assert one["startup_unstable"] is None
    even = startup_stats([0.1, 0.2, 0.3, 0.4])
    assert even["startup_seconds"] == pytest.approx(0.25)  # median of an even count


def test_missing_required_value_is_a_clear_error() -> None:
    broken = CellResult(
        cell=make_cell("bookworm"),
        status=Status.OK,
        host=None,  # type: ignore[arg-type]
        started_at=T0,
        finished_at=T0,
    )
    with pytest.raises(ValueError, match="table results: column host is required but has nulls"):
        build_tables(make_run(cells=(broken,)))


def test_every_row_carries_the_partition_date(tables: dict[str, pa.Table]) -> None:
    for name, table in tables.items():
        assert table.schema.field("date").type == pa.date32(), name
        assert set(table.column("date").to_pylist()) == {date(2024, 5, 1)}, name


def test_origin_of_a_layer() -> None:
    assert origin(BASE_LAYER, (BASE_LAYER,)) == "base"
    assert origin(APP_LAYER, (BASE_LAYER,)) == "build"
    assert origin("", (BASE_LAYER,)) is None  # the scanner named no layer
    assert origin(APP_LAYER, ()) is None  # the base's layers are unknown


def test_packages_and_findings_carry_purl_layer_and_origin(tables: dict[str, pa.Table]) -> None:
    packages = [r for r in tables["packages"].to_pylist() if r["cell_id"] == "id-distroless-base"]
    assert [(r["name"], r["purl"], r["layer_diff_id"], r["origin"]) for r in packages] == [
        ("libc6", deb_purl("libc6", "2.36-9+deb12u4"), BASE_LAYER, "base"),
        ("libc-bin", deb_purl("libc-bin", "2.36-9+deb12u4"), BASE_LAYER, "base"),
        ("libssl3", deb_purl("libssl3", "3.0.11-1~deb12u2"), BASE_LAYER, "base"),
        ("stdlib", STDLIB_PURL, APP_LAYER, "build"),
    ]
    vulns = tables["vulnerabilities"].to_pylist()
    assert {(r["vulnerability_id"], r["package"], r["origin"]) for r in vulns} == {
        ("CVE-2024-0001", "libc6", "base"),
        ("CVE-2024-0001", "libc-bin", "base"),
        ("CVE-2024-0002", "libssl3", "base"),
        ("CVE-2024-0003", "libc6", "base"),
    }
    assert vulns[2]["purl"] == deb_purl("libssl3", "3.0.11-1~deb12u2")


def test_results_split_what_the_base_gave_from_what_the_build_added() -> None:
    # A libssl3 CVE from the base and a Go stdlib CVE in the binary the build added.
    cell = ok_result("bookworm", 120_000_000, findings=(FINDINGS[2], NIGHTLY_STDLIB_HIGH))
    (mixed,) = build_tables(make_run(cells=(cell,)))["results"].to_pylist()
    assert (mixed["packages_from_base"], mixed["packages_from_build"]) == (3, 1)
    assert (mixed["vulns_from_base"], mixed["vulns_from_build"]) == (1, 1)
    row = results_by_cell(build_tables(make_run()))["id-distroless-base"]
    assert (row["packages_from_base"], row["packages_from_build"]) == (3, 1)
    # CVE-2024-0001 (twice), 0002 and 0003: three unique ids, all inherited.
    assert (row["vulns_from_base"], row["vulns_from_build"]) == (3, 0)


def test_failed_scan_and_unknown_base_layers_give_no_split(tables: dict[str, pa.Table]) -> None:
    failed = results_by_cell(tables)["id-bookworm"]
    assert failed["packages_from_base"] is None and failed["vulns_from_build"] is None
    cell = ok_result("bookworm", 1)
    unknown = dataclasses.replace(
        cell,
        build=dataclasses.replace(cell.build, base_layers=()),  # type: ignore[arg-type]
    )
    tables_unknown = build_tables(make_run(cells=(unknown,)))
    (row,) = tables_unknown["results"].to_pylist()
    assert row["packages_from_base"] is None and row["vulns_from_base"] is None
    assert {r["origin"] for r in tables_unknown["packages"].to_pylist()} == {None}


def test_setuid_and_setuid_or_setgid_counts(tables: dict[str, pa.Table]) -> None:
    rows = results_by_cell(tables)
    assert (rows["id-bookworm"]["setuid_files"], rows["id-bookworm"]["setuid_or_setgid_files"]) == (
        2,
        3,
    )
    assert rows["id-alpine"]["setuid_or_setgid_files"] is None  # skipped: not inspected


def test_document_paths_point_beside_the_tables(tmp_path: Path) -> None:
    cell = ok_result("bookworm", 1)
    documents = ScanDocuments(tmp_path / "a.json", tmp_path / "b.json", tmp_path / "c.sarif")
    kept = dataclasses.replace(
        cell,
        scan=dataclasses.replace(cell.scan, documents=documents),  # type: ignore[arg-type]
    )
    rows = results_by_cell(build_tables(make_run(cells=(kept, ok_result("distroless-base", 1)))))
    assert {c: rows["id-bookworm"][c] for c in ("scan_report_path", "sbom_path", "sarif_path")} == {
        "scan_report_path": "documents/run-1/id-bookworm/trivy.json",
        "sbom_path": "documents/run-1/id-bookworm/sbom.cdx.json",
        "sarif_path": "documents/run-1/id-bookworm/report.sarif",
    }
    assert rows["id-distroless-base"]["sbom_path"] is None  # no documents kept


def test_a_run_of_no_cells_is_never_published(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"^run empty-1 has no cells; a run of no cells is never"):
        publish(make_run("empty-1", cells=()), LocalStore(tmp_path / "out"))
    assert not (tmp_path / "out").exists()
