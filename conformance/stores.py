"""The conformance suite every ``ResultStore`` passes.

Subclass ``StoreConformance`` once per implementation and give it a ``store`` fixture
(an empty store of that kind, one per test)::

    class TestLocalStore(StoreConformance):
        @pytest.fixture
        def store(self, tmp_path: Path) -> LocalStore:
            return LocalStore(tmp_path / "results")

Needs pytest (a test dependency) and deltalake: the store decides where files go, and
a Delta table at ``table_location(path)`` must be made of the store's own files there.
"""

from __future__ import annotations

import os

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from tasks.dataset.stores import ResultStore

PARQUET_PATH = "results/date=2024-05-01/run_id=r1/part-0.parquet"


class StoreConformance:
    """Behaviour every ResultStore implementation must have. Subclasses provide ``store``."""

    @pytest.fixture
    def store(self) -> ResultStore:
        raise NotImplementedError

    def test_is_a_result_store(self, store: ResultStore) -> None:
        assert isinstance(store, ResultStore)

    def test_write_then_read(self, store: ResultStore) -> None:
        store.write(PARQUET_PATH, b"PAR1 data")
        assert store.read(PARQUET_PATH) == b"PAR1 data"

    def test_binary_megabyte_round_trips(self, store: ResultStore) -> None:
        data = os.urandom(1_048_576)
        store.write("big/blob.bin", data)
        assert store.read("big/blob.bin") == data

    def test_write_replaces(self, store: ResultStore) -> None:
        store.write("manifests/run_id=r1.json", b"old, longer content")
        store.write("manifests/run_id=r1.json", b"new")
        assert store.read("manifests/run_id=r1.json") == b"new"
        assert store.list("manifests") == ["manifests/run_id=r1.json"]

    def test_read_missing_is_file_not_found(self, store: ResultStore) -> None:
        with pytest.raises(FileNotFoundError, match=r"no-such\.json"):
            store.read("manifests/no-such.json")

    def test_list_is_sorted_relative_and_folder_scoped(self, store: ResultStore) -> None:
        for path in ("a/b/2", "a/b/1", "a/bc/3", "a/4", "z"):
            store.write(path, path.encode())
        assert store.list("a/b") == ["a/b/1", "a/b/2"]  # not a/bc/3: prefix is a folder
        assert store.list("a/b/") == ["a/b/1", "a/b/2"]
        assert store.list("a") == ["a/4", "a/b/1", "a/b/2", "a/bc/3"]
        assert store.list("") == ["a/4", "a/b/1", "a/b/2", "a/bc/3", "z"]
        assert store.list("nothing") == []

    def test_delete_folder(self, store: ResultStore) -> None:
        for path in ("t/run_id=r1/x", "t/run_id=r1/y", "t/run_id=r10/x"):
            store.write(path, b"1")
        assert store.delete("t/run_id=r1") == 2
        assert store.list("t") == ["t/run_id=r10/x"]  # a sibling with a longer name survives

    def test_delete_file_and_missing(self, store: ResultStore) -> None:
        store.write("m/run_id=r1.json", b"{}")
        store.write("m/run_id=r2.json", b"{}")
        assert store.delete("m/run_id=r1.json") == 1
        assert store.list("m") == ["m/run_id=r2.json"]
        assert store.delete("m/run_id=r1.json") == 0
        assert store.delete("never/there") == 0

    @pytest.mark.parametrize("bad", ["", "../escape", "a/../../b", "a//b", "a/./b", "a\\b"])
    def test_rejects_unsafe_paths(self, store: ResultStore, bad: str) -> None:
        with pytest.raises(ValueError, match="store path"):
            store.write(bad, b"x")

    def test_location_names_the_path(self, store: ResultStore) -> None:
        assert store.location(PARQUET_PATH).endswith("/" + PARQUET_PATH)

    def test_table_location_is_a_delta_table_of_the_stores_files(self, store: ResultStore) -> None:
        location = store.table_location("results")
        assert location.uri.endswith("/results")
        write_deltalake(
            location.uri, pa.table({"n": [1, 2]}), storage_options=location.storage_options
        )
        listed = store.list("results")
        assert listed[0] == "results/_delta_log/00000000000000000000.json"
        assert len(listed) == 2 and listed[1].endswith(".parquet")
        again = store.table_location("results")
        table = DeltaTable(again.uri, storage_options=again.storage_options)
        assert table.to_pyarrow_table().column("n").to_pylist() == [1, 2]
        store.write("other/x", b"1")
        assert store.list("results") == listed  # the table stays in its folder

    def test_table_location_rejects_unsafe_paths(self, store: ResultStore) -> None:
        with pytest.raises(ValueError, match="store path"):
            store.table_location("../results")


__all__ = ["PARQUET_PATH", "StoreConformance"]
