"""parse_report on JSON captured from trivy 0.76 on this machine, and make_scanner.

tests/unit/data/trivy-dpkg-image.json: a FROM-scratch image holding Debian 12's
os-release, debian_version and a dpkg status with base-files, libc-bin, libc6, tzdata,
scanned against the default fixture DB. trivy-no-os-image.json: an image with no OS and
one Python package (a dist-info METADATA). trivy-distroless-static.json: the forged
distroless static image from the local registry (packages from var/lib/dpkg/status.d).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tasks.records import Finding, Package
from tasks.scanners import make_scanner
from tasks.scanners.config import ScannerConfig
from tasks.scanners.trivy import TrivyScanner, _parse_time, _trivy_error, parse_report

DATA = Path(__file__).parent / "data"
UPDATED = datetime(2026, 11, 27, 23, 22, 25, tzinfo=UTC)
# The one layer of the image in trivy-dpkg-image.json (its Metadata.DiffIDs).
LAYER = "sha256:df2339b2a1f0115a4a423a301c819b7fdc8d07769e685fe3f9f650e07b779bb9"


def purl(name: str, version: str, arch: str = "amd64") -> str:
    """Trivy's package URL of a Debian 12.11 package ('+' percent-encoded)."""
    encoded = version.replace("+", "%2B")
    return f"pkg:deb/debian/{name}@{encoded}?arch={arch}&distro=debian-12.11"


def load(name: str) -> dict[str, Any]:
    report: dict[str, Any] = json.loads((DATA / name).read_text())
    return report


def test_dpkg_image_os_and_packages() -> None:
    result = parse_report(load("trivy-dpkg-image.json"), "0.76.0", UPDATED)
    assert (result.os_family, result.os_version) == ("debian", "12.11")
    glibc = "2.36-9+deb12u14"
    assert result.packages == (
        Package(
            "base-files",
            "12.4+deb12u11",
            "base-files",
            "debian",
            purl("base-files", "12.4+deb12u11"),
            LAYER,
        ),
        Package("libc-bin", glibc, "glibc", "debian", purl("libc-bin", glibc), LAYER),
        Package("libc6", glibc, "glibc", "debian", purl("libc6", glibc), LAYER),
        Package(
            "tzdata",
            "2025b-0+deb12u2",
            "tzdata",
            "debian",
            purl("tzdata", "2025b-0+deb12u2", "all"),
            LAYER,
        ),
    )
    assert result.packages_by_type() == {"debian": 4}
    assert (result.scanner, result.scanner_version, result.db_updated_at) == (
        "trivy",
        "0.76.0",
        UPDATED,
    )


def test_dpkg_image_findings() -> None:
    result = parse_report(load("trivy-dpkg-image.json"), "0.76.0", None)
    glibc = ("CVE-2026-90001", "2.36-9+deb12u14", "2.36-9+deb12u99", "CRITICAL", "fixed")
    tzdata = ("tzdata", "2025b-0+deb12u2")
    assert result.findings == (
        Finding(glibc[0], "libc-bin", *glibc[1:], purl("libc-bin", glibc[1]), LAYER),
        Finding(glibc[0], "libc6", *glibc[1:], purl("libc6", glibc[1]), LAYER),
        Finding(
            "CVE-2026-90004",
            *tzdata,
            "2099a-0+deb12u1",
            "LOW",
            "fixed",
            purl(*tzdata, "all"),
            LAYER,
        ),
    )
    # One CVE in two binary packages counts once per severity, twice as findings.
    assert result.vulns_by_severity() == {
        "CRITICAL": 1,
        "HIGH": 0,
        "MEDIUM": 0,
        "LOW": 1,
        "UNKNOWN": 0,
    }
    assert result.fixable() == 2


def test_image_without_os_has_unknown_os_and_lang_packages() -> None:
    result = parse_report(load("trivy-no-os-image.json"), "0.76.0", None)
    assert (result.os_family, result.os_version) == ("unknown", "")
    layer = "sha256:cd0e901f4323d823ee21857611a5a016cf63040b425e9e5565df5751c48068fb"
    assert result.packages == (
        Package(
            "fixturepkg", "1.2.3", "fixturepkg", "python-pkg", "pkg:pypi/fixturepkg@1.2.3", layer
        ),
    )
    assert result.findings == ()


def test_distroless_static_packages_from_status_d() -> None:
    result = parse_report(load("trivy-distroless-static.json"), "0.76.0", None)
    assert (result.os_family, result.os_version) == ("debian", "12.15")
    assert [(p.name, p.version) for p in result.packages] == [
        ("base-files", "12.4+deb12u15"),
        ("ca-certificates", "20250419~deb12u2"),
        ("media-types", "10.0.0"),
        ("netbase", "6.4"),
        ("tzdata", "2026f-0+deb12u1"),
    ]
    assert [(f.vulnerability_id, f.package, f.severity) for f in result.findings] == [
        ("CVE-2026-90004", "tzdata", "LOW")
    ]


def test_other_result_classes_are_ignored() -> None:
    report = {
        "Metadata": {"OS": {"Family": "debian", "Name": "12.5"}},
        "Results": [
            {"Class": "secret", "Type": "", "Packages": [{"Name": "x", "Version": "1"}]},
            {"Class": "os-pkgs", "Type": "debian"},  # no Packages key at all
        ],
    }
    result = parse_report(report, "0.76.0", None)
    assert result.packages == ()
    assert (result.os_family, result.os_version) == ("debian", "12.5")


def test_rpm_style_versions_keep_epoch_and_release() -> None:
    package = {"Name": "openssl", "Version": "3.0.7", "Release": "27.el9", "Epoch": 1}
    report = {"Results": [{"Class": "os-pkgs", "Type": "redhat", "Packages": [package]}]}
    (parsed,) = parse_report(report, "0.76.0", None).packages
    assert parsed == Package("openssl", "1:3.0.7-27.el9", "openssl", "redhat")


def test_go_timestamps_with_nanoseconds() -> None:
    expected = datetime(2026, 11, 27, 23, 22, 25, 942081, tzinfo=UTC)
    assert _parse_time("2026-11-27T23:22:25.942081123Z") == expected
    assert _parse_time("2026-11-27T23:22:25Z") == expected.replace(microsecond=0)
    assert _parse_time(None) is None


def test_trivy_error_is_one_line_without_log_prefix() -> None:
    stderr = (
        "2026-11-27T23:24:20Z\tFATAL\tFatal error\trun error: image scan error:\n no such image\n"
    )
    assert _trivy_error(stderr, "silent") == "run error: image scan error: no such image"
    assert _trivy_error("", "trivy exited with code 2") == "trivy exited with code 2"


@pytest.mark.parametrize(
    ("config", "expected_cache"),
    [
        (ScannerConfig(), Path("/cache/trivy")),
        (ScannerConfig(db_dir=Path("/srv/trivy-db")), Path("/srv/trivy-db")),
    ],
)
def test_make_scanner_picks_the_db_location(config: ScannerConfig, expected_cache: Path) -> None:
    scanner = make_scanner(config, Path("/cache"))
    assert isinstance(scanner, TrivyScanner)
    assert scanner.cache_dir == expected_cache
    assert scanner.timeout_seconds == 300
    assert scanner.db_repository is None
    assert scanner.documents_dir == Path("/cache/documents")  # kept until published
