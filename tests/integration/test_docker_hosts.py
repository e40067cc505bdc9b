"""Docker hosts against real engines: one conformance suite, one subclass per kind of host.

Kinds: the machine's engine on its unix socket, and a TLS dockerd on 127.0.0.1 started
by the ``tls_hosts`` fixture (tests/docker_daemons.py). Then the ways a host can fail.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import platform
import socket
import subprocess
import tarfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import pytest

from cli import hosts as hosts_cli
from infra.tls_hosts import TlsHost, kill_tls_host, leftovers, start_tls_host, stop_tls_host
from infra.up import InfraState
from tasks.hosts.config import HostConfig
from tasks.hosts.connection import HostUnavailable, connect
from tasks.hosts.health import check_host, check_hosts
from tests.docker_daemons import free_port

pytestmark = pytest.mark.integration

REGISTRY = "127.0.0.1:5000"
STATIC = f"{REGISTRY}/distroless/static-debian12:latest"
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
        assert health.free_disk_bytes is not None and health.free_disk_bytes > 0
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

    def test_pull_from_local_registry(self, client: docker.DockerClient, infra: InfraState) -> None:
        # ``infra`` puts the forged images in the local registry (a no-op when there).
        image = client.images.pull(STATIC)
        assert STATIC in image.tags
        assert image.attrs["Os"] == "linux"
        assert 1_000_000 < image.attrs["Size"] < 10_000_000  # forged distroless static: ~2 MB

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


class TestLocalSocket(DockerHostSuite):
    @pytest.fixture
    def host(self) -> HostConfig:
        return HostConfig(name="local", url="unix:///var/run/docker.sock")


class TestTlsTcp(DockerHostSuite):
    @pytest.fixture
    def host(self, tls_hosts: list[TlsHost]) -> HostConfig:
        return tls_hosts[0].host_config(max_parallel=2)


# --- hosts that fail -------------------------------------------------------------------


def test_two_tls_hosts_are_separate_engines(tls_hosts: list[TlsHost]) -> None:
    infos = []
    for tls_host in tls_hosts:
        client = connect(tls_host.host_config())
        infos.append(client.info())
        client.close()
    local = connect(HostConfig())
    infos.append(local.info())
    local.close()
    assert len({info["ID"] for info in infos}) == 3
    assert len({info["DockerRootDir"] for info in infos}) == 3
    assert tls_hosts[0].pool != tls_hosts[1].pool
    assert not tls_hosts[0].bridge_network.overlaps(tls_hosts[1].bridge_network)


def test_user_networks_come_from_each_hosts_own_pool(tls_hosts: list[TlsHost]) -> None:
    for tls_host in tls_hosts:
        client = connect(tls_host.host_config())
        network = client.networks.create(f"basebench-test-{uuid.uuid4().hex[:6]}")
        try:
            subnet = network.attrs["IPAM"]["Config"][0]["Subnet"]
            assert subnet.startswith(str(tls_host.pool.network_address).rsplit(".", 2)[0] + ".")
        finally:
            network.remove()
            client.close()


def test_wrong_ca_says_certificate_verify_failed(
    tls_hosts: list[TlsHost], make_wrong_ca_host: Callable[[TlsHost], HostConfig]
) -> None:
    bad = make_wrong_ca_host(tls_hosts[0])
    with pytest.raises(HostUnavailable) as caught:
        connect(bad, ping_timeout=5)
    message = str(caught.value)
    assert "certificate verify failed" in message
    assert bad.name in message and bad.url in message
    assert "\n" not in message
    assert "BEGIN" not in message  # no key or certificate contents


def test_ca_of_another_host_is_refused(tls_hosts: list[TlsHost]) -> None:
    a, b = tls_hosts
    crossed = HostConfig(name="crossed", url=b.url, tls=a.tls)
    with pytest.raises(HostUnavailable, match="certificate verify failed"):
        connect(crossed, ping_timeout=5)


def test_host_that_refuses_connections_fails_fast() -> None:
    dead = HostConfig(name="dead", url=f"tcp://127.0.0.1:{free_port()}", insecure=True)
    started = time.monotonic()
    with pytest.raises(
        HostUnavailable, match=r"dead \(tcp://127\.0\.0\.1:\d+\): connection refused"
    ):
        connect(dead, ping_timeout=3)
    assert time.monotonic() - started < 3


def test_host_that_never_answers_times_out_within_seconds() -> None:
    # Accepts TCP (the kernel's backlog) but never says a word: a hung engine.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        mute = HostConfig(name="mute", url=f"tcp://127.0.0.1:{port}", insecure=True)
        started = time.monotonic()
        with pytest.raises(HostUnavailable, match="timed out"):
            connect(mute, ping_timeout=2)
        assert 1.5 < time.monotonic() - started < 5


def test_missing_socket_is_unavailable(tmp_path: Path) -> None:
    nowhere = HostConfig(name="nowhere", url=f"unix://{tmp_path}/docker.sock")
    with pytest.raises(HostUnavailable, match=r"nowhere .*no such socket"):
        connect(nowhere)


def test_check_hosts_with_one_dead_and_one_live(tls_hosts: list[TlsHost]) -> None:
    live = tls_hosts[1].host_config()
    dead = HostConfig(name="dead", url=f"tcp://127.0.0.1:{free_port()}", insecure=True)
    started = time.monotonic()
    dead_health, live_health = check_hosts([dead, live], timeout=3)
    assert time.monotonic() - started < 5
    assert (dead_health.name, dead_health.ok) == ("dead", False)
    assert dead_health.error is not None and "connection refused" in dead_health.error
    assert dead_health.version is None and dead_health.free_disk_bytes is None
    assert (live_health.name, live_health.ok) == (live.name, True)
    assert live_health.version is not None and live_health.platform == f"linux/{MACHINE_ARCH}"


def test_killed_host_is_cleaned_up_completely(
    tmp_path_factory: pytest.TempPathFactory, hello_binary: bytes
) -> None:
    """A daemon SIGKILLed with a serving container leaves nothing after stop_tls_host."""
    root = tmp_path_factory.mktemp("killed")
    started = time.monotonic()
    victim = start_tls_host("tls-kill", root / "h", free_port())
    start_seconds = time.monotonic() - started
    try:
        assert start_seconds < 15
        port = serve_hello(victim.host_config(), hello_binary)
        kill_tls_host(victim)
        assert victim.pid() is None
        # The container outlives its engine (shim + docker-proxy gone, process still there).
        assert any(item.startswith("mount ") for item in leftovers(victim))
        assert any(item.startswith("cgroup ") for item in leftovers(victim))
    finally:
        stop_tls_host(victim)
    assert leftovers(victim) == []
    assert str(root) not in Path("/proc/mounts").read_text()
    links = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True).stdout
    assert victim.bridge not in links
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)


def serve_hello(host: HostConfig, hello_binary: bytes) -> int:
    """Run the hello server on ``host`` in a network of its own; the published port."""
    client = connect(host)
    context = tar_context(
        {
            "Dockerfile": (b'FROM scratch\nCOPY hello /hello\nENTRYPOINT ["/hello"]\n', 0o644),
            "hello": (hello_binary, 0o755),
        }
    )
    image, _ = client.images.build(fileobj=context, custom_context=True, network_mode="none")
    network = client.networks.create("probe-net")
    container = client.containers.run(
        image.id, detach=True, network=network.name, ports={"8080/tcp": ("127.0.0.1", None)}
    )
    container.reload()
    port = int(container.attrs["NetworkSettings"]["Ports"]["8080/tcp"][0]["HostPort"])
    assert http_get(f"http://127.0.0.1:{port}/", timeout=10) == "hello from a docker host"
    client.close()
    return port


def write_matrix(path: Path, hosts: list[HostConfig]) -> Path:
    """A minimal matrix file whose ``hosts:`` are ``hosts``."""
    entries = [h.model_dump(mode="json", exclude={"publish_address", "context"}) for h in hosts]
    path.write_text(
        json.dumps(
            {
                "name": "hosts-check",
                "apps": ["go-hello"],
                "toolchains": ["1.22.10"],
                "bases": ["bookworm"],
                "hosts": entries,
            }
        )
    )
    return path


def test_hosts_command_lists_each_host(
    tls_hosts: list[TlsHost], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dead = HostConfig(name="dead", url=f"tcp://127.0.0.1:{free_port()}", insecure=True)
    config = write_matrix(tmp_path / "m.yaml", [tls_hosts[0].host_config(), dead])
    code = hosts_cli.func(argparse.Namespace(config=str(config), timeout=3.0))
    lines = capsys.readouterr().out.splitlines()
    assert code == 0
    assert len(lines) == 2
    assert lines[0].startswith("tls-a  ok ") and "linux/" in lines[0] and " GB" in lines[0]
    assert lines[1].startswith("dead   unreachable  dead (tcp://127.0.0.1:")
    assert "connection refused" in lines[1]

    only_dead = write_matrix(tmp_path / "dead.yaml", [dead])
    assert hosts_cli.func(argparse.Namespace(config=str(only_dead), timeout=3.0)) == 1
