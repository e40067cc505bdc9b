"""The conformance suite every kind of Docker host passes, against real engines.

Use it as a pytest plugin (``pytest_plugins = ["conformance.hosts"]``, for the
session fixture ``hello_binary``) and subclass ``DockerHostSuite`` once per kind of
host, with a ``host`` fixture giving its ``HostConfig``::

    class TestLocalSocket(DockerHostSuite):
        @pytest.fixture
        def host(self) -> HostConfig:
            return HostConfig(name="local", url="unix:///var/run/docker.sock")

The suite also needs an ``infra`` fixture that puts the forged images into the local
registry at 127.0.0.1:5000 (tests/integration/conftest.py has it): ``hello_binary`` is
compiled in the forged golang builder and one test pulls the forged distroless static.
Needs pytest (a test dependency) and ``dockerd`` on PATH (the engines' version is
compared with it).
"""

from __future__ import annotations

import contextlib
import io
import os
import platform
import subprocess
import tarfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import docker
import pytest

from tasks.hosts.config import HostConfig
from tasks.hosts.connection import HOST_KINDS, connect, docker_host
from tasks.hosts.health import check_host
from tasks.hosts.ssh_tunnel import SshTunnel
from tasks.labels import RUN
from tasks.programs import find_program
from tasks.records import BuildResult, PulledImage, Stage

if TYPE_CHECKING:
    from infra.up import InfraState

REGISTRY = "127.0.0.1:5000"
STATIC = f"{REGISTRY}/distroless/static-debian12:latest"
STATIC_PACKAGES = ["base-files", "ca-certificates", "media-types", "netbase", "tzdata"]
ANALYSIS = f"{REGISTRY}/distroless/python3-debian13:latest"  # the analysis image, forged
GOLANG = f"{REGISTRY}/library/golang:1.22.10-bookworm"
MACHINE_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
HELLO_GO = b"""package main

import (
\t"fmt"
\t"net/http"
)

func main() {
\thttp.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
\t\tfmt.Fprint(w, "hello from a docker host")
\t})
\thttp.ListenAndServe(":8080", nil)
}
"""


def tar_context(files: dict[str, tuple[bytes, int]]) -> io.BytesIO:
    """A GNU tar build context: name -> (content, mode)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, (data, mode) in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    buffer.seek(0)
    return buffer


def http_get(url: str, timeout: float) -> str:
    """GET with retries: docker-proxy accepts before the app listens (resets, empty replies)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return str(response.read().decode())
        except (urllib.error.URLError, ConnectionError, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def open_files() -> dict[str, str]:
    """This process's open file descriptors: number -> what it points at."""
    found = {}
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the listing's own descriptor is gone by now
            found[fd] = os.readlink(f"/proc/self/fd/{fd}")
    return found


@pytest.fixture(scope="session")
def hello_binary(infra: InfraState) -> bytes:
    """A static Go HTTP server on :8080, compiled once in the forged golang builder."""
    client = connect(HostConfig())
    client.images.pull(GOLANG)
    tag = f"basebench-test-hello-build:{uuid.uuid4().hex[:8]}"
    dockerfile = (
        f"FROM {GOLANG}\nWORKDIR /src\nCOPY go.mod main.go ./\n"
        "RUN CGO_ENABLED=0 GOFLAGS=-trimpath go build -o /hello .\n"
    )
    context = tar_context(
        {
            "Dockerfile": (dockerfile.encode(), 0o644),
            "go.mod": (b"module hello\n\ngo 1.22\n", 0o644),
            "main.go": (HELLO_GO, 0o644),
        }
    )
    image, _ = client.images.build(
        fileobj=context, custom_context=True, tag=tag, network_mode="none", rm=True
    )
    container = client.containers.create(image.id)
    try:
        stream, _ = container.get_archive("/hello")
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
            member = tar.extractfile("hello")
            assert member is not None
            return member.read()
    finally:
        container.remove(force=True)
        client.images.remove(image.id, force=True)
        client.close()


class DockerHostSuite:
    """What every Docker host must do for basebench; subclasses provide ``host``."""

    @pytest.fixture
    def host(self) -> HostConfig:
        raise NotImplementedError

    @pytest.fixture
    def client(self, host: HostConfig) -> Iterator[docker.DockerClient]:
        client = connect(host, timeout=300)
        yield client
        client.close()

    @pytest.fixture
    def cleanup(self, client: docker.DockerClient) -> Iterator[list[str]]:
        """Append image tags / container ids here; removed after the test."""
        made: list[str] = []
        yield made
        for ref in reversed(made):
            try:
                client.containers.get(ref).remove(force=True)
            except docker.errors.NotFound:
                with contextlib.suppress(docker.errors.ImageNotFound):
                    client.images.remove(ref, force=True)

    def test_docker_host_is_the_kind_for_its_scheme(self, host: HostConfig) -> None:
        scheme = urlsplit(host.url).scheme
        made = docker_host(host)
        assert isinstance(made, HOST_KINDS[scheme])
        assert made.scheme == scheme and made.config == host
        assert made.responds() is True

    def test_connected_client_closes_cleanly(self, host: HostConfig) -> None:
        before = open_files()
        client = connect(host)
        assert client.ping() is True
        # An ssh host's client carries its tunnel (an ssh process and a socket folder).
        tunnel = getattr(client, "tunnel", None)
        assert isinstance(tunnel, SshTunnel) == (urlsplit(host.url).scheme == "ssh")
        pid = tunnel.pid if tunnel is not None else None
        folder = tunnel.socket_dir if tunnel is not None else None
        if tunnel is not None:
            assert pid is not None and folder is not None and folder.is_dir()
            os.kill(pid, 0)  # ssh runs while the client is open
        client.close()
        assert open_files() == before  # no connection, pipe or log file left open
        if pid is not None and folder is not None:
            assert not folder.exists()
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)  # ssh ended and reaped: no zombie keeps the pid either

    def test_connect_answers_ping(self, client: docker.DockerClient) -> None:
        assert client.ping() is True
        assert client.api.trust_env is False

    def test_health_reports_version_platform_and_disk(self, host: HostConfig) -> None:
        health = check_host(host)
        engine = subprocess.run(
            ["dockerd", "--version"], capture_output=True, text=True, check=True
        ).stdout
        assert health.ok, health.error
        assert health.error is None
        assert health.name == host.name and health.url == host.url
        assert health.version is not None and health.version in engine  # the same dockerd binary
        assert health.platform == f"linux/{MACHINE_ARCH}"
        # Free disk is measured on this machine only: unknown (None) for a remote engine.
        if host.is_local:
            assert health.free_disk_bytes is not None and health.free_disk_bytes > 0
        else:
            assert health.free_disk_bytes is None
        assert health.seconds < 5

    def test_build_from_scratch(self, client: docker.DockerClient, cleanup: list[str]) -> None:
        tag = f"basebench-test-scratch:{uuid.uuid4().hex[:8]}"
        cleanup.append(tag)
        payload = b"basebench was here\n"
        context = tar_context(
            {
                "Dockerfile": (b"FROM scratch\nCOPY greeting.txt /greeting.txt\n", 0o644),
                "greeting.txt": (payload, 0o644),
            }
        )
        image, _ = client.images.build(
            fileobj=context, custom_context=True, tag=tag, network_mode="none", rm=True
        )
        assert image.attrs["Size"] == len(payload)
        assert len(image.attrs["RootFS"]["Layers"]) == 1
        assert client.images.get(tag).id == image.id

    def test_buildkit_cli_builds_through_cli_arguments(
        self, host: HostConfig, client: docker.DockerClient, cleanup: list[str], tmp_path: Path
    ) -> None:
        """The build stage's BuildKit path: docker.io's CLI, reaching the engine only
        through ``cli_arguments`` (no DOCKER_HOST, an empty DOCKER_CONFIG)."""
        tag = f"basebench-test-buildkit:{uuid.uuid4().hex[:8]}"
        cleanup.append(tag)
        (tmp_path / "Dockerfile").write_text("FROM scratch\nCOPY greeting.txt /g.txt\n")
        (tmp_path / "greeting.txt").write_bytes(b"built by buildkit\n")
        env = {"PATH": os.environ["PATH"], "DOCKER_BUILDKIT": "1", "DOCKER_CONFIG": str(tmp_path)}
        with docker_host(host).cli_arguments() as connection:
            argv = [find_program("/usr/bin/docker"), *connection, "build", "--network", "none"]
            argv += ["--tag", tag, "--iidfile", str(tmp_path / "iid"), str(tmp_path)]
            done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
        image = client.images.get(tag)
        assert image.id == (tmp_path / "iid").read_text().strip()
        assert image.attrs["Size"] == len(b"built by buildkit\n")

    def test_pull_from_local_registry(self, client: docker.DockerClient, infra: InfraState) -> None:
        # ``infra`` puts the forged images in the local registry (a no-op when there).
        image = client.images.pull(STATIC)
        assert STATIC in image.tags
        assert image.attrs["Os"] == "linux"
        assert 1_000_000 < image.attrs["Size"] < 10_000_000  # forged distroless static: ~2 MB

    def test_an_image_is_analysed_on_the_host_as_here(
        self, host: HostConfig, client: docker.DockerClient, infra: InfraState, tmp_path: Path
    ) -> None:
        """Analysis on the host: the toolbox reaches the engine through this kind of host,
        and the container there reads the image through the engine's ``socket``."""
        # Imported here: the stages load Prefect, which plugin registration should not.
        from tasks.scanners import make_scanner
        from tasks.scanners.config import ScannerConfig
        from tasks.sessions.toolbox import install_toolbox, pack_toolbox
        from tasks.stages.analyse_on_host import analyse_on_host
        from tasks.stages.inspect import inspect_image
        from tasks.stages.save import save_image

        image = client.images.pull(STATIC)
        client.images.pull(ANALYSIS)
        build = BuildResult("conformance", image.id, STATIC, None, None, None)
        nothing = PulledImage(ref="", digest=None, forged=True, layers=())
        config = ScannerConfig(db_dir=infra.cache_dir / "trivy")
        run_id = f"conformance-{uuid.uuid4().hex[:8]}"
        with make_scanner(config, tmp_path) as scanner:
            toolbox = pack_toolbox(scanner, tmp_path / "toolbox")
            analysis = install_toolbox(client, toolbox, ANALYSIS, host.socket)
            outcomes = analyse_on_host.fn(
                client, analysis, scanner, run_id, build, nothing, nothing
            )
            archive = save_image.fn(client, image.id, tmp_path)
            inspected_here = inspect_image.fn(client, build, nothing, nothing, archive)
            scanned_here = scanner.scan(archive)
        inspected, scanned = outcomes[Stage.INSPECT], outcomes[Stage.SCAN]
        assert inspected == inspected_here
        assert (scanned.packages, scanned.findings) == (
            scanned_here.packages,
            scanned_here.findings,
        )
        assert (inspected.size_bytes, scanned.os_family) == (image.attrs["Size"], "debian")
        assert sorted(p.name for p in scanned.packages) == STATIC_PACKAGES
        assert not client.containers.list(all=True, filters={"label": f"{RUN}={run_id}"})

    def test_published_port_is_reachable(
        self,
        host: HostConfig,
        client: docker.DockerClient,
        cleanup: list[str],
        hello_binary: bytes,
    ) -> None:
        tag = f"basebench-test-hello:{uuid.uuid4().hex[:8]}"
        cleanup.append(tag)
        context = tar_context(
            {
                "Dockerfile": (b'FROM scratch\nCOPY hello /hello\nENTRYPOINT ["/hello"]\n', 0o644),
                "hello": (hello_binary, 0o755),
            }
        )
        client.images.build(fileobj=context, custom_context=True, tag=tag, network_mode="none")
        # A network of the test's own, as runs create: the engine's default bridge is
        # not something basebench relies on.
        network = client.networks.create(f"basebench-test-{uuid.uuid4().hex[:8]}")
        container = client.containers.run(
            tag,
            detach=True,
            network=network.name,
            ports={"8080/tcp": (host.publish_address, None)},
        )
        cleanup.append(container.id)
        container.reload()
        binding = container.attrs["NetworkSettings"]["Ports"]["8080/tcp"][0]
        assert binding["HostIp"] == host.publish_address
        body = http_get(f"http://{host.publish_address}:{binding['HostPort']}/", timeout=10)
        assert body == "hello from a docker host"
        container.remove(force=True)
        network.remove()
        with pytest.raises(docker.errors.NotFound):
            client.containers.get(container.id)


__all__ = [
    "GOLANG",
    "MACHINE_ARCH",
    "REGISTRY",
    "STATIC",
    "DockerHostSuite",
    "hello_binary",
    "http_get",
    "open_files",
    "tar_context",
]
