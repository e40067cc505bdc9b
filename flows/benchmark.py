"""The ``benchmark`` flow: expand the matrix, run every cell's pipeline, publish the run."""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version as package_version
from typing import Any

from prefect import flow, get_run_logger, task, unmapped
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner

from tasks import artifacts, build, compare, inspect, probe, publish, scan, stores
from tasks.docker_host import HostConfig, HostUnavailable, connect
from tasks.host_pool import HostPool
from tasks.matrix import CellFilter, MatrixConfig, expand
from tasks.pipeline import CellContext, Stages, run_pipeline
from tasks.records import Cell, CellResult, RunRecord, ScanResult, Status

MAX_ATTEMPTS = 3  # a cell moves to another host at most twice when its host is lost

# Observers of finished cells (the CLI's progress bar); called in worker threads.
cell_listeners: list[Callable[[CellResult], None]] = []


def _stage(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    # Inputs are live clients and images: never worth caching.
    return task(name=name, cache_policy=NO_CACHE)


def _scan(scanner: scan.Scanner, image: str, host: HostConfig) -> ScanResult:
    return scanner.scan(image, host)


STAGES = Stages(
    build=_stage("build")(build.build_image),
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
    layer_sizes: inspect.LayerSizes,
) -> CellContext:
    """Connect, create the run's network and pull every base the cells need, once per host."""
    client = connect(host)
    refs = sorted({c.builder_ref for c in cells} | {c.base_ref for c in cells})
    pulled: dict[str, build.PulledImage | build.BaseUnavailable] = {}
    for ref in refs:
        try:
            pulled[ref] = build.pull_image(client, ref)
        except build.BaseUnavailable as exc:
            pulled[ref] = exc
    return CellContext(
        client=client,
        host=host,
        run_id=run_id,
        probe=probe.ProbeTarget(
            network=probe.run_network(client, run_id),
            address=host.publish_address,
            timeout=config.probe_timeout_seconds,
        ),
        scanner=scanner,
        repeat=config.repeat,
        apps_dir=config.apps_dir,
        engine_version=str(client.version().get("Version", "")),
        layer_sizes=layer_sizes,
        pulled=pulled,
    )


@task(name="close-host", cache_policy=NO_CACHE)
def close_host(ctx: CellContext, keep_images: bool) -> None:
    """Remove what the run left on the host (unless told to keep its images)."""
    try:
        if not keep_images:
            build.remove_run_images(ctx.client, ctx.run_id)
        probe.remove_network(ctx.client, ctx.run_id)
    except Exception as exc:  # a lost host keeps its leftovers; the run goes on
        get_run_logger().warning("cleanup of %s failed: %s", ctx.host.name, exc)
    finally:
        ctx.client.close()


def _host_lost(ctx: CellContext) -> bool:
    try:
        ctx.client.ping()
    except Exception:
        return True
    return False


@task(name="cell", task_run_name="{cell.label}", cache_policy=NO_CACHE)
def run_cell(cell: Cell, pool: HostPool, contexts: dict[str, CellContext]) -> CellResult:
    """Run one cell on a free host; when the host is lost mid-cell, move to another."""
    tried: frozenset[str] = frozenset()
    for attempt in range(1, MAX_ATTEMPTS + 1):
        with pool.slot(avoid=tried) as host:
            result = run_pipeline(cell, contexts[host.name], STAGES)
        lost = result.status is Status.FAILED and _host_lost(contexts[host.name])
        if not lost or attempt == MAX_ATTEMPTS:
            break
        get_run_logger().warning("host %s lost during %s; moving it", host.name, cell.label)
        pool.mark_dead(host.name)
        tried |= {host.name}
    result = dataclasses.replace(result, attempts=attempt)
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
    config: MatrixConfig, only: list[CellFilter] | None = None, run_id: str | None = None
) -> BenchmarkOutcome:
    """Build, inspect, scan and probe every cell of ``config``; publish one run."""
    run_id = run_id or new_run_id()
    started = datetime.now(UTC)
    cells = expand(config, only)
    scanner = scan.make_scanner(config.scanner, config.cache_dir)
    contexts = _open_hosts(config, run_id, cells, scanner)
    try:
        pool = HostPool([ctx.host for ctx in contexts.values()])
        futures = run_cell.map(cells, unmapped(pool), unmapped(contexts))
        results = tuple(future.result() for future in futures)
    finally:
        for ctx in contexts.values():
            close_host(ctx, config.keep_images)
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
    sizes = inspect.LayerSizes(config.cache_dir / "layer-sizes.json")
    futures = {
        h.name: open_host.submit(h, config, run_id, cells, scanner, sizes) for h in config.hosts
    }
    contexts: dict[str, CellContext] = {}
    for name, future in futures.items():
        try:
            contexts[name] = future.result()
        except HostUnavailable as exc:
            get_run_logger().warning("dropping host %s: %s", name, exc)
    if not contexts:
        raise HostUnavailable("no Docker host answered; nothing was built or published")
    return contexts


def _versions(contexts: dict[str, CellContext], results: tuple[CellResult, ...]) -> dict[str, str]:
    scanners = {r.scan.scanner_version for r in results if r.scan}
    return {
        "basebench": package_version("basebench"),
        "scanner": ",".join(sorted(scanners)),
        **{f"engine:{name}": ctx.engine_version for name, ctx in contexts.items()},
    }
