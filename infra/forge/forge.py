"""Forge recipes: resolve, reuse when the registry already has them, else build and push."""

from __future__ import annotations

import contextlib
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import docker

from infra.forge.apt import AptIndex
from infra.forge.push import import_outputs, push
from infra.forge.recipe import LABEL_HASH, Recipe, labels
from infra.registry_api import RegistryAPI

# Two forges at once: mmdebstrap keeps about one core busy and waits on the disk, and a
# push is one gzip stream in the engine, so a second forge fills the other core.
FORGE_WORKERS = 2


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


def forge_all(
    recipes: Sequence[Recipe],
    apt_for: Callable[[str], AptIndex],
    docker_url: str,
    registry: str,
    workroot: Path,
    done: Callable[[ForgeResult], None],
    workers: int = FORGE_WORKERS,
) -> None:
    """Forge ``recipes``, ``workers`` at a time, starting in the order given; recipes that
    share a cached rootfs part one after the other. ``done`` hears of each as it ends.

    The first failure stops the recipes not yet started and is raised once the running
    ones have ended, so no forge is cut off half-pushed.
    """
    failed = threading.Event()

    def forge_chain(chain: list[Recipe]) -> None:
        client = docker.DockerClient(base_url=docker_url, timeout=900)
        client.api.trust_env = False
        try:
            for recipe in chain:
                if failed.is_set():
                    return
                try:
                    done(forge(recipe, apt_for(recipe.suite), client, registry, workroot))
                except BaseException:
                    failed.set()
                    raise
        finally:
            client.close()

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="forge") as pool:
        futures = [pool.submit(forge_chain, chain) for chain in chains(recipes)]
    for future in futures:
        future.result()


def chains(recipes: Sequence[Recipe]) -> list[list[Recipe]]:
    """``recipes`` in groups forged one after the other: those that share a cached part
    together, every other alone; in the order of each group's first recipe."""
    grouped: dict[str | int, list[Recipe]] = {}
    for index, recipe in enumerate(recipes):
        grouped.setdefault(recipe.shares or index, []).append(recipe)
    return list(grouped.values())


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
