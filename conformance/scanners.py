"""The conformance suite every ``Scanner`` passes, run against the real engine and trivy.

Use it as a pytest plugin (``pytest_plugins = ["conformance.scanners"]``, for its
session fixtures ``images`` and ``db_cache``) and subclass ``ScannerConformance`` once
per implementation::

    class TestTrivyScanner(ScannerConformance):
        kind = "trivy"

The suite's ``scanner`` fixture asks ``make_scanner`` for ``kind``, so the factory is what
is tested; a scanner that the factory does not make overrides ``scanner`` instead.

The suite builds three small images itself (FROM scratch, no network) on the machine's
engine and saves each to an archive, the scanners' input:

- ``dpkg``: Debian 12 os-release and a ``var/lib/dpkg/status`` (debian:bookworm layout);
- ``statusd``: ``var/lib/dpkg/status.d/<pkg>`` control files (distroless layout);
- ``noos``: no OS at all, one Python package;
- ``layered``: ``dpkg`` as its base plus one layer that installs ``libssl3`` (how a
  build adds packages to what it inherits).

It writes a fixture DB from ``ADVISORIES`` with ``write_fixture_db`` and checks the exact
findings. Needs pytest (a test dependency), the Docker engine and trivy.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tarfile
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import ClassVar, get_args

import pytest

from infra.trivydb.fixture import write_fixture_db
from tasks.hosts.config import HostConfig
from tasks.hosts.connection import connect
from tasks.records import Package
from tasks.scanners import make_scanner
from tasks.scanners.base import ScanError, Scanner
from tasks.scanners.config import ScannerConfig
from tasks.scanners.trivy import _parse_time, parse_report

# Every ``ScannerConfig.kind``: each one has a subclass of ``ScannerConformance``.
SCANNER_KINDS: tuple[str, ...] = get_args(ScannerConfig.model_fields["kind"].annotation)
TIMEOUT = 120

# Fixture advisories (invented ids). 91004 is fixed below the installed base-files;
# 91005 names a binary package (libc6), and trivy-db buckets are keyed by source package,
# so it must match nothing.
ADVISORIES = """\
sources:
  - data_source: {bucket: debian 12, id: debian, name: conformance fixture}
    advisories:
      - {id: CVE-2026-91001, source_package: glibc, fixed_version: 2.36-9+deb12u99,
         severity: CRITICAL, title: glibc}
      - {id: CVE-2026-91002, source_package: openssl, severity: HIGH, title: openssl unfixed}
      - {id: CVE-2026-91003, source_package: tzdata, fixed_version: 2099a-0+deb12u1,
         severity: LOW, title: tzdata}
      - {id: CVE-2026-91004, source_package: base-files, fixed_version: 12.4+deb12u5,
         severity: HIGH, title: already fixed}
      - {id: CVE-2026-91005, source_package: libc6, fixed_version: 2.36-9+deb12u99,
         severity: MEDIUM, title: binary package name}
"""

OS_RELEASE = """\
PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
VERSION_CODENAME=bookworm
ID=debian
"""

# (package, source or "", version): real Debian 12 versions.
DPKG_PACKAGES = [
    ("base-files", "", "12.4+deb12u11"),
    ("libc-bin", "glibc", "2.36-9+deb12u14"),
    ("libc6", "glibc", "2.36-9+deb12u14"),
    ("netbase", "", "6.4"),
    ("tzdata", "", "2025b-0+deb12u2"),
]
# What the ``layered`` image's top layer adds to the ``dpkg`` image.
ADDED_PACKAGE = ("libssl3", "openssl", "3.0.22-1~deb12u2")
STATUSD_PACKAGES = [
    ("base-files", "", "12.4+deb12u11"),
    ("libssl3", "openssl", "3.0.22-1~deb12u2"),
    ("tzdata", "", "2025b-0+deb12u2"),
]

GLIBC = ("CVE-2026-91001", "2.36-9+deb12u14", "2.36-9+deb12u99", "CRITICAL", "fixed")
TZDATA = ("CVE-2026-91003", "tzdata", "2025b-0+deb12u2", "2099a-0+deb12u1", "LOW", "fixed")
# The exact findings of the ``dpkg`` image.
DPKG_FINDINGS = {
    (GLIBC[0], "libc-bin", *GLIBC[1:]),
    (GLIBC[0], "libc6", *GLIBC[1:]),
    TZDATA,
}

Finding = tuple[str, str, str, str, str, str]


def control(name: str, source: str, version: str) -> str:
    """A dpkg control paragraph for an installed package."""
    source_line = f"Source: {source}\n" if source else ""
    return (
        f"Package: {name}\nStatus: install ok installed\nPriority: required\n"
        f"Architecture: amd64\n{source_line}Version: {version}\n"
        f"Maintainer: fixture <fixture@localhost>\nDescription: fixture {name}\n"
    )


def debian_purl(name: str, version: str) -> str:
    """The package URL Trivy gives an amd64 package of the suite's Debian 12.11 images."""
    # purl percent-encodes '+' in versions; '~' is left as it is.
    return f"pkg:deb/debian/{name}@{version.replace('+', '%2B')}?arch=amd64&distro=debian-12.11"


def debian_files() -> dict[str, str]:
    return {"etc/os-release": OS_RELEASE, "etc/debian_version": "12.11\n"}


def image_files(kind: str) -> dict[str, str]:
    """The files image ``kind`` ("dpkg", "statusd", "noos", "layered") puts in its
    (top) layer: path -> text."""
    if kind in ("dpkg", "layered"):
        installed = [*DPKG_PACKAGES, *([ADDED_PACKAGE] if kind == "layered" else [])]
        status = "\n".join(control(*p) for p in installed)
        files = {"var/lib/dpkg/status": status}
        return files if kind == "layered" else {**debian_files(), **files}
    if kind == "statusd":
        return {
            **debian_files(),
            **{f"var/lib/dpkg/status.d/{p[0]}": control(*p) for p in STATUSD_PACKAGES},
        }
    metadata = "Metadata-Version: 2.1\nName: fixturepkg\nVersion: 1.2.3\n"
    return {"usr/lib/python3/dist-packages/fixturepkg-1.2.3.dist-info/METADATA": metadata}


def build_context(files: dict[str, str], base: str = "scratch") -> io.BytesIO:
    """A GNU tar build context: a Dockerfile copying rootfs/ onto ``base``."""
    buffer = io.BytesIO()
    entries = {"Dockerfile": f"FROM {base}\nCOPY rootfs/ /\n"}
    entries.update({f"rootfs/{path}": text for path, text in files.items()})
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, text in entries.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    buffer.seek(0)
    return buffer


def findings(scanner: Scanner, archive: Path) -> set[Finding]:
    """(id, package, installed, fixed, severity, status) of every finding in ``archive``."""
    result = scanner.scan(archive)
    return {
        (f.vulnerability_id, f.package, f.installed_version, f.fixed_version, f.severity, f.status)
        for f in result.findings
    }


@dataclass(frozen=True)
class SavedImage:
    """An image of the suite, saved: its archive and its layers' diff ids, bottom up."""

    archive: Path
    layers: tuple[str, ...]


@pytest.fixture(scope="session")
def saved_images(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, SavedImage]]:
    """Each kind ("dpkg", "statusd", "noos", "layered") built and saved; the images are
    removed afterwards."""
    # Imported here: the save stage loads Prefect, which plugin registration should not.
    from tasks.stages.save import save_image

    engine = connect(HostConfig())
    suffix = uuid.uuid4().hex[:10]
    folder = tmp_path_factory.mktemp("scan-archives")
    tags: list[str] = []
    saved: dict[str, SavedImage] = {}
    try:
        for kind in ("dpkg", "statusd", "noos", "layered"):
            tag = f"basebench-scantest-{kind}:{suffix}"
            base = f"basebench-scantest-dpkg:{suffix}" if kind == "layered" else "scratch"
            image, _ = engine.images.build(
                fileobj=build_context(image_files(kind), base),
                custom_context=True,
                tag=tag,
                network_mode="none",
                rm=True,
            )
            tags.append(tag)
            (folder / kind).mkdir()
            archive = save_image.fn(engine, image.id, folder / kind)
            saved[kind] = SavedImage(archive, tuple(image.attrs["RootFS"]["Layers"]))
        yield saved
    finally:
        for tag in reversed(tags):  # the layered image first: it uses dpkg's layer
            engine.images.remove(tag, force=True)
        engine.close()


@pytest.fixture(scope="session")
def images(saved_images: dict[str, SavedImage]) -> dict[str, Path]:
    """The saved archive per kind ("dpkg", "statusd", "noos", "layered")."""
    return {kind: image.archive for kind, image in saved_images.items()}


@pytest.fixture(scope="session")
def db_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A trivy cache dir holding only the fixture DB written from ``ADVISORIES``."""
    root = tmp_path_factory.mktemp("scan-db")
    advisories = root / "advisories.yaml"
    advisories.write_text(ADVISORIES)
    cache = root / "cache"
    write_fixture_db(advisories, cache)
    return cache


def scanner_config(kind: str, db_cache: Path) -> ScannerConfig:
    """The matrix ``scanner:`` settings for ``kind`` with the fixture DB."""
    return ScannerConfig.model_validate(
        {"kind": kind, "db_dir": db_cache, "timeout_seconds": TIMEOUT}
    )


class ScannerConformance:
    """What every Scanner must do.

    Subclasses set ``kind`` (a ``ScannerConfig.kind``; the ``scanner`` fixture then comes
    from ``make_scanner``) or override the ``scanner`` fixture.
    """

    kind: ClassVar[str | None] = None

    @pytest.fixture(scope="class")
    @classmethod
    def scanner(cls, db_cache: Path) -> Iterator[Scanner]:
        """One scanner for the class's tests (a trivy server stays warm), closed after."""
        if cls.kind is None:
            raise NotImplementedError("set kind or override the scanner fixture")
        with make_scanner(scanner_config(cls.kind, db_cache), db_cache.parent) as made:
            yield made

    def test_make_scanner_gives_a_working_scanner_of_this_kind(
        self, scanner: Scanner, images: dict[str, Path], db_cache: Path
    ) -> None:
        assert self.kind in SCANNER_KINDS  # every scanner is one make_scanner makes
        made = make_scanner(scanner_config(self.kind, db_cache), db_cache.parent)
        try:
            assert isinstance(made, Scanner)
            assert made is not scanner and type(made) is type(scanner)
            assert findings(made, images["dpkg"]) == DPKG_FINDINGS
        finally:
            made.close()
        made.close()  # closing twice is harmless

    def test_dpkg_image_findings(self, scanner: Scanner, images: dict[str, Path]) -> None:
        assert findings(scanner, images["dpkg"]) == {
            (GLIBC[0], "libc-bin", *GLIBC[1:]),
            (GLIBC[0], "libc6", *GLIBC[1:]),
            TZDATA,
        }

    def test_dpkg_image_packages_and_os(
        self, scanner: Scanner, saved_images: dict[str, SavedImage]
    ) -> None:
        dpkg = saved_images["dpkg"]
        (layer,) = dpkg.layers
        result = scanner.scan(dpkg.archive)
        assert (result.os_family, result.os_version) == ("debian", "12.11")
        assert sorted(result.packages, key=lambda p: p.name) == [
            Package(name, version, source or name, "debian", debian_purl(name, version), layer)
            for name, source, version in DPKG_PACKAGES
        ]
        assert result.vulns_by_severity() == {
            "CRITICAL": 1,
            "HIGH": 0,
            "MEDIUM": 0,
            "LOW": 1,
            "UNKNOWN": 0,
        }

    def test_status_d_image(self, scanner: Scanner, images: dict[str, Path]) -> None:
        result = scanner.scan(images["statusd"])
        assert sorted((p.name, p.version, p.source_name) for p in result.packages) == [
            (name, version, source or name) for name, source, version in STATUSD_PACKAGES
        ]
        assert findings(scanner, images["statusd"]) == {
            ("CVE-2026-91002", "libssl3", "3.0.22-1~deb12u2", "", "HIGH", "affected"),
            TZDATA,
        }

    def test_image_without_os(self, scanner: Scanner, saved_images: dict[str, SavedImage]) -> None:
        noos = saved_images["noos"]
        result = scanner.scan(noos.archive)
        assert (result.os_family, result.os_version) == ("unknown", "")
        (layer,) = noos.layers
        purl = "pkg:pypi/fixturepkg@1.2.3"
        assert result.packages == (
            Package("fixturepkg", "1.2.3", "fixturepkg", "python-pkg", purl, layer),
        )
        assert result.findings == ()

    def test_layered_image_names_the_layer_of_each_package_and_finding(
        self, scanner: Scanner, saved_images: dict[str, SavedImage]
    ) -> None:
        layered = saved_images["layered"]
        inherited, added = layered.layers
        assert (inherited,) == saved_images["dpkg"].layers  # the base's one layer
        result = scanner.scan(layered.archive)
        name, source, version = ADDED_PACKAGE
        # Packages the base had stay in its layer, though the status file is rewritten.
        assert {p.name: p.layer_diff_id for p in result.packages} == {
            **{p[0]: inherited for p in DPKG_PACKAGES},
            name: added,
        }
        assert {(f.vulnerability_id, f.package, f.layer_diff_id) for f in result.findings} == {
            (GLIBC[0], "libc-bin", inherited),
            (GLIBC[0], "libc6", inherited),
            (TZDATA[0], "tzdata", inherited),
            ("CVE-2026-91002", name, added),
        }
        libssl3 = debian_purl(name, version)
        assert {p.purl for p in result.packages if p.name == name} == {libssl3}
        assert {f.purl for f in result.findings if f.package == name} == {libssl3}
        assert [(p.source_name, p.version) for p in result.packages if p.name == name] == [
            (source, version)
        ]

    def test_documents_are_kept_and_agree_with_the_result(
        self, scanner: Scanner, images: dict[str, Path]
    ) -> None:
        result = scanner.scan(images["dpkg"])
        documents = result.documents
        assert documents is not None, "make_scanner's scanners keep documents"
        assert {documents.report.name, documents.cyclonedx.name, documents.sarif.name} == {
            "trivy.json",
            "sbom.cdx.json",
            "report.sarif",
        }
        assert documents.report.parent == documents.cyclonedx.parent == documents.sarif.parent
        # The kept report is the one the result was parsed from.
        report = json.loads(documents.report.read_text())
        reparsed = parse_report(report, result.scanner_version, result.db_updated_at)
        assert replace(result, documents=None) == reparsed
        # CycloneDX: one component per package, by package URL.
        bom = json.loads(documents.cyclonedx.read_text())
        assert bom["bomFormat"] == "CycloneDX"
        purls = {c["purl"] for c in bom["components"] if c.get("type") == "library"}
        assert purls == {p.purl for p in result.packages}
        assert len(purls) == len(DPKG_PACKAGES)
        # SARIF: one result per finding, the rule being the vulnerability id.
        sarif = json.loads(documents.sarif.read_text())
        assert sarif["version"] == "2.1.0"
        (run,) = sarif["runs"]
        assert run["tool"]["driver"]["name"] == "Trivy"
        assert Counter(r["ruleId"] for r in run["results"]) == Counter(
            f.vulnerability_id for f in result.findings
        )
        assert Counter(r["ruleId"] for r in run["results"]) == {GLIBC[0]: 2, TZDATA[0]: 1}

    def test_each_scan_keeps_its_own_documents(
        self, scanner: Scanner, images: dict[str, Path]
    ) -> None:
        first, second = scanner.scan(images["noos"]), scanner.scan(images["noos"])
        assert first.documents is not None and second.documents is not None
        assert first.documents.report.parent != second.documents.report.parent

    def test_version_and_db_date(
        self, scanner: Scanner, images: dict[str, Path], db_cache: Path
    ) -> None:
        result = scanner.scan(images["noos"])
        metadata = json.loads((db_cache / "db" / "metadata.json").read_text())
        assert (result.scanner, result.scanner_version) == ("trivy", "0.76.0")
        assert isinstance(result.db_updated_at, datetime)
        assert result.db_updated_at == _parse_time(metadata["UpdatedAt"])

    def test_parallel_scans(self, scanner: Scanner, images: dict[str, Path]) -> None:
        archives = [images["dpkg"], images["statusd"]] * 2
        with ThreadPoolExecutor(max_workers=4) as pool:
            results = list(pool.map(scanner.scan, archives))
        assert [len(r.findings) for r in results] == [3, 2, 3, 2]

    def test_command_run_elsewhere_gives_what_scan_gives(
        self, scanner: Scanner, images: dict[str, Path], tmp_path: Path
    ) -> None:
        # "Elsewhere" is a toolbox folder holding copies of the portable files, and a
        # clean environment: what an analysis container on a build host has.
        toolbox = tmp_path / "toolbox"
        for name, local in scanner.portable_files().items():
            (toolbox / name).parent.mkdir(parents=True, exist_ok=True)
            copy = shutil.copytree if local.is_dir() else shutil.copy2
            copy(local, toolbox / name)
        argv = scanner.command(str(images["layered"]), str(toolbox))
        local_paths = [str(path) for path in scanner.portable_files().values()]
        assert not [arg for arg in argv if any(arg.startswith(p) for p in local_paths)]
        home = {"HOME": str(tmp_path)}  # as the container's engine sets it
        done = subprocess.run(argv, capture_output=True, text=True, env=home, check=False)
        result = scanner.read_output(done.returncode, done.stdout, done.stderr, "layered.tar")
        here = scanner.scan(images["layered"])
        assert (result.os_family, result.os_version) == ("debian", "12.11")
        assert (result.packages, result.findings) == (here.packages, here.findings)
        assert (result.scanner_version, result.db_updated_at) == (
            here.scanner_version,
            here.db_updated_at,
        )
        assert result.documents is not None and result.documents.sarif.is_file()

    def test_command_that_failed_elsewhere_is_a_scan_error(self, scanner: Scanner) -> None:
        with pytest.raises(ScanError, match=r"^scan: x.tar: unable to open x.tar$"):
            scanner.read_output(1, "", "2026-12-06T15:00:00Z FATAL unable to open x.tar", "x.tar")
        with pytest.raises(ScanError, match=rf"^scan: x.tar: trivy timed out after {TIMEOUT} s$"):
            scanner.read_output(None, "", "", "x.tar")

    def test_missing_archive_is_a_scan_error(self, scanner: Scanner, tmp_path: Path) -> None:
        with pytest.raises(ScanError, match=r"^scan: gone.tar: .*no such file or directory"):
            scanner.scan(tmp_path / "gone.tar")

    def test_file_that_is_no_image_is_a_scan_error(self, scanner: Scanner, tmp_path: Path) -> None:
        (tmp_path / "notes.tar").write_text("not a docker save archive")
        with pytest.raises(ScanError, match=r"^scan: notes.tar: "):
            scanner.scan(tmp_path / "notes.tar")


__all__ = [
    "ADDED_PACKAGE",
    "ADVISORIES",
    "DPKG_FINDINGS",
    "DPKG_PACKAGES",
    "SCANNER_KINDS",
    "STATUSD_PACKAGES",
    "TIMEOUT",
    "SavedImage",
    "ScannerConformance",
    "db_cache",
    "debian_purl",
    "findings",
    "images",
    "saved_images",
    "scanner_config",
]
