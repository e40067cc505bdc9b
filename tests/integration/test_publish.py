"""publish / read_table / list_runs against a local folder and moto's S3 server.

``store`` is each kind in turn (the shared fixture in tests/s3_server.py).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from tasks.dataset.layout import PublishError, manifest_path, table_path
from tasks.dataset.reader import list_runs, read_table, table_files
from tasks.dataset.schema import SCHEMAS, TABLES, build_tables
from tasks.dataset.stores import LocalStore, ResultStore, S3Store
from tasks.dataset.writer import publish
from tests.records_factory import T0, failed_cell, make_run, ok_cell, skipped_cell
from tests.s3_server import S3Server

pytestmark = pytest.mark.integration

ROWS = {"results": 4, "samples": 8, "vulnerabilities": 4, "packages": 6, "runs": 1}


def test_publish_writes_partitioned_files_and_manifest(store: ResultStore) -> None:
    location = publish(make_run(), store)
    assert location == store.location("manifests/run_id=run-1.json")
    assert store.list("") == sorted(
        [f"{t}/date=2024-05-01/run_id=run-1/part-0.parquet" for t in TABLES]
        + ["manifests/run_id=run-1.json"]
    )
    manifest = json.loads(store.read(manifest_path("run-1")))
    assert manifest["run_id"] == "run-1"
    assert manifest["date"] == "2024-05-01"
    assert manifest["schema_version"] == 1
    assert manifest["started_at"] == "2024-05-01T02:00:00+00:00"
    assert (manifest["cells"], manifest["cells_ok"], manifest["cells_failed"]) == (4, 2, 1)
    assert {t: e["rows"] for t, e in manifest["tables"].items()} == ROWS
    assert manifest["tables"]["results"]["path"] == table_path("results", "2024-05-01", "run-1")


def test_parquet_files_carry_schema_version_and_compression(store: ResultStore) -> None:
    publish(make_run(), store)
    data = store.read(table_path("vulnerabilities", "2024-05-01", "run-1"))
    parquet = pq.ParquetFile(pa.BufferReader(data))
    metadata = parquet.schema_arrow.metadata
    assert metadata[b"basebench.schema_version"] == b"1"
    assert metadata[b"basebench.table"] == b"vulnerabilities"
    assert parquet.metadata.num_rows == 4
    assert parquet.metadata.row_group(0).column(0).compression == "ZSTD"


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


def test_rerun_same_run_id_replaces_even_across_dates(store: ResultStore) -> None:
    publish(make_run(), store)
    next_day = T0 + timedelta(days=1)
    rerun = make_run(started_at=next_day, cells=(ok_cell(), failed_cell()))
    publish(rerun, store)
    publish(rerun, store)  # and again: still one copy
    assert store.list("results") == ["results/date=2024-05-02/run_id=run-1/part-0.parquet"]
    assert store.list("manifests") == ["manifests/run_id=run-1.json"]
    results = read_table(store, "results")
    assert sorted(results["cell_id"]) == ["id-bookworm", "id-distroless-base"]
    assert len(read_table(store, "samples")) == 5
    (run,) = list_runs(store)
    assert (run["date"], run["cells"]) == ("2024-05-02", 2)


def test_run_without_manifest_is_invisible(store: ResultStore) -> None:
    publish(make_run(run_id="complete"), store)
    # A publish that died before its manifest: data files only.
    partial = make_run(run_id="partial", cells=(ok_cell(), skipped_cell()))
    for name, table in build_tables(partial).items():
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        store.write(table_path(name, "2024-05-01", "partial"), sink.getvalue().to_pybytes())
    assert len(store.list("results")) == 2
    assert [r["run_id"] for r in list_runs(store)] == ["complete"]
    assert set(read_table(store, "results")["run_id"]) == {"complete"}
    assert len(read_table(store, "results", run_ids=["partial"])) == 0
    assert table_files(store, "results") == [table_path("results", "2024-05-01", "complete")]


def test_run_ids_filter_and_list_order(store: ResultStore) -> None:
    publish(make_run(run_id="later", started_at=T0 + timedelta(hours=30)), store)
    publish(make_run(run_id="earlier", cells=(skipped_cell(),)), store)
    assert [r["run_id"] for r in list_runs(store)] == ["earlier", "later"]
    assert len(read_table(store, "results")) == 5
    assert list(read_table(store, "results", run_ids=["earlier"])["cell_id"]) == ["id-alpine"]
    assert len(read_table(store, "samples", run_ids=["later"])) == 8
    assert len(read_table(store, "samples", run_ids=["earlier"])) == 0


def test_empty_store_reads_empty_frames(store: ResultStore) -> None:
    assert list_runs(store) == []
    frame = read_table(store, "packages")
    assert len(frame) == 0
    assert list(frame.columns) == SCHEMAS["packages"].names


def test_unknown_table_and_bad_run_id(store: ResultStore) -> None:
    with pytest.raises(ValueError, match="unknown table 'result'; allowed: results, samples"):
        read_table(store, "result")
    with pytest.raises(ValueError, match=r"run_id '\.\./x' is not allowed"):
        publish(make_run(run_id="../x"), store)
    assert store.list("") == []  # nothing half-written


def test_hive_dataset_over_a_local_store(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    publish(make_run(), store)
    dataset = ds.dataset(tmp_path / "results", format="parquet", partitioning="hive")
    table = dataset.to_table()
    assert table.num_rows == 4
    assert set(table.column("date").to_pylist()) == {"2024-05-01"}
    assert set(table.column("run_id").to_pylist()) == {"run-1"}


def test_local_store_failure_is_a_publish_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the output folder should be")
    with pytest.raises(PublishError, match=f"publish run run-1 to {blocker}: .*{blocker}/"):
        publish(make_run(), LocalStore(blocker))


def test_s3_failure_is_a_publish_error_naming_the_bucket(s3_server: S3Server) -> None:
    store = S3Store("no-such-bucket", "nightly", s3_server.endpoint_url, s3_server.region)
    with pytest.raises(PublishError, match=r"publish run run-1 to s3://no-such-bucket/nightly: "):
        publish(make_run(), store)
    with pytest.raises(PublishError, match=r"s3://no-such-bucket/nightly/manifests"):
        read_table(store, "results")


def test_corrupt_manifest_is_a_publish_error(store: ResultStore) -> None:
    store.write("manifests/run_id=broken.json", b"{not json")
    with pytest.raises(PublishError, match=r"manifests/run_id=broken\.json is not valid JSON"):
        list_runs(store)


def test_naive_start_time_partitions_as_utc(store: ResultStore) -> None:
    publish(make_run(started_at=datetime(2024, 5, 1, 23, 59)), store)
    assert store.list("runs") == ["runs/date=2024-05-01/run_id=run-1/part-0.parquet"]
    assert read_table(store, "runs").loc[0, "started_at"] == pd.Timestamp(
        datetime(2024, 5, 1, 23, 59, tzinfo=UTC)
    )
