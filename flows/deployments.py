"""The flows that prefect.yaml deploys: ``benchmark_file`` (a matrix file, filters and
output in; one run out) and ``rescan_file`` (a matrix file's output and scanner settings
in; a rescan of its latest benchmark run out).

Deployment parameters are plain strings so they can be typed into the Prefect UI or
``prefect deployment run --param``; they are validated by the same models as the CLI
(``load_matrix`` and ``parse_only``) before any work starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger

from flows.benchmark import benchmark
from flows.rescan_run import rescan
from tasks.lifecycle import RunOutcome
from tasks.matrix import CellFilter, MatrixConfig, load_matrix
from tasks.records import Status
from tasks.stages.sbom_scan import scan_failures

# Relative matrix paths are taken from the checkout the worker runs, never from its cwd.
REPO_ROOT = Path(__file__).resolve().parent.parent
FLOW_NAME = "basebench"
RESCAN_FLOW_NAME = "basebench-rescan"


class CellsFailed(RuntimeError):
    """Some cells failed, or publishing fell back to a local folder; no row was lost."""


class StaleDb(RuntimeError):
    """The run is published, but its vulnerability DB was older than the matrix's limit."""


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


def load_rescan_parameters(matrix: str, output: str | None = None) -> MatrixConfig:
    """The matrix whose output, S3 settings, scanner DB and age limit a rescan uses.

    Raises ``ConfigError`` naming the file, key and what is allowed.
    """
    return load_parameters(matrix, None, output)[0]


def summarize(outcome: RunOutcome) -> dict[str, Any]:
    """What a flow run returns and logs: run id, where it went, cells by status, the
    DB's age and whether it was stale."""
    tally = outcome.record.cell_counts()
    counts = {status.value: tally[f"cells_{status}"] for status in Status}
    return {
        "run_id": outcome.record.run_id,
        "kind": str(outcome.record.kind),
        "source_run_id": outcome.record.source_run_id,
        "published": outcome.published.published,
        "location": outcome.published.location,
        "cells": counts,
        "db_age_seconds": outcome.record.db_age_seconds(),
        "db_stale": outcome.record.db_stale(),
    }


def _raise_unless_complete(outcome: RunOutcome, failed: int, failed_in: str) -> None:
    """Fail the flow run, after the run is written, for failed cells, a store that kept
    failing or a stale DB, in that order."""
    record = outcome.record
    if failed:
        raise CellsFailed(
            f"{failed} of {len(record.cells)} cells {failed_in} {record.run_id}; "
            f"every row is in {outcome.published.location}"
        )
    if not outcome.published.published:
        raise CellsFailed(outcome.published.message)
    message = record.db_staleness()
    if message:
        raise StaleDb(f"run {record.run_id}: {message}")


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
    _raise_unless_complete(outcome, summary["cells"][Status.FAILED.value], "failed in run")
    return summary


@flow(name=RESCAN_FLOW_NAME)
def rescan_file(
    matrix: str = "configs/nightly.yaml", output: str | None = None, run: str | None = None
) -> dict[str, Any]:
    """Rescan the stored SBOMs of the latest benchmark run (or ``run``) in the matrix's
    output against the matrix's scanner DB; no Docker host is used.

    The flow run fails when a cell's scan failed, the store kept failing, or the DB is
    older than the matrix's ``scanner.max_db_age_hours``, after the rescan is written.
    """
    config = load_rescan_parameters(matrix, output)
    outcome = rescan(
        output=config.output,
        source_run_id=run,
        db_dir=config.scanner.db_dir,
        max_db_age_hours=config.scanner.max_db_age_hours,
        s3=config.s3,
        cache_dir=config.cache_dir,
    )
    summary = summarize(outcome)
    get_run_logger().info("%s", summary)
    failed = scan_failures(outcome.record.cells)
    _raise_unless_complete(outcome, failed, "failed their scan in rescan")
    return summary


if __name__ == "__main__":
    benchmark_file()
