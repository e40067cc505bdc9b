"""Publish under failure: a publish killed between tables, S3 refusing, retries, the local
fallback and publishing the kept run later.

``store`` is each kind in turn (the shared fixture in tests/s3_server.py).
"""

from __future__ import annotations

import socket
import uuid
from datetime import timedelta
from pathlib import Path

import pytest

from cli.main import main
from tasks.dataset.layout import PublishError
from tasks.dataset.reader import list_runs, read_table
from tasks.dataset.schema import TABLES
from tasks.dataset.stores import LocalStore, ResultStore, S3Store, TableLocation
from tasks.dataset.writer import (
    RetryPolicy,
    copy_run,
    keep_unpublished,
    publish,
    publish_kept,
    publish_with_fallback,
)
from tasks.journal import RunJournal, kept_run
from tests.records_factory import T0, make_run, nightly_run
from tests.s3_server import S3Server

pytestmark = pytest.mark.integration

FAST = RetryPolicy(attempts=3, first_delay=0.01, factor=2.0, max_delay=0.05)
NIGHT = {"results": 3, "samples": 15, "vulnerabilities": 6, "packages": 8, "runs": 1}


class WrappedStore:
    """Passes every call to ``inner``; subclasses change ``table_location``."""

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

    def table_location(self, path: str) -> TableLocation:
        return self.inner.table_location(path)


class DiesBefore(WrappedStore):
    """A store that crashes the way a killed process would, before table ``table``."""

    def __init__(self, inner: ResultStore, table: str) -> None:
        super().__init__(inner)
        self.table = table

    def table_location(self, path: str) -> TableLocation:
        if path == self.table:
            raise KeyboardInterrupt(f"killed before the {path} commit")
        return self.inner.table_location(path)


def test_killed_publish_is_invisible_and_rerun_completes_it(store: ResultStore) -> None:
    publish(nightly_run("night-1", T0), store)
    second = nightly_run("night-2", T0 + timedelta(days=1), grow={"bookworm": 5_000_000})
    with pytest.raises(KeyboardInterrupt):
        publish(second, DiesBefore(store, "runs"))
    # The rows of night-2 are in the other tables ...
    results_location = store.table_location("results")
    assert results_location.uri.endswith("/results")
    # ... but readers only see the complete run.
    assert [m["run_id"] for m in list_runs(store)] == ["night-1"]
    results = read_table(store, "results")
    assert list(results["run_id"].unique()) == ["night-1"]
    assert len(results) == 3
    assert len(read_table(store, "vulnerabilities")) == 6

    rerun = publish(second, store)  # the rerun of the same run id
    assert [c.table for c in rerun.commits if c.written] == ["runs"]
    assert [m["run_id"] for m in list_runs(store)] == ["night-1", "night-2"]
    results = read_table(store, "results")
    assert results.groupby("run_id").size().to_dict() == {"night-1": 3, "night-2": 3}
    assert len(read_table(store, "samples")) == 2 * 3 * 5  # no duplicate rows
    sizes = results.set_index(["run_id", "cell_id"])["size_bytes"]
    assert sizes[("night-2", "id-bookworm")] == 125_000_000


def test_killed_before_results_leaves_detail_rows_unlisted(store: ResultStore) -> None:
    with pytest.raises(KeyboardInterrupt):
        publish(nightly_run("night-1", T0), DiesBefore(store, "results"))
    assert list_runs(store) == []
    assert len(read_table(store, "samples")) == 0
    publish(nightly_run("night-1", T0), store)
    assert {name: len(read_table(store, name)) for name in TABLES} == NIGHT


def test_transient_failure_is_retried_with_backoff(s3_server: S3Server) -> None:
    # The bucket does not exist at the first attempt; it appears during the backoff.
    bucket = f"late-{uuid.uuid4().hex[:12]}"
    store = S3Store(bucket, "nightly", s3_server.endpoint_url, s3_server.region)
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 1:
            s3_server.client().create_bucket(Bucket=bucket)

    outcome = publish_with_fallback(
        nightly_run("night-1", T0), store, Path("/nonexistent/never-used"), FAST, sleep=sleep
    )
    assert outcome.published is True
    assert outcome.attempts == 2
    assert waits == [0.01]
    assert outcome.location == f"s3://{bucket}/nightly"
    assert outcome.message == f"published run night-1: s3://{bucket}/nightly"
    assert {name: len(read_table(store, name)) for name in TABLES} == NIGHT


def assert_kept_locally(fallback: Path, message: str, run_id: str, target: str) -> None:
    local = LocalStore(fallback)
    assert [m["run_id"] for m in list_runs(local)] == [run_id]
    assert sorted({p.split("/")[0] for p in local.list("")}) == sorted(TABLES)
    assert {name: len(read_table(local, name)) for name in TABLES} == NIGHT
    assert f"run {run_id} is kept complete in {fallback}" in message
    assert message.endswith(f"basebench publish {fallback} --output {target}")


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
    error = outcome.error or ""
    assert "append run night-1 to s3://no-such-bucket/nightly/samples" in error
    assert "NoSuchBucket" in error
    assert outcome.message.startswith("publish failed after 3 attempts (append run night-1 ")
    target = f"s3://no-such-bucket/nightly --s3-endpoint {s3_server.endpoint_url}"
    assert_kept_locally(tmp_path / "unpublished", outcome.message, "night-1", target)


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
    target = f"s3://bucket/nightly --s3-endpoint http://127.0.0.1:{port}"
    assert_kept_locally(tmp_path / "kept", outcome.message, "night-1", target)


def test_kept_runs_publish_later_with_one_call(s3_server: S3Server, tmp_path: Path) -> None:
    broken = S3Store("no-such-bucket", "nightly", s3_server.endpoint_url, s3_server.region)
    kept = tmp_path / "kept"
    for run in (nightly_run("night-1", T0), nightly_run("night-2", T0 + timedelta(days=1))):
        outcome = publish_with_fallback(run, broken, kept, FAST, sleep=lambda _: None)
        assert outcome.fallback_dir == kept  # both runs kept in the same folder
    store = S3Store(s3_server.bucket, f"copy/{uuid.uuid4().hex}", s3_server.endpoint_url)
    # night-1 reached the store already (say, by hand): it is counted, not copied again.
    copy_run(LocalStore(kept), store, "night-1")
    copied = publish_kept(LocalStore(kept), store)
    assert [(c.run_id, c.written, c.complete) for c in copied] == [
        ("night-1", (), True),
        ("night-2", ("samples", "vulnerabilities", "packages", "results", "runs"), True),
    ]
    assert copied[1].source_rows == copied[1].target_rows == NIGHT
    assert [m["run_id"] for m in list_runs(store)] == ["night-1", "night-2"]
    assert len(read_table(store, "samples")) == 30
    assert publish_kept(LocalStore(kept), store)[1].written == ()  # twice: nothing added


def test_copy_of_an_unknown_run_is_an_error(tmp_path: Path) -> None:
    source = LocalStore(tmp_path / "kept")
    publish(nightly_run("night-1", T0), source)
    with pytest.raises(PublishError, match=rf"no complete run night-9 in {tmp_path}/kept"):
        copy_run(source, LocalStore(tmp_path / "target"), "night-9")
    with pytest.raises(PublishError, match=rf"no complete run in {tmp_path}/empty to publish"):
        publish_kept(LocalStore(tmp_path / "empty"), LocalStore(tmp_path / "target"))


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


def test_store_and_fallback_failing_keep_the_run_in_its_journal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a-file"  # neither the output nor the fallback can be a folder
    blocker.write_text("not a folder")
    run = nightly_run("night-1", T0)
    store = LocalStore(blocker / "results")
    with pytest.raises(PublishError) as failed:
        publish_with_fallback(run, store, blocker / "unpublished", FAST, sleep=lambda _: None)
    journal = RunJournal(tmp_path / "cache", "night-1")
    outcome = keep_unpublished(run, store, journal, failed.value, FAST.attempts)
    assert outcome.published is False
    assert outcome.fallback_dir == journal.folder
    assert outcome.message.endswith(
        f"run night-1 is kept complete in {journal.folder}; publish it once the store works "
        f"again: basebench publish {journal.folder} --output {blocker}/results"
    )
    assert kept_run(journal.folder) == run
    # The one command the message gives (with a working output) publishes it.
    target = tmp_path / "results"
    assert main(["publish", str(journal.folder), "--output", str(target)]) == 0
    out = capsys.readouterr().out
    assert "run night-1: published" in out
    assert out.endswith(f"1 run(s) in {target}, 0 differ\n")
    assert {name: len(read_table(LocalStore(target), name)) for name in TABLES} == NIGHT
    assert not journal.folder.exists()  # published: the journal is gone


def test_a_run_kept_nowhere_says_what_was_lost(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    run = nightly_run("night-1", T0)
    journal = RunJournal(blocker, "night-1")  # the cache dir is a file too
    outcome = keep_unpublished(
        run, LocalStore(blocker / "results"), journal, PublishError("store down"), 4
    )
    assert outcome.published is False
    assert outcome.fallback_dir is None
    assert outcome.message == (
        f"run night-1 was not published and could not be kept: store down; writing it to "
        f"{blocker}/journal/night-1 failed too (Not a directory): lost 3 cells "
        "(3 ok, 0 failed, 0 skipped)"
    )
