"""Prefect artifacts for a run: a table (one row per cell), a markdown summary with the
verdict, and links to the run's HTML report and to its data.

A writer over the same ``results`` rows as the report. Outside a Prefect flow run it
does nothing, so the flow can always call it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pandas as pd

from tasks.analysis.attribution import attribution_lines
from tasks.analysis.compare import Comparison, origin_summary
from tasks.dataset.schema import build_tables
from tasks.dataset.stores import LocalStore, ResultStore
from tasks.records import SEVERITIES, RunKind, RunRecord, cell_label
from tasks.render.html import build_report
from tasks.render.units import format_bytes

REPORTS = "reports"  # the store's folder of HTML reports, one per run: <run_id>.html

# Columns of the table artifact, in order: the classic comparison, one row per cell.
ARTIFACT_COLUMNS = (
    "cell",
    "variant",
    "status",
    "size_mb",
    "packages",
    "vulns_critical",
    "vulns_high",
    "vulns_medium",
    "vulns_low",
    "vulns_from_base",
    "vulns_from_build",
    "startup_seconds",
    "idle_memory_mb",
)


def artifact_key(matrix: str, kind: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    slug = re.sub(r"[^a-z0-9]+", "-", f"basebench-{matrix}-{kind}".lower()).strip("-")
    return slug


def _plain(value: Any) -> Any:
    # Artifacts are JSON: pandas' NA and numpy scalars become None and Python numbers.
    if value is None or bool(pd.isna(value)):
        return None
    return value.item() if hasattr(value, "item") else value


def artifact_rows(results: pd.DataFrame) -> list[dict[str, Any]]:
    """One JSON-ready row per cell, columns as in ``ARTIFACT_COLUMNS``."""
    rows = []
    for r in results.to_dict("records"):
        size, memory = _plain(r["size_bytes"]), _plain(r["idle_memory_bytes"])
        startup = _plain(r["startup_seconds"])
        rows.append(
            {
                "cell": cell_label(r),
                "variant": r["variant"],
                "status": r["status"],
                "size_mb": None if size is None else round(size / 1e6, 1),
                "packages": _plain(r["packages"]),
                **{f"vulns_{s.lower()}": _plain(r[f"vulns_{s.lower()}"]) for s in SEVERITIES[:4]},
                # Inherited from the base image's layers vs added by the build.
                "vulns_from_base": _plain(r.get("vulns_from_base")),
                "vulns_from_build": _plain(r.get("vulns_from_build")),
                "startup_seconds": None if startup is None else round(startup, 3),
                "idle_memory_mb": None if memory is None else round(memory / 1e6, 1),
            }
        )
    return rows


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
            f"Smallest image: {cell_label(smallest)} ({format_bytes(smallest['size_bytes'])})."
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
    results = build_tables(run)["results"].to_pandas()
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
