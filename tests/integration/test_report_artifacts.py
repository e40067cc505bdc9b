"""attach_artifacts inside a real (embedded) Prefect flow run, read back through the API.

Runs in a fresh Python process: Prefect reads its settings from the environment once,
and this test needs its own PREFECT_HOME and an in-memory database.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tasks.render.artifacts import attach_artifacts
from tests.records_factory import make_run

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import asyncio, json
from datetime import timedelta
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from tasks.render.artifacts import attach_artifacts
from tasks.analysis.compare import RunData, compare_runs
from tasks.dataset.schema import build_tables
from tests.records_factory import NIGHTLY_NEW_HIGH, T0, nightly_run

first = nightly_run("night-1", T0)
second = nightly_run("night-2", T0 + timedelta(days=1), grow={"bookworm": 12_000_000},
                     extra_findings={"distroless-static": (NIGHTLY_NEW_HIGH,)})

def data(run):
    t = {n: v.to_pandas() for n, v in build_tables(run).items()}
    return RunData(run.run_id, t["results"], t["samples"], t["vulnerabilities"])

@flow(name="artifacts-test")
def nightly() -> bool:
    return attach_artifacts(second, compare_runs(data(first), data(second)))

attached = nightly()

async def read():
    keys = ["basebench-nightly-cells", "basebench-nightly-summary"]
    async with get_client() as client:
        found = await client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=keys))
        )
    return [{"key": a.key, "type": a.type, "data": a.data,
             "flow_run": str(a.flow_run_id) if a.flow_run_id else None} for a in found]

print(json.dumps({"attached": attached, "artifacts": asyncio.run(read())}))
"""


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    home = tmp_path_factory.mktemp("prefect-home")
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "60",
        "PREFECT_API_DATABASE_CONNECTION_URL": (
            "sqlite+aiosqlite:///file::memory:?cache=shared&uri=true"
        ),
        "PREFECT_LOGGING_LEVEL": "WARNING",
    }
    env.pop("PREFECT_API_URL", None)  # embedded server only
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_table_and_markdown_artifacts_are_attached(artifacts: dict[str, Any]) -> None:
    assert artifacts["attached"] is True
    by_key = {a["key"]: a for a in artifacts["artifacts"]}
    assert sorted(by_key) == ["basebench-nightly-cells", "basebench-nightly-summary"]
    cells, summary = by_key["basebench-nightly-cells"], by_key["basebench-nightly-summary"]
    assert (cells["type"], summary["type"]) == ("table", "markdown")
    assert cells["flow_run"] is not None and cells["flow_run"] == summary["flow_run"]
    rows = json.loads(cells["data"]) if isinstance(cells["data"], str) else cells["data"]
    assert [(r["cell"], r["size_mb"], r["vulns_high"]) for r in rows] == [
        ("go-hello go1.22.10 single-stage", 914.0, 1),
        ("go-hello go1.22.10 bookworm", 132.0, 1),
        ("go-hello go1.22.10 distroless-static", 6.9, 1),
    ]
    text = summary["data"]
    assert "Against run night-1: **REGRESSION**." in text
    assert "new HIGH CVE-2024-3000 in libssl3" in text
    assert "size 120 MB -> 132 MB" in text


def test_outside_a_flow_run_nothing_is_attached() -> None:
    assert attach_artifacts(make_run()) is False
