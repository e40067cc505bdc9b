"""The ``benchmark`` flow: expand the matrix, run every cell's pipeline, publish the run."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task, unmapped
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner

from tasks import archive, artifacts, build, compare, inspect, probe, publish, scan, stores
from tasks.docker_host import HostConfig, HostUnavailable
from tasks.host_limits import host_limit, server_in_use
from tasks.host_pool import HostPool, host_lost, run_with_failover
from tasks.matrix import CellFilter, MatrixConfig, expand
from tasks.pipeline import CellContext, Stages, close_context, open_context, run_pipeline
from tasks.records import Cell, CellResult, RunRecord, ScanResult

# Observers of finished cells (the CLI's progress bar); called in worker threads.
cell_listeners: list[Callable[[CellResult], None]] = []


def _stage(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    # Inputs are live clients and images: never worth caching.
    return task(name=name, cache_policy=NO_CACHE)


def _scan(scanner: scan.Scanner, saved: Path) -> ScanResult:
    return scanner.scan(saved)


STAGES = Stages(
    build=_stage("build")(build.build_image),
    save=_stage("save")(archive.save_image),
    inspect=_stage("inspect")(inspect.inspect_image),
    scan=_stage("scan")(_scan),
    probe=_stage("probe")(probe.probe_image),
)


@task(name="open-host", cache_policy=NO_CACHE)
def open_host(
    host: HostConfig,
    config: MatrixConfig,
    run_id: str,
    cells: list[Cell],
    scanner: scan.Scanner,
) -> CellContext | HostUnavailable:
    """Ready ``host`` for the run; an unreachable host is a value, not a failed task."""
    try:
        return open_context(host, config, run_id, cells, scanner)
    except HostUnavailable as exc:
        return exc


@task(name="close-host", cache_policy=NO_CACHE)
def close_host(ctx: CellContext, keep_images: bool, pool: HostPool) -> None:
    """Remove what the run left on the host (unless it was lost, or told to keep images)."""
    lost = ctx.host.name in pool.dead or host_lost(ctx.host)
    warning = close_context(ctx, keep_images, lost)
    if warning:
        get_run_logger().warning(warning)


@task(name="cell", task_run_name="{cell.label}", cache_policy=NO_CACHE)
def run_cell(
    cell: Cell, pool: HostPool, contexts: dict[str, CellContext], host_limits: bool
) -> CellResult:
    """Run one cell on a free host; when the host is lost mid-cell, move to another.

    With ``host_limits`` the cell also holds a slot of its host's global limit.
    """

    def run(host: HostConfig) -> CellResult:
        with host_limit(host.name, enabled=host_limits):
            return run_pipeline(cell, contexts[host.name], STAGES)

    def moved(host: HostConfig, result: CellResult) -> None:
        get_run_logger().warning("%s: host %s lost; moving the cell", cell.label, host.name)

    result = run_with_failover(cell, pool, run, on_moved=moved)
    for listener in cell_listeners:
        listener(result)
    return result


def new_run_id() -> str:
    """Sortable and unique: UTC time plus a random suffix."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


@dataclass(frozen=True)
class BenchmarkOutcome:
    """What a run produced: its records, where they were published, how they compare."""

    record: RunRecord
    published: publish.PublishOutcome
    comparison: compare.Comparison | None


@flow(name="benchmark", task_runner=ThreadPoolTaskRunner(max_workers=64))  # type: ignore[arg-type]
def benchmark(
    config: MatrixConfig,
    only: list[CellFilter] | None = None,
    run_id: str | None = None,
    host_limits: bool | None = None,
) -> BenchmarkOutcome:
    """Build, inspect, scan and probe every cell of ``config``; publish one run.

    ``host_limits``: hold the server's per-host concurrency limits around each cell, so
    that other flow runs on the same server share the hosts; by default, whenever a
    Prefect server is configured (``PREFECT_API_URL``).
    """
    run_id = run_id or new_run_id()
    started = datetime.now(UTC)
    cells = expand(config, only)
    scanner = scan.make_scanner(config.scanner, config.cache_dir)
    contexts = _open_hosts(config, run_id, cells, scanner)
    pool = HostPool([ctx.host for ctx in contexts.values()])
    try:
        limited = server_in_use() if host_limits is None else host_limits
        futures = run_cell.map(cells, unmapped(pool), unmapped(contexts), unmapped(limited))
        results = tuple(future.result() for future in futures)
    finally:
        for ctx in contexts.values():
            close_host(ctx, config.keep_images, pool)
    record = RunRecord(
        run_id=run_id,
        matrix=config.name,
        config_hash=config.config_hash(),
        started_at=started,
        finished_at=datetime.now(UTC),
        versions=_versions(contexts, results),
        hosts=tuple(contexts),
        cells=results,
    )
    published, comparison = publish_run(record, config)
    artifacts.attach_artifacts(record, comparison)
    return BenchmarkOutcome(record, published, comparison)


@task(name="publish", cache_policy=NO_CACHE)
def publish_run(
    record: RunRecord, config: MatrixConfig
) -> tuple[publish.PublishOutcome, compare.Comparison | None]:
    """Publish the run (or keep it locally when the store fails), then compare it with
    the previous run of its matrix."""
    store = stores.open_store(config.output, config.s3)
    outcome = publish.publish_with_fallback(record, store, config.cache_dir / "unpublished")
    if not outcome.published:
        get_run_logger().error(outcome.message)
        return outcome, None
    try:
        return outcome, compare.compare_with_previous(store, record.run_id)
    except (publish.PublishError, compare.CompareError) as exc:
        get_run_logger().warning("compare: %s", exc)
        return outcome, None


def _open_hosts(
    config: MatrixConfig, run_id: str, cells: list[Cell], scanner: scan.Scanner
) -> dict[str, CellContext]:
    futures = [open_host.submit(h, config, run_id, cells, scanner) for h in config.hosts]
    contexts: dict[str, CellContext] = {}
    dropped: list[str] = []
    for future in futures:
        opened = future.result()
        if isinstance(opened, HostUnavailable):
            get_run_logger().warning("dropping host %s", opened)
            dropped.append(str(opened))
        else:
            contexts[opened.host.name] = opened
    if not contexts:
        raise HostUnavailable(
            f"no Docker host answered, nothing was built or published: {'; '.join(dropped)}"
        )
    return contexts


def _versions(contexts: dict[str, CellContext], results: tuple[CellResult, ...]) -> dict[str, str]:
    scanners = {r.scan.scanner_version for r in results if r.scan}
    return {
        "basebench": package_version("basebench"),
        "scanner": ",".join(sorted(scanners)),
        **{f"engine:{name}": ctx.engine_version for name, ctx in contexts.items()},
    }
