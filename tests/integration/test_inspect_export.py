"""Inspect agrees with the image, file for file: its merged layers against ``docker export``.

The image deletes files of its base and of its own earlier layer at several depths
(whiteouts), empties and refills a directory (an opaque directory on overlay2), holds
dotfiles, a symlink, a hard link and a setuid file it made, and removes the base's
package manager and setuid files. What inspect reads from the saved archive must be
exactly what a container of the image holds, and its counts must be those of the export.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from tasks.hosts.config import HostConfig
from tasks.hosts.connection import connect
from tasks.readers.layers import merge_layers, read_archive, summarize_layer
from tasks.records import BuildResult, PulledImage
from tasks.stages.inspect import inspect_image
from tasks.stages.save import save_image

pytestmark = pytest.mark.integration

BASE = "127.0.0.1:5000/library/debian:bookworm-slim"
# What the engine adds to every container (its init layer), not part of the image.
INIT_LAYER = {
    ".",
    ".dockerenv",
    "dev",
    "dev/console",
    "dev/pts",
    "dev/shm",
    "etc",
    "etc/hostname",
    "etc/hosts",
    "etc/mtab",
    "etc/resolv.conf",
    "proc",
    "sys",
}
DOCKERFILE = f"""FROM {BASE}
RUN mkdir -p /srv/a/b/c/d /srv/gone/sub /srv/refill \\
 && for f in /srv/a/top /srv/a/.top /srv/a/b/mid /srv/a/b/c/d/deep /srv/a/b/c/d/.deep \\
             /srv/gone/sub/f /srv/gone/.g /srv/refill/old /srv/refill/.old /srv/.dot; do \\
      echo x > "$f"; done \\
 && ln -s /srv/a/top /srv/link && ln /srv/a/b/mid /srv/hard
RUN rm /srv/a/top /srv/a/b/c/d/deep /srv/a/b/c/d/.deep \\
 && rm -rf /srv/gone /srv/refill && mkdir /srv/refill && echo y > /srv/refill/.new \\
 && rm /etc/debian_version /usr/share/doc/dpkg/copyright /usr/lib/os-release \\
 && rm -rf /usr/share/doc/apt /var/lib/dpkg/info \\
 && rm /usr/bin/dpkg /usr/bin/apt /usr/bin/apt-get \\
 && find / -xdev -type f -perm -4000 -path '/usr/bin/*' -name 'ch*' -delete \\
 && echo s > /srv/a/b/setuid && chmod 4755 /srv/a/b/setuid && echo h > /root/.hidden \\
 && rm -rf /opt /home && echo t > /.topdot
"""


@pytest.fixture(scope="module")
def engine() -> Iterator[docker.DockerClient]:
    client = connect(HostConfig())
    client.images.pull(BASE)
    yield client
    client.close()


def _compared(path: str) -> bool:
    """Every path but the engine's: its init layer, and the device nodes under /dev, which
    a container gets from the runtime (an export writes them as the engine made them, not
    as the image's layer recorded them: 0o120666 against the layer's 0o100666 here)."""
    return path not in INIT_LAYER and not path.startswith("dev/")


def exported(engine: docker.DockerClient, image_id: str) -> dict[str, int]:
    """path -> mode (with type bits) of every entry of a container of the image."""
    container = engine.containers.create(image_id, command=["true"])
    try:
        stream = io.BytesIO(b"".join(container.export()))
    finally:
        container.remove(force=True)
    return summarize_layer(stream).entries


def test_inspect_agrees_with_docker_export_file_for_file(
    engine: docker.DockerClient, tmp_path: Path
) -> None:
    tag = f"basebench-export:{uuid.uuid4().hex[:10]}"
    image, _ = engine.images.build(
        fileobj=io.BytesIO(DOCKERFILE.encode()), tag=tag, network_mode="none", rm=True
    )
    try:
        archive = save_image.fn(engine, image.id, tmp_path)
        layers = read_archive(archive, image.attrs["RootFS"]["Layers"])
        merged = merge_layers(layers)
        build = BuildResult("run", image.id, tag, 0.1, None, None)
        base = PulledImage(BASE, None, forged=True)
        inspected = inspect_image.fn(engine, build, base, base, archive)
        container = exported(engine, image.id)
    finally:
        engine.images.remove(tag, force=True)
    # The layers did delete at several depths, in the base's and in their own files.
    deleted = {w for layer in layers for w in layer.whiteouts}
    assert {"srv/a/top", "srv/a/b/c/d/deep", "srv/a/b/c/d/.deep", "etc/debian_version"} <= (deleted)
    assert "usr/share/doc/dpkg/copyright" in deleted or "usr/share/doc/dpkg" in deleted
    assert {"opt", "home"} <= deleted  # top-level whiteouts: .wh.opt, .wh.home
    image_tree = {p: m for p, m in merged.items() if _compared(p)}
    container_tree = {p: m for p, m in container.items() if _compared(p)}
    only_inspect = sorted(image_tree.keys() - container_tree.keys())
    only_export = sorted(container_tree.keys() - image_tree.keys())
    assert (only_inspect, only_export) == ([], [])
    differing = {
        p: (oct(m), oct(container_tree[p])) for p, m in image_tree.items() if m != container_tree[p]
    }
    assert differing == {}
    # The gone, the refilled and the kept, as a container sees them.
    assert "srv/gone" not in container_tree and "srv/refill/old" not in container_tree
    assert "opt" not in container_tree and "home" not in container_tree
    assert {"srv/refill/.new", "srv/a/.top", "srv/.dot", "root/.hidden", "srv/hard", ".topdot"} <= (
        container_tree.keys()
    )
    # Inspect's findings are the export's.
    # The image's paths as the export holds them: a device node is a file whatever its
    # recorded type, and /etc/hosts is the image's file though the engine writes it.
    files = [p for p, m in container.items() if p in merged and not m & 0o040000]
    setuid = [p for p in files if container[p] & 0o170000 == 0o100000 and container[p] & 0o4000]
    assert inspected.files == len(files)
    assert inspected.setuid_files == len(setuid)
    assert "srv/a/b/setuid" in setuid
    assert inspected.has_shell is ("usr/bin/sh" in container_tree or "bin/sh" in container_tree)
    assert inspected.has_shell is True
    assert inspected.has_package_manager is False  # dpkg, apt, apt-get removed
    assert "usr/bin/dpkg" not in container_tree
