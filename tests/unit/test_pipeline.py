"""Pipeline status logic with fake stage functions: ok, failed (stage, error, partial
results kept), skipped, and closing a host's context. No Docker."""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path
from typing import Any, cast

import docker
import pytest

from tasks.apps import load_app
from tasks.hosts.config import HostConfig
from tasks.pipeline import Stages, run_pipeline
from tasks.records import (
    BuildResult,
    Cell,
    CellResult,
    ProbeResult,
    PulledImage,
    ScanResult,
    Stage,
    Status,
)
from tasks.scanners.base import ScanError, Scanner
from tasks.sessions.session import BaseUnavailable, HostSession, RunSettings, close_session
from tasks.stages.analyse_on_host import HostAnalysis
from tasks.stages.build import BuildError
from tasks.stages.probe import ProbeError, ProbeTarget
from tests.records_factory import make_cell, make_inspect

BUILD = BuildResult("run-1", "sha256:abc", "basebench/go-hello:run-1-x", 12.5, "sha256:b", None)
INSPECT = make_inspect(6_900_000)
SCAN = ScanResult("debian", "12", (), (), "trivy", "0.76.0", None)
PROBE = ProbeResult(startup_seconds=(0.25, 0.22), idle_memory_bytes=4_000_000)


class FakeClient:
    """Records what was asked of it; ``fail`` makes every image call raise."""

    def __init__(self, fail: Exception | None = None) -> None:
        self.closed = False
        self.calls: list[str] = []
        self.fail = fail

    def close(self) -> None:
        self.closed = True

    def __getattr__(self, name: str) -> Any:
        if name in ("images", "networks"):
            self.calls.append(name)
            if self.fail:
                raise self.fail
            return self
        raise AttributeError(name)

    def list(self, **kwargs: Any) -> list[Any]:
        return []

    def prune(self, **kwargs: Any) -> None:
        return None


def context(
    cell: Cell, client: FakeClient | None = None, archive_dir: Path | None = None, **pulled: Any
) -> HostSession:
    images: dict[str, PulledImage | BaseUnavailable] = {
        cell.builder_ref: PulledImage(cell.builder_ref, "sha256:b", forged=True),
        cell.base_ref: PulledImage(cell.base_ref, None, forged=True),
    }
    images.update(pulled.get("override", {}))
    run = RunSettings(
        run_id="run-1",
        scanner=cast(Scanner, object()),
        repeat=2,
        apps={"go-hello": load_app("go-hello")},
        archive_dir=archive_dir,
    )
    return HostSession(
        host=HostConfig(name="tls-a", url="unix:///nowhere.sock"),
        client=cast(docker.DockerClient, client or FakeClient()),
        run=run,
        probe=ProbeTarget(network="net", address="127.0.0.1", timeout=5),
        pulled=images,
    )


def stages(**raising: Exception) -> tuple[Stages, list[str]]:
    """Fake stages returning canned results; ``scan=ProbeError(...)`` makes scan raise.

    The fake save writes an archive file; inspect and scan record ``+archive`` when
    that file exists as they run.
    """
    called: list[str] = []
    canned = {"build": BUILD, "inspect": INSPECT, "scan": SCAN, "probe": PROBE}

    def save(client: Any, image_id: str, folder: Path) -> Path:
        called.append("save")
        if "save" in raising:
            raise raising["save"]
        archive = folder / "image.tar"
        archive.write_bytes(b"saved image")
        return archive

    def fake(name: str) -> Any:
        def stage(*args: Any, **options: Any) -> Any:
            archives = [a for a in args if isinstance(a, Path) and a.name == "image.tar"]
            called.append(name + ("+archive" if archives and archives[0].is_file() else ""))
            if name in raising:
                raise raising[name]
            return canned[name]

        return stage

    return Stages(save=save, **{name: fake(name) for name in canned}), called


def test_all_stages_ok(tmp_path: Path) -> None:
    cell = make_cell("distroless-static")
    fakes, called = stages()
    result = run_pipeline(cell, context(cell, archive_dir=tmp_path), fakes)
    # inspect and scan run side by side on the one archive, removed before the probe.
    assert called[:2] == ["build", "save"]
    assert sorted(called[2:4]) == ["inspect+archive", "scan+archive"]
    assert called[4:] == ["probe"]
    assert list(tmp_path.iterdir()) == []
    assert (result.status, result.failed_stage, result.error) == (Status.OK, None, None)
    assert (result.build, result.inspect, result.scan, result.probe) == (
        BUILD,
        INSPECT,
        SCAN,
        PROBE,
    )
    assert result.host == "tls-a"
    assert result.attempts == 1
    assert result.started_at <= result.finished_at


def test_failed_scan_does_not_stop_the_probe() -> None:
    # A broken vulnerability DB must not cost every cell its startup and memory figures.
    cell = make_cell("distroless-static")
    fakes, called = stages(scan=RuntimeError("trivy exited 1: no such image"))
    result = run_pipeline(cell, context(cell), fakes)
    assert sorted(called) == ["build", "inspect+archive", "probe", "save", "scan+archive"]
    assert (result.status, result.failed_stage) == (Status.FAILED, Stage.SCAN)
    assert result.error == "scan: trivy exited 1: no such image"
    assert (result.build, result.inspect, result.probe) == (BUILD, INSPECT, PROBE)
    assert result.scan is None


def test_every_failed_stage_is_in_the_error_the_first_names_the_stage() -> None:
    cell = make_cell("distroless-static")
    fakes, _ = stages(
        scan=RuntimeError("trivy exited 1: no DB"),
        probe=ProbeError("probe: no HTTP 200 on / within 5 s (last: reset)"),
    )
    result = run_pipeline(cell, context(cell), fakes)
    assert (result.status, result.failed_stage) == (Status.FAILED, Stage.SCAN)
    assert result.error == (
        "scan: trivy exited 1: no DB; probe: no HTTP 200 on / within 5 s (last: reset)"
    )
    assert (result.build, result.inspect, result.scan, result.probe) == (BUILD, INSPECT, None, None)


def test_failed_inspect_keeps_the_scan_beside_it() -> None:
    cell = make_cell("bookworm")
    fakes, called = stages(inspect=ValueError("inspect: image.tar has 1 layers, the image 2"))
    result = run_pipeline(cell, context(cell), fakes)
    assert "probe" in called  # the probe needs the image, not the inspection
    assert result.probe == PROBE
    assert (result.status, result.failed_stage) == (Status.FAILED, Stage.INSPECT)
    assert result.error == "inspect: image.tar has 1 layers, the image 2"
    assert (result.build, result.inspect, result.scan) == (BUILD, None, SCAN)


def test_failed_save_is_an_inspect_failure_and_leaves_no_archive(tmp_path: Path) -> None:
    cell = make_cell("bookworm")
    fakes, called = stages(save=OSError("No space left on device"))
    result = run_pipeline(cell, context(cell, archive_dir=tmp_path), fakes)
    assert called == ["build", "save", "probe"]
    assert (result.status, result.failed_stage) == (Status.FAILED, Stage.INSPECT)
    assert result.error == "inspect: No space left on device"
    assert (result.build, result.inspect, result.scan, result.probe) == (BUILD, None, None, PROBE)
    assert list(tmp_path.iterdir()) == []


def test_stage_prefix_is_not_doubled() -> None:
    cell = make_cell("bookworm")
    fakes, _ = stages(build=BuildError("build: exit status 1: undefined: this"))
    result = run_pipeline(cell, context(cell), fakes)
    assert (result.status, result.failed_stage) == (Status.FAILED, Stage.BUILD)
    assert result.error == "build: exit status 1: undefined: this"
    assert result.build is None


def test_probe_failure_is_recorded_with_all_measurements() -> None:
    cell = make_cell("distroless-base")
    fakes, _ = stages(probe=ProbeError("probe: no HTTP 200 on / within 5 s (last: reset)"))
    result = run_pipeline(cell, context(cell), fakes)
    assert (result.status, result.failed_stage) == (Status.FAILED, Stage.PROBE)
    assert result.error == "probe: no HTTP 200 on / within 5 s (last: reset)"
    assert (result.build, result.inspect, result.scan, result.probe) == (BUILD, INSPECT, SCAN, None)


def test_absent_base_no_recipe_forges_is_skipped_with_the_reason() -> None:
    cell = make_cell("golden-image")  # a matrix's own base: nothing here forges it
    missing = BaseUnavailable(cell.base_ref, f"pull {cell.base_ref}: manifest unknown", True)
    fakes, called = stages()
    result = run_pipeline(cell, context(cell, override={cell.base_ref: missing}), fakes)
    assert called == []
    assert (result.status, result.failed_stage) == (Status.SKIPPED, None)
    assert result.error == (
        f"golden-image is not available here: pull {cell.base_ref}: manifest unknown (push it"
        " to the registry mirror, forge a stand-in, or run with upstream registries)"
    )


def test_absent_base_that_infra_forges_is_a_failure_not_a_skip() -> None:
    cell = make_cell("alpine")  # the stand-in: missing means set-up did not run
    missing = BaseUnavailable(cell.base_ref, f"pull {cell.base_ref}: manifest unknown", True)
    fakes, _ = stages()
    result = run_pipeline(cell, context(cell, override={cell.base_ref: missing}), fakes)
    assert (result.status, result.failed_stage) == (Status.FAILED, Stage.BUILD)
    assert result.error == f"build: pull {cell.base_ref}: manifest unknown"


def test_base_pull_that_failed_on_the_way_is_a_build_failure() -> None:
    cell = make_cell("alpine")
    timeout = BaseUnavailable(cell.base_ref, f"pull {cell.base_ref}: i/o timeout", False)
    fakes, called = stages()
    result = run_pipeline(cell, context(cell, override={cell.base_ref: timeout}), fakes)
    assert called == []
    assert (result.status, result.failed_stage) == (Status.FAILED, Stage.BUILD)
    assert result.error == f"build: pull {cell.base_ref}: i/o timeout"


def test_absent_builder_is_a_failure_not_a_skip() -> None:
    cell = make_cell("alpine")
    gone = BaseUnavailable(cell.builder_ref, f"pull {cell.builder_ref}: manifest unknown", True)
    fakes, _ = stages()
    result = run_pipeline(cell, context(cell, override={cell.builder_ref: gone}), fakes)
    assert (result.status, result.failed_stage) == (Status.FAILED, Stage.BUILD)
    assert result.error == f"build: pull {cell.builder_ref}: manifest unknown"


def test_unknown_app_fails_at_build() -> None:
    cell = make_cell("bookworm")
    ctx = context(cell)
    ctx = dataclasses.replace(ctx, run=dataclasses.replace(ctx.run, apps={}))
    fakes, called = stages()
    result = run_pipeline(cell, ctx, fakes)
    assert called == []
    assert (result.status, result.failed_stage) == (Status.FAILED, Stage.BUILD)
    assert result.error is not None and "unknown app 'go-hello'" in result.error


# --- closing a host --------------------------------------------------------------------


def test_close_cleans_a_live_host() -> None:
    cell = make_cell("bookworm")
    client = FakeClient()
    assert close_session(context(cell, client), keep_images=False, lost=False) is None
    assert client.calls == ["images", "images", "networks"]
    assert client.closed


def test_close_keeps_images_when_asked() -> None:
    cell = make_cell("bookworm")
    client = FakeClient()
    assert close_session(context(cell, client), keep_images=True, lost=False) is None
    assert client.calls == ["networks"]


def test_close_does_not_touch_a_lost_host() -> None:
    cell = make_cell("bookworm")
    client = FakeClient(fail=AssertionError("a lost host must not be asked"))
    warning = close_session(context(cell, client), keep_images=False, lost=True)
    assert warning == "host tls-a was lost: the run's images and network stay there"
    assert client.calls == []
    assert client.closed


@pytest.mark.parametrize("keep", [False, True])
def test_close_reports_a_failed_cleanup_in_one_line(keep: bool) -> None:
    cell = make_cell("bookworm")
    client = FakeClient(
        fail=ConnectionError(
            "('Connection aborted.', ConnectionRefusedError(111, 'Connection refused'))"
        )
    )
    warning = close_session(context(cell, client), keep_images=keep, lost=False)
    assert warning == "cleanup of tls-a failed: connection refused: nothing listens there"
    assert client.closed


def test_two_cells_on_one_host_pipeline_and_record_what_ran_beside_them(
    tmp_path: Path,
) -> None:
    # One build lane: the second cell builds while the first is saved, inspected and
    # scanned; the first cell's probe waits for that build, and runs alone.
    first, second = make_cell("distroless-static"), make_cell("bookworm")
    session = context(first, archive_dir=tmp_path)
    session.pulled.update(context(second).pulled)
    log: list[str] = []
    guard = threading.Lock()

    def timed(name: str, seconds: float, value: Any) -> Any:
        def stage(*args: Any, **options: Any) -> Any:
            cell = next((a for a in args if isinstance(a, Cell)), None)
            with guard:
                log.append(f"{name} start" + (f" {cell.base}" if cell else ""))
            time.sleep(seconds)
            with guard:
                log.append(f"{name} end")
            return value

        return stage

    def save(client: Any, image_id: str, folder: Path) -> Path:
        archive = folder / "image.tar"
        archive.write_bytes(b"saved image")
        time.sleep(0.05)
        return archive

    fakes = Stages(
        build=timed("build", 0.3, BUILD),
        save=save,
        inspect=timed("inspect", 0.05, INSPECT),
        scan=timed("scan", 0.05, SCAN),
        probe=timed("probe", 0.05, PROBE),
    )
    results: dict[str, CellResult] = {}

    def run(cell: Cell) -> None:
        results[cell.base] = run_pipeline(cell, session, fakes)

    threads = [threading.Thread(target=run, args=(c,)) for c in (first, second)]
    threads[0].start()
    time.sleep(0.1)  # the first cell takes the build lane
    threads[1].start()
    for thread in threads:
        thread.join(10)
    built_first, built_second = results["distroless-static"], results["bookworm"]
    assert built_first.build is not None and built_second.build is not None
    assert built_first.build.concurrent_stages == ()
    assert built_second.build.concurrent_stages == ("inspect", "save", "scan")
    assert built_first.probe is not None and built_second.probe is not None
    assert built_first.probe.concurrent_stages == built_second.probe.concurrent_stages == ()
    # The first probe started only after the second build had ended.
    build_ends = [i for i, line in enumerate(log) if line == "build end"]
    assert len(build_ends) == 2
    assert log.index("build start bookworm") < log.index("inspect start") < build_ends[1]
    assert log.index("probe start") > build_ends[1]


def on_host_session(cell: Cell, tmp_path: Path) -> HostSession:
    session = context(cell, archive_dir=tmp_path / "archives")
    analysis = HostAnalysis(
        image="registry/python3:latest", toolbox="basebench-toolbox-x", socket="/var/run/d.sock"
    )
    return dataclasses.replace(session, on_host=analysis)


@pytest.mark.parametrize(
    ("outcome", "failed_stage", "error"),
    [
        ({Stage.INSPECT: INSPECT, Stage.SCAN: SCAN}, None, None),
        (
            {Stage.INSPECT: INSPECT, Stage.SCAN: ScanError("scan: x.tar: DB error")},
            Stage.SCAN,
            "scan: x.tar: DB error",
        ),
        (
            {Stage.INSPECT: RuntimeError("analysis container exited 1: ImportError: elftools")},
            Stage.INSPECT,
            "inspect: analysis container exited 1: ImportError: elftools",
        ),
        (
            OSError("the host stopped"),
            Stage.INSPECT,
            "inspect: the host stopped",
        ),
    ],
)
def test_a_host_that_analyses_its_images_saves_nothing_here(
    tmp_path: Path, outcome: Any, failed_stage: Stage | None, error: str | None
) -> None:
    cell = make_cell("distroless-static")
    fakes, called = stages()

    def on_host(
        client: Any,
        analysis: HostAnalysis,
        scanner: Scanner,
        run_id: str,
        build: BuildResult,
        *_: Any,
    ) -> Any:
        called.append(f"on_host {build.image_id}")
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    result = run_pipeline(
        cell, on_host_session(cell, tmp_path), dataclasses.replace(fakes, on_host=on_host)
    )
    assert called == ["build", "on_host sha256:abc", "probe"]  # no save, inspect, scan here
    assert not (tmp_path / "archives").exists()
    assert (result.failed_stage, result.error) == (failed_stage, error)
    assert result.probe == PROBE  # the probe ran whatever the analysis did
    assert result.inspect == (INSPECT if failed_stage != Stage.INSPECT else None)
