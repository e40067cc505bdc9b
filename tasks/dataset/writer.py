"""Publish a run's tables as Parquet into a result store (layout: ``tasks.dataset.layout``).

Readers only see runs that have a manifest. Publishing a run_id again first hides
the run (manifest removed), deletes its old files in every date partition, writes the
new files and then the manifest, so a rerun replaces and never duplicates.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from tasks.dataset.layout import (
    PublishError,
    check_run_id,
    manifest_path,
    table_path,
)
from tasks.dataset.reader import read_manifest
from tasks.dataset.schema import (
    SCHEMA_VERSION,
    TABLES,
    build_tables,
    run_date,
)
from tasks.dataset.stores import LocalStore, ResultStore
from tasks.records import RunRecord

COMPRESSION = "zstd"


def publish(run: RunRecord, store: ResultStore) -> str:
    """Write every table of ``run`` as Parquet, then its manifest; return the manifest location.

    Raises ``ValueError`` for a run id that cannot be a path, ``PublishError`` when the
    store fails (the run then has no manifest, so readers do not see a partial run).
    """
    check_run_id(run.run_id)
    # Everything that can fail on bad records happens before the store is touched.
    tables = build_tables(run)
    date = run_date(run).isoformat()
    files = {name: (table_path(name, date, run.run_id), table) for name, table in tables.items()}
    payloads = {path: _to_parquet(table) for path, table in files.values()}
    manifest = _manifest(run, date, {name: (p, t.num_rows) for name, (p, t) in files.items()})
    try:
        store.delete(manifest_path(run.run_id))  # hide the old run before touching its files
        _delete_run_files(store, run.run_id)
        for path, data in payloads.items():
            store.write(path, data)
        store.write(manifest_path(run.run_id), json.dumps(manifest, indent=2).encode())
    except OSError as exc:
        raise PublishError(f"publish run {run.run_id} to {store.location()}: {exc}") from exc
    return store.location(manifest_path(run.run_id))


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a failing store is retried (exponential backoff)."""

    attempts: int = 4
    first_delay: float = 2.0  # seconds before the second attempt
    factor: float = 2.0
    max_delay: float = 30.0

    def delays(self) -> list[float]:
        """Seconds to wait before attempts 2..n, e.g. [2, 4, 8] for the defaults."""
        return [
            min(self.first_delay * self.factor**i, self.max_delay) for i in range(self.attempts - 1)
        ]


@dataclass(frozen=True)
class PublishOutcome:
    """Where a run ended up: its store, or (after the store kept failing) a local folder."""

    run_id: str
    location: str  # the manifest's location
    attempts: int
    fallback_dir: Path | None = None  # set when the run was kept locally instead
    error: str | None = None  # the store's last error when it fell back

    @property
    def published(self) -> bool:
        """True when the run is in the intended store."""
        return self.fallback_dir is None

    @property
    def message(self) -> str:
        """One line for the log or the terminal."""
        if self.published:
            return f"published run {self.run_id}: {self.location}"
        return (
            f"publish failed after {self.attempts} attempts ({self.error}); "
            f"run {self.run_id} is kept complete in {self.fallback_dir}; "
            f"copy it to the store with copy_run once the store works again"
        )


def publish_with_fallback(
    run: RunRecord,
    store: ResultStore,
    fallback_dir: Path,
    retry: RetryPolicy | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> PublishOutcome:
    """Publish ``run``, retrying store failures with backoff, else keep it in ``fallback_dir``.

    ``fallback_dir`` becomes a local result store with the same layout (readable by
    ``basebench report``). The caller exits non-zero unless ``outcome.published``.
    ``ValueError`` (bad records or run id) is raised at once: retrying cannot fix it.
    A ``PublishError`` is raised only when the fallback folder fails too.
    """
    retry = retry or RetryPolicy()
    delays = [*retry.delays(), None]
    for attempt, delay in enumerate(delays, start=1):
        try:
            return PublishOutcome(run.run_id, publish(run, store), attempts=attempt)
        except PublishError as exc:
            error = exc
            if delay is not None:
                sleep(delay)
    fallback = LocalStore(fallback_dir)
    try:
        location = publish(run, fallback)
    except PublishError as exc:
        raise PublishError(f"{error}; keeping it locally failed too: {exc}") from exc
    return PublishOutcome(
        run.run_id,
        location,
        attempts=len(delays),
        fallback_dir=Path(fallback.location()),
        error=str(error.__cause__ or error),
    )


def copy_run(source: ResultStore, target: ResultStore, run_id: str) -> str:
    """Copy a complete run (e.g. from a fallback folder) into ``target``, manifest last.

    Like ``publish``, an existing copy of ``run_id`` in ``target`` is replaced.
    Returns the manifest's location in ``target``.
    """
    check_run_id(run_id)
    manifest_file = manifest_path(run_id)
    try:
        manifest = read_manifest(source, manifest_file)
        payloads = {e["path"]: source.read(e["path"]) for e in manifest["tables"].values()}
        target.delete(manifest_file)
        _delete_run_files(target, run_id)
        for path, data in payloads.items():
            target.write(path, data)
        target.write(manifest_file, source.read(manifest_file))
    except OSError as exc:
        raise PublishError(
            f"copy run {run_id} from {source.location()} to {target.location()}: {exc}"
        ) from exc
    return target.location(manifest_file)


def _to_parquet(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression=COMPRESSION)
    return bytes(sink.getvalue().to_pybytes())


def _manifest(run: RunRecord, date: str, files: dict[str, tuple[str, int]]) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "matrix": run.matrix,
        "date": date,
        "schema_version": SCHEMA_VERSION,
        "started_at": _iso(run.started_at),
        "finished_at": _iso(run.finished_at),
        "published_at": datetime.now(UTC).isoformat(),
        **run.cell_counts(),
        "tables": {name: {"path": path, "rows": rows} for name, (path, rows) in files.items()},
    }


def _iso(value: datetime) -> str:
    return (
        value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    ).isoformat()


def _delete_run_files(store: ResultStore, run_id: str) -> None:
    # Look in every date partition: a rerun may start on another day than the first try.
    partition = f"run_id={run_id}"
    for table in TABLES:
        folders = {
            path.rsplit("/", 1)[0]
            for path in store.list(table)
            if partition in path.split("/")[:-1]
        }
        for folder in sorted(folders):
            store.delete(folder)
