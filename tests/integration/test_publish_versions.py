"""The schema version policy on Delta tables read back (local folder and moto S3).

``store`` is each kind in turn (the shared fixture in tests/s3_server.py). A table's
version is its ``basebench.schema_version`` property; additive changes evolve the
table in place (``schema_mode="merge"``), older rows reading nulls in new columns.
"""

from __future__ import annotations

from datetime import timedelta

import pyarrow as pa
import pytest
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake

from tasks.dataset import schema
from tasks.dataset.layout import PublishError, app_id
from tasks.dataset.reader import read_table
from tasks.dataset.schema import build_tables
from tasks.dataset.stores import ResultStore
from tasks.dataset.tables import append_run
from tasks.dataset.writer import COMMIT_ORDER, publish
from tests.records_factory import T0, make_run

pytestmark = pytest.mark.integration


def delta(store: ResultStore, table: str) -> DeltaTable:
    location = store.table_location(table)
    return DeltaTable(location.uri, storage_options=location.storage_options)


def set_version(store: ResultStore, table: str, version: str) -> None:
    delta(store, table).alter.set_table_properties(
        {"basebench.schema_version": version}, raise_if_not_exists=False
    )


def write_raw(store: ResultStore, table: str, rows: pa.Table, version: str | None) -> None:
    """Table ``table`` as another writer made it: ``rows`` as they are, in a commit with
    run-1's app transaction (as basebench commits it), with ``version`` (or none)."""
    location = store.table_location(table)
    write_deltalake(
        location.uri,
        rows,
        partition_by=["date"],
        storage_options=location.storage_options,
        commit_properties=CommitProperties(app_transactions=[Transaction(app_id("run-1"), 1)]),
    )
    if version is not None:
        set_version(store, table, version)


def publish_except(store: ResultStore, skipped: str) -> None:
    """make_run() into every table but ``skipped``."""
    tables = build_tables(make_run())
    for name in COMMIT_ORDER:
        if name != skipped:
            append_run(store, name, tables[name], "run-1")


def test_current_version_reads(store: ResultStore) -> None:
    publish(make_run(), store)
    assert schema.SCHEMA_VERSION == 1
    assert delta(store, "samples").metadata().configuration["basebench.schema_version"] == "1"
    assert len(read_table(store, "samples")) == 8


def test_newer_version_is_refused_clearly(store: ResultStore) -> None:
    publish(make_run(), store)
    set_version(store, "samples", "2")
    where = store.location("samples")
    with pytest.raises(
        PublishError,
        match=rf"^{where} has schema version 2, newer than this basebench reads \(1\.\.1\); "
        r"upgrade basebench to read it$",
    ):
        read_table(store, "samples")
    assert len(read_table(store, "results")) == 4  # other tables are unaffected
    with pytest.raises(
        PublishError,
        match=rf"^{where} has schema version 2, newer than this basebench writes \(1\); "
        r"upgrade basebench to publish to it$",
    ):
        publish(make_run("run-2", T0 + timedelta(days=1)), store)


@pytest.mark.parametrize(
    ("version", "message"),
    [
        (None, "no basebench.schema_version in the table properties; not a basebench table"),
        ("one", "basebench.schema_version 'one' is not a whole number"),
        ("0", r"schema version 0, older than this basebench reads \(1\.\.1\)"),
    ],
)
def test_bad_versions_are_refused(store: ResultStore, version: str | None, message: str) -> None:
    publish_except(store, "packages")
    write_raw(store, "packages", build_tables(make_run())["packages"], version)
    with pytest.raises(PublishError, match=message):
        read_table(store, "packages")


def test_table_without_a_later_nullable_column_reads_with_nulls_and_evolves(
    store: ResultStore,
) -> None:
    # A table written before `startup_unstable` existed: same version (additive change).
    old = build_tables(make_run())["results"].drop_columns(["startup_unstable"])
    write_raw(store, "results", old, "1")
    publish(make_run(), store)  # the other tables and the runs row; results has run-1
    results = read_table(store, "results")
    assert list(results.columns) == schema.SCHEMAS["results"].names
    assert results["startup_unstable"].isna().all()
    assert results.set_index("cell_id").loc["id-distroless-base", "size_bytes"] == 26_000_000
    # A newer run adds the column to the table; the older rows keep reading null.
    publish(make_run("run-2", T0 + timedelta(days=1)), store)
    assert "startup_unstable" in delta(store, "results").schema().to_arrow().names
    both = read_table(store, "results").set_index(["run_id", "cell_id"])["startup_unstable"]
    assert both.isna().sum() == 4 + 2  # run-1's four rows, run-2's failed and skipped cells
    assert bool(both[("run-2", "id-single-stage")]) is True


def test_table_without_a_required_column_is_refused(store: ResultStore) -> None:
    publish(make_run(), store)
    broken = build_tables(make_run())["samples"].drop_columns(["repetition"])
    location = store.table_location("samples")
    write_deltalake(
        location.uri,
        broken,
        mode="overwrite",
        schema_mode="overwrite",
        storage_options=location.storage_options,
    )
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
    assert list(samples.columns) == [
        "run_id",
        "date",
        "cell_id",
        "repetition",
        "concurrent_stages",
        "seconds",
    ]
    assert samples["seconds"].tolist()[:5] == [0.25, 0.22, 0.27, 0.24, 0.26]
    assert len(read_table(store, "results")) == 4  # the upgrade passes other tables through
