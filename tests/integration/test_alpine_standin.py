"""The alpine stand-in ``infra up`` forges: what it holds, what Trivy sees, what runs on it.

``library/alpine:3.20`` is forged by default from Debian trixie's musl, busybox-static and
CA bundle (infra/forge/alpine_standin.py). The go-hello app is built multi-stage onto it
with the forged golang builders, as the matrix's alpine cells build it: with cgo off it
serves (with cgo on, the binary asks for glibc's loader and exits at once: the seed's
alpine cell, tests/integration/test_seed.py). Scanned with the
default fixture advisories, the alpine cells get the 4 HIGH ssl findings of the seed
comparison's alpine row (two openssl advisories, each on libcrypto3 and libssl3), plus the
Go standard library advisories of the toolchain that built the binary:

- Go 1.22.10: 90031 (fixed in 1.23.0) and 90032 (fixed in 1.24.12 / 1.25.6);
- Go 1.25.5: 90032 only.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import docker.errors
import pytest

from infra.forge.alpine_standin import DEVIATION
from infra.forge.recipe import (
    LABEL_DEVIATION,
    LABEL_FORGED,
    LABEL_HASH,
    LABEL_PACKAGES,
    LABEL_UPSTREAM,
)
from infra.registry_api import RegistryAPI
from infra.trivydb.fixture import DEFAULT_ADVISORIES, write_fixture_db
from infra.up import InfraState
from tasks import labels
from tasks.apps import APPS_DIR
from tasks.records import Package
from tasks.scanners.trivy import TrivyScanner
from tasks.sessions.session import remove_run_images
from tasks.stages.probe import wait_for_http
from tasks.stages.save import save_image
from tests.integration.conftest import image_files, read_file

pytestmark = pytest.mark.integration

REPOSITORY, TAG = "library/alpine", "3.20"
MB = 1_000_000
# (name, version, origin) as the apk database names them: Alpine 3.20.3's.
APK_PACKAGES = {
    ("alpine-baselayout", "3.6.5-r0", "alpine-baselayout"),
    ("alpine-baselayout-data", "3.6.5-r0", "alpine-baselayout"),
    ("busybox", "1.36.1-r29", "busybox"),
    ("busybox-binsh", "1.36.1-r29", "busybox"),
    ("ca-certificates-bundle", "20240705-r0", "ca-certificates"),
    ("libcrypto3", "3.3.2-r0", "openssl"),
    ("libssl3", "3.3.2-r0", "openssl"),
    ("musl", "1.2.5-r0", "musl"),
}
# (id, package, installed, fixed, severity)
ALPINE_SSL = {
    ("CVE-2026-90002", "libcrypto3", "3.3.2-r0", "3.3.99-r0", "HIGH"),
    ("CVE-2026-90002", "libssl3", "3.3.2-r0", "3.3.99-r0", "HIGH"),
    ("CVE-2026-90021", "libcrypto3", "3.3.2-r0", "3.3.3-r0", "HIGH"),
    ("CVE-2026-90021", "libssl3", "3.3.2-r0", "3.3.3-r0", "HIGH"),
}
GO_1_22 = {
    ("CVE-2026-90031", "stdlib", "v1.22.10", "1.23.0", "HIGH"),
    ("CVE-2026-90032", "stdlib", "v1.22.10", "1.24.12, 1.25.6", "MEDIUM"),
}
GO_1_25 = {("CVE-2026-90032", "stdlib", "v1.25.5", "1.24.12, 1.25.6", "MEDIUM")}
Finding = tuple[str, str, str, str, str]
Scanned = tuple[tuple[str, str], tuple[Package, ...], set[Finding]]  # OS, packages, findings


@pytest.fixture(scope="module")
def standin(infra: InfraState, docker_client: docker.DockerClient) -> str:
    """The stand-in's reference, pulled from the registry ``infra up`` filled."""
    docker_client.images.pull(f"{infra.registry}/{REPOSITORY}", tag=TAG)
    return f"{infra.registry}/{REPOSITORY}:{TAG}"


@pytest.fixture(scope="module")
def scanner(tmp_path_factory: pytest.TempPathFactory) -> TrivyScanner:
    cache = tmp_path_factory.mktemp("alpine-scan")
    write_fixture_db(DEFAULT_ADVISORIES, cache)
    return TrivyScanner(cache, timeout_seconds=300)


@pytest.fixture(scope="module")
def run_id(docker_client: docker.DockerClient) -> Iterator[str]:
    """Labels what this module builds; its images go at the end."""
    run = f"alpine-{uuid.uuid4().hex[:8]}"
    yield run
    remove_run_images(docker_client, run)


@pytest.fixture(scope="module")
def cells(
    infra: InfraState, docker_client: docker.DockerClient, standin: str, run_id: str
) -> dict[str, str]:
    """go-hello multi-stage on the stand-in, cgo off: Go version -> image id."""
    built = {}
    for version in ("1.22.10", "1.25.5"):
        builder = f"{infra.registry}/library/golang:{version}-bookworm"
        docker_client.images.pull(builder)
        image, _ = docker_client.images.build(
            path=str(APPS_DIR / "go-hello"),
            dockerfile="Dockerfile.multi",
            buildargs={
                "BUILDER": builder,
                "BASE": standin,
                "RUN_ID": run_id,
                "CGO_ENABLED": "0",
            },
            tag=f"basebench-test/alpine-go:{run_id}-{version}",
            labels={labels.RUN: run_id},
            pull=False,
            rm=True,
            forcerm=True,
            network_mode="none",
        )
        built[version] = image.id
    return built


def scan(client: docker.DockerClient, scanner: TrivyScanner, image: str, folder: Path) -> Scanned:
    result = scanner.scan(save_image.fn(client, client.images.get(image).id, folder))
    findings = {
        (f.vulnerability_id, f.package, f.installed_version, f.fixed_version, f.severity)
        for f in result.findings
    }
    return (result.os_family, result.os_version), result.packages, findings


def test_infra_up_forges_it_labelled_as_a_stand_in(
    infra: InfraState, docker_client: docker.DockerClient, standin: str
) -> None:
    assert f"{REPOSITORY}:{TAG}" in {s.name for s in infra.steps}
    image_labels = docker_client.images.get(standin).labels
    assert image_labels[LABEL_FORGED] == "true"
    assert image_labels[LABEL_UPSTREAM] == "docker.io/library/alpine:3.20"
    assert image_labels[LABEL_DEVIATION] == DEVIATION
    assert len(image_labels[LABEL_HASH]) == 24
    debs = dict(pair.split("=", 1) for pair in image_labels[LABEL_PACKAGES].split(","))
    assert set(debs) == {"busybox-static", "ca-certificates", "musl"}
    assert debs["musl"].startswith("1.2.5-")  # Debian 13's musl: Alpine 3.20's version
    assert RegistryAPI(infra.registry).labels(REPOSITORY, TAG) == image_labels


def test_it_is_laid_out_like_alpine(docker_client: docker.DockerClient, standin: str) -> None:
    image = docker_client.images.get(standin)
    assert 2 * MB < image.attrs["Size"] < 4 * MB
    assert image.attrs["Config"]["Cmd"] == ["/bin/sh"]
    files = image_files(docker_client, standin)
    assert files["lib/ld-musl-x86_64.so.1"].isfile()
    assert files["lib/libc.musl-x86_64.so.1"].linkname == "ld-musl-x86_64.so.1"
    assert files["bin/busybox"].isfile() and files["bin/busybox"].mode & 0o7777 == 0o755
    for applet in ("bin/sh", "bin/ls", "usr/bin/wget", "sbin/ifconfig"):
        assert files[applet].issym() and files[applet].linkname == "/bin/busybox"
    # Not merged-/usr, no package manager (apk-tools is absent; no rpm/dpkg applet links).
    assert files["bin"].isdir() and files["lib"].isdir()
    assert not {"sbin/apk", "bin/rpm", "usr/bin/dpkg", "linuxrc"} & set(files)
    assert files["tmp"].mode & 0o7777 == 0o1777
    assert files["root"].mode & 0o7777 == 0o700
    assert read_file(docker_client, standin, "/etc/alpine-release") == "3.20.3\n"
    assert "VERSION_ID=3.20.3\n" in read_file(docker_client, standin, "/etc/os-release")
    assert read_file(docker_client, standin, "/etc/passwd").startswith(
        "root:x:0:0:root:/root:/bin/sh\n"
    )
    assert "BEGIN CERTIFICATE" in read_file(
        docker_client, standin, "/etc/ssl/certs/ca-certificates.crt"
    )


def test_its_shell_runs(docker_client: docker.DockerClient, standin: str) -> None:
    output = docker_client.containers.run(
        standin,
        ["sh", "-c", "cat /etc/alpine-release && busybox | head -1"],
        network_mode="none",
        remove=True,
    ).decode()
    first, second = output.splitlines()
    assert first == "3.20.3"
    assert second.startswith("BusyBox v1.37.0 (Debian 1:1.37.0")


def test_trivy_detects_alpine_3_20_and_its_apk_packages(
    docker_client: docker.DockerClient, standin: str, scanner: TrivyScanner, tmp_path: Path
) -> None:
    os, packages, findings = scan(docker_client, scanner, standin, tmp_path)
    assert os == ("alpine", "3.20.3")
    assert {(p.name, p.version, p.source_name) for p in packages} == APK_PACKAGES
    assert {p.type for p in packages} == {"alpine"}
    # The seed's alpine row: 4 HIGH in its ssl packages; 90025 (busybox, fixed in
    # 1.36.1-r0) is below 1.36.1-r29 and not reported.
    assert findings == ALPINE_SSL


def test_static_go_server_serves_on_it(
    docker_client: docker.DockerClient, cells: dict[str, str], run_id: str
) -> None:
    network = docker_client.networks.create(f"basebench-{run_id}", driver="bridge")
    container = docker_client.containers.run(
        cells["1.22.10"],
        detach=True,
        network=network.name,
        ports={"8080/tcp": ("127.0.0.1", None)},
        labels={labels.RUN: run_id},
    )
    try:
        container.reload()
        port = int(container.attrs["NetworkSettings"]["Ports"]["8080/tcp"][0]["HostPort"])
        wait_for_http("127.0.0.1", port, "/", timeout=30)
        container.reload()
        assert container.status == "running"
    finally:
        container.remove(force=True)
        network.remove()


@pytest.fixture(scope="module")
def scanned(
    docker_client: docker.DockerClient,
    cells: dict[str, str],
    scanner: TrivyScanner,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Scanned]:
    """Each alpine cell scanned once: Go version -> (OS, packages, findings)."""
    return {
        version: scan(docker_client, scanner, image, tmp_path_factory.mktemp(f"scan-{version}"))
        for version, image in cells.items()
    }


@pytest.mark.parametrize(("version", "stdlib"), [("1.22.10", GO_1_22), ("1.25.5", GO_1_25)])
def test_alpine_cells_get_alpine_and_their_go_version_advisories(
    scanned: dict[str, Scanned], version: str, stdlib: set[Finding]
) -> None:
    os, packages, findings = scanned[version]
    assert os == ("alpine", "3.20.3")
    assert ("stdlib", f"v{version}") in {(p.name, p.version) for p in packages}
    assert findings == ALPINE_SSL | stdlib


def test_two_go_versions_differ_by_the_stdlib_advisory_fixed_in_1_23(
    scanned: dict[str, Scanned],
) -> None:
    ids = {version: {f[0] for f in findings} for version, (_, _, findings) in scanned.items()}
    assert ids["1.22.10"] - ids["1.25.5"] == {"CVE-2026-90031"}
    assert ids["1.25.5"] - ids["1.22.10"] == set()
