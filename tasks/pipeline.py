"""One cell's way through the stages: build -> inspect -> scan -> probe.

A failing stage ends the cell with status ``failed``, the stage and the error; whatever
the earlier stages measured is kept. A base image that no registry can supply makes the
cell ``skipped`` with the reason: it is a fact about this site, not a failure of the app.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import docker

from tasks.build import BaseUnavailable, PulledImage
from tasks.docker_host import HostConfig
from tasks.host_pool import QuietLock
from tasks.inspect import LayerSizes
from tasks.matrix import BASES, load_app
from tasks.probe import ProbeTarget
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
    layer_sizes: LayerSizes | None = None
    quiet: QuietLock = field(default_factory=QuietLock)  # probes run alone on the host
    pulled: dict[str, PulledImage | BaseUnavailable] = field(default_factory=dict)


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
        with ctx.quiet.shared():
            done["inspect"] = stages.inspect(
                ctx.client, done["build"], builder, base, ctx.layer_sizes
            )
        stage = Stage.SCAN
        with ctx.quiet.shared():
            done["scan"] = stages.scan(ctx.scanner, done["build"].tag, ctx.host)
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
