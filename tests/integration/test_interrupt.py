"""SIGTERM to a running ``basebench run``: finished cells are published, every other cell
is a row saying it was interrupted, and nothing the run made stays behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import docker
import pytest

from tasks import labels
from tasks.dataset.reader import list_runs, read_table
from tasks.dataset.stores import open_store
from tasks.processes import children
from tasks.records import INTERRUPTED

pytestmark = pytest.mark.integration

BASES = ["distroless-static", "distroless-base", "bookworm", "bookworm-slim"]


def test_sigterm_keeps_finished_cells_and_leaves_nothing(
    infra: Any, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    cache, output = tmp_path / "cache", tmp_path / "results"
    config = tmp_path / "matrix.yaml"
    config.write_text(
        f"""
name: interrupt
apps: [go-hello]
toolchains: ["1.22.10"]
bases: [{", ".join(BASES)}]
repeat: 1
cache_dir: {cache}
scanner: {{db_dir: {infra.cache_dir / "trivy"}}}
hosts: [{{name: local, url: "{infra.docker_url}", max_parallel: 1}}]
output: {output}
"""
    )
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect")}
    run = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "run", str(config)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 600
    while not list(cache.glob("journal/*/*.pickle")) and time.monotonic() < deadline:
        assert run.poll() is None, run.communicate()[0]
        time.sleep(0.2)
    (journal,) = cache.glob("journal/*")
    run_id = journal.name
    helpers = children(run.pid)  # the embedded Prefect server, a build in flight...
    assert helpers
    run.send_signal(signal.SIGTERM)
    output_text, _ = run.communicate(timeout=300)

    assert run.returncode == 130, output_text
    store = open_store(str(output))
    assert [m["run_id"] for m in list_runs(store)] == [run_id]
    results = read_table(store, "results")
    assert len(results) == len(BASES)  # a row for every cell
    done = results[results["error"] != INTERRUPTED]
    stopped = results[results["error"] == INTERRUPTED]
    assert len(done) >= 1 and set(done["status"]) == {"ok"}
    assert set(stopped["status"]) <= {"failed"}
    assert f"interrupted; {len(done)} of {len(BASES)} cells had finished" in output_text
    assert not journal.exists()
    label = {"label": f"{labels.RUN}={run_id}"}
    assert docker_client.containers.list(all=True, filters=label) == []
    assert docker_client.networks.list(filters=label) == []
    assert docker_client.images.list(filters=label) == []
    assert list((cache / "archives").glob(f"{run_id}-*")) == []
    time.sleep(1)
    assert [pid for pid in helpers if Path(f"/proc/{pid}").exists()] == []
