"""One cell's way through the stages: build -> save -> (inspect and scan) -> probe.

The save stage writes the image once to a local archive that inspect and scan both
read, side by side; the probe then runs alone on the host. A failing stage ends the
cell with status ``failed``, the stage and the error (a failed save counts as inspect);
whatever the other stages measured is kept. A base image that no registry can supply
makes the cell ``skipped`` with the reason: it is a fact about this site, not a failure
of the app.

``open_context`` readies one host for a run (health check, network, base pulls) and
``close_context`` removes what the run left there, unless the host is gone.
"""

from __future__ import annotations

import contextvars
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import docker

from tasks.build import BaseUnavailable, PulledImage, pull_image, remove_run_images
from tasks.docker_host import (
    HostConfig,
    HostHealth,
    HostUnavailable,
    check_host,
    connect,
    describe_error,
)
from tasks.host_pool import QuietLock, host_lost
from tasks.inspect import LayerCache
from tasks.matrix import BASES, MatrixConfig, load_app
from tasks.probe import ProbeTarget, remove_network, run_network
from tasks.records import (
    BuildResult,
    Cell,
    CellResult,
    InspectResult,
    ProbeResult,
    ScanResult,
    Stage,
    Status,
)
from tasks.scan import Scanner


@dataclass(frozen=True)
class Stages:
    """The stage functions a pipeline calls; the flow passes them wrapped as Prefect tasks."""

    build: Callable[..., BuildResult]
    save: Callable[..., Path]
    inspect: Callable[..., InspectResult]
    scan: Callable[..., ScanResult]
    probe: Callable[..., ProbeResult]


@dataclass(frozen=True)
class CellContext:
    """What every cell of a run on one host shares: its client, network and pulled bases."""

    client: docker.DockerClient
    host: HostConfig
    run_id: str
    probe: ProbeTarget
    scanner: Scanner
    repeat: int
    apps_dir: Path
    engine_version: str = ""
    layer_cache: LayerCache | None = None
    archive_dir: Path | None = None  # where saved images go; None: the system's temp dir
    quiet: QuietLock = field(default_factory=QuietLock)  # probes run alone on the host
    pulled: dict[str, PulledImage | BaseUnavailable] = field(default_factory=dict)
    health: HostHealth | None = None  # what the host said when the run opened it


HEALTH_SECONDS = 10.0  # the health check before any work waits this long per host


def open_context(
    host: HostConfig,
    config: MatrixConfig,
    run_id: str,
    cells: list[Cell],
    scanner: Scanner,
) -> CellContext:
    """Check ``host``, connect, create the run's network and pull every base the cells
    need (once per host per run).

    Raises ``HostUnavailable`` (one line naming the host) when it does not answer, or
    stops answering while this runs; a base no registry serves is kept as a value.
    """
    health = check_host(host, timeout=HEALTH_SECONDS)
    if not health.ok:
        raise HostUnavailable(health.error or f"{host.name} ({host.url}): no answer")
    client = connect(host)
    try:
        pulled = _pull_all(
            client, sorted({c.builder_ref for c in cells} | {c.base_ref for c in cells})
        )
        target = ProbeTarget(
            network=run_network(client, run_id),
            address=host.publish_address,
            timeout=config.probe_timeout_seconds,
        )
    except Exception as exc:
        client.close()
        if not host_lost(host):
            raise
        raise HostUnavailable(
            f"{host.name} ({host.url}): stopped answering while opening: {describe_error(exc)}"
        ) from exc
    return CellContext(
        client=client,
        host=host,
        run_id=run_id,
        probe=target,
        scanner=scanner,
        repeat=config.repeat,
        apps_dir=config.apps_dir,
        engine_version=health.version or "",
        layer_cache=LayerCache(config.cache_dir / "layers"),
        archive_dir=config.cache_dir / "archives",
        pulled=pulled,
        health=health,
    )


def _pull_all(
    client: docker.DockerClient, refs: list[str]
) -> dict[str, PulledImage | BaseUnavailable]:
    pulled: dict[str, PulledImage | BaseUnavailable] = {}
    for ref in refs:
        try:
            pulled[ref] = pull_image(client, ref)
        except BaseUnavailable as exc:
            pulled[ref] = exc
    return pulled


def close_context(ctx: CellContext, keep_images: bool, lost: bool) -> str | None:
    """Remove the run's images (unless ``keep_images``) and network from the host.

    A ``lost`` host is not touched (its leftovers stay; asking it would only wait).
    Returns a one-line warning when something stayed behind, else None.
    """
    try:
        if lost:
            return f"host {ctx.host.name} was lost: the run's images and network stay there"
        if not keep_images:
            remove_run_images(ctx.client, ctx.run_id)
        remove_network(ctx.client, ctx.run_id)
    except Exception as exc:
        return f"cleanup of {ctx.host.name} failed: {describe_error(exc)}"
    finally:
        ctx.client.close()
    return None


def _pulled(ctx: CellContext, ref: str) -> PulledImage:
    outcome = ctx.pulled[ref]
    if isinstance(outcome, BaseUnavailable):
        raise outcome
    return outcome


def skip_reason(cell: Cell, error: BaseUnavailable) -> str | None:
    """Why a cell cannot run here, when its base is one no Debian recipe can forge."""
    spec = BASES.get(cell.base)
    if spec is None or spec.forgeable:
        return None
    return (
        f"{cell.base} is not available here: {error}; it cannot be forged from Debian "
        "packages (push it to the registry mirror, or run with upstream registries)"
    )


def run_pipeline(cell: Cell, ctx: CellContext, stages: Stages) -> CellResult:
    """Run every stage of ``cell``; never raises for a failure of the cell itself."""
    started = datetime.now(UTC)
    done: dict[str, Any] = {}
    stage = Stage.BUILD
    try:
        app = load_app(cell.app, ctx.apps_dir)
        builder, base = _pulled(ctx, cell.builder_ref), _pulled(ctx, cell.base_ref)
        with ctx.quiet.shared():
            done["build"] = stages.build(ctx.client, cell, app, ctx.run_id, builder, base)
        stage = Stage.INSPECT
        outcomes = _inspect_and_scan(ctx, stages, done["build"], builder, base)
        done |= {s.value: o for s, o in outcomes.items() if not isinstance(o, Exception)}
        failed = [(s, o) for s, o in outcomes.items() if isinstance(o, Exception)]
        if failed:
            stage, error = failed[0]  # the first in stage order names the cell's failure
            raise error
        stage = Stage.PROBE
        with ctx.quiet.exclusive():
            done["probe"] = stages.probe(ctx.client, done["build"], app, ctx.probe, ctx.repeat)
    except BaseUnavailable as exc:
        reason = skip_reason(cell, exc)
        status = Status.SKIPPED if reason else Status.FAILED
        return _result(cell, ctx, started, done, status, stage, reason or str(exc))
    except Exception as exc:
        message = str(exc) if str(exc).startswith(f"{stage}:") else f"{stage}: {exc}"
        return _result(cell, ctx, started, done, Status.FAILED, stage, message)
    return _result(cell, ctx, started, done, Status.OK, None, None)


def _inspect_and_scan(
    ctx: CellContext, stages: Stages, build: BuildResult, builder: PulledImage, base: PulledImage
) -> dict[Stage, Any]:
    """Save the image once, then inspect and scan the archive side by side; what each
    stage returned or raised (a failed save raises, as part of inspect)."""
    with ctx.quiet.shared(), _archive_folder(ctx) as folder:
        archive = stages.save(ctx.client, build.image_id, Path(folder))
        inspected, scanned = _side_by_side(
            lambda: stages.inspect(ctx.client, build, builder, base, archive, ctx.layer_cache),
            lambda: stages.scan(ctx.scanner, archive),
        )
    return {Stage.INSPECT: inspected, Stage.SCAN: scanned}


def _archive_folder(ctx: CellContext) -> tempfile.TemporaryDirectory[str]:
    if ctx.archive_dir is not None:
        ctx.archive_dir.mkdir(parents=True, exist_ok=True)
    return tempfile.TemporaryDirectory(prefix="image-", dir=ctx.archive_dir)


def _side_by_side(*calls: Callable[[], Any]) -> list[Any]:
    """Run ``calls`` at once, each in a thread with the caller's context (Prefect's run
    context among it); what each returned or raised."""

    def outcome(call: Callable[[], Any]) -> Any:
        try:
            return call()
        except Exception as exc:
            return exc

    with ThreadPoolExecutor(max_workers=len(calls)) as threads:
        futures = [threads.submit(contextvars.copy_context().run, outcome, c) for c in calls]
        return [future.result() for future in futures]


def _result(
    cell: Cell,
    ctx: CellContext,
    started: datetime,
    done: dict[str, Any],
    status: Status,
    stage: Stage | None,
    error: str | None,
) -> CellResult:
    return CellResult(
        cell=cell,
        status=status,
        host=ctx.host.name,
        started_at=started,
        finished_at=datetime.now(UTC),
        failed_stage=stage if status is Status.FAILED else None,
        error=error,
        **done,
    )
