"""One conformance suite for result stores, run against a local folder and moto's S3 server."""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

import pytest

from tasks.dataset.stores import LocalStore, ResultStore, S3Store, StoreError, open_store
from tasks.matrix import S3Config
from tests.s3_server import S3Server

pytestmark = pytest.mark.integration

PARQUET_PATH = "results/date=2024-05-01/run_id=r1/part-0.parquet"


class StoreConformance:
    """Behaviour every ResultStore implementation must have. Subclasses provide ``store``."""

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


class TestLocalStore(StoreConformance):
    @pytest.fixture
    def store(self, tmp_path: Path) -> LocalStore:
        return LocalStore(tmp_path / "out")

    def test_no_temp_files_left(self, store: LocalStore) -> None:
        store.write(PARQUET_PATH, b"x")
        store.write(PARQUET_PATH, b"y")
        folder = store.root / "results/date=2024-05-01/run_id=r1"
        assert sorted(p.name for p in folder.iterdir()) == ["part-0.parquet"]
        assert store.location(PARQUET_PATH) == str(store.root / PARQUET_PATH)

    def test_failed_write_is_a_store_error_and_leaves_nothing(self, store: LocalStore) -> None:
        store.write("results", b"a file where a folder is needed")
        with pytest.raises(StoreError, match=f"cannot write {store.root}/results/"):
            store.write(PARQUET_PATH, b"x")
        assert store.list("") == ["results"]

    def test_temp_files_are_not_listed(self, store: LocalStore) -> None:
        store.write("a/real", b"1")
        (store.root / "a" / ".tmp-crashed").write_bytes(b"partial")
        assert store.list("a") == ["a/real"]

    def test_delete_prunes_empty_partition_folders(self, store: LocalStore) -> None:
        store.write("t/date=2024-05-01/run_id=r1/part-0.parquet", b"1")
        store.write("t/date=2024-05-02/run_id=r2/part-0.parquet", b"2")
        store.delete("t/date=2024-05-01/run_id=r1")
        assert sorted(p.name for p in (store.root / "t").iterdir()) == ["date=2024-05-02"]


class TestS3Store(StoreConformance):
    @pytest.fixture
    def store(self, s3_server: S3Server) -> S3Store:
        # A fresh prefix per test keeps tests apart inside the session's bucket.
        prefix = f"suite/{uuid.uuid4().hex}"
        return S3Store(s3_server.bucket, prefix, s3_server.endpoint_url, s3_server.region)

    def test_keys_live_under_the_prefix(self, store: S3Store, s3_server: S3Server) -> None:
        store.write(PARQUET_PATH, b"x")
        listed = s3_server.client().list_objects_v2(Bucket=s3_server.bucket, Prefix=store.prefix)
        assert [o["Key"] for o in listed["Contents"]] == [f"{store.prefix}/{PARQUET_PATH}"]
        assert (
            store.location(PARQUET_PATH) == f"s3://{s3_server.bucket}/{store.prefix}/{PARQUET_PATH}"
        )

    def test_delete_more_than_one_batch(self, store: S3Store) -> None:
        for i in range(1005):  # DeleteObjects takes at most 1000 keys per call
            store.write(f"many/{i:04d}", b"")
        assert store.delete("many") == 1005
        assert store.list("many") == []

    def test_missing_bucket_is_a_store_error_naming_it(self, s3_server: S3Server) -> None:
        store = S3Store("no-such-bucket", "p", s3_server.endpoint_url, s3_server.region)
        with pytest.raises(StoreError, match=r"cannot write s3://no-such-bucket/p/x \(endpoint"):
            store.write("x", b"1")
        with pytest.raises(StoreError, match=r"cannot list s3://no-such-bucket/p"):
            store.list("")

    def test_unreachable_endpoint_is_a_store_error(self, s3_server: S3Server) -> None:
        with socket.socket() as sock:  # a port nobody listens on
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        store = S3Store("b", "", f"http://127.0.0.1:{port}", s3_server.region)
        with pytest.raises(
            StoreError, match=f"cannot read s3://b/x \\(endpoint http://127.0.0.1:{port}\\)"
        ):
            store.read("x")


def test_open_store_local(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "results"), S3Config())
    assert isinstance(store, LocalStore)
    assert store.root == tmp_path / "results"


def test_open_store_s3(s3_server: S3Server) -> None:
    store = open_store(
        f"s3://{s3_server.bucket}/nightly/go/", S3Config(endpoint_url=s3_server.endpoint_url)
    )
    assert isinstance(store, S3Store)
    assert (store.bucket, store.prefix) == (s3_server.bucket, "nightly/go")
    store.write("x", b"via open_store")
    assert store.read("x") == b"via open_store"
    assert open_store(
        f"s3://{s3_server.bucket}", S3Config(endpoint_url=s3_server.endpoint_url)
    ).list("nightly/go") == ["nightly/go/x"]


@pytest.mark.parametrize("bad", ["s3://", "s3:///prefix", ""])
def test_open_store_rejects_bad_output(bad: str) -> None:
    with pytest.raises(ValueError, match="output"):
        open_store(bad, S3Config())
