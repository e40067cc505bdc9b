"""Publish a run into a result store's Delta tables, with its scan documents beside them.

Order, so that a run is visible only when complete: the documents first, then one
commit per table (``samples``, ``vulnerabilities``, ``packages``, ``results``) and
``runs`` last; readers list runs from ``runs``. Each commit carries the run's app
transaction, so publishing a run again (after a crash half-way, or twice) only adds
what is missing and never duplicates a row. When the store keeps failing the whole run
is kept in a local folder of the same layout, which ``publish_kept`` (``basebench
publish KEPT_DIR --output URL``) publishes later.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from tasks.dataset import legacy
from tasks.dataset.layout import (
    PublishError,
    check_run_id,
    document_path,
    run_documents,
)
from tasks.dataset.schema import DOCUMENT_COLUMNS, build_tables
from tasks.dataset.stores import LocalStore, ResultStore
from tasks.dataset.tables import Commit, append_run, count_rows, read_rows
from tasks.journal import RunJournal
from tasks.records import RunRecord

# Commit order: the run's row in ``runs`` says it is complete, so it goes last.
COMMIT_ORDER = ("samples", "vulnerabilities", "packages", "results", "runs")
# Documents are small and many (three per cell): upload them side by side.
UPLOAD_THREADS = 8


@dataclass(frozen=True)
class Published:
    """A run in a store: where, and what each table commit did."""

    run_id: str
    location: str  # the store's root
    commits: tuple[Commit, ...]
    documents: int  # document files written

    @property
    def rows(self) -> dict[str, int]:
        """Rows of the run per table."""
        return {commit.table: commit.rows for commit in self.commits}


def publish(run: RunRecord, store: ResultStore) -> Published:
    """Append ``run`` to every table of ``store`` (documents first, ``runs`` last).

    Raises ``ValueError`` for a run id that cannot be a path, a run of no cells or
    records that break the schema, ``FileNotFoundError`` for a scan document that is
    gone (all before the store is touched), ``PublishError`` when the store fails;
    tables committed before a failure keep the run and a later publish adds only the rest.
    """
    check_run_id(run.run_id)
    if not run.cells:
        raise ValueError(f"run {run.run_id} has no cells; a run of no cells is never published")
    tables = build_tables(run)  # bad records fail here, before the store is touched
    documents = _document_files(run)
    try:
        _upload(store, documents)
    except OSError as exc:
        raise PublishError(f"publish run {run.run_id} to {store.location()}: {exc}") from exc
    commits = tuple(append_run(store, name, tables[name], run.run_id) for name in COMMIT_ORDER)
    return Published(run.run_id, store.location(), commits, len(documents))


def _document_files(run: RunRecord) -> dict[str, Path]:
    """store path -> local file of every kept scan document; all must exist."""
    files: dict[str, Path] = {}
    for result in run.cells:
        kept = result.scan.documents if result.scan else None
        if kept is None:
            continue
        local = {
            DOCUMENT_COLUMNS["scan_report_path"]: kept.report,
            DOCUMENT_COLUMNS["sbom_path"]: kept.cyclonedx,
            DOCUMENT_COLUMNS["sarif_path"]: kept.sarif,
        }
        for name, path in local.items():
            if not path.is_file():
                raise FileNotFoundError(
                    f"scan document of cell {result.cell.label} ({result.cell.cell_id}) "
                    f"is gone: {path}; nothing was published"
                )
            files[document_path(run.run_id, result.cell.cell_id, name)] = path
    return files


def _upload(store: ResultStore, files: dict[str, Path]) -> None:
    def put(item: tuple[str, Path]) -> None:
        store.write(item[0], item[1].read_bytes())

    with ThreadPoolExecutor(max_workers=UPLOAD_THREADS) as pool:
        list(pool.map(put, files.items()))


def discard_documents(run: RunRecord) -> None:
    """Remove the local scan documents of ``run`` (their folders), once it is stored."""
    for result in run.cells:
        kept = result.scan.documents if result.scan else None
        if kept is not None:
            shutil.rmtree(kept.report.parent, ignore_errors=True)


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
    location: str  # the store's (or the fallback folder's) root
    attempts: int
    fallback_dir: Path | None = None  # set when the run was kept locally instead
    error: str | None = None  # the store's last error when it fell back
    target: str | None = None  # the output (and endpoint) the run was meant for, if kept
    lost: str | None = None  # set when the run could be kept nowhere: what was lost, and why

    @property
    def published(self) -> bool:
        """True when the run is in the intended store."""
        return self.fallback_dir is None and self.lost is None

    @property
    def message(self) -> str:
        """One line for the log or the terminal."""
        if self.lost is not None:
            return f"run {self.run_id} was not published and could not be kept: {self.lost}"
        if self.published:
            return f"published run {self.run_id}: {self.location}"
        return (
            f"publish failed after {self.attempts} attempts ({self.error}); "
            f"run {self.run_id} is kept complete in {self.fallback_dir}; "
            f"publish it once the store works again: "
            f"basebench publish {self.fallback_dir} --output {self.target}"
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
    ``basebench report``); it may hold earlier kept runs too. The caller exits non-zero
    unless ``outcome.published``. ``ValueError`` (bad records or run id) is raised at
    once: retrying cannot fix it. A ``PublishError`` is raised only when the fallback
    folder fails too. The run's local scan documents are removed once it is stored.
    """
    retry = retry or RetryPolicy()
    delays = [*retry.delays(), None]
    for attempt, delay in enumerate(delays, start=1):
        try:
            published = publish(run, store)
        except PublishError as exc:
            error = exc
            if delay is not None:
                sleep(delay)
            continue
        discard_documents(run)
        return PublishOutcome(run.run_id, published.location, attempts=attempt)
    fallback = LocalStore(fallback_dir)
    try:
        kept = publish(run, fallback)
    except PublishError as exc:
        raise PublishError(f"{error}; keeping it locally failed too: {exc}") from exc
    discard_documents(run)
    return PublishOutcome(
        run.run_id,
        kept.location,
        attempts=len(delays),
        fallback_dir=Path(fallback.location()),
        error=str(error),
        target=publish_target(store),
    )


def publish_target(store: ResultStore) -> str:
    """The arguments of ``basebench publish`` that name ``store``: output and endpoint."""
    target = store.location()
    endpoint = getattr(store, "endpoint_url", None)  # an S3Store's (or a wrapper's)
    if endpoint:
        target += f" --s3-endpoint {endpoint}"
    return target


def keep_unpublished(
    run: RunRecord, store: ResultStore, journal: RunJournal, error: Exception, attempts: int
) -> PublishOutcome:
    """After the store and the fallback folder both failed: keep the whole ``run`` (its
    records; the scan documents stay where the scanner wrote them) in its journal, from
    where ``basebench publish`` publishes it; if even that fails, say what was lost."""
    folder = journal.folder
    try:
        journal.keep_run(run)
    except OSError as exc:
        counts = run.cell_counts()
        lost = (
            f"{error}; writing it to {folder} failed too ({exc.strerror or exc}): lost "
            f"{counts['cells']} cells ({counts['cells_ok']} ok, {counts['cells_failed']} "
            f"failed, {counts['cells_skipped']} skipped)"
        )
        return PublishOutcome(run.run_id, str(folder), attempts, error=str(error), lost=lost)
    return PublishOutcome(
        run.run_id,
        str(folder),
        attempts,
        fallback_dir=folder,
        error=str(error),
        target=publish_target(store),
    )


@dataclass(frozen=True)
class CopiedRun:
    """One run copied between stores: its rows per table in the source and the target."""

    run_id: str
    source_rows: dict[str, int]
    target_rows: dict[str, int]
    written: tuple[str, ...] = field(default=())  # tables that had to be committed

    @property
    def complete(self) -> bool:
        """True when the target holds exactly the source's rows in every table."""
        return self.source_rows == self.target_rows


def copy_run(source: ResultStore, target: ResultStore, run_id: str) -> CopiedRun:
    """Copy a complete run of ``source``'s tables into ``target``: documents first,
    ``runs`` last, only the tables that lack it. Rows are counted on both sides."""
    check_run_id(run_id)
    tables = {name: read_rows(source, name, [run_id]) for name in COMMIT_ORDER}
    if tables["runs"].num_rows == 0:
        raise PublishError(f"no complete run {run_id} in {source.location()}")
    return _copy(source, target, run_id, tables)


def _copy(
    source: ResultStore, target: ResultStore, run_id: str, tables: dict[str, pa.Table]
) -> CopiedRun:
    try:
        for path in source.list(run_documents(run_id)):
            target.write(path, source.read(path))
    except OSError as exc:
        raise PublishError(
            f"copy documents of run {run_id} from {source.location()} to {target.location()}: {exc}"
        ) from exc
    commits = [append_run(target, name, tables[name], run_id) for name in COMMIT_ORDER]
    return CopiedRun(
        run_id,
        {name: table.num_rows for name, table in tables.items()},
        {name: count_rows(target, name, run_id) for name in COMMIT_ORDER},
        tuple(c.table for c in commits if c.written),
    )


def publish_kept(source: ResultStore, target: ResultStore) -> list[CopiedRun]:
    """Publish every complete run kept in ``source`` (a fallback folder, in the table
    layout or the older manifest layout) to ``target``; runs already there are counted,
    not copied again. Oldest run first."""
    copied: list[CopiedRun] = []
    runs = read_rows(source, "runs")
    for run_id in _oldest_first(runs):
        copied.append(copy_run(source, target, run_id))
    for manifest in legacy.list_manifests(source):
        tables = legacy.read_run(source, manifest)
        copied.append(_copy(source, target, manifest["run_id"], tables))
    if not copied:
        raise PublishError(f"no complete run in {source.location()} to publish")
    return copied


def publish_kept_run(run: RunRecord, target: ResultStore) -> CopiedRun:
    """Publish a run kept whole in a journal (``keep_unpublished``) to ``target``; rows
    counted on both sides. Its local scan documents are removed once the rows agree."""
    published = publish(run, target)
    copied = CopiedRun(
        run.run_id,
        published.rows,
        {name: count_rows(target, name, run.run_id) for name in COMMIT_ORDER},
        tuple(commit.table for commit in published.commits if commit.written),
    )
    if copied.complete:
        discard_documents(run)
    return copied


def _oldest_first(runs: pa.Table) -> list[str]:
    rows = runs.select(["run_id", "started_at"]).to_pylist()
    return [r["run_id"] for r in sorted(rows, key=lambda r: (r["started_at"], r["run_id"]))]
