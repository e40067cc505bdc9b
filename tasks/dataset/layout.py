"""Where a run's files live in a result store, and the one error of the dataset.

Layout (Hive-style partitions, one file per table per run)::

    <table>/date=YYYY-MM-DD/run_id=<id>/part-0.parquet
    manifests/run_id=<id>.json        written LAST: a run without it is incomplete
"""

from __future__ import annotations

import re

MANIFESTS = "manifests"
DOCUMENTS = "documents"
# A run id becomes part of paths and S3 keys: keep it to safe characters.
RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
MANIFEST_NAME = re.compile(r"^run_id=(?P<run_id>.+)\.json$")


class PublishError(RuntimeError):
    """Publishing or reading results failed; the message names the store location."""


def table_path(table: str, date: str, run_id: str) -> str:
    """Store path of one table's file for one run, e.g. ``results/date=…/run_id=…/part-0…``."""
    return f"{table}/date={date}/run_id={run_id}/part-0.parquet"


def document_path(run_id: str, cell_id: str, name: str) -> str:
    """Store path of one scan document of a cell, e.g. ``documents/<run>/<cell>/trivy.json``."""
    return f"{DOCUMENTS}/{run_id}/{cell_id}/{name}"


def manifest_path(run_id: str) -> str:
    """Store path of a run's manifest."""
    return f"{MANIFESTS}/run_id={run_id}.json"


def check_run_id(run_id: str) -> None:
    """Raise ``ValueError`` unless ``run_id`` is safe as a path and S3 key component."""
    if not RUN_ID_PATTERN.fullmatch(run_id):
        raise ValueError(
            f"run_id {run_id!r} is not allowed: use 1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
