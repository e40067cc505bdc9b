"""One cell per language, end to end on forged images: each app built on its forged
builder, shipped on a distroless runtime base (and Go on the Debian 13 bases), then
inspected, scanned and probed. Sizes, package counts and the HTTP answer are asserted
with the values measured on this project's machine."""

from __future__ import annotations

import http.client
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest

from infra.forge.catalogue import Needs
from infra.registry_api import RegistryAPI
from infra.up import InfraState, up
from tasks import labels
from tasks.apps import load_app
from tasks.matrix import MatrixConfig, expand, load_matrix
from tasks.readers.layers import LayerCache
from tasks.records import Cell, InspectResult, ProbeResult, ScanResult
from tasks.scanners import make_scanner
from tasks.sessions.session import (
    create_run_network,
    pull_image,
    remove_run_images,
    remove_run_network,
)
from tasks.stages.build import build_image
from tasks.stages.inspect import inspect_image
from tasks.stages.probe import ProbeTarget, probe_image
from tasks.stages.save import save_image
from tests.integration.conftest import image_files

pytestmark = pytest.mark.integration

MB = 1_000_000
RUN_ID = "it-languages"
NEEDS = Needs(
    bases=(
        "distroless-python3-debian12",
        "distroless-nodejs18-debian12",
        "distroless-java17-debian12",
        "distroless-cc-debian12",
        "distroless-static-debian12",
        "trixie-slim",
        "distroless-base-debian13",
    ),
    toolchains=(
        ("go", "1.25.5"),
        ("python", "3.11.2"),
        ("node", "18.20.4"),
        ("java", "17"),
        ("rust", "1.63.0"),
    ),
)
MATRIX = """
name: languages
apps: [go-hello]
toolchains: ["1.25.5"]
bases: [trixie-slim, distroless-base-debian13]
include:
  - {{app: python-hello, toolchain: "3.11.2", base: distroless-python3-debian12}}
  - {{app: node-hello, toolchain: "18.20.4", base: distroless-nodejs18-debian12}}
  - {{app: java-hello, toolchain: "17", base: distroless-java17-debian12}}
  - {{app: rust-hello, toolchain: "1.63.0", base: distroless-cc-debian12}}
  - {{app: rust-hello, toolchain: "1.63.0", base: distroless-static-debian12}}
repeat: 2
cache_dir: {cache_dir}
hosts: [{{name: local, url: "{url}", max_parallel: 1}}]
"""


@dataclass(frozen=True)
class Expected:
    """What one cell measures here: size range (MB), OS packages, linkage.

    ``os_packages`` None: exactly the packages the base was forged from. Debian's
    Priority: required set moves with point releases (78 packages in trixie 13.2, 79 in
    13.8), so the forge's own record is the expected value, not a number.
    """

    size_mb: tuple[float, float]
    os_packages: int | None
    linkage: str


# Measured on this project's machine (see benchmarks/README.md for the base images).
EXPECTED = {
    ("go-hello", "trixie-slim"): Expected((75, 95), None, "dynamic"),
    ("go-hello", "distroless-base-debian13"): Expected((25, 40), 9, "dynamic"),
    ("python-hello", "distroless-python3-debian12"): Expected((45, 60), 35, "runtime"),
    ("node-hello", "distroless-nodejs18-debian12"): Expected((105, 125), 24, "runtime"),
    ("java-hello", "distroless-java17-debian12"): Expected((180, 240), 26, "runtime"),
    ("rust-hello", "distroless-cc-debian12"): Expected((22, 30), 11, "dynamic"),
    ("rust-hello", "distroless-static-debian12"): Expected((2, 4), 5, "static"),
}


@dataclass(frozen=True)
class Measured:
    cell: Cell
    builder_forged: bool
    base_forged: bool
    inspect: InspectResult
    scan: ScanResult
    probe: ProbeResult
    body: str


@pytest.fixture(scope="module")
def forged() -> InfraState:
    """The shared infra plus every builder and runtime base these cells use."""
    return up([], needs=NEEDS)


@pytest.fixture(scope="module")
def config(forged: InfraState, tmp_path_factory: pytest.TempPathFactory) -> MatrixConfig:
    path = tmp_path_factory.mktemp("languages") / "matrix.yaml"
    path.write_text(MATRIX.format(cache_dir=forged.cache_dir, url=forged.docker_url))
    return load_matrix(path)


@pytest.fixture(scope="module")
def measured(forged: InfraState, config: MatrixConfig) -> Iterator[dict[tuple[str, str], Measured]]:
    """Every cell through build, save, inspect, scan and probe (stage functions, no Prefect)."""
    client = docker.DockerClient(base_url=forged.docker_url, timeout=900)
    client.api.trust_env = False
    cache = LayerCache(config.cache_dir / "layers")
    target = ProbeTarget(create_run_network(client, RUN_ID), "127.0.0.1", 60)
    results = {}
    try:
        for cell in expand(config):
            app = load_app(cell.app, config.apps_dir)
            builder, base = pull_image(client, cell.builder_ref), pull_image(client, cell.base_ref)
            built = build_image.fn(client, cell, app, RUN_ID, builder, base)
            with (
                make_scanner(config.scanner, config.cache_dir) as scanner,
                tempfile.TemporaryDirectory(dir=config.cache_dir) as folder,
            ):
                archive = save_image.fn(client, built.image_id, Path(folder))
                inspected = inspect_image.fn(client, built, builder, base, archive, cache)
                scanned = scanner.scan(archive)
            probed = probe_image.fn(client, built, app, target, config.repeat)
            results[(cell.app, cell.base)] = Measured(
                cell, builder.forged, base.forged, inspected, scanned, probed,
                _answer(client, built.image_id, target.network),
            )  # fmt: skip
        yield results
    finally:
        remove_run_images(client, RUN_ID)
        remove_run_network(client, RUN_ID)
        client.close()


def _answer(client: docker.DockerClient, image_id: str, network: str) -> str:
    """The body of GET / from a fresh container of the image."""
    container = client.containers.run(
        image_id, detach=True, network=network, ports={"8080/tcp": ("127.0.0.1", None)},
        labels={labels.RUN: RUN_ID},
    )  # fmt: skip
    try:
        container.reload()
        port = int(container.attrs["NetworkSettings"]["Ports"]["8080/tcp"][0]["HostPort"])
        deadline = time.monotonic() + 60
        while True:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            try:
                connection.request("GET", "/")
                response = connection.getresponse()
                return f"{response.status} {response.read().decode()}"
            except (OSError, http.client.HTTPException):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
            finally:
                connection.close()
    finally:
        container.remove(force=True)


CELLS = sorted(EXPECTED)


@pytest.mark.parametrize(("app", "base"), CELLS)
def test_cell_runs_on_forged_images_and_answers(
    forged: InfraState, measured: dict[tuple[str, str], Measured], app: str, base: str
) -> None:
    found, expected = measured[(app, base)], EXPECTED[(app, base)]
    assert found.builder_forged and found.base_forged
    assert found.inspect.builder_forged and found.inspect.base_forged
    assert found.cell.linkage == expected.linkage
    low, high = expected.size_mb
    os_packages = [p for p in found.scan.packages if p.type == "debian"]
    measured_here = (found.inspect.size_bytes, len(os_packages))
    assert low * MB <= found.inspect.size_bytes <= high * MB, measured_here
    if expected.os_packages is None:
        repository, tag = found.cell.base_ref.split("/", 1)[1].split(":")
        forged_from = RegistryAPI(forged.registry).labels(repository, tag)
        assert forged_from is not None
        names = {p.split("=", 1)[0] for p in forged_from[labels.PACKAGES].split(",")}
        assert {p.name for p in os_packages} == names, measured_here
        assert len(os_packages) == len(names) > 70
    else:
        assert len(os_packages) == expected.os_packages, measured_here
    assert len(found.probe.startup_seconds) == 2  # two starts, each to its first HTTP 200
    assert found.body == "200 hello from basebench\n"


def test_distroless_runtimes_have_no_shell_and_the_right_os(
    measured: dict[tuple[str, str], Measured],
) -> None:
    for (app, base), found in measured.items():
        if base.startswith("distroless-"):
            assert not found.inspect.has_shell, (app, base)
            assert not found.inspect.has_package_manager, (app, base)
            assert (found.scan.os_family, found.scan.os_version.split(".")[0]) == (
                "debian",
                "13" if base.endswith("debian13") else "12",
            ), (app, base)


def test_the_node_app_brings_its_vendored_dependency_and_its_advisory(
    measured: dict[tuple[str, str], Measured],
) -> None:
    """node-hello vendors ms 2.1.2 (a labelled stand-in), which the fixture npm advisory
    names; no other cell has a language package with a finding."""
    node = measured[("node-hello", "distroless-nodejs18-debian12")]
    npm = [p for p in node.scan.packages if p.type == "node-pkg" and p.name == "ms"]
    assert [(p.name, p.version, p.purl) for p in npm] == [("ms", "2.1.2", "pkg:npm/ms@2.1.2")]
    language = {
        (f.vulnerability_id, f.package, f.installed_version, f.severity)
        for cell in measured.values()
        for f in cell.scan.findings
        if f.package in ("ms", "six")
    }
    assert language == {("CVE-2026-90051", "ms", "2.1.2", "MEDIUM")}


def test_static_rust_is_smaller_than_dynamic_rust_on_cc(
    measured: dict[tuple[str, str], Measured],
) -> None:
    static = measured[("rust-hello", "distroless-static-debian12")]
    dynamic = measured[("rust-hello", "distroless-cc-debian12")]
    # cc adds glibc, libssl, libstdc++ and libgcc (about 20 MB); the static binary
    # carries its own libc (about 1.3 MB against 0.4 MB).
    assert dynamic.inspect.size_bytes - static.inspect.size_bytes > 15 * MB


# --- the forged language images themselves ----------------------------------------------


@pytest.mark.parametrize(
    ("repository", "tag", "upstream", "deviation"),
    [
        ("library/python", "3.11.2-slim-bookworm", "docker.io/library/python:3.11.2-slim-bookworm",
         "python3.11"),
        ("library/node", "18.20.4-bookworm-slim", "docker.io/library/node:18.20.4-bookworm-slim",
         "nodejs"),
        ("library/eclipse-temurin", "17-jdk", "docker.io/library/eclipse-temurin:17-jdk",
         "openjdk-17-jdk-headless"),
        ("library/rust", "1.63.0-slim-bookworm", "docker.io/library/rust:1.63.0-slim-bookworm",
         "rustc"),
        ("distroless/nodejs18-debian12", "latest", "gcr.io/distroless/nodejs18-debian12",
         "libnode108"),
        ("distroless/java17-debian12", "nonroot", "gcr.io/distroless/java17-debian12",
         "cacerts"),
    ],
)  # fmt: skip
def test_language_stand_ins_are_labelled_forged_with_their_deviation(
    forged: InfraState, repository: str, tag: str, upstream: str, deviation: str
) -> None:
    found = RegistryAPI(forged.registry).labels(repository, tag)
    assert found is not None
    assert found[labels.FORGED] == "true"
    assert found[labels.UPSTREAM] == upstream
    assert deviation in found[labels.DEVIATION]


def test_builders_carry_the_catalogues_toolchain_versions(forged: InfraState) -> None:
    api = RegistryAPI(forged.registry)
    versions = {}
    for repository, tag, package in [
        ("library/python", "3.11.2-slim-bookworm", "python3.11"),
        ("library/node", "18.20.4-bookworm-slim", "nodejs"),
        ("library/eclipse-temurin", "17-jdk", "openjdk-17-jdk-headless"),
        ("library/rust", "1.63.0-slim-bookworm", "rustc"),
    ]:
        found = api.labels(repository, tag)
        assert found is not None
        packages = dict(p.split("=", 1) for p in found[labels.PACKAGES].split(","))
        versions[package] = packages[package].split("+")[0].split("-")[0]
    assert versions == {
        "python3.11": "3.11.2",
        "nodejs": "18.20.4",
        "openjdk-17-jdk-headless": "17.0.21.1",
        "rustc": "1.63.0",
    }


def test_distroless_language_images_link_their_runtime(
    forged: InfraState, docker_client: docker.DockerClient
) -> None:
    files = image_files(docker_client, f"{forged.registry}/distroless/python3-debian12:latest")
    assert files["usr/bin/python3"].linkname == "python3.11"
    assert "bin/sh" not in files and "usr/bin/dpkg" not in files
    assert "var/lib/dpkg/status.d/python3.11-minimal" in files
    files = image_files(docker_client, f"{forged.registry}/distroless/nodejs18-debian12:latest")
    assert files["nodejs/bin/node"].linkname == "/usr/bin/node"
    image = docker_client.images.get(f"{forged.registry}/distroless/java17-debian12:latest")
    assert image.attrs["Config"]["Entrypoint"] == ["/usr/bin/java", "-jar"]


def test_debian_13_stand_ins(forged: InfraState, docker_client: docker.DockerClient) -> None:
    slim = f"{forged.registry}/library/debian:trixie-slim"
    docker_client.images.pull(slim)
    found = RegistryAPI(forged.registry).labels("library/debian", "trixie-slim")
    assert found is not None
    packages = dict(p.split("=", 1) for p in found[labels.PACKAGES].split(","))
    assert packages["libc6"].startswith("2.41-")
    assert packages["base-files"].startswith("13.")
    files = image_files(docker_client, slim)
    assert files["lib64"].issym()  # merged /usr, from base-files itself in Debian 13
    base = image_files(docker_client, f"{forged.registry}/distroless/base-debian13:latest")
    assert "usr/lib64/ld-linux-x86-64.so.2" in base and base["lib64"].issym()
    assert "var/lib/dpkg/status.d/libssl3t64" in base


def test_registry_paths_follow_upstream(forged: InfraState) -> None:
    repositories = set(RegistryAPI(forged.registry).repositories())
    assert {
        "library/python", "library/node", "library/eclipse-temurin", "library/rust",
        "distroless/python3-debian12", "distroless/nodejs18-debian12",
        "distroless/java17-debian12", "distroless/cc-debian12", "distroless/base-debian13",
    } <= repositories  # fmt: skip
