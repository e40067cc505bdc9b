"""The flow that prefect.yaml deploys: a matrix file, filters and output in; one run out.

Deployment parameters are plain strings so they can be typed into the Prefect UI or
``prefect deployment run --param``; they are validated by the same models as the CLI
(``load_matrix`` and ``parse_only``) before any work starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger

from flows.benchmark import BenchmarkOutcome, benchmark
from tasks.matrix import CellFilter, MatrixConfig, load_matrix
from tasks.records import Status

# Relative matrix paths are taken from the checkout the worker runs, never from its cwd.
REPO_ROOT = Path(__file__).resolve().parent.parent
FLOW_NAME = "basebench"


class CellsFailed(RuntimeError):
    """Some cells failed, or publishing fell back to a local folder; no row was lost."""


def matrix_path(matrix: str) -> Path:
    """``configs/nightly.yaml`` -> the file in this checkout; absolute paths stay as given."""
    return REPO_ROOT / matrix


def load_parameters(
    matrix: str, only: list[str] | None = None, output: str | None = None
) -> tuple[MatrixConfig, list[CellFilter]]:
    """Validate deployment parameters exactly as ``basebench run`` validates its arguments.

    Raises ``ConfigError`` naming the file, key and what is allowed.
    """
    from tasks.matrix import parse_only

    overrides: dict[str, Any] = {"output": output} if output else {}
    return load_matrix(matrix_path(matrix), overrides), parse_only(only or [])


def summarize(outcome: BenchmarkOutcome) -> dict[str, Any]:
    """What a flow run returns and logs: run id, where it went, cells by status."""
    tally = outcome.record.cell_counts()
    counts = {status.value: tally[f"cells_{status}"] for status in Status}
    return {
        "run_id": outcome.record.run_id,
        "published": outcome.published.published,
        "location": outcome.published.location,
        "cells": counts,
    }


@flow(name=FLOW_NAME)
def benchmark_file(
    matrix: str = "configs/default.yaml",
    only: list[str] | None = None,
    output: str | None = None,
) -> dict[str, Any]:
    """Run the benchmark for a matrix file of this checkout (or an absolute path).

    ``only`` holds ``KEY=GLOB`` filters like ``basebench run --only``; ``output``
    overrides the matrix's ``output`` (a folder or ``s3://bucket/prefix``). The flow
    run fails when any cell failed or the store kept failing, after every row has
    been written somewhere.
    """
    config, filters = load_parameters(matrix, only, output)
    outcome = benchmark(config=config, only=filters)
    summary = summarize(outcome)
    get_run_logger().info("%s", summary)
    failed = summary["cells"][Status.FAILED.value]
    if failed:
        raise CellsFailed(
            f"{failed} of {len(outcome.record.cells)} cells failed in run "
            f"{outcome.record.run_id}; every row is in {outcome.published.location}"
        )
    if not outcome.published.published:
        raise CellsFailed(outcome.published.message)
    return summary


if __name__ == "__main__":
    benchmark_file()
