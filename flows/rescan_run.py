"""The ``rescan`` flow: a published run's SBOMs against the current DB, published as a run.

No Docker engine, no builds: pick the source run (default: the latest benchmark run),
scan each cell's stored SBOM (``tasks.stages.sbom_scan``), publish a run of kind ``rescan``
linked to its source, then compare it with the source, so every vulnerability change
is one the DB (or the scanner) made, never the image.
"""

from __future__ import annotations

from datetime import UTC, datetime
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task, unmapped
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner

from tasks.analysis.compare import Comparison, compare_runs, load_run
from tasks.dataset.layout import PublishError
from tasks.dataset.output import S3Config
from tasks.dataset.stores import ResultStore, open_store
from tasks.dataset.writer import PublishOutcome
from tasks.lifecycle import RunOutcome, publish_or_keep
from tasks.matrix import DEFAULT_CACHE
from tasks.records import MachineFacts, RunKind, RunRecord, new_run_id
from tasks.render.artifacts import attach_artifacts
from tasks.scanners import DOCUMENTS_FOLDER
from tasks.scanners.config import DEFAULT_MAX_DB_AGE_HOURS
from tasks.scanners.trivy import TrivyScanner
from tasks.stages.sbom_scan import load_source, pick_source, require_db, rescan_cell

# trivy sbom is one short process per cell (about 0.2 s, its conversions 0.25 s side by
# side): a few at a time keep two cores busy.
RESCAN_THREADS = 4
SCAN_TIMEOUT_SECONDS = 300


@flow(name="rescan", task_runner=ThreadPoolTaskRunner(max_workers=RESCAN_THREADS))  # type: ignore[arg-type]
def rescan(
    output: str,
    source_run_id: str | None = None,
    db_dir: Path | None = None,
    max_db_age_hours: float | None = DEFAULT_MAX_DB_AGE_HOURS,
    s3: S3Config | None = None,
    cache_dir: Path = DEFAULT_CACHE,
    run_id: str | None = None,
) -> RunOutcome:
    """Scan the SBOMs of ``source_run_id`` (default: the latest benchmark run in
    ``output``) against the DB in ``db_dir`` (a Trivy cache dir holding ``db/``; default
    the fixture DB under ``cache_dir/trivy``) and publish the rescan to ``output``.

    Raises ``RunNotFound`` when there is no run to rescan, ``ScanError`` when trivy or
    its DB is unusable (before anything is published).
    """
    run_id = run_id or new_run_id()
    started = datetime.now(UTC)
    store = open_store(output, s3)
    source = load_source(store, pick_source(store, source_run_id))
    db_cache = db_dir if db_dir is not None else cache_dir / "trivy"
    require_db(db_cache)
    workdir = cache_dir / "rescan"
    workdir.mkdir(parents=True, exist_ok=True)
    documents = cache_dir / DOCUMENTS_FOLDER
    scanner = TrivyScanner(db_cache, SCAN_TIMEOUT_SECONDS, documents_dir=documents)
    scanner_version, _ = scanner.version()  # asked once, before the cells scan side by side
    futures = rescan_cell.map(
        list(source.cells), unmapped(source), unmapped(scanner), unmapped(store), unmapped(workdir)
    )
    cells = tuple(future.result() for future in futures)
    record = RunRecord(
        run_id=run_id,
        matrix=str(source.run["matrix"]),
        config_hash=str(source.run["config_hash"]),
        started_at=started,
        finished_at=datetime.now(UTC),
        versions={"basebench": package_version("basebench"), "scanner": scanner_version},
        hosts=(),
        cells=cells,
        kind=RunKind.RESCAN,
        source_run_id=source.run_id,
        db=scanner.database(),
        max_db_age_hours=max_db_age_hours,
        # The images are the source run's: so are the facts that decide what compares.
        filters=str(source.run.get("filters") or ""),
        image_sources=str(source.run.get("image_sources") or ""),
        machines=_machines(source.run.get("machines")),
    )
    published, comparison = publish_rescan(record, store, cache_dir)
    if record.db_staleness():
        get_run_logger().warning("%s", record.db_staleness())
    attach_artifacts(record, comparison)
    return RunOutcome(record, published, comparison)


@task(name="publish", cache_policy=NO_CACHE)
def publish_rescan(
    record: RunRecord, store: ResultStore, cache_dir: Path
) -> tuple[PublishOutcome, Comparison | None]:
    """Publish the rescan, or keep it (``tasks.lifecycle.publish_or_keep``), then compare
    it with its source run."""
    outcome = publish_or_keep(record, store, cache_dir)
    if not outcome.published:
        get_run_logger().error(outcome.message)
        return outcome, None
    assert record.source_run_id is not None  # a rescan always has its source
    try:
        source = load_run(store, record.source_run_id)
        return outcome, compare_runs(source, load_run(store, record.run_id))
    except PublishError as exc:
        get_run_logger().warning("compare: %s", exc)
        return outcome, None


def _machines(rows: Any) -> tuple[MachineFacts, ...]:
    """The source run's ``machines`` column back as records (``host_class`` is derived)."""
    if rows is None or isinstance(rows, float):  # null, or NaN through pandas
        return ()
    return tuple(
        MachineFacts(**{k: v for k, v in dict(row).items() if k != "host_class"}) for row in rows
    )
