"""The default fixture advisories against the forged base images in the local registry.

infra forges stand-ins for debian:bookworm and distroless static/base and pushes them
to 127.0.0.1:5000 under the upstream repository paths. The default advisories
(infra/trivydb/advisories.yaml) are chosen so each image gets a different set:

- distroless static: only the tzdata one (90004);
- distroless base: + glibc (90001, libc6) + openssl (90002, libssl3);
- debian bookworm: + glibc (90001, libc6 and libc-bin) + apt (90003, apt and
  libapt-pkg6.0);
- none: the base-files advisory fixed below every Debian 12 release (90005).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import docker.errors
import pytest

from infra.trivydb.fixture import DEFAULT_ADVISORIES, write_fixture_db
from tasks.hosts.config import HostConfig
from tasks.hosts.connection import connect
from tasks.matrix import DEFAULT_REGISTRY
from tasks.scanners.trivy import TrivyScanner
from tasks.stages.save import save_image

pytestmark = pytest.mark.integration

HOST = HostConfig()
STATIC_PACKAGES = {"base-files", "netbase", "tzdata", "media-types", "ca-certificates"}
TZDATA = {("CVE-2026-90004", "tzdata", "LOW")}
GLIBC_BASE = {("CVE-2026-90001", "libc6", "CRITICAL")}
GLIBC_DEBIAN = GLIBC_BASE | {("CVE-2026-90001", "libc-bin", "CRITICAL")}
OPENSSL = {("CVE-2026-90002", "libssl3", "HIGH")}
# Source package apt builds both apt and libapt-pkg6.0.
APT = {("CVE-2026-90003", "apt", "MEDIUM"), ("CVE-2026-90003", "libapt-pkg6.0", "MEDIUM")}
ALREADY_FIXED = "CVE-2026-90005"


@pytest.fixture(scope="module")
def engine() -> Iterator[docker.DockerClient]:
    client = connect(HOST)
    yield client
    client.close()


@pytest.fixture(scope="module")
def forged_image(engine: docker.DockerClient) -> Iterator[Callable[[str], str]]:
    """Pull ``127.0.0.1:5000/<path>`` (fails loudly when the registry lacks it).

    Tags that were not on the engine before are removed afterwards; tags that were (other
    work on this engine may use them) are left, updated to what the registry serves.
    """
    added: list[str] = []

    def pull(path: str) -> str:
        ref = f"{DEFAULT_REGISTRY}/{path}"
        try:
            engine.images.get(ref)
        except docker.errors.ImageNotFound:
            added.append(ref)
        engine.images.pull(ref)
        return ref

    yield pull
    for ref in added:
        try:
            engine.images.remove(ref)
        except docker.errors.APIError as exc:  # in use by a container started meanwhile
            if exc.status_code != 409:
                raise


@pytest.fixture
def saved(
    engine: docker.DockerClient, forged_image: Callable[[str], str], tmp_path: Path
) -> Callable[[str], Path]:
    """Pull ``127.0.0.1:5000/<path>`` and save it to an archive for the scanner."""
    return lambda path: save_image.fn(engine, engine.images.get(forged_image(path)).id, tmp_path)


@pytest.fixture(scope="module")
def scanner(tmp_path_factory: pytest.TempPathFactory) -> TrivyScanner:
    cache = tmp_path_factory.mktemp("forged-scan")
    write_fixture_db(DEFAULT_ADVISORIES, cache)
    return TrivyScanner(cache, timeout_seconds=300)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("distroless/static-debian12:latest", TZDATA),
        ("distroless/base-debian12:latest", TZDATA | GLIBC_BASE | OPENSSL),
        ("library/debian:bookworm", TZDATA | GLIBC_DEBIAN | APT),
    ],
)
def test_fixture_cves_per_image(
    saved: Callable[[str], Path],
    scanner: TrivyScanner,
    path: str,
    expected: set[tuple[str, str, str]],
) -> None:
    result = scanner.scan(saved(path))
    assert (result.os_family, result.os_version.split(".")[0]) == ("debian", "12")
    found = {(f.vulnerability_id, f.package, f.severity) for f in result.findings}
    assert found == expected
    assert ALREADY_FIXED not in {f.vulnerability_id for f in result.findings}
    assert all(f.status == "fixed" and f.fixed_version for f in result.findings)


def test_static_packages_come_from_status_d(
    saved: Callable[[str], Path], scanner: TrivyScanner
) -> None:
    result = scanner.scan(saved("distroless/static-debian12:latest"))
    assert {p.name for p in result.packages} == STATIC_PACKAGES
    assert {p.type for p in result.packages} == {"debian"}
    assert "base-files" in {p.source_name for p in result.packages}


def test_base_packages_are_static_plus_libc_and_libssl(
    saved: Callable[[str], Path], scanner: TrivyScanner
) -> None:
    result = scanner.scan(saved("distroless/base-debian12:latest"))
    assert {p.name for p in result.packages} == STATIC_PACKAGES | {"libc6", "libssl3"}
    sources = {p.name: p.source_name for p in result.packages}
    assert (sources["libc6"], sources["libssl3"]) == ("glibc", "openssl")
