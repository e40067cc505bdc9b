"""One cell's way through the stages: build -> save -> (inspect and scan) -> probe.

The save stage writes the image once to a local archive that inspect and scan both
read, side by side; the probe then runs alone on the host. A failing stage ends the
cell with status ``failed``, the stage and the error (a failed save counts as inspect);
whatever the other stages measured is kept. A base image that no registry can supply
makes the cell ``skipped`` with the reason: it is a fact about this site, not a failure
of the app.

The cell runs inside a ``HostSession`` (``tasks.hosts.session``): the run's client,
network and pulled bases on one host.
"""

from __future__ import annotations

import contextvars
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tasks.catalogue import load_catalogue
from tasks.hosts.session import BaseUnavailable, HostSession
from tasks.matrix import SINGLE_STAGE, load_app
from tasks.records import (
    BuildResult,
    Cell,
    CellResult,
    InspectResult,
    ProbeResult,
    PulledImage,
    ScanResult,
    Stage,
    Status,
)
from tasks.stages import build, inspect, probe, save, scan


@dataclass(frozen=True)
class Stages:
    """The stage functions a pipeline calls: the Prefect tasks of ``tasks.stages``, or
    stand-ins in unit tests of the pipeline's own logic."""

    build: Callable[..., BuildResult] = build.build_image
    save: Callable[..., Path] = save.save_image
    inspect: Callable[..., InspectResult] = inspect.inspect_image
    scan: Callable[..., ScanResult] = scan.scan_image
    probe: Callable[..., ProbeResult] = probe.probe_image


def skip_reason(cell: Cell, error: BaseUnavailable) -> str | None:
    """Why a cell cannot run here, when its base is one no recipe can forge: a base the
    catalogue has no ``forge`` entry for, or a matrix's own (``custom_bases``). A missing
    base that ``infra up`` forges is a failure (set-up was not run), not a skip."""
    if cell.base == SINGLE_STAGE:
        return None
    names = load_catalogue().base_names()
    if cell.base in names and load_catalogue().base(cell.base).forge is not None:
        return None
    return (
        f"{cell.base} is not available here: {error}; it cannot be forged from Debian "
        "packages (push it to the registry mirror, or run with upstream registries)"
    )


def run_pipeline(cell: Cell, session: HostSession, stages: Stages | None = None) -> CellResult:
    """Run every stage of ``cell``; never raises for a failure of the cell itself."""
    stages = stages or Stages()
    started = datetime.now(UTC)
    done: dict[str, Any] = {}
    stage = Stage.BUILD
    try:
        app = load_app(cell.app, session.apps_dir)
        builder, base = session.pulled_image(cell.builder_ref), session.pulled_image(cell.base_ref)
        with session.quiet.shared():
            done["build"] = stages.build(session.client, cell, app, session.run_id, builder, base)
        stage = Stage.INSPECT
        outcomes = _inspect_and_scan(session, stages, done["build"], builder, base)
        done |= {s.value: o for s, o in outcomes.items() if not isinstance(o, Exception)}
        failed = [(s, o) for s, o in outcomes.items() if isinstance(o, Exception)]
        if failed:
            stage, error = failed[0]  # the first in stage order names the cell's failure
            raise error
        stage = Stage.PROBE
        with session.quiet.exclusive():
            done["probe"] = stages.probe(
                session.client, done["build"], app, session.probe, session.repeat
            )
    except BaseUnavailable as exc:
        reason = skip_reason(cell, exc)
        status = Status.SKIPPED if reason else Status.FAILED
        return _result(cell, session, started, done, status, stage, reason or str(exc))
    except Exception as exc:
        message = str(exc) if str(exc).startswith(f"{stage}:") else f"{stage}: {exc}"
        return _result(cell, session, started, done, Status.FAILED, stage, message)
    return _result(cell, session, started, done, Status.OK, None, None)


def _inspect_and_scan(
    session: HostSession,
    stages: Stages,
    build: BuildResult,
    builder: PulledImage,
    base: PulledImage,
) -> dict[Stage, Any]:
    """Save the image once, then inspect and scan the archive side by side; what each
    stage returned or raised (a failed save raises, as part of inspect)."""
    with session.quiet.shared(), _archive_folder(session) as folder:
        archive = stages.save(session.client, build.image_id, Path(folder))
        inspected, scanned = _side_by_side(
            lambda: stages.inspect(
                session.client, build, builder, base, archive, session.layer_cache
            ),
            lambda: stages.scan(session.scanner, archive),
        )
    return {Stage.INSPECT: inspected, Stage.SCAN: scanned}


def _archive_folder(session: HostSession) -> tempfile.TemporaryDirectory[str]:
    if session.archive_dir is not None:
        session.archive_dir.mkdir(parents=True, exist_ok=True)
    return tempfile.TemporaryDirectory(prefix="image-", dir=session.archive_dir)


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
    session: HostSession,
    started: datetime,
    done: dict[str, Any],
    status: Status,
    stage: Stage | None,
    error: str | None,
) -> CellResult:
    return CellResult(
        cell=cell,
        status=status,
        host=session.host.name,
        started_at=started,
        finished_at=datetime.now(UTC),
        failed_stage=stage if status is Status.FAILED else None,
        error=error,
        **done,
    )
