"""Files no package owns, on the forged bases, as inspect reads them from a saved image.

On bookworm the truth is computed apart, inside a container of the image, by the shell and
the kernel: every regular file minus what dpkg's lists name (``readlink -f`` resolving
merged /usr). distroless has no shell and the alpine stand-in no apk: their lists were
verified by hand against the image's files (``docker export``) and its ``.md5sums`` or
apk records, and are written out below.
"""

from __future__ import annotations

import tarfile
from pathlib import Path

import docker
import pytest

from tasks.readers.layers import image_files, read_archive, read_layer_facts, unowned_paths
from tasks.stages.save import save_image

pytestmark = pytest.mark.integration

REGISTRY = "127.0.0.1:5000"
# Every regular file outside dpkg's own folder that no dpkg list names, as the container
# sees it; the file system of the container alone (not /proc, /dev, mounts).
TRUTH = r"""
cat /var/lib/dpkg/info/*.list | while IFS= read -r path; do
  [ -f "$path" ] && [ ! -L "$path" ] && readlink -f "$path"
done | sort -u > /scratch/owned
find / -xdev -type f ! -path '/var/lib/dpkg/*' | sort > /scratch/all
comm -23 /scratch/all /scratch/owned
"""
# What the engine adds to a container of the image: not the image's files.
ENGINE_FILES = {"/.dockerenv", "/etc/hosts", "/etc/hostname", "/etc/resolv.conf"}
# distroless static (Debian 12): base-files' conffiles and those of netbase and
# media-types (a .deb's md5sums leave conffiles out), and the files the image's recipe
# writes (passwd, group, nsswitch.conf, the CA bundle). Verified by hand: the image's
# regular files in `docker export` against the paths in its status.d/*.md5sums.
DISTROLESS_STATIC = [
    "etc/debian_version",
    "etc/dpkg/origins/debian",
    "etc/ethertypes",
    "etc/group",
    "etc/host.conf",
    "etc/issue",
    "etc/issue.net",
    "etc/mime.types",
    "etc/nsswitch.conf",
    "etc/passwd",
    "etc/protocols",
    "etc/rpc",
    "etc/services",
    "etc/ssl/certs/ca-certificates.crt",
    "etc/update-motd.d/10-uname",
]
# The alpine stand-in: its apk records name every file but the release files, which
# Alpine's alpine-release package owns and the stand-in writes itself (no such record).
ALPINE = ["etc/alpine-release", "etc/issue", "etc/os-release"]


def unowned_in(client: docker.DockerClient, ref: str, folder: Path) -> list[str]:
    """The image's unowned files as inspect reads them, as absolute paths."""
    image = client.images.pull(ref)
    archive = save_image.fn(client, image.id, folder)
    diff_ids = image.attrs["RootFS"]["Layers"]
    layers = read_archive(archive, diff_ids)
    with tarfile.open(archive) as saved, image_files(saved, archive, layers) as files:
        found = unowned_paths(layers, files)
    assert read_layer_facts(archive, diff_ids, image.attrs["Config"]).unowned_files == len(found)
    return [f"/{path}" for path in found]


def test_debian_unowned_files_are_those_the_container_finds(
    docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    ref = f"{REGISTRY}/library/debian:bookworm"
    found = unowned_in(docker_client, ref, tmp_path)
    output = docker_client.containers.run(
        ref,
        ["sh", "-c", TRUTH],
        network_mode="none",
        tmpfs={"/scratch": ""},  # another file system: find -xdev leaves it out
        remove=True,
    )
    truth = output.decode().split()
    assert sorted(set(found) - ENGINE_FILES) == sorted(set(truth) - ENGINE_FILES)
    # The set-up's own files, on merged /usr (no /lib path, where dpkg's lists point).
    assert {"/etc/passwd", "/etc/ld.so.cache"} <= set(found)
    assert not [path for path in found if path.startswith(("/lib/", "/bin/", "/dev/"))]
    assert len(found) == 65  # as on 2026-12-07: a change of the forged image shows here


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("distroless/static-debian12:latest", DISTROLESS_STATIC),
        ("library/alpine:3.20", ALPINE),
    ],
)
def test_distroless_and_alpine_unowned_files(
    docker_client: docker.DockerClient, tmp_path: Path, ref: str, expected: list[str]
) -> None:
    assert unowned_in(docker_client, f"{REGISTRY}/{ref}", tmp_path) == [
        f"/{path}" for path in expected
    ]
