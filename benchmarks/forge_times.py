"""Forge time and image size of stand-in base images, forged into a scratch repository.

    .venv/bin/python benchmarks/forge_times.py alpine --rounds 3

Each round forges the recipe three ways, as ``infra up`` meets it:

- cold: a fresh apt state (the recipe's package lists downloaded, its .debs fetched),
  then build, import and push: a first ``infra up`` on a new machine;
- rebuild: apt lists kept, the image gone from the registry: a recipe change;
- reuse: the registry holds the image with the same recipe hash: every later ``infra up``.

and prints the seconds of each, then the image's size as the engine reports it and the
bytes of its compressed layers in the registry. Images go to
``127.0.0.1:5000/basebench-bench/<repository>`` and are deleted at the end.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import docker

from infra.forge.alpine_standin import AlpineStandInRecipe
from infra.forge.apt import AptIndex
from infra.forge.forge import forge
from infra.forge.recipe import Recipe
from infra.paths import DEFAULT_APT_SOURCES
from infra.registry_api import RegistryAPI
from tasks.hosts.config import HostConfig
from tasks.hosts.connection import connect
from tasks.matrix import DEFAULT_CACHE, DEFAULT_REGISTRY

PREFIX = "basebench-bench"
# name -> a recipe whose own apt state lives under the given folder
RECIPES: dict[str, Callable[[Path], Recipe]] = {
    "alpine": lambda root: AlpineStandInRecipe(DEFAULT_APT_SOURCES, root / "apt"),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipes", nargs="+", choices=sorted(RECIPES))
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    client = connect(HostConfig())
    # The host view recipes of the host's own suite resolve with (refreshed once, untimed).
    host_apt = AptIndex(DEFAULT_APT_SOURCES, DEFAULT_CACHE / "apt")
    host_apt.update()
    print(f"{'recipe':<24}{'cold':>9}{'rebuild':>9}{'reuse':>9}   size")
    try:
        for name in args.recipes:
            times: dict[str, list[float]] = {"cold": [], "rebuild": [], "reuse": []}
            for _ in range(args.rounds):
                with tempfile.TemporaryDirectory(dir=DEFAULT_CACHE) as folder:
                    recipe = RECIPES[name](Path(folder))
                    recipe.repository = f"{PREFIX}/{recipe.repository}"
                    _delete(client, recipe)
                    times["cold"].append(_forge(recipe, host_apt, client, Path(folder)))
                    _delete(client, recipe)
                    times["rebuild"].append(_forge(recipe, host_apt, client, Path(folder)))
                    times["reuse"].append(_forge(recipe, host_apt, client, Path(folder)))
            size = _size(client, recipe)
            print(
                f"{recipe.name.removeprefix(PREFIX + '/'):<24}"
                + "".join(f"{statistics.median(times[k]):>8.1f}s" for k in times)
                + f"   {size}"
            )
            print("  every round: " + "; ".join(f"{k} {v}" for k, v in times.items()))
            _delete(client, recipe)
    finally:
        client.close()
    return 0


def _forge(recipe: Recipe, apt: AptIndex, client: docker.DockerClient, root: Path) -> float:
    started = time.perf_counter()
    forge(recipe, apt, client, DEFAULT_REGISTRY, root / "work")
    return round(time.perf_counter() - started, 1)


def _size(client: docker.DockerClient, recipe: Recipe) -> str:
    tag = recipe.outputs[0].tag
    image = client.images.get(f"{DEFAULT_REGISTRY}/{recipe.repository}:{tag}")
    found = RegistryAPI(DEFAULT_REGISTRY).manifest(recipe.repository, tag)
    layers = sum(layer["size"] for layer in found[0]["layers"]) if found else 0
    return f"{image.attrs['Size'] / 1e6:.2f} MB, compressed {layers / 1e6:.2f} MB"


def _delete(client: docker.DockerClient, recipe: Recipe) -> None:
    api = RegistryAPI(DEFAULT_REGISTRY)
    for output in recipe.outputs:
        api.delete(recipe.repository, output.tag)
        ref = f"{DEFAULT_REGISTRY}/{recipe.repository}:{output.tag}"
        for image in client.images.list(ref):
            client.images.remove(image.id, force=True)


if __name__ == "__main__":
    raise SystemExit(main())
