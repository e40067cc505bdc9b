"""Where a run's data lives in a result store, and the one error of the dataset.

Layout (one Delta Lake table per dataset table, documents beside them)::

    <table>/_delta_log/…                      the table's commit log
    <table>/date=YYYY-MM-DD/part-….parquet    data files, partitioned by the run's date
    documents/<run_id>/<cell_id>/trivy.json   a cell's scan report, SBOM and SARIF

Every run appends one commit per table, tagged with the app transaction ``APP_ID``;
``runs`` is committed last, so a run listed there is complete in every table.
Results written by basebench before the tables existed (the manifest layout) are read
and moved by ``tasks.dataset.legacy`` and ``tasks.dataset.migrate``.
"""

from __future__ import annotations

import re

DOCUMENTS = "documents"
# A run id becomes part of paths, S3 keys and app transaction ids: keep it safe.
RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# Every table commit of a run carries the app transaction (APP_ID_PREFIX + run id,
# APP_VERSION); a table that has it already holds the run, so a rerun adds nothing.
APP_ID_PREFIX = "basebench-run:"
APP_VERSION = 1


class PublishError(RuntimeError):
    """Publishing or reading results failed; the message names the store location."""


def document_path(run_id: str, cell_id: str, name: str) -> str:
    """Store path of one scan document of a cell, e.g. ``documents/<run>/<cell>/trivy.json``."""
    return f"{DOCUMENTS}/{run_id}/{cell_id}/{name}"


def run_documents(run_id: str) -> str:
    """Store folder of every document of a run."""
    return f"{DOCUMENTS}/{run_id}"


def app_id(run_id: str) -> str:
    """The Delta app transaction id of a run's commits."""
    return f"{APP_ID_PREFIX}{run_id}"


def check_run_id(run_id: str) -> None:
    """Raise ``ValueError`` unless ``run_id`` is safe as a path and S3 key component."""
    if not RUN_ID_PATTERN.fullmatch(run_id):
        raise ValueError(
            f"run_id {run_id!r} is not allowed: use 1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
