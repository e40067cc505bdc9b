"""The inspect stage on a real image: setuid_files and setuid_or_setgid_files as documented.

An image built FROM scratch on the machine's engine (no network) holds a setuid file, a
setgid file, a file with both bits, a plain file, a setgid directory and a symlink; the
archive the save stage writes is what inspect reads, as in a run.
"""

from __future__ import annotations

import io
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from tasks.hosts.config import HostConfig
from tasks.hosts.connection import connect
from tasks.records import BuildResult, PulledImage
from tasks.stages.inspect import inspect_image
from tasks.stages.save import save_image

pytestmark = pytest.mark.integration

# rootfs path -> mode; None marks a symlink to usr/bin/su.
ENTRIES: dict[str, int | None] = {
    "usr/bin/su": 0o4755,
    "usr/bin/chage": 0o2755,
    "usr/bin/both": 0o6755,
    "usr/bin/ls": 0o755,
    "usr/bin/su-link": None,
}


def rootfs() -> bytes:
    """A rootfs tar with the modes above and a setgid directory."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        mail = tarfile.TarInfo("var/mail")
        mail.type, mail.mode = tarfile.DIRTYPE, 0o2775
        tar.addfile(mail)
        for path, mode in ENTRIES.items():
            entry = tarfile.TarInfo(path)
            if mode is None:
                entry.type, entry.linkname, entry.mode = tarfile.SYMTYPE, "su", 0o777
                tar.addfile(entry)
            else:
                entry.size, entry.mode = 2, mode
                tar.addfile(entry, io.BytesIO(b"#!"))
    return buffer.getvalue()


def context() -> io.BytesIO:
    """A build context that ADDs the rootfs tar: the engine unpacks it keeping every mode
    bit, as a pulled layer keeps them (COPY would chown each file, and a chown clears
    setuid and setgid on Linux)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, data in (
            ("Dockerfile", b"FROM scratch\nADD rootfs.tar /\n"),
            ("rootfs.tar", rootfs()),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    buffer.seek(0)
    return buffer


@pytest.fixture(scope="module")
def engine() -> Iterator[docker.DockerClient]:
    client = connect(HostConfig())
    yield client
    client.close()


def test_inspect_counts_setuid_and_setuid_or_setgid_files(
    engine: docker.DockerClient, tmp_path: Path
) -> None:
    tag = f"basebench-privileged:{uuid.uuid4().hex[:10]}"
    image, _ = engine.images.build(
        fileobj=context(), custom_context=True, tag=tag, network_mode="none", rm=True
    )
    try:
        archive = save_image.fn(engine, image.id, tmp_path)
        build = BuildResult("run", image.id, tag, 0.1, None, None)
        scratch = PulledImage("scratch", None, forged=False)
        inspected = inspect_image.fn(engine, build, scratch, scratch, archive)
    finally:
        engine.images.remove(tag, force=True)
    assert inspected.setuid_files == 2  # su, both
    assert inspected.setuid_or_setgid_files == 3  # su, chage, both: not var/mail, not the link
    assert inspected.files == 5  # the four files and the symlink
