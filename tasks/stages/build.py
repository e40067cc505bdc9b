"""Build stage: a cell's image, built without cache and without network, timed."""

from __future__ import annotations

import time

import docker
import docker.errors
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks import labels
from tasks.matrix import App
from tasks.records import BuildResult, Cell, PulledImage


class BuildError(RuntimeError):
    """The image could not be built (the app's own failure, not the host's)."""


def image_tag(cell: Cell, run_id: str) -> str:
    """The local tag of a cell's image; never pushed anywhere."""
    return f"basebench/{cell.app}:{run_id.lower()}-{cell.cell_id}"


@task(name="build", cache_policy=NO_CACHE)  # live clients and images: never cached
def build_image(
    client: docker.DockerClient,
    cell: Cell,
    app: App,
    run_id: str,
    builder: PulledImage,
    base: PulledImage,
) -> BuildResult:
    """Build the cell's image with no cache and no network; the time is the whole build."""
    single = cell.variant == "single-stage"
    buildargs = {"BUILDER": cell.builder_ref, "RUN_ID": run_id}
    if not single:
        buildargs |= {
            "BASE": cell.base_ref,
            "CGO_ENABLED": "1" if cell.cgo_enabled else "0",
            "LINKAGE": cell.linkage,
        }
    dockerfile = app.dockerfile_single if single else app.dockerfile_multi
    tag = image_tag(cell, run_id)
    started = time.perf_counter()
    try:
        image, _ = client.images.build(
            path=str(app.directory),
            dockerfile=dockerfile.name,
            buildargs=buildargs,
            tag=tag,
            labels={labels.RUN: run_id},
            nocache=True,
            pull=False,
            rm=True,
            forcerm=True,
            network_mode="none",
        )
    except docker.errors.BuildError as exc:
        tail = [line.get("stream", line.get("error", "")) for line in exc.build_log][-5:]
        raise BuildError(f"build: {exc.msg}: {''.join(str(t) for t in tail).strip()}") from exc
    elapsed = time.perf_counter() - started
    return BuildResult(
        run_id=run_id,
        image_id=image.id,
        tag=tag,
        build_seconds=elapsed,
        builder_digest=builder.digest,
        base_digest=base.digest,
    )
