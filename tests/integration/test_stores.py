"""Every ResultStore passes ``conformance.stores``: a local folder and moto's S3 server.

The stores come from the shared ``local_store`` and ``s3_store`` fixtures (tests/s3_server.py).
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from conformance.stores import PARQUET_PATH, StoreConformance
from tasks.dataset.output import S3Config
from tasks.dataset.stores import LocalStore, S3Store, StoreError, open_store
from tests.s3_server import S3Server

pytestmark = pytest.mark.integration


class TestLocalStore(StoreConformance):
    @pytest.fixture
    def store(self, local_store: LocalStore) -> LocalStore:
        return local_store

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
    def store(self, s3_store: S3Store) -> S3Store:
        return s3_store

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
