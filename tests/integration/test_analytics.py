"""Run every Python block of docs/analytics.md against moto S3 and a local folder.

The output holds three nightly runs published by basebench: night-1; night-2, where the
bookworm image grew, distroless-static gained a HIGH CVE from its base, single-stage a
HIGH Go stdlib CVE from the build, and one cell's scan failed; and night-3, whose
publish died before its ``runs`` commit (its rows are in the other tables). One cell of
night-2 kept real scan documents (trivy convert of a captured Trivy report).
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tasks.dataset.schema import build_tables
from tasks.dataset.stores import LocalStore, ResultStore, S3Store
from tasks.dataset.tables import append_run
from tasks.dataset.writer import COMMIT_ORDER, publish
from tasks.records import CellResult, ScanDocuments
from tasks.scanners.trivy import TrivyScanner
from tests.records_factory import (
    NIGHTLY_NEW_HIGH,
    NIGHTLY_STDLIB_HIGH,
    T0,
    failed_cell,
    make_cell,
    make_run,
    nightly_run,
)
from tests.s3_server import S3Server

pytestmark = pytest.mark.integration

DOC = Path(__file__).resolve().parents[2] / "docs" / "analytics.md"
BLOCK = re.compile(r"^```python\n(.*?)^```$", re.MULTILINE | re.DOTALL)
DAY = timedelta(days=1)
REPORT = Path(__file__).resolve().parents[1] / "unit" / "data" / "trivy-dpkg-image.json"
# The packages and findings of that report (a Debian 12.11 image with four packages).
PURLS = [
    "pkg:deb/debian/base-files@12.4%2Bdeb12u11?arch=amd64&distro=debian-12.11",
    "pkg:deb/debian/libc-bin@2.36-9%2Bdeb12u14?arch=amd64&distro=debian-12.11",
    "pkg:deb/debian/libc6@2.36-9%2Bdeb12u14?arch=amd64&distro=debian-12.11",
    "pkg:deb/debian/tzdata@2025b-0%2Bdeb12u2?arch=all&distro=debian-12.11",
]


def doc_blocks() -> list[str]:
    return BLOCK.findall(DOC.read_text())


def with_documents(cell: CellResult, folder: Path) -> CellResult:
    """``cell`` with real documents: the captured report and its trivy conversions."""
    scanner = TrivyScanner(folder / "trivy-cache", 120, documents_dir=folder / "documents")
    documents = scanner.keep_documents(REPORT.read_text(), "fixture report")
    assert isinstance(documents, ScanDocuments)
    return dataclasses.replace(cell, scan=dataclasses.replace(cell.scan, documents=documents))  # type: ignore[arg-type]


def publish_history(store: ResultStore, folder: Path) -> None:
    """night-1, night-2 (see the module docstring) and the unfinished night-3."""
    publish(nightly_run("night-1", T0), store)
    night2 = nightly_run(
        "night-2",
        T0 + DAY,
        grow={"bookworm": 12_000_000},
        extra_findings={
            "distroless-static": (NIGHTLY_NEW_HIGH,),
            "single-stage": (NIGHTLY_STDLIB_HIGH,),
        },
    )
    single, bookworm, static = night2.cells
    # A cell whose scan failed: it has a size, but no vulnerabilities and no startup.
    broken = dataclasses.replace(failed_cell(), cell=make_cell("bookworm-slim"))
    cells = (single, with_documents(bookworm, folder), static, broken)
    publish(make_run("night-2", T0 + DAY, cells, "nightly"), store)
    unfinished = build_tables(nightly_run("night-3", T0 + 2 * DAY, grow={"bookworm": 1}))
    for name in COMMIT_ORDER[:-1]:  # died before the runs commit
        append_run(store, name, unfinished[name], "night-3")


@pytest.fixture(params=["s3", "local"])
def namespace(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """The namespace after running every block, with OUTPUT and STORAGE_OPTIONS set for
    the test's output."""
    setup: dict[str, Any]
    if request.param == "s3":
        s3: S3Server = request.getfixturevalue("s3_server")
        prefix = f"analytics/{uuid.uuid4().hex}"
        store: ResultStore = S3Store(s3.bucket, prefix, s3.endpoint_url, s3.region)
        options = {"AWS_ENDPOINT_URL": s3.endpoint_url, "AWS_ALLOW_HTTP": "true"}
        setup = {"OUTPUT": f"s3://{s3.bucket}/{prefix}", "STORAGE_OPTIONS": options}
    else:
        store = LocalStore(tmp_path / "results")
        setup = {"OUTPUT": str(tmp_path / "results"), "STORAGE_OPTIONS": {}}
    publish_history(store, tmp_path)
    shutil.rmtree(tmp_path / "documents")  # readers use the stored copies only
    blocks = doc_blocks()
    assert blocks[0].startswith('OUTPUT = "s3://bench/nightly"'), "first block is the setup"
    scope: dict[str, Any] = {"__name__": "analytics_doc"}
    exec(compile(blocks[0], f"{DOC}:setup", "exec"), scope)
    scope.update(setup)  # point the documented code at the test's output
    for number, block in enumerate(blocks[1:], start=1):
        exec(compile(block, f"{DOC}:block-{number}", "exec"), scope)
    return scope


def test_the_page_has_a_recipe_per_reader() -> None:
    setup, pandas, pyarrow, polars, duckdb, time_travel, documents, basebench = doc_blocks()
    assert "DeltaTable(" in pandas and "to_pandas(" in pandas
    assert "to_pyarrow_dataset()" in pyarrow
    assert "pl.read_delta(" in polars
    assert "duckdb.connect()" in duckdb
    assert "version=" in time_travel
    assert "sbom_path" in documents
    # Readers need no basebench code: only the last recipe is basebench's own reader.
    for block in (setup, pandas, pyarrow, polars, duckdb, time_travel, documents):
        assert "tasks." not in block
    assert "from tasks.dataset.reader import" in basebench


def test_pandas_values(namespace: dict[str, Any]) -> None:
    assert namespace["complete"] == ["night-1", "night-2"]  # night-3 never finished
    assert namespace["latest"] == "night-2"
    sizes = namespace["sizes_mb"]
    assert sizes.to_dict() == {
        "distroless-static": 6.9,
        "bookworm-slim": 120.0,  # the failed cell was inspected before its scan failed
        "bookworm": 132.0,
        "single-stage": 914.0,
    }
    assert list(sizes.index) == ["distroless-static", "bookworm-slim", "bookworm", "single-stage"]
    assert namespace["serious_by_base"].to_dict() == {
        "bookworm": 1,  # CVE-2024-2000
        "distroless-static": 1,  # the new CVE-2024-3000
        "single-stage": 3,  # CVE-2024-1000 CRITICAL, CVE-2024-2000 HIGH, stdlib CVE-2024-6000
    }
    assert namespace["serious_by_origin"].to_dict("index") == {
        "bookworm": {"base": 1, "build": 0},
        "distroless-static": {"base": 1, "build": 0},
        "single-stage": {"base": 2, "build": 1},
    }


def test_pyarrow_values(namespace: dict[str, Any]) -> None:
    table = namespace["ok_cells"]
    rows = sorted((r["run_id"], r["base"], r["size_bytes"]) for r in table.to_pylist())
    assert rows == [
        ("night-1", "bookworm", 120_000_000),
        ("night-1", "distroless-static", 6_900_000),
        ("night-1", "single-stage", 914_000_000),
        ("night-2", "bookworm", 132_000_000),
        ("night-2", "distroless-static", 6_900_000),
        ("night-2", "single-stage", 914_000_000),
    ]  # the failed cell of night-2 and every row of night-3 are filtered out
    assert namespace["results_dataset"].count_rows() == 3 + 4 + 3  # the files hold night-3


def test_polars_values(namespace: dict[str, Any]) -> None:
    frame = namespace["startup_by_base"]
    assert frame.columns == ["base", "median_startup_seconds"]
    assert frame.rows() == [
        ("bookworm", 0.25),
        ("distroless-static", 0.25),
        ("single-stage", 0.25),
    ]
    assert namespace["pl_results"].height == 10
    assert set(namespace["pl_results"]["date"].to_list()) == {
        date(2024, 5, 1),
        date(2024, 5, 2),
        date(2024, 5, 3),
    }


def test_duckdb_values(namespace: dict[str, Any]) -> None:
    first, second = datetime(2024, 5, 1, 2, tzinfo=UTC), datetime(2024, 5, 2, 2, tzinfo=UTC)
    trend = [(base, start.astimezone(UTC), size) for base, start, size in namespace["size_trend"]]
    assert trend == [
        ("bookworm", first, 120_000_000),
        ("bookworm", second, 132_000_000),
        ("distroless-static", first, 6_900_000),
        ("distroless-static", second, 6_900_000),
        ("single-stage", first, 914_000_000),
        ("single-stage", second, 914_000_000),
    ]  # night-3 has no runs row: the join leaves it out
    assert namespace["new_serious"] == [
        ("distroless-static", "CVE-2024-3000", "libssl3", "base"),
        ("single-stage", "CVE-2024-6000", "stdlib", "build"),
    ]


def test_time_travel_values(namespace: dict[str, Any]) -> None:
    # Versions: 0 created the table, 1 night-1, 2 night-2, 3 the unfinished night-3.
    assert namespace["version_of_run"] == {"night-1": 1, "night-2": 2, "night-3": 3}
    as_of = namespace["as_of_first_run"]
    assert set(as_of["run_id"]) == {"night-1"}
    assert sorted(as_of["size_bytes"]) == [6_900_000, 120_000_000, 914_000_000]


def test_document_values(namespace: dict[str, Any]) -> None:
    assert namespace["scanned"]["cell_id"] == "id-bookworm"
    assert namespace["scanned"]["sbom_path"] == "documents/night-2/id-bookworm/sbom.cdx.json"
    assert namespace["sbom"]["bomFormat"] == "CycloneDX"
    assert namespace["sbom_purls"] == PURLS
    assert namespace["sarif"]["version"] == "2.1.0"
    assert namespace["sarif_rules"] == ["CVE-2026-90001", "CVE-2026-90001", "CVE-2026-90004"]


def test_basebench_reader_values(namespace: dict[str, Any]) -> None:
    assert namespace["basebench_runs"] == ["night-1", "night-2"]
    results = namespace["basebench_results"]
    assert list(results["cell_id"]) == [
        "id-single-stage",
        "id-bookworm",
        "id-distroless-static",
        "id-bookworm-slim",
    ]
    assert str(results["vulns_critical"].dtype) == "Int32"
    assert results.set_index("cell_id").loc["id-bookworm-slim", "vulns_critical"] is pd.NA
