"""debian:bookworm and bookworm-slim stand-ins, built by mmdebstrap like the official ones."""

from __future__ import annotations

import fnmatch
import io
import os
import shutil
import subprocess
import tarfile
from pathlib import Path, PurePosixPath

from infra.errors import InfraError
from infra.forge.apt import AptIndex
from infra.forge.recipe import Output, Recipe, Rootfs, recipe_hash
from tasks.programs import find_program

MERGED_USR_HOOK = Path("/usr/share/mmdebstrap/hooks/merged-usr")

# The official image's apt/dpkg settings (debuerreotype), one file each as upstream.
OFFICIAL_SETTINGS = {
    "/etc/apt/apt.conf.d/docker-autoremove-suggests": (
        'Apt::AutoRemove::SuggestsImportant "false";\n'
    ),
    "/etc/apt/apt.conf.d/docker-clean": (
        'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb '
        '/var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };\n'
        'APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb '
        '/var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };\n'
        'Dir::Cache::pkgcache "";\nDir::Cache::srcpkgcache "";\n'
    ),
    "/etc/apt/apt.conf.d/docker-gzip-indexes": 'Acquire::GzipIndexes "true";\n',
    "/etc/apt/apt.conf.d/docker-no-languages": 'Acquire::Languages "none";\n',
    "/etc/dpkg/dpkg.cfg.d/docker-apt-speedup": "force-unsafe-io\n",
}  # fmt: skip

# debuerreotype's slimify list: what bookworm-slim leaves out.
SLIM_DPKG_OPTIONS = (
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/groff/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/linda/*",
    "path-exclude=/usr/share/lintian/overrides/*",
    "path-exclude=/usr/share/locale/*",
    "path-exclude=/usr/share/man/*",
)

# Where mmdebstrap leaves its --dpkgopt settings; the slim rootfs keeps them there.
SLIM_SETTINGS = "/etc/dpkg/dpkg.cfg.d/99mmdebstrap"

DEBIAN_ENV = ("ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",)


class DebianRecipe(Recipe):
    """``library/debian:<suite>[-slim]``: mmdebstrap minbase with the official settings.

    Slim is the full rootfs with debuerreotype's slimify applied, as upstream makes it:
    with ``rootfs_cache`` the full rootfs of the same packages is built once and kept, so
    forging debian:<suite> and debian:<suite>-slim runs mmdebstrap once.
    """

    def __init__(
        self, suite: str = "bookworm", slim: bool = False, rootfs_cache: Path | None = None
    ) -> None:
        self.suite = suite
        self.slim = slim
        self.rootfs_cache = rootfs_cache
        self.shares = f"debian-{suite}" if rootfs_cache else None
        tag = f"{suite}-slim" if slim else suite
        self.repository = "library/debian"
        self.upstream = f"docker.io/library/debian:{tag}"
        self.outputs = (Output(tag, (*DEBIAN_ENV, 'CMD ["bash"]')),)

    def include(self) -> tuple[str, ...]:
        """Packages beyond minbase (none for plain debian)."""
        return ()

    def resolve(self, apt: AptIndex) -> dict[str, str]:
        # The merged-usr hook installs usr-is-merged; without it apt would pick usrmerge (+perl).
        return apt.resolve([*apt.required(), "apt", "usr-is-merged", *self.include()])

    def build(self, apt: AptIndex, packages: dict[str, str], workdir: Path) -> Rootfs:
        tarball = workdir / "rootfs.tar"
        full = self._full_rootfs(apt, packages, workdir)
        if self.slim:
            slimify(full, tarball)
        elif full != tarball:
            shutil.copyfile(full, tarball)
        return Rootfs(tarball, installed_packages(tarball))

    def _full_rootfs(self, apt: AptIndex, packages: dict[str, str], workdir: Path) -> Path:
        cached = None
        if self.rootfs_cache is not None:
            key = recipe_hash({"part": "debian-full", "suite": self.suite}, packages)
            cached = self.rootfs_cache / f"{self.shares}-{key}.tar"
            if cached.exists():
                return cached
        full = workdir / ("full.tar" if self.slim else "rootfs.tar")
        mmdebstrap(apt.sources, self.suite, self.include(), False, full, workdir)
        if cached is None:
            return full
        keep_only(full, cached, f"{self.shares}-*.tar")
        return cached


def keep_only(tarball: Path, cached: Path, pattern: str) -> None:
    """Copy ``tarball`` to ``cached`` atomically; drop the older files of ``pattern``."""
    cached.parent.mkdir(parents=True, exist_ok=True)
    for old in cached.parent.glob(pattern):
        old.unlink()
    partial = cached.with_suffix(".partial")
    shutil.copyfile(tarball, partial)
    partial.rename(cached)


def slimify(full: Path, out: Path) -> None:
    """``out``: rootfs ``full`` without what the slim variant leaves out, plus the dpkg
    settings that keep later installs slim (what debuerreotype-slimify does upstream)."""
    excludes = [o.split("=", 1)[1] for o in SLIM_DPKG_OPTIONS if o.startswith("path-exclude=")]
    includes = [o.split("=", 1)[1] for o in SLIM_DPKG_OPTIONS if o.startswith("path-include=")]

    def dropped(path: str) -> bool:
        return any(fnmatch.fnmatchcase(path, p) for p in excludes) and not any(
            fnmatch.fnmatchcase(path, p) for p in includes
        )

    with tarfile.open(full) as tar:
        members = tar.getmembers()
        # Folders that hold a kept file stay, as dpkg makes them for an included file.
        kept = {"/" + m.name.removeprefix("./").rstrip("/") for m in members}
        kept = {p for p in kept if not dropped(p)}
        parents = {str(PurePosixPath(p).parent) for p in kept}
        while True:
            more = {str(PurePosixPath(p).parent) for p in parents} - parents
            if not more:
                break
            parents |= more
        settings = "".join(f"{option}\n" for option in SLIM_DPKG_OPTIONS).encode()
        with tarfile.open(out, "w", format=tarfile.GNU_FORMAT) as slim:
            for member in members:
                path = "/" + member.name.removeprefix("./").rstrip("/")
                if path in kept or (member.isdir() and path in parents):
                    data = tar.extractfile(member) if member.isfile() else None
                    slim.addfile(member, data)
            info = tarfile.TarInfo(f"./{SLIM_SETTINGS.lstrip('/')}")
            info.size, info.mode = len(settings), 0o644
            slim.addfile(info, io.BytesIO(settings))


def mmdebstrap(
    sources: Path,
    suite: str,
    include: tuple[str, ...],
    slim: bool,
    out: Path,
    workdir: Path,
    essential_hooks: tuple[str, ...] = (),
) -> None:
    """Build a minbase rootfs tarball ``out`` from ``sources`` (the host's apt sources).

    ``essential_hooks``: shell commands run once the essential packages are in, before
    ``include`` is installed (``$1`` is the root).
    """
    settings = workdir / "settings"
    settings.mkdir()
    hooks = []
    for n, (target, content) in enumerate(OFFICIAL_SETTINGS.items()):
        (settings / str(n)).write_text(content)
        hooks.append(f"--customize-hook=upload {settings / str(n)} {target}")
    argv = [
        find_program("mmdebstrap"),
        "--quiet",
        "--mode=root",
        "--variant=minbase",
        "--format=tar",
        f"--hook-dir={MERGED_USR_HOOK}",
        *hooks,
        # apt's binary caches (~70 MB) are not in the official image either.
        '--customize-hook=rm -f "$1"/var/cache/apt/*.bin',
    ]
    argv += [f"--essential-hook={hook}" for hook in essential_hooks]
    if include:
        argv.append("--include=" + ",".join(include))
    if slim:
        argv += [f"--dpkgopt={option}" for option in SLIM_DPKG_OPTIONS]
    argv += [suite, str(out), str(sources)]
    proc = subprocess.run(argv, capture_output=True, text=True, env=_tmp_env(workdir))
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines() or ["(no output)"]
        # mmdebstrap's own last line says only that it failed; the cause (a maintainer
        # script, a missing package) is the first error line before it.
        causes = [line for line in lines if "error" in line.lower() and "mmdebstrap" not in line]
        raise InfraError(f"mmdebstrap {suite} failed: {causes[0] if causes else lines[-1]}")


def _tmp_env(workdir: Path) -> dict[str, str]:
    tmp = workdir / "tmp"
    tmp.mkdir(exist_ok=True)
    return {**os.environ, "TMPDIR": str(tmp)}


def installed_packages(tarball: Path) -> dict[str, str]:
    """name -> version of every installed package in a rootfs tarball's dpkg status."""
    with tarfile.open(tarball) as tar:
        for member in tar:
            if member.name.removeprefix("./") == "var/lib/dpkg/status":
                data = tar.extractfile(member)
                assert data is not None
                return parse_status(data.read().decode())
    raise InfraError(f"{tarball}: no var/lib/dpkg/status")


def parse_status(text: str) -> dict[str, str]:
    """name -> version of the installed stanzas of a dpkg status file."""
    packages = {}
    for stanza in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in stanza.splitlines() if ": " in line[:40])
        if "Package" in fields and fields.get("Status", "").endswith(" installed"):
            packages[fields["Package"]] = fields["Version"]
    return dict(sorted(packages.items()))
