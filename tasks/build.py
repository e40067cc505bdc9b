"""Build stage: pull the base images a run needs, then build each cell's image without cache."""

from __future__ import annotations

import time
from dataclasses import dataclass

import docker
import docker.errors

from tasks.matrix import App
from tasks.records import BuildResult, Cell

RUN_LABEL = "org.basebench.run"
FORGED_LABEL = "org.basebench.forged"


class BuildError(RuntimeError):
    """The image could not be built (the app's own failure, not the host's)."""


class BaseUnavailable(RuntimeError):
    """A base or builder image could not be pulled."""


@dataclass(frozen=True)
class PulledImage:
    ref: str
    digest: str | None  # repo digest (sha256:...) when the image came from a registry
    forged: bool  # carries the forge's stand-in label
    layers: tuple[str, ...] = ()  # diff ids, bottom to top


def pull_image(client: docker.DockerClient, ref: str) -> PulledImage:
    """Pull ``ref`` (once per host per run) and record its digest and provenance."""
    try:
        image = client.images.pull(ref)
    except docker.errors.APIError as exc:
        raise BaseUnavailable(f"pull {ref}: {exc.explanation or exc}") from exc
    repository = ref.rsplit(":", 1)[0] if "@" not in ref else ref.split("@", 1)[0]
    digests = [d for d in image.attrs.get("RepoDigests", []) if d.startswith(repository + "@")]
    digest = digests[0].split("@", 1)[1] if digests else None
    forged = (image.labels or {}).get(FORGED_LABEL) == "true"
    layers = tuple(image.attrs["RootFS"].get("Layers") or ())
    return PulledImage(ref=ref, digest=digest, forged=forged, layers=layers)


def image_tag(cell: Cell, run_id: str) -> str:
    """The local tag of a cell's image; never pushed anywhere."""
    return f"basebench/{cell.app}:{run_id.lower()}-{cell.cell_id}"


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
        buildargs |= {"BASE": cell.base_ref, "CGO_ENABLED": "1" if cell.cgo_enabled else "0"}
    dockerfile = app.dockerfile_single if single else app.dockerfile_multi
    tag = image_tag(cell, run_id)
    started = time.perf_counter()
    try:
        image, _ = client.images.build(
            path=str(app.directory),
            dockerfile=dockerfile.name,
            buildargs=buildargs,
            tag=tag,
            labels={RUN_LABEL: run_id},
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


def remove_run_images(client: docker.DockerClient, run_id: str) -> None:
    """Remove every image this run built, and the build stages it left dangling."""
    for image in client.images.list(filters={"label": f"{RUN_LABEL}={run_id}"}):
        for tag in image.tags:
            client.images.remove(tag, force=True)
    client.images.prune(filters={"dangling": True, "label": f"{RUN_LABEL}={run_id}"})
