"""attach_artifacts and attach_links inside a real (embedded) Prefect flow run, read back
through the API; the linked report is the page ``basebench report`` writes.

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

from tasks.dataset.stores import LocalStore
from tasks.render.artifacts import attach_artifacts, attach_links
from tasks.render.html import build_report
from tests.records_factory import make_run

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import asyncio, json, sys
from datetime import timedelta
from pathlib import Path
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from tasks.render.artifacts import attach_artifacts, attach_links, publish_report
from tasks.dataset.stores import LocalStore
from tasks.dataset.writer import publish
from tasks.analysis.compare import RunData, compare_runs
from tasks.dataset.schema import build_tables
from tests.records_factory import NIGHTLY_NEW_HIGH, T0, nightly_run

first = nightly_run("night-1", T0)
second = nightly_run("night-2", T0 + timedelta(days=1), grow={"bookworm": 12_000_000},
                     extra_findings={"distroless-static": (NIGHTLY_NEW_HIGH,)})

def data(run):
    t = {n: v.to_pandas() for n, v in build_tables(run).items()}
    return RunData(run.run_id, t["results"], t["samples"], t["vulnerabilities"])

store = LocalStore(Path(sys.argv[1]))
publish(first, store)
publish(second, store)

@flow(name="artifacts-test")
def nightly() -> bool:
    attached = attach_artifacts(second, compare_runs(data(first), data(second)))
    return attach_links(second, store, publish_report(store, "night-2")) and attached

attached = nightly()

async def read():
    keys = ["basebench-nightly-cells", "basebench-nightly-summary",
            "basebench-nightly-report", "basebench-nightly-data"]
    async with get_client() as client:
        found = await client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=keys))
        )
    return [{"key": a.key, "type": a.type, "data": a.data,
             "flow_run": str(a.flow_run_id) if a.flow_run_id else None} for a in found]

print(json.dumps({"attached": attached, "artifacts": asyncio.run(read())}))
"""


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("store") / "results"


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory, results: Path) -> dict[str, Any]:
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
        [sys.executable, "-c", SCRIPT, str(results)],
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
    assert sorted(by_key) == [
        "basebench-nightly-cells",
        "basebench-nightly-data",
        "basebench-nightly-report",
        "basebench-nightly-summary",
    ]
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


def test_links_to_the_report_and_to_the_data(artifacts: dict[str, Any], results: Path) -> None:
    by_key = {a["key"]: a for a in artifacts["artifacts"]}
    report, data = by_key["basebench-nightly-report"], by_key["basebench-nightly-data"]
    assert (report["type"], data["type"]) == ("markdown", "markdown")  # Prefect's link type
    assert report["flow_run"] == data["flow_run"] == by_key["basebench-nightly-cells"]["flow_run"]
    page = results / "reports" / "night-2.html"
    assert report["data"] == f"[basebench report of run night-2]({page.as_uri()})"
    assert data["data"] == f"[basebench results of matrix nightly]({results.as_uri()})"
    # The linked page is the report of night-2, as `basebench report` renders it.
    assert build_report(LocalStore(results), "night-2")[1] == page.read_text()


def test_outside_a_flow_run_nothing_is_attached(tmp_path: Path) -> None:
    assert attach_artifacts(make_run()) is False
    assert attach_links(make_run(), LocalStore(tmp_path), "reports/run-1.html") is False
