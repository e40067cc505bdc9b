"""The ``benchmark`` flow: expand the matrix, run every cell on a host slot, publish the run.

What runs, in which order, with what concurrency; the work itself is in tasks/. Inside
its host slot a cell's stages wait for the host's lanes (``tasks.sessions.lanes``): the
next build starts as soon as the last one ends, while finished builds are saved,
inspected and scanned beside it, and probes run alone. The run ends in
``tasks.lifecycle``: published or kept, or, after an interrupt or a cancellation, the
cells that had finished kept and what the run made removed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime
from importlib.metadata import version as package_version

from prefect import flow, get_run_logger, task, unmapped
from prefect.cache_policies import NO_CACHE
from prefect.exceptions import TerminationSignal
from prefect.futures import as_completed, wait
from prefect.task_runners import ThreadPoolTaskRunner

from tasks.analysis.compare import CompareError, Comparison, compare_with_previous
from tasks.config_file import ConfigError
from tasks.dataset.layout import PublishError
from tasks.dataset.stores import open_store
from tasks.dataset.writer import PublishOutcome
from tasks.hosts.config import HostConfig
from tasks.hosts.connection import HostUnavailable
from tasks.hosts.health import machine_facts
from tasks.hosts.limits import host_limit, server_in_use
from tasks.hosts.sweep import RunLeases, sweep_archives
from tasks.journal import RunJournal
from tasks.lifecycle import InterruptedRun, RunOutcome, keep_interrupted, publish_or_keep
from tasks.matrix import CellFilter, MatrixConfig, Plan, format_filters, plan
from tasks.pipeline import run_pipeline
from tasks.processes import stop_programs
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
# Ctrl-C, and SIGTERM (a service stop; a Prefect worker cancelling the flow run), which
# Prefect's flow engine raises as TerminationSignal in the flow's thread.
INTERRUPTS = (KeyboardInterrupt, TerminationSignal)
# Cells in flight may end this long after an interrupt (their builds and scans are
# stopped at once): a Prefect worker kills a cancelled flow run's processes 30 s after
# its SIGTERM, and the run is still to be published and swept by then.
INTERRUPT_GRACE_SECONDS = 10


@flow(name="benchmark", task_runner=ThreadPoolTaskRunner(max_workers=64))  # type: ignore[arg-type]
def benchmark(
    config: MatrixConfig,
    only: list[CellFilter] | None = None,
    run_id: str | None = None,
    host_limits: bool | None = None,
    on_cell: CellObserver | None = None,
    on_interrupted: Callable[[InterruptedRun], None] | None = None,
    planned: Plan | None = None,
) -> RunOutcome:
    """Build, inspect, scan and probe every cell of ``config``; publish one run.

    Cells run in parallel, at most ``max_parallel`` per host, of which at most
    ``max_builds`` build and ``max_analyses`` save, inspect and scan at once; probes run
    alone on their host (``tasks.sessions.lanes``). ``host_limits``: hold the
    server's per-host concurrency limits around each cell, so that other flow runs on
    the same server share the hosts; by default, whenever a Prefect server is
    configured. ``on_cell`` is told of every finished cell (the CLI's progress bar).

    Interrupted before the run is published (Ctrl-C; SIGTERM, which is how a Prefect
    worker cancels a flow run), the run publishes the cells that had finished, every
    other cell a row saying it was interrupted, removes what it made, tells
    ``on_interrupted`` and ends with the interrupt (a cancelled flow run ends Cancelled).
    ``planned``: the matrix as the caller already planned it (with ``only``), so that a
    run plans its matrix once.
    """
    run_id = run_id or new_run_id()
    started = datetime.now(UTC)
    planned = planned or plan(config, only)
    cells = planned.cells
    if not cells:  # a run of no cells would pose as a normal run
        raise ConfigError(f"matrix {config.name}: no cell can run; nothing was built or published")
    run = RunRecord(
        run_id=run_id,
        matrix=config.name,
        config_hash=config.config_hash(),
        started_at=started,
        finished_at=started,
        max_db_age_hours=config.scanner.max_db_age_hours,
        filters=format_filters(only),
        image_sources=config.image_sources(),
    )
    journal = RunJournal(config.cache_dir, run_id)
    sessions: dict[str, HostSession] = {}  # filled as the hosts are readied
    try:
        record = measure(config, planned, run, journal, sessions, host_limits, on_cell)
        if record.db_staleness():
            get_run_logger().warning("%s", record.db_staleness())
        published = publish_run(record, config)
    except INTERRUPTS:
        template = _with_hosts(run, sessions, config, [])
        interrupted = keep_interrupted(config, cells, template, journal)
        get_run_logger().warning("%s", interrupted.message)
        if on_interrupted is not None:
            on_interrupted(interrupted)
        raise
    comparison = compare_run(record, config) if published.published else None
    attach_artifacts(record, comparison)
    if published.published:
        report_run(record, config)
    return RunOutcome(record, published, comparison)


def measure(
    config: MatrixConfig,
    planned: Plan,
    run: RunRecord,
    journal: RunJournal,
    sessions: dict[str, HostSession],
    host_limits: bool | None,
    on_cell: CellObserver | None,
) -> RunRecord:
    """Ready the hosts (into ``sessions``), run every cell, close the hosts: ``run``
    with its cells, versions, hosts and DB."""
    leases = RunLeases(config.cache_dir)
    with leases.hold(run.run_id), make_scanner(config.scanner, config.cache_dir) as scanner:
        swept = sweep_archives(config.cache_dir / "archives", leases.alive)
        toolbox = None  # what hosts that analyse their own images run, packed once
        if any(host.analyses_on_host for host in config.hosts):
            toolbox = pack_toolbox(scanner, config.cache_dir / "toolbox")
        settings = RunSettings.of(config, run.run_id, scanner, planned.apps)
        sessions.update(_open_hosts(config, settings, planned.cells, leases.alive, toolbox))
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
            results = _run_cells(planned.cells, pool, sessions, limited, journal, on_cell)
        finally:
            for session in sessions.values():
                close_host(session, config.keep_images, pool)
        db = _database(scanner, results)
    return dataclasses.replace(
        _with_hosts(run, sessions, config, results),
        finished_at=datetime.now(UTC),
        cells=tuple(results),
        db=db,
    )


def _run_cells(
    cells: list[Cell],
    pool: HostPool,
    sessions: dict[str, HostSession],
    host_limits: bool,
    journal: RunJournal,
    on_cell: CellObserver | None,
) -> list[CellResult]:
    """Every cell's result, in matrix order."""
    futures = run_cell.map(
        cells, unmapped(pool), unmapped(sessions), unmapped(host_limits), unmapped(journal)
    )
    try:
        for finished in as_completed(futures):
            if on_cell is not None:
                on_cell(finished.result())
    except BaseException as exc:  # an interrupt, or a cell that raised: start nothing more
        pool.stop()
        for session in sessions.values():
            session.lanes.stop()  # built cells finish; unbuilt ones end here
        if isinstance(exc, INTERRUPTS):
            stop_programs()  # builds and scans in flight: their cells end as interrupted
        wait(futures, timeout=INTERRUPT_GRACE_SECONDS)  # journal rows of cells in flight
        raise
    return [future.result() for future in futures]


def _with_hosts(
    run: RunRecord,
    sessions: dict[str, HostSession],
    config: MatrixConfig,
    results: list[CellResult],
) -> RunRecord:
    """``run`` with what its hosts and results say: versions, host names, machine facts."""
    return dataclasses.replace(
        run,
        versions=_versions(sessions, results),
        hosts=tuple(sessions),
        machines=tuple(
            machine_facts(session.health, config.build_tool)
            for session in sessions.values()
            if session.health is not None
        ),
    )


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
def publish_run(record: RunRecord, config: MatrixConfig) -> PublishOutcome:
    """Publish the run, or keep it (``tasks.lifecycle.publish_or_keep``)."""
    outcome = publish_or_keep(record, open_store(config.output, config.s3), config.cache_dir)
    if not outcome.published:
        get_run_logger().error(outcome.message)
    return outcome


@task(name="compare", cache_policy=NO_CACHE)
def compare_run(record: RunRecord, config: MatrixConfig) -> Comparison | None:
    """The published run against the previous comparable run; None when there is none
    to compare with, or the compare failed (a warning: the run stands)."""
    try:
        return compare_with_previous(open_store(config.output, config.s3), record.run_id)
    except (PublishError, CompareError) as exc:
        get_run_logger().warning("compare: %s", exc)
        return None


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
