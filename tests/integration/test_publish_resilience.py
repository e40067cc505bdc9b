"""Publish under failure: a publish killed before its manifest, S3 refusing writes, retries.

``store`` is each kind in turn (the shared fixture in tests/s3_server.py).
"""

from __future__ import annotations

import socket
import uuid
from datetime import timedelta
from pathlib import Path

import pytest

from tasks.dataset.layout import PublishError
from tasks.dataset.reader import list_runs, read_table
from tasks.dataset.schema import TABLES
from tasks.dataset.stores import LocalStore, ResultStore, S3Store, StoreError
from tasks.dataset.writer import RetryPolicy, copy_run, publish, publish_with_fallback
from tests.records_factory import T0, make_run, nightly_run
from tests.s3_server import S3Server

pytestmark = pytest.mark.integration

FAST = RetryPolicy(attempts=3, first_delay=0.01, factor=2.0, max_delay=0.05)


class WrappedStore:
    """Passes every call to ``inner``; subclasses change ``write``."""

    def __init__(self, inner: ResultStore) -> None:
        self.inner = inner

    def write(self, path: str, data: bytes) -> None:
        self.inner.write(path, data)

    def read(self, path: str) -> bytes:
        return self.inner.read(path)

    def list(self, prefix: str = "") -> list[str]:
        return self.inner.list(prefix)

    def delete(self, prefix: str) -> int:
        return self.inner.delete(prefix)

    def location(self, path: str = "") -> str:
        return self.inner.location(path)


class DiesOnManifest(WrappedStore):
    """A store that crashes the way a killed process would: data files written, no manifest."""

    def write(self, path: str, data: bytes) -> None:
        if path.startswith("manifests/"):
            raise KeyboardInterrupt("killed between data files and manifest")
        self.inner.write(path, data)


class FailsFirstWrites(WrappedStore):
    """A store whose first ``failures`` writes fail like a flaky network."""

    def __init__(self, inner: ResultStore, failures: int) -> None:
        super().__init__(inner)
        self.failures, self.writes = failures, 0

    def write(self, path: str, data: bytes) -> None:
        self.writes += 1
        if self.writes <= self.failures:
            raise StoreError(f"cannot write {self.inner.location(path)}: connection reset")
        self.inner.write(path, data)


def test_killed_publish_is_invisible_and_rerun_completes_it(store: ResultStore) -> None:
    publish(nightly_run("night-1", T0), store)
    second = nightly_run("night-2", T0 + timedelta(days=1), grow={"bookworm": 5_000_000})
    with pytest.raises(KeyboardInterrupt):
        publish(second, DiesOnManifest(store))
    # The data files of night-2 are there ...
    assert len(store.list("results")) == 2
    # ... but readers only see the complete run.
    assert [m["run_id"] for m in list_runs(store)] == ["night-1"]
    results = read_table(store, "results")
    assert list(results["run_id"].unique()) == ["night-1"]
    assert len(results) == 3
    assert len(read_table(store, "vulnerabilities")) == 6

    publish(second, store)  # the rerun of the same run id
    assert [m["run_id"] for m in list_runs(store)] == ["night-1", "night-2"]
    results = read_table(store, "results")
    assert results.groupby("run_id").size().to_dict() == {"night-1": 3, "night-2": 3}
    assert len(read_table(store, "samples")) == 2 * 3 * 5  # no duplicate rows
    assert len(store.list("results")) == 2  # one file per run
    sizes = results.set_index(["run_id", "cell_id"])["size_bytes"]
    assert sizes[("night-2", "id-bookworm")] == 125_000_000


def test_killed_rerun_hides_the_run_until_it_completes(store: ResultStore) -> None:
    publish(nightly_run("night-1", T0), store)
    publish(make_run("night-2"), store)
    with pytest.raises(KeyboardInterrupt):
        publish(nightly_run("night-2", T0), DiesOnManifest(store))
    # Half-replaced: neither the old nor the new night-2 shows.
    assert [m["run_id"] for m in list_runs(store)] == ["night-1"]
    assert set(read_table(store, "results")["run_id"]) == {"night-1"}
    publish(nightly_run("night-2", T0), store)
    assert read_table(store, "results", ["night-2"])["cell_id"].tolist() == [
        "id-single-stage",
        "id-bookworm",
        "id-distroless-static",
    ]


def test_transient_failures_are_retried_with_backoff(store: ResultStore) -> None:
    waits: list[float] = []
    outcome = publish_with_fallback(
        nightly_run("night-1", T0),
        FailsFirstWrites(store, failures=2),
        Path("/nonexistent/never-used"),
        FAST,
        sleep=waits.append,
    )
    assert outcome.published is True
    assert outcome.attempts == 3
    assert waits == [0.01, 0.02]
    assert outcome.location == store.location("manifests/run_id=night-1.json")
    assert outcome.message == f"published run night-1: {outcome.location}"
    assert len(read_table(store, "results")) == 3


def assert_kept_locally(fallback: Path, message: str, run_id: str) -> None:
    local = LocalStore(fallback)
    assert [m["run_id"] for m in list_runs(local)] == [run_id]
    assert sorted(p.split("/")[0] for p in local.list("")) == sorted([*TABLES, "manifests"])
    assert len(read_table(local, "results")) == 3
    assert len(read_table(local, "vulnerabilities")) == 6
    assert f"run {run_id} is kept complete in {fallback}" in message


def test_missing_bucket_keeps_the_run_locally(s3_server: S3Server, tmp_path: Path) -> None:
    store = S3Store("no-such-bucket", "nightly", s3_server.endpoint_url, s3_server.region)
    waits: list[float] = []
    outcome = publish_with_fallback(
        nightly_run("night-1", T0), store, tmp_path / "unpublished", FAST, sleep=waits.append
    )
    assert outcome.published is False
    assert outcome.attempts == 3
    assert waits == [0.01, 0.02]
    assert outcome.fallback_dir == tmp_path / "unpublished"
    assert "cannot" in (outcome.error or "") and "s3://no-such-bucket/nightly" in (
        outcome.error or ""
    )
    assert "NoSuchBucket" in (outcome.error or "")
    assert outcome.message.startswith("publish failed after 3 attempts (cannot ")
    assert_kept_locally(tmp_path / "unpublished", outcome.message, "night-1")


def test_unreachable_s3_keeps_the_run_locally(s3_server: S3Server, tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nobody listens on: S3 is down
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    store = S3Store("bucket", "nightly", f"http://127.0.0.1:{port}", s3_server.region)
    outcome = publish_with_fallback(
        nightly_run("night-1", T0), store, tmp_path / "kept", FAST, sleep=lambda _: None
    )
    assert outcome.published is False
    assert f"http://127.0.0.1:{port}" in (outcome.error or "")
    assert_kept_locally(tmp_path / "kept", outcome.message, "night-1")


def test_kept_run_is_copied_to_the_store_later(s3_server: S3Server, tmp_path: Path) -> None:
    broken = S3Store("no-such-bucket", "nightly", s3_server.endpoint_url, s3_server.region)
    outcome = publish_with_fallback(
        nightly_run("night-1", T0), broken, tmp_path / "kept", FAST, sleep=lambda _: None
    )
    assert outcome.fallback_dir is not None
    store = S3Store(s3_server.bucket, f"copy/{uuid.uuid4().hex}", s3_server.endpoint_url)
    location = copy_run(LocalStore(outcome.fallback_dir), store, "night-1")
    copy_run(LocalStore(outcome.fallback_dir), store, "night-1")  # twice: still one copy
    assert location == store.location("manifests/run_id=night-1.json")
    assert [m["run_id"] for m in list_runs(store)] == ["night-1"]
    assert len(read_table(store, "samples")) == 15
    assert len(store.list("")) == len(TABLES) + 1


def test_fallback_failing_too_is_a_publish_error(s3_server: S3Server, tmp_path: Path) -> None:
    store = S3Store("no-such-bucket", "nightly", s3_server.endpoint_url, s3_server.region)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(PublishError, match=r"s3://no-such-bucket/nightly.*locally failed too"):
        publish_with_fallback(make_run(), store, blocker, FAST, sleep=lambda _: None)


def test_bad_run_id_is_not_retried(tmp_path: Path) -> None:
    waits: list[float] = []
    with pytest.raises(ValueError, match="run_id"):
        publish_with_fallback(
            make_run("bad/id"), LocalStore(tmp_path / "s"), tmp_path / "f", FAST, waits.append
        )
    assert waits == []
    assert not (tmp_path / "f").exists()


def test_default_retry_policy_delays() -> None:
    assert RetryPolicy().delays() == [2.0, 4.0, 8.0]
    assert RetryPolicy(attempts=6, max_delay=10).delays() == [2.0, 4.0, 8.0, 10.0, 10.0]
    assert RetryPolicy(attempts=1).delays() == []
