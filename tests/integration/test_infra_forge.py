"""Forging against the real registry: a failed build pushes nothing and leaves no temp files;
recipes are forged two at a time, those sharing a cached part one after the other."""

from __future__ import annotations

import io
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import pytest

from infra.errors import InfraError
from infra.forge.alpine import AlpineRecipe
from infra.forge.apt import AptIndex
from infra.forge.forge import ForgeResult, forge, forge_all
from infra.forge.recipe import (
    LABEL_HASH,
    LABEL_PACKAGES,
    LABEL_UPSTREAM,
    Output,
    Recipe,
    Rootfs,
)
from infra.paths import DEFAULT_APT_SOURCES
from infra.registry import free_port
from infra.registry_api import RegistryAPI
from infra.up import InfraState, up

pytestmark = pytest.mark.integration


class TinyRecipe(Recipe):
    """A one-file image in two tags; ``fail`` breaks the build after writing files;
    ``during_build`` runs inside the build; ``shares`` names a cached part."""

    def __init__(
        self,
        tag: str,
        fail: bool = False,
        shares: str | None = None,
        during_build: Callable[[], None] = lambda: None,
    ) -> None:
        self.repository = "basebench-test/tiny"
        self.upstream = "docker.io/basebench-test/tiny"
        self.outputs = (Output(tag, ("ENV TINY=1",)), Output(f"{tag}-b", ("USER 65532",)))
        self.fail = fail
        self.shares = shares
        self.during_build = during_build
        self.built_at = 0.0

    def resolve(self, apt: AptIndex) -> dict[str, str]:
        return {"tiny": "1.0"}

    def build(self, apt: AptIndex, packages: dict[str, str], workdir: Path) -> Rootfs:
        self.built_at = time.monotonic()
        self.during_build()
        (workdir / "hello").write_text("hello\n")
        tarball = workdir / "rootfs.tar"
        with tarfile.open(tarball, "w") as tar:
            tar.add(workdir / "hello", arcname="hello")
        if self.fail:
            raise InfraError("tiny: build broke on purpose")
        return Rootfs(tarball, dict(packages))


@pytest.fixture
def apt(infra: InfraState) -> AptIndex:
    return AptIndex(DEFAULT_APT_SOURCES, infra.cache_dir / "apt")


def test_failed_build_pushes_nothing_and_cleans_up(
    infra: InfraState, docker_client: docker.DockerClient, apt: AptIndex, tmp_path: Path
) -> None:
    with pytest.raises(InfraError, match="broke on purpose"):
        forge(TinyRecipe("broken", fail=True), apt, docker_client, infra.registry, tmp_path)
    assert list(tmp_path.iterdir()) == []
    assert "broken" not in RegistryAPI(infra.registry).tags("basebench-test/tiny")


@pytest.fixture
def tiny_tags(infra: InfraState, docker_client: docker.DockerClient) -> Iterator[RegistryAPI]:
    """The registry; every tiny tag and image a test made is removed afterwards."""
    api = RegistryAPI(infra.registry)
    yield api
    for tag in api.tags("basebench-test/tiny"):
        api.delete("basebench-test/tiny", tag)
    for image in docker_client.images.list(f"{infra.registry}/basebench-test/tiny"):
        docker_client.images.remove(image.id, force=True)


def test_recipes_are_forged_two_at_a_time_and_a_shared_part_in_order(
    infra: InfraState, apt: AptIndex, tmp_path: Path, tiny_tags: RegistryAPI
) -> None:
    other_started = threading.Event()

    def wait_for_the_other() -> None:
        # Fails unless the unshared recipe is built while this one is.
        if not other_started.wait(timeout=30):
            raise InfraError("the unshared recipe did not start meanwhile")

    first = TinyRecipe("p1", shares="part", during_build=wait_for_the_other)
    second = TinyRecipe("p2", shares="part")
    other = TinyRecipe("p3", during_build=other_started.set)
    finished: list[ForgeResult] = []
    forge_all([first, second, other], lambda suite: apt, infra.docker_url, infra.registry,
              tmp_path, finished.append)  # fmt: skip
    assert sorted(r.name for r in finished) == [f"basebench-test/tiny:p{n}" for n in (1, 2, 3)]
    assert all(r.rebuilt for r in finished)
    # Which of the two workers reaches its build first is up to them; the chain's second
    # recipe comes only after its first, which waited for the other to start.
    assert max(first.built_at, other.built_at) < second.built_at
    assert {"p1", "p1-b", "p2", "p2-b", "p3", "p3-b"} <= set(tiny_tags.tags("basebench-test/tiny"))
    assert list(tmp_path.iterdir()) == []


def test_the_first_failure_stops_the_forges_not_yet_started(
    infra: InfraState, apt: AptIndex, tmp_path: Path, tiny_tags: RegistryAPI
) -> None:
    # The failure comes once the second forge is under way, and long before it ends.
    broken = TinyRecipe("broken", fail=True, during_build=lambda: time.sleep(1))
    running = TinyRecipe("r1", during_build=lambda: time.sleep(3))
    not_started = TinyRecipe("r2")
    finished: list[ForgeResult] = []
    with pytest.raises(InfraError, match="broke on purpose"):
        forge_all([broken, running, not_started], lambda suite: apt,
                  infra.docker_url, infra.registry, tmp_path, finished.append)  # fmt: skip
    # The forge already running when the other failed ends whole, pushed; the third never starts.
    assert [r.name for r in finished] == ["basebench-test/tiny:r1"]
    assert not_started.built_at == 0.0
    tags = set(tiny_tags.tags("basebench-test/tiny"))
    assert {"r1", "r1-b"} <= tags
    assert not tags & {"broken", "broken-b", "r2", "r2-b"}


def test_built_then_reused_then_rebuilt_when_the_hash_changes(
    infra: InfraState,
    docker_client: docker.DockerClient,
    apt: AptIndex,
    tmp_path: Path,
    tiny_tags: RegistryAPI,
) -> None:
    recipe = TinyRecipe("t1")
    first = forge(recipe, apt, docker_client, infra.registry, tmp_path)
    assert first.rebuilt
    assert {"t1", "t1-b"} <= set(tiny_tags.tags("basebench-test/tiny"))
    assert (tiny_tags.labels("basebench-test/tiny", "t1-b") or {})[LABEL_HASH] == first.recipe_hash
    assert forge(recipe, apt, docker_client, infra.registry, tmp_path).rebuilt is False
    # Drop one of the two tags: the recipe is incomplete, so it is built again.
    tiny_tags.delete("basebench-test/tiny", "t1-b")
    assert forge(recipe, apt, docker_client, infra.registry, tmp_path).rebuilt is True
    assert list(tmp_path.iterdir()) == []


def _minirootfs(path: Path, release: str | None) -> Path:
    """A stand-in Alpine minirootfs: release file, apk database and one script."""
    files = {
        "lib/apk/db/installed": "P:musl\nV:1.2.5-r0\n\nP:busybox\nV:1.36.1-r29\n\n",
        "etc/motd": "Welcome to Alpine!\n",
    }
    if release:
        files["etc/alpine-release"] = release + "\n"
    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            info = tarfile.TarInfo("./" + name)
            info.size = len(text.encode())
            tar.addfile(info, io.BytesIO(text.encode()))
    return path


def test_alpine_minirootfs_is_imported_with_apk_packages(
    infra: InfraState, docker_client: docker.DockerClient, apt: AptIndex, tmp_path: Path
) -> None:
    rootfs = _minirootfs(tmp_path / "alpine-minirootfs-3.20.3-x86_64.tar.gz", "3.20.3")
    recipe = AlpineRecipe(rootfs, repository="basebench-test/alpine")
    api = RegistryAPI(infra.registry)
    try:
        result = forge(recipe, apt, docker_client, infra.registry, tmp_path / "work")
        assert result.refs == (f"{infra.registry}/basebench-test/alpine:3.20",)
        labels = api.labels("basebench-test/alpine", "3.20") or {}
        assert labels[LABEL_UPSTREAM] == "docker.io/library/alpine:3.20"
        assert labels[LABEL_PACKAGES] == "busybox=1.36.1-r29,musl=1.2.5-r0"
        assert rootfs.exists()  # the user's file is left alone
    finally:
        api.delete("basebench-test/alpine", "3.20")
        for image in docker_client.images.list(f"{infra.registry}/basebench-test/alpine"):
            docker_client.images.remove(image.id, force=True)


def test_a_tarball_without_alpine_release_is_rejected_before_anything(tmp_path: Path) -> None:
    rootfs = _minirootfs(tmp_path / "not-alpine.tar.gz", None)
    cache = tmp_path / "cache"
    with pytest.raises(InfraError, match=r"not-alpine\.tar\.gz: not an Alpine minirootfs"):
        up([], cache_dir=cache, port=free_port(), alpine_rootfs=rootfs)
    assert not cache.exists()
