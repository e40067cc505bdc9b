"""Inspect stage: what is inside a built image, read from its layers.

The image is read from the archive the save stage wrote (``docker save``), so the same
code works on every base, including those with no shell to run commands in; the layer
reading itself is ``tasks.readers.layers``. Size, layers and user come from the engine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import docker
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.readers.layers import LayerCache, LayerFacts, read_layer_facts
from tasks.records import BuildResult, InspectResult, PulledImage

ROOT_USERS = ("", "root", "0", "root:root", "0:0")


@task(name="inspect", cache_policy=NO_CACHE)
def inspect_image(
    client: docker.DockerClient,
    build: BuildResult,
    builder: PulledImage,
    base: PulledImage,
    archive: Path,
    cache: LayerCache | None = None,
) -> InspectResult:
    """Size, layers, user and content facts of a built image saved at ``archive``."""
    attrs = client.images.get(build.image_id).attrs
    facts = read_layer_facts(
        archive, attrs["RootFS"]["Layers"], attrs["Config"], cache, {*builder.layers, *base.layers}
    )
    return inspect_result(attrs, facts, builder, base)


def inspect_result(
    attrs: dict[str, Any], facts: LayerFacts, builder: PulledImage, base: PulledImage
) -> InspectResult:
    """The inspect stage's row: the engine's ``attrs`` of the image beside its layer facts."""
    user = attrs["Config"].get("User") or ""
    return InspectResult(
        size_bytes=int(attrs["Size"]),
        compressed_bytes=facts.compressed_bytes,
        layers=len(attrs["RootFS"]["Layers"]),
        user=user,
        runs_as_root=user in ROOT_USERS,
        has_shell=facts.has_shell,
        has_package_manager=facts.has_package_manager,
        setuid_files=facts.setuid_files,
        files=facts.files,
        base_forged=base.forged,
        builder_forged=builder.forged,
        setuid_or_setgid_files=facts.setuid_or_setgid_files,
        program=facts.program,
    )
