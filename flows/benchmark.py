"""The ``benchmark`` flow: expand the matrix, run every cell on a host slot, publish the run.

What runs, in which order, with what concurrency; the work itself is in tasks/. Inside
its host slot a cell's stages wait for the host's lanes (``tasks.sessions.lanes``): the
next build starts as soon as the last one ends, while finished builds are saved,
inspected and scanned beside it, and probes run alone.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version as package_version

from prefect import flow, get_run_logger, task, unmapped
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed, wait
from prefect.task_runners import ThreadPoolTaskRunner

from tasks.analysis.compare import CompareError, Comparison, compare_with_previous
from tasks.config_file import ConfigError
from tasks.dataset.layout import PublishError
from tasks.dataset.stores import open_store
from tasks.dataset.writer import (
    PublishOutcome,
    RetryPolicy,
    keep_unpublished,
    publish_with_fallback,
)
from tasks.hosts.config import HostConfig
from tasks.hosts.connection import HostUnavailable
from tasks.hosts.health import machine_facts
from tasks.hosts.limits import host_limit, server_in_use
from tasks.hosts.sweep import RunLeases, sweep_archives
from tasks.journal import RunJournal
from tasks.matrix import CellFilter, MatrixConfig, Plan, format_filters, plan
from tasks.pipeline import run_pipeline
from tasks.records import (
    INTERRUPTED,
    Cell,
    CellResult,
    RunRecord,
    Status,
    VulnerabilityDb,
    new_run_id,
)
from tasks.render.artifacts import attach_artifacts, attach_links, publish_report
from tasks.scanners import make_scanner
from tasks.scanners.base import ScanError, Scanner
from tasks.sessions.pool import HostPool, host_lost, run_with_failover
from tasks.sessions.session import HostSession, RunSettings, close_session, open_session
from tasks.sessions.toolbox import Toolbox, pack_toolbox

CellObserver = Callable[[CellResult], None]
INTERRUPT_GRACE_SECONDS = 120  # cells in flight may finish (or fail) this long


@dataclass(frozen=True)
class BenchmarkOutcome:
    """What a run produced: its records, where they were published, how they compare."""

    record: RunRecord
    published: PublishOutcome
    comparison: Comparison | None


@flow(name="benchmark", task_runner=ThreadPoolTaskRunner(max_workers=64))  # type: ignore[arg-type]
def benchmark(
    config: MatrixConfig,
    only: list[CellFilter] | None = None,
    run_id: str | None = None,
    host_limits: bool | None = None,
    on_cell: CellObserver | None = None,
    planned: Plan | None = None,
) -> BenchmarkOutcome:
    """Build, inspect, scan and probe every cell of ``config``; publish one run.

    Cells run in parallel, at most ``max_parallel`` per host, of which at most
    ``max_builds`` build and ``max_analyses`` save, inspect and scan at once; probes run
    alone on their host (``tasks.sessions.lanes``). ``host_limits``: hold the
    server's per-host concurrency limits around each cell, so that other flow runs on
    the same server share the hosts; by default, whenever a Prefect server is
    configured. ``on_cell`` is told of every finished cell (the CLI's progress bar).
    ``planned``: the matrix as the caller already planned it (with ``only``), so that a
    run plans its matrix once.
    """
    run_id = run_id or new_run_id()
    started = datetime.now(UTC)
    planned = planned or plan(config, only)
    cells = planned.cells
    if not cells:  # a run of no cells would pose as a normal run
        raise ConfigError(f"matrix {config.name}: no cell can run; nothing was built or published")
    leases = RunLeases(config.cache_dir)
    journal = RunJournal(config.cache_dir, run_id)
    with leases.hold(run_id), make_scanner(config.scanner, config.cache_dir) as scanner:
        swept = sweep_archives(config.cache_dir / "archives", leases.alive)
        toolbox = None  # what hosts that analyse their own images run, packed once
        if any(host.analyses_on_host for host in config.hosts):
            toolbox = pack_toolbox(scanner, config.cache_dir / "toolbox")
        run = RunSettings.of(config, run_id, scanner, planned.apps)
        sessions = _open_hosts(config, run, cells, leases.alive, toolbox)
        for name, session in sessions.items():
            if session.swept is not None and not session.swept.empty:
                get_run_logger().warning("swept %s: %s", name, session.swept.summary())
        if not swept.empty:
            get_run_logger().warning("swept this machine: %s", swept.summary())
        pool = HostPool([session.host for session in sessions.values()])
        try:
            limited = server_in_use() if host_limits is None else host_limits
            if limited:  # probes alone on each host across this server's flow runs
                for session in sessions.values():
                    session.lanes.across_runs(session.host.name, session.host.max_parallel)
            futures = run_cell.map(
                cells, unmapped(pool), unmapped(sessions), unmapped(limited), unmapped(journal)
            )
            try:
                for finished in as_completed(futures):
                    if on_cell is not None:
                        on_cell(finished.result())
            except BaseException:  # Ctrl-C, SIGTERM, a cancellation: start nothing more,
                pool.stop()  # let the cells in flight end (their journal rows), then go
                for session in sessions.values():
                    session.lanes.stop()  # built cells finish; unbuilt ones end here
                wait(futures, timeout=INTERRUPT_GRACE_SECONDS)
                raise
            results = [future.result() for future in futures]  # matrix order
        finally:
            for session in sessions.values():
                close_host(session, config.keep_images, pool)
        db = _database(scanner, results)
    record = RunRecord(
        run_id=run_id,
        matrix=config.name,
        config_hash=config.config_hash(),
        started_at=started,
        finished_at=datetime.now(UTC),
        versions=_versions(sessions, results),
        hosts=tuple(sessions),
        cells=tuple(results),
        db=db,
        max_db_age_hours=config.scanner.max_db_age_hours,
        filters=format_filters(only),
        image_sources=config.image_sources(),
        machines=tuple(
            machine_facts(session.health, config.build_tool)
            for session in sessions.values()
            if session.health is not None
        ),
    )
    if record.db_staleness():
        get_run_logger().warning("%s", record.db_staleness())
    published, comparison = publish_run(record, config, journal)
    if published.fallback_dir != journal.folder and published.lost is None:
        journal.remove()  # every row is published or kept in the fallback folder
    attach_artifacts(record, comparison)
    if published.published:
        report_run(record, config)
    return BenchmarkOutcome(record, published, comparison)


def report_run(record: RunRecord, config: MatrixConfig) -> None:
    """Write the run's HTML report into the store and link it (and the data) from the
    flow run; a report that cannot be made is a warning: the run is published."""
    store = open_store(config.output, config.s3)
    try:
        path = publish_report(store, record.run_id)
    except Exception as exc:  # the run is published: a report that fails must not fail it
        get_run_logger().warning("report: %s", exc)
        return
    attach_links(record, store, path)


@task(name="open-host", cache_policy=NO_CACHE)
def open_host(
    host: HostConfig,
    config: MatrixConfig,
    run: RunSettings,
    cells: list[Cell],
    alive: Callable[[str], bool],
    toolbox: Toolbox | None,
) -> HostSession | HostUnavailable:
    """Ready ``host`` for the run; an unreachable host is a value, not a failed task."""
    try:
        return open_session(host, config, run, cells, alive, toolbox)
    except HostUnavailable as exc:
        return exc


@task(name="cell", task_run_name="{cell.label}", cache_policy=NO_CACHE)
def run_cell(
    cell: Cell,
    pool: HostPool,
    sessions: dict[str, HostSession],
    host_limits: bool,
    journal: RunJournal,
) -> CellResult:
    """Run one cell on a free host; when the host is lost mid-cell, move to another.

    With ``host_limits`` the cell also holds a slot of its host's global limit. The
    result goes to the run's journal as soon as it is known.
    """

    def run(host: HostConfig) -> CellResult:
        with host_limit(host.name, enabled=host_limits):
            return run_pipeline(cell, sessions[host.name])

    def moved(host: HostConfig, result: CellResult) -> None:
        get_run_logger().warning("%s: host %s lost; moving the cell", cell.label, host.name)

    result = run_with_failover(cell, pool, run, on_moved=moved)
    if pool.stopped and result.status is Status.FAILED:
        # Failed because the interrupt stopped its build or scan: not the image's fault.
        result = dataclasses.replace(result, failed_stage=None, error=INTERRUPTED)
    journal.record(result)
    return result


@task(name="close-host", cache_policy=NO_CACHE)
def close_host(session: HostSession, keep_images: bool, pool: HostPool) -> None:
    """Remove what the run left on the host (unless it was lost, or told to keep images)."""
    lost = session.host.name in pool.dead or host_lost(session.host)
    warning = close_session(session, keep_images, lost)
    if warning:
        get_run_logger().warning(warning)


@task(name="publish", cache_policy=NO_CACHE)
def publish_run(
    record: RunRecord, config: MatrixConfig, journal: RunJournal
) -> tuple[PublishOutcome, Comparison | None]:
    """Publish the run (or keep it locally when the store fails), then compare it with
    the previous comparable run. When the fallback folder fails too, the run is kept in
    its journal; when even that fails, the outcome says what was lost."""
    store = open_store(config.output, config.s3)
    try:
        outcome = publish_with_fallback(record, store, config.cache_dir / "unpublished")
    except (PublishError, OSError) as exc:
        outcome = keep_unpublished(record, store, journal, exc, RetryPolicy().attempts)
    if not outcome.published:
        get_run_logger().error(outcome.message)
        return outcome, None
    try:
        return outcome, compare_with_previous(store, record.run_id)
    except (PublishError, CompareError) as exc:
        get_run_logger().warning("compare: %s", exc)
        return outcome, None


def _open_hosts(
    config: MatrixConfig,
    run: RunSettings,
    cells: list[Cell],
    alive: Callable[[str], bool],
    toolbox: Toolbox | None,
) -> dict[str, HostSession]:
    futures = [open_host.submit(h, config, run, cells, alive, toolbox) for h in config.hosts]
    sessions: dict[str, HostSession] = {}
    dropped: list[str] = []
    for future in futures:
        opened = future.result()
        if isinstance(opened, HostUnavailable):
            get_run_logger().warning("dropping host %s", opened)
            dropped.append(str(opened))
        else:
            sessions[opened.host.name] = opened
    if not sessions:
        raise HostUnavailable(
            f"no Docker host could be used, nothing was built or published: {'; '.join(dropped)}"
        )
    return sessions


def _database(scanner: Scanner, results: list[CellResult]) -> VulnerabilityDb | None:
    """The DB the run's scans used; None when no cell got as far as its scan."""
    if not any(result.scan for result in results):
        return None
    try:
        return scanner.database()
    except ScanError as exc:  # the scans worked, so this is unlikely; the run stands
        get_run_logger().warning("vulnerability DB unknown: %s", exc)
        return None


def _versions(sessions: dict[str, HostSession], results: list[CellResult]) -> dict[str, str]:
    scanners = {r.scan.scanner_version for r in results if r.scan}
    return {
        "basebench": package_version("basebench"),
        "scanner": ",".join(sorted(scanners)),
        **{f"engine:{name}": session.engine_version for name, session in sessions.items()},
    }
