"""Forge one recipe: resolve, reuse when the registry already has it, else build and push."""

from __future__ import annotations

import contextlib
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import docker

from infra.forge.apt import AptIndex
from infra.forge.push import import_outputs, push
from infra.forge.recipe import LABEL_HASH, Recipe, labels
from infra.registry_api import RegistryAPI


@dataclass(frozen=True)
class ForgeResult:
    """What forging one recipe did."""

    name: str
    rebuilt: bool
    recipe_hash: str
    refs: tuple[str, ...]
    packages: int
    seconds: float


def forge(
    recipe: Recipe,
    apt: AptIndex,
    client: docker.DockerClient,
    registry: str,
    workroot: Path,
) -> ForgeResult:
    """Make sure the registry holds ``recipe``'s images with its current hash."""
    started = time.monotonic()
    resolved = recipe.resolve(apt)
    digest = recipe.recipe_hash(resolved)
    refs = tuple(f"{registry}/{recipe.repository}:{o.tag}" for o in recipe.outputs)
    if _in_registry(RegistryAPI(registry), recipe, digest):
        return ForgeResult(recipe.name, False, digest, refs, len(resolved), _since(started))
    workroot.mkdir(parents=True, exist_ok=True)
    previous = _local_ids(client, refs)
    with tempfile.TemporaryDirectory(prefix="forge-", dir=workroot) as tmp:
        rootfs = recipe.build(apt, resolved, Path(tmp))
        forged_labels = labels(recipe, digest, rootfs.packages)
        imported = import_outputs(client, registry, recipe, rootfs, forged_labels)
    # Push only once every tag of the recipe is built and imported.
    for ref in imported:
        push(client, ref)
    _remove_untagged(client, previous)
    return ForgeResult(recipe.name, True, digest, refs, len(rootfs.packages), _since(started))


def _in_registry(api: RegistryAPI, recipe: Recipe, digest: str) -> bool:
    for output in recipe.outputs:
        found = api.labels(recipe.repository, output.tag)
        if found is None or found.get(LABEL_HASH) != digest:
            return False
    return True


def _since(started: float) -> float:
    return round(time.monotonic() - started, 2)


def _local_ids(client: docker.DockerClient, refs: tuple[str, ...]) -> set[str]:
    ids = set()
    for ref in refs:
        with contextlib.suppress(docker.errors.ImageNotFound):
            ids.add(client.images.get(ref).id)
    return ids


def _remove_untagged(client: docker.DockerClient, ids: set[str]) -> None:
    # Images this forge replaced; ones still tagged or used by a container stay.
    for image_id in ids:
        try:
            if not client.images.get(image_id).tags:
                client.images.remove(image_id)
        except docker.errors.APIError:
            pass
