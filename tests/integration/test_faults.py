"""Faults against real components, each with what must hold afterwards: no finished cell
lost, nothing left behind, the exit status documented in docs/reliability.md.

- the S3 server (moto, its own process) stops in the middle of a publish;
- the Trivy DB is corrupt: the scan fails, the probe's figures are kept.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import docker
import pandas as pd
import pytest

from cli.main import main
from tasks import labels
from tasks.child_server import ChildServer
from tasks.dataset.reader import list_runs, read_table
from tasks.dataset.schema import TABLES
from tasks.dataset.stores import LocalStore, S3Store, TableLocation, open_store
from tasks.dataset.writer import RetryPolicy, publish_with_fallback
from tests.integration.test_publish_resilience import NIGHT, WrappedStore
from tests.records_factory import T0, nightly_run
from tests.s3_server import REGION, S3Server, moto_server

pytestmark = pytest.mark.integration

FAST = RetryPolicy(attempts=3, first_delay=0.01, factor=2.0, max_delay=0.05)


class StopsServerBefore(WrappedStore):
    """The real store; the S3 server process is stopped just before table ``table``."""

    def __init__(self, inner: S3Store, table: str, server: ChildServer) -> None:
        super().__init__(inner)
        self.table, self.server = table, server
        self.endpoint_url = inner.endpoint_url

    def table_location(self, path: str) -> TableLocation:
        if path == self.table:
            self.server.stop()  # SIGTERM to moto: every later request is refused
        return self.inner.table_location(path)


def run_in_process(config: Path, prefect_home: Path) -> subprocess.CompletedProcess[str]:
    """``basebench run CONFIG`` in a process of its own, with its own Prefect home."""
    return subprocess.run(
        [sys.executable, "-m", "cli.main", "run", str(config)],
        env={**os.environ, "PREFECT_HOME": str(prefect_home)},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


def started_moto() -> ChildServer:
    server = moto_server()
    server.start()
    server.wait_ready(60)
    return server


def test_s3_stopped_mid_publish_keeps_the_run_and_one_command_publishes_it(
    s3_server: S3Server,  # the session's dummy AWS environment
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bucket = f"mid-{uuid.uuid4().hex[:12]}"
    first = started_moto()
    try:
        endpoint = first.base_url
        S3Server(endpoint, bucket).client().create_bucket(Bucket=bucket)
        store = S3Store(bucket, "nightly", endpoint, REGION)
        broken = StopsServerBefore(store, "results", first)  # after samples, vulns, packages
        outcome = publish_with_fallback(
            nightly_run("night-1", T0), broken, tmp_path / "unpublished", FAST, lambda _: None
        )
    finally:
        first.stop()
    assert outcome.published is False
    kept = tmp_path / "unpublished"
    assert outcome.fallback_dir == kept
    assert outcome.message.endswith(
        f"basebench publish {kept} --output s3://{bucket}/nightly --s3-endpoint {endpoint}"
    )
    local = LocalStore(kept)
    assert [run["run_id"] for run in list_runs(local)] == ["night-1"]
    assert {name: len(read_table(local, name)) for name in TABLES} == NIGHT
    # S3 is back (a new server: moto keeps nothing): the one command publishes the run.
    second = started_moto()
    try:
        S3Server(second.base_url, bucket).client().create_bucket(Bucket=bucket)
        argv = ["publish", str(kept), "--output", f"s3://{bucket}/nightly"]
        assert main([*argv, "--s3-endpoint", second.base_url]) == 0
        assert capsys.readouterr().out.endswith(f"1 run(s) in s3://{bucket}/nightly, 0 differ\n")
        target = S3Store(bucket, "nightly", second.base_url, REGION)
        assert {name: len(read_table(target, name)) for name in TABLES} == NIGHT
    finally:
        second.stop()


def test_a_corrupt_trivy_db_fails_the_scan_and_keeps_the_probe_figures(
    infra: Any, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    db_dir = tmp_path / "trivy"
    shutil.copytree(infra.cache_dir / "trivy" / "db", db_dir / "db")
    (db_dir / "db" / "trivy.db").write_bytes(b"\x00not a bolt database" * 512)
    cache, output = tmp_path / "cache", tmp_path / "results"
    config = tmp_path / "matrix.yaml"
    config.write_text(
        f"""
name: corrupt-db
apps: [go-hello]
toolchains: ["1.22.10"]
bases: [distroless-static]
repeat: 2
cache_dir: {cache}
scanner: {{db_dir: {db_dir}}}
hosts: [{{name: local, url: "{infra.docker_url}", max_parallel: 1}}]
output: {output}
"""
    )
    run = run_in_process(config, tmp_path / "prefect")
    assert run.returncode == 1, run.stdout + run.stderr  # a failed cell
    store = open_store(str(output))
    (listed,) = list_runs(store)
    (row,) = read_table(store, "results").to_dict("records")
    assert (row["status"], row["failed_stage"]) == ("failed", "scan")
    assert row["error"].startswith("scan: ")
    # Everything that does not need the scan is kept: build, inspect, the probe.
    assert row["size_bytes"] > 1_000_000 and row["files"] > 0
    assert 0 < row["startup_seconds"] < 30
    assert row["idle_memory_bytes"] > 0
    assert len(read_table(store, "samples")) == 2
    assert pd.isna(row["vulns_critical"])  # not scanned: null, never 0
    label = {"label": f"{labels.RUN}={listed['run_id']}"}
    assert docker_client.containers.list(all=True, filters=label) == []
    assert docker_client.networks.list(filters=label) == []
    assert docker_client.images.list(filters=label) == []
    assert list((cache / "archives").glob(f"{listed['run_id']}-*")) == []


def test_a_full_cache_fails_the_cell_at_inspect_and_keeps_its_probe(
    infra: Any, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    # A 4 MiB tmpfs as the whole cache: the image's archive (about 7 MB) cannot be saved.
    cache, output = tmp_path / "cache", tmp_path / "results"
    cache.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(cache)], check=True)
    try:
        config = tmp_path / "matrix.yaml"
        config.write_text(
            f"""
name: full-cache
apps: [go-hello]
toolchains: ["1.22.10"]
bases: [distroless-static]
repeat: 2
cache_dir: {cache}
scanner: {{db_dir: {infra.cache_dir / "trivy"}}}
hosts: [{{name: local, url: "{infra.docker_url}", max_parallel: 1}}]
output: {output}
"""
        )
        run = run_in_process(config, tmp_path / "prefect")
        assert run.returncode == 1, run.stdout + run.stderr
        store = open_store(str(output))
        (listed,) = list_runs(store)
        (row,) = read_table(store, "results").to_dict("records")
        assert (row["status"], row["failed_stage"]) == ("failed", "inspect")
        assert "No space left on device" in row["error"]
        assert 0 < row["startup_seconds"] < 30 and row["idle_memory_bytes"] > 0
        assert pd.isna(row["size_bytes"]) and pd.isna(row["vulns_critical"])
        label = {"label": f"{labels.RUN}={listed['run_id']}"}
        assert docker_client.containers.list(all=True, filters=label) == []
        assert docker_client.networks.list(filters=label) == []
        assert docker_client.images.list(filters=label) == []
        # The partial archive went with its folder: the cache is not left full.
        assert list((cache / "archives").glob(f"{listed['run_id']}-*")) == []
        assert not (cache / "journal" / listed["run_id"]).exists()
    finally:
        subprocess.run(["umount", str(cache)], check=True)
