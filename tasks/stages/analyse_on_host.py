"""Save, inspect and scan on the build host: the analysis container, seen from the flow.

Instead of the save stage streaming the image here, ``analyse_on_host`` starts
``tasks.containers.analysis`` in a container on the host that built it, with the
host engine's socket and the toolbox volume (``tasks.sessions.toolbox``) mounted. The image
never leaves the host: what comes back is its layer facts and the scanner's report,
kilobytes against up to 900 MB, and this machine turns them into the same
``InspectResult`` and ``ScanResult`` as the local stages (documents included).
"""

from __future__ import annotations

import io
import json
import tarfile
from dataclasses import dataclass
from typing import Any

import docker
from docker.types import Mount
from prefect import task
from prefect.cache_policies import NO_CACHE

import tasks.containers.analysis as program
from tasks import labels
from tasks.containers.analysis import (
    ARCHIVE_MARK,
    ENGINE_SOCKET,
    LAYER_CACHE,
    OUT,
    TOOLBOX_MOUNT,
    Spec,
)
from tasks.readers.layers import LayerFacts
from tasks.records import BuildResult, PulledImage, Stage
from tasks.scanners.base import Scanner
from tasks.stages.inspect import inspect_result

SAVE_SECONDS = 600  # on top of the scan's timeout, for saving and reading the image
LAYER_CACHE_VOLUME = "basebench-layer-cache"  # layer summaries, kept on the host across runs


@dataclass(frozen=True)
class HostAnalysis:
    """What a host that analyses its own images has (``tasks.sessions.toolbox`` sets it
    up): the analysis image, the toolbox volume, and the engine's socket on the host."""

    image: str
    toolbox: str  # the volume's name
    socket: str


@task(name="analyse on host", cache_policy=NO_CACHE)
def analyse_on_host(
    client: docker.DockerClient,
    analysis: HostAnalysis,
    scanner: Scanner,
    run_id: str,
    build: BuildResult,
    builder: PulledImage,
    base: PulledImage,
) -> dict[Stage, Any]:
    """The inspect and scan outcomes (a result or the exception) of the built image,
    analysed in a container on its host (``client``'s engine); the container carries
    ``run_id``'s label."""
    spec = Spec(
        image_id=build.image_id,
        cacheable=sorted({*builder.layers, *base.layers}),
        scan=scanner.command(ARCHIVE_MARK, TOOLBOX_MOUNT),
        scan_timeout_seconds=scanner.timeout_seconds,
    )
    container = client.containers.create(
        analysis.image,
        entrypoint=["/usr/bin/python3"],
        command=["-m", program.__name__, spec.to_json()],
        environment={"PYTHONPATH": f"{TOOLBOX_MOUNT}/python", "PYTHONDONTWRITEBYTECODE": "1"},
        mounts=[
            Mount(TOOLBOX_MOUNT, analysis.toolbox, type="volume", read_only=True),
            Mount(str(LAYER_CACHE.parent), LAYER_CACHE_VOLUME, type="volume"),
            Mount(ENGINE_SOCKET, analysis.socket, type="bind"),  # refused when missing
        ],
        network_mode="none",
        user="0",  # the engine's socket is root's
        labels={labels.RUN: run_id},
    )
    try:
        container.start()
        exit_code = container.wait(timeout=spec.scan_timeout_seconds + SAVE_SECONDS)["StatusCode"]
        if exit_code != 0:
            logs = container.logs().decode(errors="replace").strip().splitlines()
            last = logs[-1] if logs else "no output"
            return {Stage.INSPECT: RuntimeError(f"analysis container exited {exit_code}: {last}")}
        out = _read_out(container)
    finally:
        container.remove(force=True)
    if "scan.json" not in out:  # the save failed: nothing to inspect or scan, as here
        return {Stage.INSPECT: RuntimeError(out.get("inspect.error", "no image was saved"))}
    return {
        Stage.INSPECT: _inspected(client, build, builder, base, out),
        Stage.SCAN: _scanned(scanner, build, out),
    }


def _read_out(container: Any) -> dict[str, str]:
    """The files the container left in ``OUT``, by name."""
    stream, _ = container.get_archive(str(OUT))
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
        return {
            member.name.rsplit("/", 1)[-1]: tar.extractfile(member).read().decode()  # type: ignore[union-attr]
            for member in tar
            if member.isfile()
        }


def _inspected(
    client: docker.DockerClient,
    build: BuildResult,
    builder: PulledImage,
    base: PulledImage,
    out: dict[str, str],
) -> Any:
    if "facts.json" not in out:
        return RuntimeError(out.get("inspect.error", "the analysis container left no facts"))
    attrs = client.images.get(build.image_id).attrs
    return inspect_result(attrs, LayerFacts.from_json(json.loads(out["facts.json"])), builder, base)


def _scanned(scanner: Scanner, build: BuildResult, out: dict[str, str]) -> Any:
    scan = json.loads(out["scan.json"])
    what = f"{build.image_id.removeprefix('sha256:')[:12]}.tar"  # as the save stage names it
    try:
        return scanner.read_output(scan["returncode"], scan["stdout"], scan["stderr"], what)
    except Exception as exc:
        return exc
