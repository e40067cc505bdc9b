"""One cell's way through the stages: build -> save -> (inspect and scan) -> probe.

The save stage writes the image once to a local archive that inspect and scan both
read, side by side, or a container on the host does all three there
(``tasks.stages.analyse_on_host``); the probe then runs alone on the host. Each stage
waits for its lane on the host (``tasks.sessions.lanes``: one build at a time by
default, analyses beside it, probes alone), and the build and the probe record what ran
beside them. A failing stage ends the cell with status ``failed``, the stage and the
error (a failed save counts as inspect); whatever the other stages measured is kept. A
base image that no registry can supply makes the cell ``skipped`` with the reason: it
is a fact about this site, not a failure of the app.

The cell runs inside a ``HostSession`` (``tasks.sessions.session``): the run's client,
network and pulled bases on one host.
"""

from __future__ import annotations

import contextvars
import dataclasses
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tasks.apps import SINGLE_STAGE
from tasks.catalogue import load_catalogue
from tasks.hosts.connection import docker_host
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
from tasks.sessions.lanes import Lane
from tasks.sessions.session import BaseUnavailable, HostSession, RunSettings
from tasks.stages import analyse_on_host, build, inspect, probe, save, scan


@dataclass(frozen=True)
class Stages:
    """The stage functions a pipeline calls: the Prefect tasks of ``tasks.stages``, or
    stand-ins in unit tests of the pipeline's own logic."""

    build: Callable[..., BuildResult] = build.build_image
    save: Callable[..., Path] = save.save_image
    inspect: Callable[..., InspectResult] = inspect.inspect_image
    scan: Callable[..., ScanResult] = scan.scan_image
    probe: Callable[..., ProbeResult] = probe.probe_image
    on_host: Callable[..., dict[Stage, Any]] = analyse_on_host.analyse_on_host


def skip_reason(cell: Cell, error: BaseUnavailable) -> str | None:
    """Why the cell cannot run here: its runtime base is known to be absent from every
    registry the run pulls from, and no recipe forges it (a base the catalogue has no
    ``forge`` entry for, or a matrix's own). Anything else is a failure: a missing builder,
    a pull that failed on the way, or a forgeable base missing (set-up was not run)."""
    if not error.absent or error.ref != cell.base_ref or cell.base == SINGLE_STAGE:
        return None
    catalogue = load_catalogue()
    if cell.base in catalogue.base_names() and catalogue.base(cell.base).forge is not None:
        return None
    return (
        f"{cell.base} is not available here: {error} (push it to the registry mirror, "
        "forge a stand-in, or run with upstream registries)"
    )


def run_pipeline(cell: Cell, session: HostSession, stages: Stages | None = None) -> CellResult:
    """Run every stage of ``cell``; never raises for a failure of the cell itself.

    After a build, inspect, scan and probe all run whatever the others did: they need
    the image, not each other's results. The first failure in stage order names the
    cell's failed stage; the error lists every failure.
    """
    stages = stages or Stages()
    run = session.run
    started = datetime.now(UTC)
    done: dict[str, Any] = {}
    try:
        app = run.app(cell.app)
        builder, base = session.pulled_image(cell.builder_ref), session.pulled_image(cell.base_ref)
        with session.lanes.hold(Lane.BUILD, "build") as building:
            built = stages.build(
                session.client,
                cell,
                app,
                run.run_id,
                builder,
                base,
                engine=docker_host(session.host),
                tool=run.build_tool,
            )
        done["build"] = dataclasses.replace(built, concurrent_stages=building.concurrent_stages())
    except BaseUnavailable as exc:
        reason = skip_reason(cell, exc)
        status = Status.SKIPPED if reason else Status.FAILED
        return _result(cell, session, started, done, status, [(Stage.BUILD, reason or str(exc))])
    except Exception as exc:
        return _result(cell, session, started, done, Status.FAILED, [(Stage.BUILD, str(exc))])
    outcomes = inspect_and_scan(session, stages, done["build"], builder, base)
    with session.lanes.hold(Lane.PROBE, "probe") as probing:
        probed = _outcome(
            lambda: stages.probe(session.client, done["build"], app, session.probe, run.repeat)
        )
    if isinstance(probed, ProbeResult):
        probed = dataclasses.replace(probed, concurrent_stages=probing.concurrent_stages())
    outcomes[Stage.PROBE] = probed
    done |= {s.value: o for s, o in outcomes.items() if not isinstance(o, Exception)}
    failures = [(s, str(o)) for s, o in outcomes.items() if isinstance(o, Exception)]
    status = Status.FAILED if failures else Status.OK
    return _result(cell, session, started, done, status, failures)


def inspect_and_scan(
    session: HostSession,
    stages: Stages,
    build: BuildResult,
    builder: PulledImage,
    base: PulledImage,
) -> dict[Stage, Any]:
    """Save the image once, then inspect and scan the archive side by side, here or in a
    container on the host; what each stage returned or raised (a failed save raises, as
    part of inspect)."""
    lanes, run = session.lanes, session.run
    if session.on_host is not None:
        with lanes.hold(Lane.ANALYSIS, "save", "inspect", "scan"):
            try:
                return stages.on_host(
                    session.client, session.on_host, run.scanner, run.run_id, build, builder, base
                )
            except Exception as exc:  # the container could not run: nothing was analysed
                return {Stage.INSPECT: exc}
    with lanes.hold(Lane.ANALYSIS, "save") as analysing, _archive_folder(run) as folder:
        try:
            archive = stages.save(session.client, build.image_id, Path(folder))
        except Exception as exc:
            return {Stage.INSPECT: exc}  # nothing to inspect or scan: a failed save
        lanes.relabel(analysing, "inspect", "scan")
        inspected, scanned = _side_by_side(
            lambda: stages.inspect(session.client, build, builder, base, archive, run.layer_cache),
            lambda: stages.scan(run.scanner, archive),
        )
    return {Stage.INSPECT: inspected, Stage.SCAN: scanned}


def _archive_folder(run: RunSettings) -> tempfile.TemporaryDirectory[str]:
    if run.archive_dir is not None:
        run.archive_dir.mkdir(parents=True, exist_ok=True)
    # Named by run: ``basebench gc`` removes the folders of runs that died.
    return tempfile.TemporaryDirectory(prefix=f"{run.run_id}-", dir=run.archive_dir)


def _outcome(call: Callable[[], Any]) -> Any:
    """What ``call`` returned, or the exception it raised."""
    try:
        return call()
    except Exception as exc:
        return exc


def _side_by_side(*calls: Callable[[], Any]) -> list[Any]:
    """Run ``calls`` at once, each in a thread with the caller's context (Prefect's run
    context among it); what each returned or raised."""

    with ThreadPoolExecutor(max_workers=len(calls)) as threads:
        futures = [threads.submit(contextvars.copy_context().run, _outcome, c) for c in calls]
        return [future.result() for future in futures]


def _result(
    cell: Cell,
    session: HostSession,
    started: datetime,
    done: dict[str, Any],
    status: Status,
    problems: list[tuple[Stage, str]],
) -> CellResult:
    """The cell's row; ``problems`` are (stage, message) in stage order."""
    messages = [m if m.startswith(f"{s}:") else f"{s}: {m}" for s, m in problems]
    if status is Status.SKIPPED:
        messages = [m for _, m in problems]
    return CellResult(
        cell=cell,
        status=status,
        host=session.host.name,
        started_at=started,
        finished_at=datetime.now(UTC),
        failed_stage=problems[0][0] if status is Status.FAILED else None,
        error="; ".join(messages) or None,
        **done,
    )
