"""distroless stand-ins (static, base, cc, python3, nodejs, java): unpacked .debs.

As upstream (rules_distroless): each package's files plus its control file in
/var/lib/dpkg/status.d/<pkg> and <pkg>.md5sums; no maintainer scripts, no
/var/lib/dpkg/status, no shell, no dpkg; root, nobody and nonroot (65532) users. Which
packages each image holds is data (tasks/catalogue.yaml, after upstream's config.bzl).
"""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from infra.errors import InfraError
from infra.forge.apt import AptIndex
from infra.forge.recipe import Output, Recipe, Rootfs
from tasks.programs import find_program

STATIC_PACKAGES = ("base-files", "netbase", "tzdata", "media-types", "ca-certificates")
BASE_PACKAGES = (*STATIC_PACKAGES, "libc6", "libssl3")
NONROOT = 65532

PASSWD = (
    "root:x:0:0:root:/root:/sbin/nologin\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"
    f"nonroot:x:{NONROOT}:{NONROOT}:nonroot:/home/nonroot:/sbin/nologin\n"
)
GROUP = f"root:x:0:\nnobody:x:65534:\ntty:x:5:\nstaff:x:50:\nnonroot:x:{NONROOT}:\n"
NSSWITCH = "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\nnetworks: files\n"
CA_BUNDLE = "./etc/ssl/certs/ca-certificates.crt"
# Left out like upstream: docs (except copyright), man pages, the CA update script.
DROPPED = ("./usr/share/man/", "./usr/share/info/", "./usr/sbin/update-ca-certificates")

COMMON_ENV = (
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
)


class DistrolessRecipe(Recipe):
    """``distroless/<flavour>-<generation>`` with tags ``latest`` and ``nonroot``.

    ``packages`` are taken exactly (upstream lists each one); ``with_dependencies`` are
    taken with everything they depend on (where Debian's packaging of a runtime differs
    from the tarball upstream unpacks). ``symlinks`` (path -> target), ``entrypoint`` and
    ``env`` complete a language image as upstream configures it.
    """

    def __init__(
        self,
        flavour: str,
        suite: str = "bookworm",
        generation: str = "debian12",
        packages: Sequence[str] | None = None,
        with_dependencies: Sequence[str] = (),
        symlinks: Mapping[str, str] | None = None,
        entrypoint: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        deviation: str | None = None,
    ) -> None:
        if packages is None:
            if flavour not in ("static", "base"):
                raise ValueError(f"distroless {flavour!r}: give its packages")
            packages = STATIC_PACKAGES if flavour == "static" else BASE_PACKAGES
        self.flavour = flavour
        self.suite = suite
        self.wanted = tuple(packages)
        self.with_dependencies = tuple(with_dependencies)
        self.symlinks = dict(symlinks or {})
        self.deviation = deviation
        self.repository = f"distroless/{flavour}-{generation}"
        self.upstream = f"gcr.io/distroless/{flavour}-{generation}"
        settings = [f"ENV {k}={v}" for k, v in (env or {}).items()]
        if entrypoint:
            settings.append(f"ENTRYPOINT {json.dumps(list(entrypoint))}")
        self.outputs = (
            Output("latest", (*COMMON_ENV, *settings, "USER 0", "WORKDIR /")),
            Output("nonroot", (*COMMON_ENV, *settings, f"USER {NONROOT}", "WORKDIR /home/nonroot")),
        )

    def hash_inputs(self) -> dict[str, str]:
        # Only what the packages and outputs do not already say (none for static and base).
        inputs = {}
        if self.symlinks:
            inputs["symlinks"] = json.dumps(self.symlinks, sort_keys=True)
        if self.with_dependencies:
            inputs["with-dependencies"] = " ".join(self.with_dependencies)
        return inputs

    def resolve(self, apt: AptIndex) -> dict[str, str]:
        packages = apt.candidates(self.wanted)
        if self.with_dependencies:
            packages |= apt.resolve(self.with_dependencies)
        return dict(sorted(packages.items()))

    def build(self, apt: AptIndex, packages: dict[str, str], workdir: Path) -> Rootfs:
        debs = apt.download(packages, workdir / "debs")
        tarball = workdir / "rootfs.tar"
        with tarfile.open(tarball, "w", format=tarfile.GNU_FORMAT) as out:
            seen: set[str] = set()
            for entry in _skeleton():
                _add(out, seen, entry)
            certs: list[bytes] = []
            merged: dict[str, str] = {}
            # base-files first: from Debian 13 on it ships the merged-/usr links (/lib ->
            # usr/lib), and a path below such a link must be written below its target.
            for name in sorted(debs, key=lambda n: (n != "base-files", n)):
                for member, data in _deb_files(debs[name]):
                    member.name = _below_links(member.name, merged)
                    if member.issym() and member.name in MERGED_USR:
                        merged[member.name + "/"] = f"./{member.linkname}/"
                    if member.name.startswith("./usr/share/ca-certificates/") and data:
                        certs.append(data)
                    _add(out, seen, (member, data))
                for entry in _metadata(name, debs[name]):
                    _add(out, seen, entry)
            if certs:  # what update-ca-certificates would have generated
                _add(out, seen, _file(CA_BUNDLE, b"".join(certs)))
            for path, target in sorted(self.symlinks.items()):
                for parent in _parents("." + path):
                    _add(out, seen, _dir(parent))
                _add(out, seen, _symlink("." + path, target))
        return Rootfs(tarball, dict(packages))


MERGED_USR = ("./bin", "./lib", "./lib64", "./sbin")


def _below_links(name: str, merged: dict[str, str]) -> str:
    for link, target in merged.items():
        if name.startswith(link):
            return target + name[len(link) :]
    return name


def _parents(name: str) -> list[str]:
    parts = name.split("/")
    return ["/".join(parts[:i]) for i in range(2, len(parts))]


def _symlink(name: str, target: str) -> Entry:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = tarfile.SYMTYPE, target, 0o777
    return info, None


Entry = tuple[tarfile.TarInfo, bytes | None]


def _add(out: tarfile.TarFile, seen: set[str], entry: Entry) -> None:
    member, data = entry
    name = member.name.rstrip("/")
    if name in seen or name.startswith(DROPPED) or _is_dropped_doc(name):
        return
    seen.add(name)
    member.name = name
    out.addfile(member, io.BytesIO(data) if data is not None else None)


def _is_dropped_doc(name: str) -> bool:
    return (
        name.startswith("./usr/share/doc/")
        and name.count("/") > 4
        and not name.endswith("/copyright")
    )


def _deb_files(deb: Path) -> Iterator[Entry]:
    """The members of a .deb's data archive, file contents in memory (they are small)."""
    proc = subprocess.Popen(
        [find_program("dpkg-deb"), "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE
    )
    assert proc.stdout is not None
    with tarfile.open(fileobj=proc.stdout, mode="r|") as data:
        for member in data:
            member.name = "./" + member.name.removeprefix("./")
            content = data.extractfile(member).read() if member.isfile() else None  # type: ignore[union-attr]
            yield member, content
    if proc.wait() != 0:
        raise InfraError(f"dpkg-deb --fsys-tarfile {deb.name} failed")


def _metadata(name: str, deb: Path) -> list[Entry]:
    control = _run(["dpkg-deb", "--field", str(deb)])
    md5sums = b""
    with tarfile.open(fileobj=io.BytesIO(_run(["dpkg-deb", "--ctrl-tarfile", str(deb)]))) as ctl:
        for member in ctl:
            if member.name.removeprefix("./") == "md5sums":
                md5sums = ctl.extractfile(member).read()  # type: ignore[union-attr]
    status_d = "./var/lib/dpkg/status.d"
    return [_file(f"{status_d}/{name}", control), _file(f"{status_d}/{name}.md5sums", md5sums)]


def _run(argv: list[str]) -> bytes:
    proc = subprocess.run([find_program(argv[0]), *argv[1:]], capture_output=True)
    if proc.returncode != 0:
        raise InfraError(f"{' '.join(argv[:2])} failed: {proc.stderr.decode().strip()}")
    return proc.stdout


def _skeleton() -> list[Entry]:
    return [
        _dir("./etc"),
        _file("./etc/passwd", PASSWD.encode()),
        _file("./etc/group", GROUP.encode()),
        _file("./etc/nsswitch.conf", NSSWITCH.encode()),
        _dir("./root", 0o700),
        _dir("./home"),
        _dir("./home/nonroot", 0o700, NONROOT),
        _dir("./tmp", 0o1777),
        _dir("./var"),
        _dir("./var/lib"),
        _dir("./var/lib/dpkg"),
        _dir("./var/lib/dpkg/status.d"),
    ]


def _dir(name: str, mode: int = 0o755, owner: int = 0) -> Entry:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.uid, info.gid = tarfile.DIRTYPE, mode, owner, owner
    return info, None


def _file(name: str, data: bytes, mode: int = 0o644) -> Entry:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), mode
    return info, data
