"""pytest plugin: a real S3 HTTP API (moto's server) on 127.0.0.1 for the session.

The ``s3_server`` fixture starts the server on a free port, creates one bucket and
yields an ``S3Server`` (endpoint, bucket, region). Dummy AWS credentials are set for
the session only, and instance metadata lookups are turned off so boto3 never reaches
beyond 127.0.0.0/8.

The server runs in a child process, as a real S3 endpoint would: delta-rs holds the
GIL in some calls (``DeltaTable.history``, ``is_deltatable``) while it waits for the
server, which a server thread in the test process could then never answer.

Result stores for tests, one empty store per test: ``local_store`` (a folder under
``tmp_path``), ``s3_store`` (a fresh prefix in the session's bucket) and ``store``,
parametrised over both (ids ``local`` and ``s3``).
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tasks.child_server import ChildServer
from tasks.dataset.stores import LocalStore, ResultStore, S3Store

REGION = "us-east-1"
# Dummy values: moto accepts any credentials; these must never be real ones.
_DUMMY_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": "/dev/null",
    "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
}
_CLEARED_ENV = ("AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL")


@dataclass(frozen=True)
class S3Server:
    """A running moto S3 server and the bucket created on it."""

    endpoint_url: str
    bucket: str
    region: str = REGION

    def client(self) -> Any:
        """A boto3 S3 client for this server."""
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint_url, region_name=self.region)


def moto_server() -> ChildServer:
    """moto's S3 server as a child process on a free 127.0.0.1 port, not yet started;
    its stderr (``output()``) logs one line per request."""

    def argv(port: int) -> list[str]:
        return [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]

    env = {k: v for k, v in os.environ.items() if k not in _CLEARED_ENV} | _DUMMY_ENV
    return ChildServer(argv, "/moto-api/", env=env)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """Start moto's S3 server on 127.0.0.1, create a bucket, stop it after the session."""
    with pytest.MonkeyPatch.context() as env:
        for name, value in _DUMMY_ENV.items():
            env.setenv(name, value)
        for name in _CLEARED_ENV:
            env.delenv(name, raising=False)
        server = moto_server()
        server.start()
        try:
            server.wait_ready(60)
            s3 = S3Server(endpoint_url=server.base_url, bucket=f"bb-{uuid.uuid4().hex[:12]}")
            s3.client().create_bucket(Bucket=s3.bucket)
            yield s3
        finally:
            server.stop()


@pytest.fixture
def local_store(tmp_path: Path) -> LocalStore:
    """An empty ``LocalStore`` in ``tmp_path / "results"``."""
    return LocalStore(tmp_path / "results")


@pytest.fixture
def s3_store(s3_server: S3Server, request: pytest.FixtureRequest) -> S3Store:
    """An empty ``S3Store``: a fresh prefix, named after the test module, in the bucket."""
    # A fresh prefix per test keeps tests apart inside the session's bucket.
    prefix = f"{request.path.stem}/{uuid.uuid4().hex}"
    return S3Store(s3_server.bucket, prefix, s3_server.endpoint_url, s3_server.region)


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest) -> ResultStore:
    """Each kind of result store in turn: ``local_store``, then ``s3_store``."""
    found: ResultStore = request.getfixturevalue(f"{request.param}_store")
    return found
