"""Run every Python block of docs/analytics.md against moto S3 and a local folder."""

from __future__ import annotations

import dataclasses
import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tasks.dataset.stores import LocalStore, ResultStore, S3Store
from tasks.dataset.writer import publish
from tests.records_factory import (
    NIGHTLY_NEW_HIGH,
    T0,
    failed_cell,
    make_cell,
    make_run,
    nightly_run,
)
from tests.s3_server import S3Server

pytestmark = pytest.mark.integration

DOC = Path(__file__).resolve().parents[2] / "docs" / "analytics.md"
BLOCK = re.compile(r"^```python\n(.*?)^```$", re.MULTILINE | re.DOTALL)
DAY = timedelta(days=1)


def doc_blocks() -> list[str]:
    return BLOCK.findall(DOC.read_text())


def publish_history(store: ResultStore) -> None:
    """night-1; night-2: bookworm +12 MB and a new HIGH CVE in distroless-static; a failed cell."""
    publish(nightly_run("night-1", T0), store)
    night2 = nightly_run(
        "night-2",
        T0 + DAY,
        grow={"bookworm": 12_000_000},
        extra_findings={"distroless-static": (NIGHTLY_NEW_HIGH,)},
    )
    # A cell whose scan failed: it has a size, but no vulnerabilities and no startup.
    broken = dataclasses.replace(failed_cell(), cell=make_cell("bookworm-slim"))
    publish(make_run("night-2", T0 + DAY, (*night2.cells, broken), "nightly"), store)


@pytest.fixture(params=["s3", "local"])
def namespace(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """The namespace after running every block, with OUTPUT and S3_ENDPOINT set for the test."""
    setup: dict[str, str | None]
    if request.param == "s3":
        s3: S3Server = request.getfixturevalue("s3_server")
        prefix = f"analytics/{uuid.uuid4().hex}"
        store: ResultStore = S3Store(s3.bucket, prefix, s3.endpoint_url, s3.region)
        setup = {"OUTPUT": f"s3://{s3.bucket}/{prefix}", "S3_ENDPOINT": s3.endpoint_url}
    else:
        store = LocalStore(tmp_path / "results")
        setup = {"OUTPUT": str(tmp_path / "results"), "S3_ENDPOINT": None}
    publish_history(store)
    blocks = doc_blocks()
    assert blocks[0].startswith('OUTPUT = "s3://bench/nightly"'), "first block is the setup"
    scope: dict[str, Any] = {"__name__": "analytics_doc"}
    exec(compile(blocks[0], f"{DOC}:setup", "exec"), scope)
    scope.update(setup)  # point the documented code at the test's store
    for number, block in enumerate(blocks[1:], start=1):
        exec(compile(block, f"{DOC}:block-{number}", "exec"), scope)
    return scope


def test_the_page_has_setup_pandas_pyarrow_and_duckdb_blocks() -> None:
    blocks = doc_blocks()
    assert len(blocks) == 4
    assert "read_table" in blocks[1]
    assert "ds.dataset" in blocks[2]
    assert "duckdb" in blocks[3]


def test_pandas_values(namespace: dict[str, Any]) -> None:
    assert [run["run_id"] for run in namespace["runs"]] == ["night-1", "night-2"]
    assert namespace["latest"] == "night-2"
    sizes = namespace["sizes_mb"]
    assert sizes.to_dict() == {
        "distroless-static": 6.9,
        "bookworm-slim": 120.0,  # the failed cell was inspected before its scan failed
        "bookworm": 132.0,
        "single-stage": 914.0,
    }
    assert list(sizes.index) == ["distroless-static", "bookworm-slim", "bookworm", "single-stage"]
    assert namespace["serious_by_base"].to_dict() == {
        "single-stage": 2,  # CVE-2024-1000 CRITICAL, CVE-2024-2000 HIGH
        "bookworm": 1,
        "distroless-static": 1,  # the new CVE-2024-3000
    }


def test_pyarrow_values(namespace: dict[str, Any]) -> None:
    table = namespace["ok_cells"]
    rows = sorted((r["run_id"], r["base"], r["size_bytes"]) for r in table.to_pylist())
    assert rows == [
        ("night-1", "bookworm", 120_000_000),
        ("night-1", "distroless-static", 6_900_000),
        ("night-1", "single-stage", 914_000_000),
        ("night-2", "bookworm", 132_000_000),
        ("night-2", "distroless-static", 6_900_000),
        ("night-2", "single-stage", 914_000_000),
    ]  # the failed cell of night-2 is filtered out
    assert namespace["results_dataset"].count_rows() == 7


def test_duckdb_values(namespace: dict[str, Any]) -> None:
    first, second = datetime(2024, 5, 1, 2, tzinfo=UTC), datetime(2024, 5, 2, 2, tzinfo=UTC)
    trend = [(base, start.astimezone(UTC), size) for base, start, size in namespace["size_trend"]]
    assert trend == [
        ("bookworm", first, 120_000_000),
        ("bookworm", second, 132_000_000),
        ("distroless-static", first, 6_900_000),
        ("distroless-static", second, 6_900_000),
        ("single-stage", first, 914_000_000),
        ("single-stage", second, 914_000_000),
    ]
    assert namespace["new_serious"] == [("distroless-static", "CVE-2024-3000", "libssl3")]
