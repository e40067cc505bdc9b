"""The analysis toolbox: a volume on each build host holding what its analysis container runs.

Analysis on the host (``tasks.stages.analyse_on_host``) runs a distroless python3 image
with this volume mounted read-only at ``TOOLBOX_MOUNT``: basebench's layer-reading
modules and pyelftools under ``python/``, and the scanner's ``portable_files`` (trivy
and its DB). The volume is named by a hash of its contents, so a host receives it once
per code and DB version and never runs a stale one; ``install_toolbox`` removes the
toolbox volumes of other versions once no run can still be using them.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import docker
import docker.errors
import elftools
from docker.types import Mount

import tasks
from tasks import labels
from tasks.catalogue import load_catalogue
from tasks.containers.analysis import ENGINE_SOCKET, TOOLBOX_MOUNT
from tasks.matrix import apply_mirror
from tasks.scanners.base import Scanner
from tasks.stages.analyse_on_host import HostAnalysis

# The image the analysis container runs: Python 3 and no shell, in the catalogue already.
ANALYSIS_BASE = "distroless-python3-debian13"
# What the analysis container imports: tasks.containers.analysis and its imports.
PYTHON_MODULES = (
    "__init__.py",
    "records.py",
    "readers/__init__.py",
    "readers/layers.py",
    "readers/program.py",
    "containers/__init__.py",
    "containers/analysis.py",
)
# Another run on the host (a nightly started before a DB update) may still use its own
# toolbox: other versions go only once older than any run lasts.
KEEP_OTHER_VERSIONS = timedelta(days=1)
_COMPLETE = ".complete"  # written last: a volume without it was filled only in part


def analysis_image(mirrors: dict[str, str]) -> str:
    """The analysis image's reference, through the run's registry mirrors."""
    return apply_mirror(load_catalogue().base(ANALYSIS_BASE).ref, mirrors)


@dataclass(frozen=True)
class Toolbox:
    """The toolbox as a local tar file, and the digest of what it holds."""

    archive: Path
    digest: str

    @property
    def volume(self) -> str:
        return f"basebench-toolbox-{self.digest[:16]}"


def toolbox_files(scanner: Scanner) -> dict[str, Path]:
    """Every file of the toolbox: its path in the volume -> the local file."""
    package = Path(tasks.__file__).parent
    files = {f"python/tasks/{name}": package / name for name in PYTHON_MODULES}
    elftools_dir = Path(elftools.__file__).parent
    files |= {
        f"python/elftools/{path.relative_to(elftools_dir)}": path
        for path in sorted(elftools_dir.rglob("*.py"))
    }
    for name, local in scanner.portable_files().items():
        if local.is_dir():
            files |= {
                f"{name}/{path.relative_to(local)}": path
                for path in sorted(local.rglob("*"))
                if path.is_file()
            }
        else:
            files[name] = local
    return files


def pack_toolbox(scanner: Scanner, folder: Path) -> Toolbox:
    """The toolbox tar in ``folder``, written unless one with the same contents is there."""
    files = toolbox_files(scanner)
    digest = hashlib.sha256()
    for name, path in sorted(files.items()):
        digest.update(name.encode() + b"\0")
        with path.open("rb") as content:
            digest.update(hashlib.file_digest(content, "sha256").digest())
    toolbox = Toolbox(folder / f"toolbox-{digest.hexdigest()[:16]}.tar", digest.hexdigest())
    if not toolbox.archive.exists():
        folder.mkdir(parents=True, exist_ok=True)
        # Written aside, then renamed: another run packing the same toolbox reads it whole.
        partial = Path(tempfile.mkstemp(prefix=toolbox.archive.stem, dir=folder)[1])
        with tarfile.open(partial, "w") as tar:
            for name, path in sorted(files.items()):
                tar.add(path, arcname=name, recursive=False)
            marker = tarfile.TarInfo(_COMPLETE)
            marker.size = len(toolbox.digest)
            tar.addfile(marker, io.BytesIO(toolbox.digest.encode()))
        partial.replace(toolbox.archive)
        for older in folder.glob("toolbox-*.tar"):  # 170 MB each, of code or DBs gone by
            if older != toolbox.archive:
                older.unlink(missing_ok=True)
    return toolbox


def install_toolbox(
    client: docker.DockerClient,
    toolbox: Toolbox,
    image: str,
    socket: str,
    keep_others: timedelta = KEEP_OTHER_VERSIONS,
) -> HostAnalysis:
    """Give the host the toolbox volume (``image`` is the analysis image, already pulled),
    and remove the toolbox volumes of other versions older than ``keep_others``.
    Fails when the engine's ``socket`` is not there to mount."""
    with _volume_container(client, toolbox.volume, image, socket) as container:
        try:
            container.get_archive(f"{TOOLBOX_MOUNT}/{_COMPLETE}")
        except docker.errors.NotFound:
            with toolbox.archive.open("rb") as archive:
                container.put_archive(TOOLBOX_MOUNT, archive)
    now = datetime.now(UTC)
    for volume in client.volumes.list(filters={"label": labels.TOOLBOX}):
        created = datetime.fromisoformat(volume.attrs["CreatedAt"])
        if volume.name != toolbox.volume and now - created > keep_others:
            with contextlib.suppress(docker.errors.APIError):  # in use after all
                volume.remove()
    return HostAnalysis(image=image, toolbox=toolbox.volume, socket=socket)


@contextlib.contextmanager
def _volume_container(
    client: docker.DockerClient, volume: str, image: str, socket: str
) -> Iterator[docker.models.containers.Container]:
    """A container, never started, with ``volume`` at ``TOOLBOX_MOUNT``: files go in and
    out of a volume through a container. The engine refuses to create it when ``socket``
    is missing, as it would refuse every analysis container."""
    client.volumes.create(volume, labels={labels.TOOLBOX: "true"})
    container = client.containers.create(
        image,
        mounts=[
            Mount(TOOLBOX_MOUNT, volume, type="volume"),
            Mount(ENGINE_SOCKET, socket, type="bind"),
        ],
        network_mode="none",
    )
    try:
        yield container
    finally:
        container.remove(force=True)
