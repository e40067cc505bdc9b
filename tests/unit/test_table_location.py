"""Where a store's Delta tables are and how delta-rs and pyarrow reach them (no I/O)."""

from __future__ import annotations

from pathlib import Path

import pyarrow.fs as pafs
import pytest

from tasks.dataset.stores import LocalStore, S3Store


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_S3_LOCKING_PROVIDER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "key-id")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "token")
    monkeypatch.setenv("AWS_REGION", "eu-north-1")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-north-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")


def test_local_table_is_the_folder_with_a_native_filesystem(tmp_path: Path) -> None:
    location = LocalStore(tmp_path / "results").table_location("runs")
    assert location.uri == str(tmp_path / "results" / "runs")
    assert location.storage_options == {}
    assert isinstance(location.filesystem, pafs.SubTreeFileSystem)
    assert location.filesystem.base_path == f"{tmp_path}/results/runs/"


def test_s3_table_gets_boto3s_credentials_region_and_conditional_put() -> None:
    location = S3Store("bench", "nightly/go").table_location("results")
    assert location.uri == "s3://bench/nightly/go/results"
    assert location.storage_options == {
        "AWS_REGION": "eu-north-1",
        "AWS_ACCESS_KEY_ID": "key-id",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "AWS_SESSION_TOKEN": "token",
        "conditional_put": "etag",
    }
    assert isinstance(location.filesystem, pafs.SubTreeFileSystem)
    assert location.filesystem.base_path == "bench/nightly/go/results/"
    assert isinstance(location.filesystem.base_fs, pafs.S3FileSystem)
    assert location.filesystem.base_fs.region == "eu-north-1"


def test_s3_endpoint_from_the_setting_or_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    options = S3Store("b", endpoint_url="http://127.0.0.1:9000").table_location("t").storage_options
    assert (options["AWS_ENDPOINT_URL"], options["AWS_ALLOW_HTTP"]) == (
        "http://127.0.0.1:9000",
        "true",
    )
    monkeypatch.setenv("AWS_ENDPOINT_URL", "https://s3.example.internal")
    options = S3Store("b").table_location("t").storage_options
    assert (options["AWS_ENDPOINT_URL"], options["AWS_ALLOW_HTTP"]) == (
        "https://s3.example.internal",
        "false",
    )


def test_a_dynamodb_lock_replaces_conditional_put(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_S3_LOCKING_PROVIDER", "dynamodb")
    assert "conditional_put" not in S3Store("b").table_location("t").storage_options
