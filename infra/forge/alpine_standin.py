"""library/alpine:3.20 stand-in from Debian's musl and busybox-static packages.

Alpine's own packages cannot be fetched here. The official image is Alpine's minirootfs:
musl, busybox (with its applet links and /bin/sh), alpine-baselayout, the CA bundle,
OpenSSL's libraries, apk-tools and a few more, with ``/etc/alpine-release``,
``/etc/os-release`` and apk's installed database ``/lib/apk/db/installed``. This recipe
lays out the same tree from Debian trixie's packages, whose musl is the 1.2.5 Alpine
3.20 ships:

- musl: Debian's ``libc.so`` as ``/lib/ld-musl-x86_64.so.1`` with the
  ``libc.musl-x86_64.so.1`` link, Alpine's paths;
- busybox: Debian's ``busybox-static`` as ``/bin/busybox`` plus one absolute symlink per
  applet (what Alpine's ``busybox --install -s`` trigger makes), ``/bin/sh`` among them;
- alpine-baselayout: the directory tree, users, groups and profile;
- the CA bundle, concatenated from Debian's ca-certificates (what update-ca-certificates
  generates);
- the release files and the apk database, naming these by Alpine's package names and
  Alpine 3.20.3's versions, so Trivy reports ``alpine 3.20.3`` and Alpine advisories
  (keyed by origin: openssl for libcrypto3 and libssl3) apply.

What differs from upstream is in ``DEVIATION`` (the image's deviation label).
"""

from __future__ import annotations

import io
import subprocess
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from infra.errors import InfraError
from infra.forge.apt import AptIndex
from infra.forge.recipe import Output, Recipe, Rootfs
from infra.forge.sources import HOST_SUITE, for_suite
from tasks.programs import find_program

RELEASE = "3.20.3"
TAG = "3.20"
# Debian 13's musl is 1.2.5, the version Alpine 3.20 ships (bookworm's is 1.2.3).
SUITE = "trixie"
DEBIAN_PACKAGES = ("busybox-static", "ca-certificates", "musl")
ARCH = "x86_64"
# Bump when the layout below changes, so the image is rebuilt.
STANDIN_VERSION = "1"

LOADER = "lib/ld-musl-x86_64.so.1"
BUSYBOX = "bin/busybox"
CA_BUNDLE = "etc/ssl/certs/ca-certificates.crt"
APK_DB = "lib/apk/db/installed"
# Applets Debian builds in and Alpine's busybox leaves out: package managers (a link
# named rpm or dpkg would make the image look like it has one) and the initrd's linuxrc.
LEFT_OUT_APPLETS = frozenset(
    {"linuxrc", "bin/rpm", "usr/bin/rpm2cpio", "usr/bin/dpkg", "usr/bin/dpkg-deb"}
)

DEVIATION = (
    "alpine 3.20.3 stand-in from Debian trixie packages; the apk database names Alpine's"
    " packages and versions: musl 1.2.5-r0 is Debian's musl 1.2.5 build; busybox"
    " 1.36.1-r29 is Debian's busybox-static 1.37 (linked statically against glibc, no"
    " rpm/dpkg applet links); ca-certificates-bundle holds Debian's CA bundle;"
    " libcrypto3 and libssl3 3.3.2-r0 are recorded without their files (Debian has no"
    " musl build of OpenSSL); alpine-keys, apk-tools (no apk), musl-utils, scanelf,"
    " ssl_client and zlib are absent"
)


@dataclass(frozen=True)
class ApkRecord:
    """One package of the apk installed database: Alpine's name, version and origin."""

    name: str
    version: str
    origin: str
    description: str
    license: str
    files: tuple[str, ...] = ()  # the paths it owns in the image (none: recorded only)


# alpine-baselayout-data's files under /etc.
ETC_DATA = ("group", "hostname", "hosts", "nsswitch.conf", "passwd", "profile", "shadow", "shells")

# Alpine 3.20.3's minirootfs packages that this image holds (or, for OpenSSL, records).
APK_RECORDS = (
    ApkRecord(
        "alpine-baselayout",
        "3.6.5-r0",
        "alpine-baselayout",
        "Alpine base dir structure and init scripts",
        "GPL-2.0-only",
        ("etc/motd",),
    ),
    ApkRecord(
        "alpine-baselayout-data",
        "3.6.5-r0",
        "alpine-baselayout",
        "Alpine base dir structure and init scripts",
        "GPL-2.0-only",
        tuple(f"etc/{n}" for n in ETC_DATA),
    ),
    ApkRecord(
        "busybox",
        "1.36.1-r29",
        "busybox",
        "Size optimized toolbox of many common UNIX utilities",
        "GPL-2.0-only",
        (BUSYBOX,),
    ),
    ApkRecord(
        "busybox-binsh",
        "1.36.1-r29",
        "busybox",
        "busybox ash /bin/sh",
        "GPL-2.0-only",
        ("bin/sh",),
    ),
    ApkRecord(
        "ca-certificates-bundle",
        "20240705-r0",
        "ca-certificates",
        "Pre generated bundle of Mozilla certificates",
        "MPL-2.0 AND MIT",
        (CA_BUNDLE,),
    ),
    ApkRecord("libcrypto3", "3.3.2-r0", "openssl", "Crypto library from openssl", "Apache-2.0"),
    ApkRecord("libssl3", "3.3.2-r0", "openssl", "SSL shared libraries", "Apache-2.0"),
    ApkRecord(
        "musl",
        "1.2.5-r0",
        "musl",
        "the musl c library (libc) implementation",
        "MIT",
        (LOADER, "lib/libc.musl-x86_64.so.1"),
    ),
)

OS_RELEASE = f"""\
NAME="Alpine Linux"
ID=alpine
VERSION_ID={RELEASE}
PRETTY_NAME="Alpine Linux v{TAG}"
HOME_URL="https://alpinelinux.org/"
BUG_REPORT_URL="https://gitlab.alpinelinux.org/alpine/aports/-/issues"
"""

# alpine-baselayout's tree; (path, mode), parents first.
DIRECTORIES = (
    *((d, 0o755) for d in ("bin", "dev", "etc", "etc/apk", "etc/profile.d", "etc/ssl")),
    *((d, 0o755) for d in ("etc/ssl/certs", "home", "lib", "lib/apk", "lib/apk/db")),
    *((d, 0o755) for d in ("media", "mnt", "opt", "proc")),
    ("root", 0o700),
    *((d, 0o755) for d in ("run", "run/lock", "sbin", "srv", "sys")),
    ("tmp", 0o1777),
    *((d, 0o755) for d in ("usr", "usr/bin", "usr/lib", "usr/local", "usr/local/bin")),
    *((d, 0o755) for d in ("usr/local/lib", "usr/local/share", "usr/sbin", "usr/share")),
    *((d, 0o755) for d in ("var", "var/cache", "var/empty", "var/lib", "var/local")),
    *((d, 0o755) for d in ("var/log", "var/mail", "var/opt", "var/spool")),
    ("var/tmp", 0o1777),
)
LINKS = {"var/run": "../run", "var/lock": "../run/lock"}

USERS = (
    ("root", 0, 0, "root", "/root", "/bin/sh"),
    ("bin", 1, 1, "bin", "/bin", "/sbin/nologin"),
    ("daemon", 2, 2, "daemon", "/sbin", "/sbin/nologin"),
    ("lp", 4, 7, "lp", "/var/spool/lpd", "/sbin/nologin"),
    ("sync", 5, 0, "sync", "/sbin", "/bin/sync"),
    ("shutdown", 6, 0, "shutdown", "/sbin", "/sbin/shutdown"),
    ("halt", 7, 0, "halt", "/sbin", "/sbin/halt"),
    ("mail", 8, 12, "mail", "/var/mail", "/sbin/nologin"),
    ("news", 9, 13, "news", "/usr/lib/news", "/sbin/nologin"),
    ("uucp", 10, 14, "uucp", "/var/spool/uucppublic", "/sbin/nologin"),
    ("cron", 16, 16, "cron", "/var/spool/cron", "/sbin/nologin"),
    ("ftp", 21, 21, "", "/var/lib/ftp", "/sbin/nologin"),
    ("sshd", 22, 22, "sshd", "/dev/null", "/sbin/nologin"),
    ("games", 35, 35, "games", "/usr/games", "/sbin/nologin"),
    ("ntp", 123, 123, "NTP", "/var/empty", "/sbin/nologin"),
    ("guest", 405, 100, "guest", "/dev/null", "/sbin/nologin"),
    ("nobody", 65534, 65534, "nobody", "/", "/sbin/nologin"),
)
GROUPS = (
    ("root", 0, "root"), ("bin", 1, "root,bin,daemon"), ("daemon", 2, "root,bin,daemon"),
    ("sys", 3, "root,bin"), ("adm", 4, "root,daemon"), ("tty", 5, ""), ("disk", 6, "root"),
    ("lp", 7, "lp"), ("kmem", 9, ""), ("wheel", 10, "root"), ("floppy", 11, "root"),
    ("mail", 12, "mail"), ("news", 13, "news"), ("uucp", 14, "uucp"), ("cron", 16, "cron"),
    ("console", 17, ""), ("audio", 18, ""), ("cdrom", 19, ""), ("dialout", 20, "root"),
    ("ftp", 21, ""), ("sshd", 22, ""), ("input", 23, ""), ("tape", 26, "root"),
    ("video", 27, "root"), ("netdev", 28, ""), ("kvm", 34, "kvm"), ("games", 35, ""),
    ("shadow", 42, ""), ("www-data", 82, ""), ("users", 100, "games"), ("ntp", 123, ""),
    ("abuild", 300, ""), ("utmp", 406, ""), ("ping", 999, ""), ("nogroup", 65533, ""),
    ("nobody", 65534, ""),
)  # fmt: skip
SHADOW_GID = 42
PROFILE = """\
export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
export PAGER=less
umask 022

for script in /etc/profile.d/*.sh ; do
	if [ -r "$script" ] ; then
		. "$script"
	fi
done
unset script
"""
ETC_FILES = {
    "etc/motd": "Welcome to Alpine!\n",
    "etc/hostname": "localhost\n",
    "etc/hosts": (
        "127.0.0.1\tlocalhost localhost.localdomain\n::1\t\tlocalhost localhost.localdomain\n"
    ),
    "etc/nsswitch.conf": "hosts: files dns\n",
    "etc/profile": PROFILE,
    "etc/shells": "/bin/sh\n/bin/ash\n",
    "etc/alpine-release": RELEASE + "\n",
    "etc/os-release": OS_RELEASE,
    "etc/issue": f"Welcome to Alpine Linux {TAG}\nKernel \\r on an \\m (\\l)\n\n",
}


class AlpineStandInRecipe(Recipe):
    """``library/alpine:3.20`` forged from Debian trixie's musl, busybox-static and CA bundle.

    It reads Debian 13 packages through its own apt view of the host's sources
    (``host_sources`` rewritten for trixie, state under ``apt_root``); the bookworm view
    the forge passes in is not used.
    """

    repository = "library/alpine"
    upstream = f"docker.io/library/alpine:{TAG}"
    deviation = DEVIATION
    outputs = (
        Output(
            TAG,
            (
                "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                'CMD ["/bin/sh"]',
            ),
        ),
    )

    def __init__(self, host_sources: Path, apt_root: Path) -> None:
        self.host_sources = host_sources
        self.apt_root = apt_root
        self._apt: AptIndex | None = None

    def hash_inputs(self) -> dict[str, str]:
        return {"release": RELEASE, "standin": STANDIN_VERSION, "records": repr(APK_RECORDS)}

    def trixie(self) -> AptIndex:
        """The Debian 13 apt view (lists refreshed on first use)."""
        if self._apt is None:
            sources = for_suite(self.host_sources, HOST_SUITE, SUITE, self.apt_root)
            self._apt = AptIndex(sources, self.apt_root)
            self._apt.update()
        return self._apt

    def resolve(self, apt: AptIndex) -> dict[str, str]:
        """The Debian 13 packages unpacked (``apt``, the bookworm view, is not used)."""
        return self.trixie().candidates(DEBIAN_PACKAGES)

    def build(self, apt: AptIndex, packages: dict[str, str], workdir: Path) -> Rootfs:
        debs = self.trixie().download(packages, workdir / "debs")
        busybox = _member(debs["busybox-static"], ("./usr/bin/busybox", "./bin/busybox"))
        libc = _member(debs["musl"], ("./usr/lib/x86_64-linux-musl/libc.so",))
        certs = b"".join(
            data
            for name, data in sorted(_files(debs["ca-certificates"]))
            if name.startswith("./usr/share/ca-certificates/") and name.endswith(".crt")
        )
        applets = busybox_applets(busybox, workdir)
        tarball = workdir / "rootfs.tar"
        with tarfile.open(tarball, "w", format=tarfile.GNU_FORMAT) as out:
            for entry in rootfs_entries(busybox, libc, certs, applets):
                out.addfile(entry[0], io.BytesIO(entry[1]) if entry[1] is not None else None)
        return Rootfs(tarball, dict(packages))


Entry = tuple[tarfile.TarInfo, bytes | None]


def rootfs_entries(
    busybox: bytes, libc: bytes, certs: bytes, applets: list[str]
) -> Iterator[Entry]:
    """Every member of the stand-in's root filesystem, parents before children."""
    for path, mode in DIRECTORIES:
        yield _dir(path, mode)
    for path, target in LINKS.items():
        yield _link(path, target)
    for path, text in ETC_FILES.items():
        yield _file(path, text.encode())
    yield _file("etc/passwd", passwd().encode())
    yield _file("etc/group", group().encode())
    yield _file("etc/shadow", shadow().encode(), 0o640, gid=SHADOW_GID)
    yield _file(CA_BUNDLE, certs)
    yield _file(LOADER, libc, 0o755)
    yield _link("lib/libc.musl-x86_64.so.1", "ld-musl-x86_64.so.1")
    yield _file(BUSYBOX, busybox, 0o755)
    for applet in applets:
        yield _link(applet, "/" + BUSYBOX)
    yield _file(APK_DB, apk_installed(APK_RECORDS).encode())


def busybox_applets(busybox: bytes, workdir: Path) -> list[str]:
    """The applet paths (``bin/sh``, ``usr/bin/wget``...) the busybox binary installs.

    Runs the binary being packed (``--list-full``), as Alpine's install trigger does;
    the applets Alpine leaves out and busybox's own path are dropped.
    """
    binary = workdir / "busybox"
    binary.write_bytes(busybox)
    binary.chmod(0o755)
    proc = subprocess.run([str(binary), "--list-full"], capture_output=True, text=True)
    if proc.returncode != 0 or "bin/sh" not in proc.stdout.split():
        raise InfraError(f"busybox --list-full failed: {proc.stderr.strip() or proc.stdout}")
    skip = LEFT_OUT_APPLETS | {BUSYBOX}
    return sorted(a for a in proc.stdout.split() if a not in skip)


def apk_installed(records: tuple[ApkRecord, ...]) -> str:
    """apk's installed database: one blank-line separated record per package.

    ``P`` name, ``V`` version, ``A`` arch, ``T`` description, ``L`` license, ``o`` origin,
    then per directory an ``F`` line and one ``R`` line per file in it.
    """
    stanzas = []
    for record in records:
        lines = [
            f"P:{record.name}",
            f"V:{record.version}",
            f"A:{ARCH}",
            f"T:{record.description}",
            f"L:{record.license}",
            f"o:{record.origin}",
        ]
        directories: dict[str, list[str]] = {}
        for path in record.files:
            folder, _, name = path.rpartition("/")
            directories.setdefault(folder, []).append(name)
        for folder, names in directories.items():
            lines += [f"F:{folder}", *(f"R:{n}" for n in names)]
        stanzas.append("\n".join(lines) + "\n")
    return "\n".join(stanzas) + "\n"


def passwd() -> str:
    return "".join(f"{n}:x:{u}:{g}:{gecos}:{h}:{s}\n" for n, u, g, gecos, h, s in USERS)


def group() -> str:
    return "".join(f"{n}:x:{g}:{members}\n" for n, g, members in GROUPS)


def shadow() -> str:
    # root's password is locked ("*"), every other account has none it could log in with.
    return "".join(f"{u[0]}:{'*' if u[0] == 'root' else '!'}::0:::::\n" for u in USERS)


def _files(deb: Path) -> Iterator[tuple[str, bytes]]:
    """(path, content) of every regular file in a .deb's data archive."""
    proc = subprocess.Popen(
        [find_program("dpkg-deb"), "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE
    )
    assert proc.stdout is not None
    with tarfile.open(fileobj=proc.stdout, mode="r|") as data:
        for member in data:
            handle = data.extractfile(member) if member.isfile() else None
            if handle is not None:
                yield "./" + member.name.removeprefix("./"), handle.read()
    if proc.wait() != 0:
        raise InfraError(f"dpkg-deb --fsys-tarfile {deb.name} failed")


def _member(deb: Path, names: tuple[str, ...]) -> bytes:
    found = {name: data for name, data in _files(deb) if name in names}
    for name in names:
        if name in found:
            return found[name]
    raise InfraError(f"{deb.name}: none of {', '.join(names)} in the package")


def _dir(name: str, mode: int) -> Entry:
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, mode
    return info, None


def _link(name: str, target: str) -> Entry:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = tarfile.SYMTYPE, target, 0o777
    return info, None


def _file(name: str, data: bytes, mode: int = 0o644, gid: int = 0) -> Entry:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.gid = len(data), mode, gid
    return info, data
