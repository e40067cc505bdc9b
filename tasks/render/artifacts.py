"""Prefect artifacts for a run: a table (one row per cell), a markdown summary with the
verdict, and links to the run's HTML report and to its data.

A writer over the same ``results`` rows as the report. Outside a Prefect flow run it
does nothing, so the flow can always call it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from tasks.analysis.attribution import attribution_lines
from tasks.analysis.compare import Comparison, origin_summary
from tasks.dataset.reader import record_table
from tasks.dataset.stores import LocalStore, ResultStore
from tasks.metrics import CELL_METRICS, METRIC, Metric, laid_out, present
from tasks.records import SEVERITIES, RunKind, RunRecord, cell_label
from tasks.render.html import build_report
from tasks.units import Unit

REPORTS = "reports"  # the store's folder of HTML reports, one per run: <run_id>.html
SIZE = METRIC["size_bytes"]

Row = dict[str, Any]


def _plain(value: Any) -> Any:
    # Artifacts are JSON: pandas' NA and numpy scalars become None and Python numbers.
    if not present(value):
        return None
    return value.item() if hasattr(value, "item") else value


def _number(metric: Metric) -> tuple[str, Callable[[Row], Any]]:
    """A metric's field in the table artifact: bytes as MB (``size_mb``, one decimal),
    seconds to the millisecond, counts as they are."""
    column = metric.column

    def value(row: Row) -> Any:
        plain = _plain(row[column])
        if plain is None or metric.unit is Unit.COUNT:
            return plain
        return round(plain / 1e6, 1) if metric.unit is Unit.BYTES else round(plain, 3)

    return (f"{column.removesuffix('_bytes')}_mb" if metric.unit is Unit.BYTES else column), value


def _as_is(column: str) -> tuple[str, Callable[[Row], Any]]:
    return column, lambda row: _plain(row.get(column))


# The table artifact, one row per cell: the cells metrics of ``tasks.metrics`` in order,
# vulnerabilities by severity and by origin (inherited from the base / added by the build).
ARTIFACT_FIELDS: list[tuple[str, Callable[[Row], Any]]] = [
    ("cell", cell_label),
    ("variant", lambda r: r["variant"]),
    ("status", lambda r: r["status"]),
    *laid_out(
        CELL_METRICS,
        _number,
        [
            *(_as_is(f"vulns_{severity.lower()}") for severity in SEVERITIES[:4]),
            _as_is("vulns_from_base"),
            _as_is("vulns_from_build"),
        ],
    ),
]
ARTIFACT_COLUMNS = tuple(name for name, _ in ARTIFACT_FIELDS)


def artifact_key(matrix: str, kind: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    slug = re.sub(r"[^a-z0-9]+", "-", f"basebench-{matrix}-{kind}".lower()).strip("-")
    return slug


def artifact_rows(results: pd.DataFrame) -> list[dict[str, Any]]:
    """One JSON-ready row per cell, fields as in ``ARTIFACT_COLUMNS``."""
    return [
        {name: value(row) for name, value in ARTIFACT_FIELDS} for row in results.to_dict("records")
    ]


def summary_markdown(
    run_id: str, results: pd.DataFrame, comparison: Comparison | None, stale: str | None = None
) -> str:
    """Markdown: cell counts, the smallest image, the stale-DB line (``stale``) if any,
    and the compare verdict with its changes and their causes."""
    statuses = results["status"].value_counts().to_dict()
    lines = [
        f"# basebench run {run_id}",
        "",
        f"{len(results)} cells: {statuses.get('ok', 0)} ok, {statuses.get('failed', 0)} failed, "
        f"{statuses.get('skipped', 0)} skipped.",
    ]
    sized = results.dropna(subset=["size_bytes"])
    if len(sized):
        smallest = sized.loc[sized["size_bytes"].astype("int64").idxmin()]
        lines.append(
            f"Smallest image: {cell_label(smallest)} ({SIZE.text(smallest['size_bytes'])})."
        )
    if stale:
        lines += ["", f"**{stale}**"]
    lines += ["", "## Compare", ""]
    if comparison is None:
        lines.append("No earlier run of this matrix to compare with.")
        return "\n".join(lines) + "\n"
    verdict = "REGRESSION" if comparison.regressed else "clean"
    lines.append(f"Against run {comparison.base_run}: **{verdict}**.")
    lines += [""] + [
        f"- {'**regression**' if c.regression else 'change'}: {c.cell}: {c.summary}"
        for c in comparison.changes
    ]
    if origins := origin_summary(comparison):
        lines += ["", *origins]
    if causes := attribution_lines(list(comparison.vulnerability_changes)):
        lines += ["", *causes]
    return "\n".join(lines) + "\n"


def attach_artifacts(run: RunRecord, comparison: Comparison | None = None) -> bool:
    """Attach the cells table and the summary to the current Prefect flow run.

    Returns False (and does nothing) outside a flow run. Keys:
    ``basebench-<matrix>-cells`` and ``basebench-<matrix>-summary`` (a rescan's:
    ``-rescan-cells`` and ``-rescan-summary``, beside the nightly's).
    """
    from prefect.artifacts import create_markdown_artifact, create_table_artifact
    from prefect.context import FlowRunContext

    if FlowRunContext.get() is None:
        return False
    results = record_table(run, "results")
    prefix = "rescan-" if run.kind is RunKind.RESCAN else ""
    create_table_artifact(
        table=artifact_rows(results),
        key=artifact_key(run.matrix, f"{prefix}cells"),
        description=f"basebench run {run.run_id}: one row per cell",
    )
    create_markdown_artifact(
        markdown=summary_markdown(run.run_id, results, comparison, run.db_staleness()),
        key=artifact_key(run.matrix, f"{prefix}summary"),
        description=f"basebench run {run.run_id}: summary and compare verdict",
    )
    return True


def link(store: ResultStore, path: str = "") -> str:
    """A URL of ``path`` in ``store``: a ``file://`` URL in a folder, ``s3://`` in S3."""
    if isinstance(store, LocalStore):
        return Path(store.location(path)).absolute().as_uri()
    return store.location(path)


def publish_report(store: ResultStore, run_id: str) -> str:
    """Render the report of published run ``run_id`` and write it beside the tables, as
    ``reports/<run_id>.html``; returns that path in the store."""
    shown, page = build_report(store, run_id)
    path = f"{REPORTS}/{shown}.html"
    store.write(path, page.encode())
    return path


def attach_links(run: RunRecord, store: ResultStore, report_path: str) -> bool:
    """Link artifacts to the run's report and to the store holding its data (tables and
    documents). Keys: ``basebench-<matrix>-report`` and ``basebench-<matrix>-data``.
    Returns False (and does nothing) outside a flow run."""
    from prefect.artifacts import create_link_artifact
    from prefect.context import FlowRunContext

    if FlowRunContext.get() is None:
        return False
    create_link_artifact(
        link=link(store, report_path),
        link_text=f"basebench report of run {run.run_id}",
        key=artifact_key(run.matrix, "report"),
        description=f"basebench run {run.run_id}: the HTML report (one self-contained page)",
    )
    create_link_artifact(
        link=link(store),
        link_text=f"basebench results of matrix {run.matrix}",
        key=artifact_key(run.matrix, "data"),
        description=(
            f"basebench run {run.run_id}: the Delta tables (results, samples, "
            "vulnerabilities, packages, runs) and each cell's SBOM, SARIF and Trivy report"
        ),
    )
    return True
