"""library/alpine from a user-supplied minirootfs tarball (how the official image is made).

Alpine cannot be forged from Debian packages; with its minirootfs the import is faithful.
"""

from __future__ import annotations

import hashlib
import tarfile
from pathlib import Path

from infra.errors import InfraError
from infra.forge.apt import AptIndex
from infra.forge.recipe import Output, Recipe, Rootfs

RELEASE = "etc/alpine-release"
APK_DB = "lib/apk/db/installed"


class AlpineRecipe(Recipe):
    """``library/alpine:<major.minor>`` imported as-is from ``rootfs`` (.tar or .tar.gz)."""

    def __init__(self, rootfs: Path, repository: str = "library/alpine") -> None:
        self.rootfs = rootfs
        release, self.apk = _read_minirootfs(rootfs)
        tag = ".".join(release.split(".")[:2])
        self.repository = repository
        self.upstream = f"docker.io/library/alpine:{tag}"
        self.outputs = (
            Output(
                tag,
                (
                    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    'CMD ["/bin/sh"]',
                ),
            ),
        )
        self.sha256 = hashlib.sha256(rootfs.read_bytes()).hexdigest()

    def hash_inputs(self) -> dict[str, str]:
        return {"rootfs-sha256": self.sha256}

    def resolve(self, apt: AptIndex) -> dict[str, str]:
        """The apk packages of the minirootfs (no Debian packages)."""
        return dict(self.apk)

    def build(self, apt: AptIndex, packages: dict[str, str], workdir: Path) -> Rootfs:
        # The engine's import reads .tar and .tar.gz alike: nothing to build.
        return Rootfs(self.rootfs, dict(packages))


def _read_minirootfs(path: Path) -> tuple[str, dict[str, str]]:
    release, installed = "", ""
    try:
        with tarfile.open(path) as tar:
            for member in tar:
                name = member.name.removeprefix("./")
                if name in (RELEASE, APK_DB) and member.isfile():
                    handle = tar.extractfile(member)
                    text = handle.read().decode() if handle else ""
                    release, installed = (text, installed) if name == RELEASE else (release, text)
    except (OSError, tarfile.TarError) as exc:
        raise InfraError(f"alpine rootfs {path}: cannot read as a tarball: {exc}") from exc
    if not release.strip():
        raise InfraError(f"alpine rootfs {path}: not an Alpine minirootfs (no {RELEASE})")
    return release.strip(), parse_apk_installed(installed)


def parse_apk_installed(text: str) -> dict[str, str]:
    """name -> version from an apk ``installed`` database (``P:`` and ``V:`` lines)."""
    packages: dict[str, str] = {}
    for stanza in text.split("\n\n"):
        fields = dict(line.split(":", 1) for line in stanza.splitlines() if line[1:2] == ":")
        if "P" in fields and "V" in fields:
            packages[fields["P"]] = fields["V"]
    return dict(sorted(packages.items()))
