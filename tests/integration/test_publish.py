"""publish / read_table / list_runs on Delta tables in a local folder and moto's S3 server.

``store`` is each kind in turn (the shared fixture in tests/s3_server.py).
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from tasks.dataset.layout import PublishError
from tasks.dataset.legacy import publish_manifest_layout
from tasks.dataset.reader import list_runs, read_table
from tasks.dataset.schema import SCHEMAS, TABLES, build_tables
from tasks.dataset.stores import LocalStore, ResultStore, S3Store
from tasks.dataset.tables import append_run, open_table
from tasks.dataset.writer import COMMIT_ORDER, publish
from tasks.records import ScanDocuments
from tests.records_factory import (
    T0,
    failed_cell,
    make_run,
    ok_cell,
    ok_result,
    skipped_cell,
)
from tests.s3_server import S3Server

pytestmark = pytest.mark.integration

ROWS = {"results": 4, "samples": 8, "vulnerabilities": 4, "packages": 6, "runs": 1}


def delta(store: ResultStore, table: str) -> DeltaTable:
    location = store.table_location(table)
    return DeltaTable(location.uri, storage_options=location.storage_options)


def test_one_delta_table_per_dataset_table_one_commit_per_run(store: ResultStore) -> None:
    published = publish(make_run(), store)
    assert published.rows == {name: ROWS[name] for name in COMMIT_ORDER}
    assert [c.table for c in published.commits] == list(COMMIT_ORDER)  # runs last
    assert all(c.written for c in published.commits)
    assert sorted({path.split("/")[0] for path in store.list("")}) == sorted(TABLES)
    for name in TABLES:
        table = delta(store, name)
        assert table.version() == 1, name  # version 0 created the table, 1 is the run
        assert table.metadata().partition_columns == ["date"]
        assert table.metadata().name == name
        (commit, created) = table.history()
        assert commit["operation"] == "WRITE"
        assert commit["operationMetrics"]["num_added_rows"] == ROWS[name]
        assert commit["basebench.run_id"] == "run-1"
        assert commit["basebench.writer"].startswith("basebench ")
        assert created["operation"] == "CREATE TABLE"
        assert table.transaction_version("basebench-run:run-1") == 1
        (add,) = pa.table(table.get_add_actions(flatten=True)).to_pylist()
        assert add["partition.date"] == date(2024, 5, 1)
        assert add["path"].startswith("date=2024-05-01/part-")


def test_table_properties_and_data_files(local_store: LocalStore) -> None:
    publish(make_run(), local_store)
    for name in TABLES:
        configuration = delta(local_store, name).metadata().configuration
        assert configuration["basebench.schema_version"] == "1"
        assert configuration["delta.logRetentionDuration"] == "interval 3650 days"
    (data_file,) = (local_store.root / "vulnerabilities").glob("date=*/*.parquet")
    parquet = pq.ParquetFile(data_file)
    # The partition key lives in the log and the path, never inside the files.
    assert "date" not in parquet.schema_arrow.names
    assert "run_id" in parquet.schema_arrow.names  # a column, not a path key
    assert parquet.metadata.num_rows == 4
    assert parquet.metadata.row_group(0).column(0).compression == "ZSTD"


def test_the_issues_pandas_call_now_reads_the_folder(local_store: LocalStore) -> None:
    # Issue 12: pd.read_parquet("results/results") failed (run_id in paths and files).
    publish(make_run(), local_store)
    publish(make_run("run-2", T0 + timedelta(days=1)), local_store)
    frame = pd.read_parquet(local_store.root / "results")
    assert len(frame) == 8
    assert sorted(set(frame["run_id"])) == ["run-1", "run-2"]
    assert sorted({str(d) for d in frame["date"]}) == ["2024-05-01", "2024-05-02"]


def test_read_back_values(store: ResultStore) -> None:
    publish(make_run(), store)
    results = read_table(store, "results").set_index("cell_id")
    assert list(results.index) == [
        "id-distroless-base",
        "id-single-stage",
        "id-bookworm",
        "id-alpine",
    ]
    ok = results.loc["id-distroless-base"]
    assert ok["vulns_critical"] == 1
    assert ok["vuln_findings"] == 4
    assert ok["size_bytes"] == 26_000_000
    assert ok["startup_seconds"] == 0.25
    assert ok["packages_by_type"] == {"debian": 3, "gobinary": 1}
    assert ok["started_at"] == pd.Timestamp("2024-05-01T02:00:00Z")
    assert ok["date"] == date(2024, 5, 1)
    assert (ok["vulns_from_base"], ok["vulns_from_build"]) == (3, 0)
    assert bool(results.loc["id-single-stage", "startup_unstable"]) is True
    failed = results.loc["id-bookworm"]
    assert failed["status"] == "failed"
    assert failed["failed_stage"] == "scan"
    assert failed["vulns_critical"] is pd.NA  # nullable dtype keeps "not measured" apart from 0
    assert failed["packages_by_type"] is None
    assert str(results["vulns_critical"].dtype) == "Int32"
    assert str(results["size_bytes"].dtype) == "Int64"
    assert results.loc["id-alpine", "error"].startswith("alpine: no registry")

    vulns = read_table(store, "vulnerabilities")
    assert sorted(vulns["vulnerability_id"]) == [
        "CVE-2024-0001",
        "CVE-2024-0001",
        "CVE-2024-0002",
        "CVE-2024-0003",
    ]
    assert set(vulns["origin"]) == {"base"}
    packages = read_table(store, "packages")
    assert packages.groupby("origin").size().to_dict() == {"base": 5, "build": 1}
    runs = read_table(store, "runs")
    assert runs.loc[0, "versions"] == {
        "basebench": "0.1.0",
        "trivy": "0.76.0",
        "docker": "20.10.24",
    }
    assert list(runs.loc[0, "hosts"]) == ["local", "tls-1"]
    for table, rows in ROWS.items():
        frame = read_table(store, table)
        assert len(frame) == rows, table
        assert list(frame.columns) == SCHEMAS[table].names


def test_rerun_of_a_run_id_adds_no_rows(store: ResultStore) -> None:
    publish(make_run(), store)
    versions = {name: delta(store, name).version() for name in TABLES}
    # The same run id again, even with other cells: the first copy stands, nothing is added.
    again = publish(make_run(cells=(ok_cell(), failed_cell())), store)
    assert [c.written for c in again.commits] == [False] * len(TABLES)
    publish(make_run(), store)
    assert {name: delta(store, name).version() for name in TABLES} == versions
    assert {name: len(read_table(store, name)) for name in TABLES} == ROWS
    (run,) = list_runs(store)
    assert (run["run_id"], run["cells"]) == ("run-1", 4)


def test_run_missing_from_runs_is_invisible_until_published(store: ResultStore) -> None:
    publish(make_run(run_id="complete"), store)
    # A publish that died before its runs commit: every other table has the run.
    partial = make_run(run_id="partial", cells=(ok_cell(), skipped_cell()))
    tables = build_tables(partial)
    for name in COMMIT_ORDER[:-1]:
        append_run(store, name, tables[name], "partial")
    assert sorted(set(delta(store, "results").to_pandas()["run_id"])) == ["complete", "partial"]
    assert [r["run_id"] for r in list_runs(store)] == ["complete"]
    assert set(read_table(store, "results")["run_id"]) == {"complete"}
    assert len(read_table(store, "results", run_ids=["partial"])) == 0
    # Publishing it again commits only what is missing: the runs row.
    again = publish(partial, store)
    assert [c.table for c in again.commits if c.written] == ["runs"]
    assert [r["run_id"] for r in list_runs(store)] == ["complete", "partial"]
    assert read_table(store, "results").groupby("run_id").size().to_dict() == {
        "complete": 4,
        "partial": 2,
    }


def test_run_ids_filter_and_list_order(store: ResultStore) -> None:
    publish(make_run(run_id="later", started_at=T0 + timedelta(hours=30)), store)
    publish(make_run(run_id="earlier", cells=(skipped_cell(),)), store)
    assert [r["run_id"] for r in list_runs(store)] == ["earlier", "later"]
    results = read_table(store, "results")
    assert list(results["run_id"]) == ["earlier"] + ["later"] * 4  # oldest run first
    assert list(read_table(store, "results", run_ids=["earlier"])["cell_id"]) == ["id-alpine"]
    assert len(read_table(store, "samples", run_ids=["later"])) == 8
    assert len(read_table(store, "samples", run_ids=["earlier"])) == 0
    assert {r["run_id"]: r["date"] for r in list_runs(store)} == {
        "earlier": "2024-05-01",
        "later": "2024-05-02",
    }


def test_empty_store_reads_empty_frames(store: ResultStore) -> None:
    assert list_runs(store) == []
    frame = read_table(store, "packages")
    assert len(frame) == 0
    assert list(frame.columns) == SCHEMAS["packages"].names
    assert open_table(store, "packages") is None


def test_unknown_table_and_bad_run_id(store: ResultStore) -> None:
    with pytest.raises(ValueError, match="unknown table 'result'; allowed: results, samples"):
        read_table(store, "result")
    with pytest.raises(ValueError, match=r"run_id '\.\./x' is not allowed"):
        publish(make_run(run_id="../x"), store)
    assert store.list("") == []  # nothing half-written


def test_documents_are_stored_beside_the_tables(store: ResultStore, tmp_path: Path) -> None:
    folder = tmp_path / "scan-1"
    folder.mkdir()
    documents = ScanDocuments(folder / "trivy.json", folder / "sbom.cdx.json", folder / "r.sarif")
    for path in (documents.report, documents.cyclonedx, documents.sarif):
        path.write_text(f'{{"name": "{path.name}"}}')
    cell = ok_result("bookworm", 120_000_000)
    kept = dataclasses.replace(cell, scan=dataclasses.replace(cell.scan, documents=documents))  # type: ignore[arg-type]
    published = publish(make_run(cells=(kept, ok_cell())), store)
    assert published.documents == 3
    results = read_table(store, "results").set_index("cell_id")
    row = results.loc["id-bookworm"]
    assert store.read(row["scan_report_path"]) == b'{"name": "trivy.json"}'
    assert store.read(row["sbom_path"]) == b'{"name": "sbom.cdx.json"}'
    assert store.read(row["sarif_path"]) == b'{"name": "r.sarif"}'
    assert store.list("documents") == [
        "documents/run-1/id-bookworm/report.sarif",
        "documents/run-1/id-bookworm/sbom.cdx.json",
        "documents/run-1/id-bookworm/trivy.json",
    ]
    assert pd.isna(results.loc["id-distroless-base", "sbom_path"])  # no documents kept


def test_a_missing_document_publishes_nothing(store: ResultStore, tmp_path: Path) -> None:
    gone = ScanDocuments(tmp_path / "a.json", tmp_path / "b.json", tmp_path / "c.sarif")
    cell = ok_result("bookworm", 1)
    broken = dataclasses.replace(cell, scan=dataclasses.replace(cell.scan, documents=gone))  # type: ignore[arg-type]
    with pytest.raises(
        FileNotFoundError,
        match=rf"scan document of cell go-hello go1.22.10 bookworm \(id-bookworm\) is gone: "
        rf"{tmp_path}/a.json; nothing was published",
    ):
        publish(make_run(cells=(broken,)), store)
    assert store.list("") == []


def test_local_store_failure_is_a_publish_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the output folder should be")
    with pytest.raises(PublishError, match=f"append run run-1 to {blocker}/samples: "):
        publish(make_run(), LocalStore(blocker))


def test_s3_failure_is_a_publish_error_naming_the_bucket(s3_server: S3Server) -> None:
    store = S3Store("no-such-bucket", "nightly", s3_server.endpoint_url, s3_server.region)
    with pytest.raises(
        PublishError, match=r"append run run-1 to s3://no-such-bucket/nightly/samples: .*404"
    ):
        publish(make_run(), store)
    with pytest.raises(PublishError, match=r"s3://no-such-bucket/nightly/"):
        read_table(store, "results")


def test_manifest_layout_output_asks_for_migration(store: ResultStore) -> None:
    publish_manifest_layout(make_run(), store)
    with pytest.raises(
        PublishError,
        match=r"holds runs in the manifest layout of an older basebench; move them into the "
        r"tables first: basebench migrate ",
    ):
        read_table(store, "results")


def test_naive_start_time_partitions_as_utc(store: ResultStore) -> None:
    publish(make_run(started_at=datetime(2024, 5, 1, 23, 59)), store)
    (add,) = pa.table(delta(store, "runs").get_add_actions(flatten=True)).to_pylist()
    assert add["partition.date"] == date(2024, 5, 1)
    assert read_table(store, "runs").loc[0, "started_at"] == pd.Timestamp(
        datetime(2024, 5, 1, 23, 59, tzinfo=UTC)
    )
