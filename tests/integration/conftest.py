"""Shared integration fixtures: the offline image supply (engine, registry, forged images)."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from infra.up import InfraState, up

GO_VERSIONS = ("1.22.10", "1.25.5")


@pytest.fixture(scope="session")
def infra() -> InfraState:
    """``infra up`` for Go 1.22.10 and 1.25.5 (reuses everything when already up).

    Has ``docker_url``, ``registry`` ("127.0.0.1:5000"), ``cache_dir`` and ``steps``.
    """
    return up(list(GO_VERSIONS))


@pytest.fixture(scope="session")
def docker_client(infra: InfraState) -> Iterator[docker.DockerClient]:
    """A client of the engine ``infra`` uses."""
    client = docker.DockerClient(base_url=infra.docker_url, timeout=900)
    client.api.trust_env = False
    yield client
    client.close()


def image_files(client: docker.DockerClient, ref: str) -> dict[str, tarfile.TarInfo]:
    """Every path in the filesystem of image ``ref`` (via an exported, never started container)."""
    container = client.containers.create(ref, command=["/nonexistent"], network_mode="none")
    try:
        data = b"".join(container.export())
    finally:
        container.remove(force=True)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name.removeprefix("./").rstrip("/"): m for m in tar.getmembers()}


def read_file(client: docker.DockerClient, ref: str, path: str) -> str:
    """The text of ``path`` inside image ``ref``."""
    container = client.containers.create(ref, command=["/nonexistent"], network_mode="none")
    try:
        stream, _ = container.get_archive(path)
        data = b"".join(stream)
    finally:
        container.remove(force=True)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        member = tar.next()
        assert member is not None
        handle = tar.extractfile(member)
        assert handle is not None
        return handle.read().decode()


def marked_pids(variable: str, marker: str) -> set[int]:
    """Processes whose environment has ``variable=marker``: a test's own and everything
    they spawned, never those of another checkout's run on this machine."""
    needle = f"{variable}={marker}".encode()
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                pids.add(int(entry.name))
        except OSError:  # gone, or a zombie
            continue
    return pids
