"""The schema version policy on files read back from a store (local folder and moto S3).

``store`` is each kind in turn (the shared fixture in tests/s3_server.py).
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks.dataset import schema
from tasks.dataset.layout import PublishError, table_path
from tasks.dataset.reader import read_table
from tasks.dataset.stores import ResultStore
from tasks.dataset.writer import publish
from tests.records_factory import make_run

pytestmark = pytest.mark.integration

SAMPLES = table_path("samples", "2024-05-01", "run-1")
RESULTS = table_path("results", "2024-05-01", "run-1")


def rewrite(store: ResultStore, path: str, change: pa.Table) -> None:
    sink = pa.BufferOutputStream()
    pq.write_table(change, sink)
    store.write(path, sink.getvalue().to_pybytes())


def stored(store: ResultStore, path: str) -> pa.Table:
    return pq.read_table(pa.BufferReader(store.read(path)))


def with_version(table: pa.Table, version: bytes | None) -> pa.Table:
    metadata = dict(table.schema.metadata)
    if version is None:
        del metadata[schema.SCHEMA_VERSION_KEY]
    else:
        metadata[schema.SCHEMA_VERSION_KEY] = version
    return table.replace_schema_metadata(metadata)


def test_current_version_reads(store: ResultStore) -> None:
    publish(make_run(), store)
    assert schema.SCHEMA_VERSION == 1
    assert stored(store, SAMPLES).schema.metadata[b"basebench.schema_version"] == b"1"
    assert len(read_table(store, "samples")) == 8


def test_newer_version_is_refused_clearly(store: ResultStore) -> None:
    publish(make_run(), store)
    rewrite(store, SAMPLES, with_version(stored(store, SAMPLES), b"2"))
    with pytest.raises(
        PublishError,
        match=r"samples/date=2024-05-01/run_id=run-1/part-0\.parquet has schema version 2, "
        r"newer than this basebench reads \(1\.\.1\); upgrade basebench to read it",
    ):
        read_table(store, "samples")
    assert len(read_table(store, "results")) == 4  # other tables are unaffected


@pytest.mark.parametrize(
    ("version", "message"),
    [
        (None, "no basebench.schema_version in the file metadata"),
        (b"one", "basebench.schema_version 'one' is not a whole number"),
        (b"0", r"schema version 0, older than this basebench reads \(1\.\.1\)"),
    ],
)
def test_bad_versions_are_refused(store: ResultStore, version: bytes | None, message: str) -> None:
    publish(make_run(), store)
    rewrite(store, SAMPLES, with_version(stored(store, SAMPLES), version))
    with pytest.raises(PublishError, match=message):
        read_table(store, "samples")


def test_file_without_a_later_nullable_column_reads_with_nulls(store: ResultStore) -> None:
    # An older file written before `startup_unstable` existed: same version (additive change).
    publish(make_run(), store)
    old = stored(store, RESULTS).drop_columns(["startup_unstable"])
    rewrite(store, RESULTS, old)
    results = read_table(store, "results")
    assert list(results.columns) == schema.SCHEMAS["results"].names
    assert results["startup_unstable"].isna().all()
    assert results.set_index("cell_id").loc["id-distroless-base", "size_bytes"] == 26_000_000


def test_file_without_a_required_column_is_refused(store: ResultStore) -> None:
    publish(make_run(), store)
    rewrite(store, SAMPLES, stored(store, SAMPLES).drop_columns(["repetition"]))
    with pytest.raises(PublishError, match="required column repetition of table samples"):
        read_table(store, "samples")


def test_old_runs_stay_readable_after_a_version_bump(
    store: ResultStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Publish with version 1, then pretend version 2 renamed samples.startup_seconds.
    publish(make_run(), store)
    v2 = pa.schema(
        [
            *(f for f in schema.SAMPLES_SCHEMA if f.name != "startup_seconds"),
            pa.field("seconds", pa.float64(), nullable=False),
        ],
        metadata={schema.SCHEMA_VERSION_KEY: b"2", schema.TABLE_KEY: b"samples"},
    )

    def rename(name: str, table: pa.Table) -> pa.Table:
        if name != "samples":
            return table
        return table.rename_columns(
            ["seconds" if c == "startup_seconds" else c for c in table.column_names]
        )

    monkeypatch.setattr(schema, "SCHEMA_VERSION", 2)
    monkeypatch.setitem(schema.SCHEMAS, "samples", v2)
    monkeypatch.setitem(schema.UPGRADES, 1, rename)
    samples = read_table(store, "samples")
    assert list(samples.columns) == ["run_id", "cell_id", "repetition", "seconds"]
    assert samples["seconds"].tolist()[:5] == [0.25, 0.22, 0.27, 0.24, 0.26]
    assert len(read_table(store, "results")) == 4  # the upgrade passes other tables through
