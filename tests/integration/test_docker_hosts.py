"""Docker hosts against real engines: ``conformance.hosts``, one subclass per kind.

Kinds: the machine's engine on its unix socket, a TLS dockerd on 127.0.0.1 started by
the ``tls_hosts`` fixture (tests/docker_daemons.py), and the machine's engine behind a
real sshd on 127.0.0.1 (tests/sshd.py). Then the ways a host can fail.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cli import hosts as hosts_cli
from conformance.hosts import MACHINE_ARCH, DockerHostSuite, http_get, tar_context
from infra.tls_hosts import TlsHost, kill_tls_host, leftovers, start_tls_host, stop_tls_host
from tasks.hosts.config import HostConfig
from tasks.hosts.connection import HostUnavailable, connect
from tasks.hosts.health import check_hosts
from tasks.hosts.ssh_tunnel import SshOptions
from tests.docker_daemons import free_port
from tests.sshd import Sshd, running_sshd

pytestmark = pytest.mark.integration


class TestLocalSocket(DockerHostSuite):
    @pytest.fixture
    def host(self) -> HostConfig:
        return HostConfig(name="local", url="unix:///var/run/docker.sock")


class TestTlsTcp(DockerHostSuite):
    @pytest.fixture
    def host(self, tls_hosts: list[TlsHost]) -> HostConfig:
        return tls_hosts[0].host_config(max_parallel=2)


class TestSshHost(DockerHostSuite):
    """The machine's engine (unix:///var/run/docker.sock) forwarded by a real sshd."""

    @pytest.fixture(scope="class")
    @classmethod
    def sshd(cls, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
        with running_sshd(tmp_path_factory.mktemp("sshd")) as server:
            yield server

    @pytest.fixture
    def host(self, sshd: Sshd) -> HostConfig:
        files = SshOptions(identity_file=sshd.identity_file, known_hosts_file=sshd.known_hosts_file)
        return HostConfig(name="ssh", url=sshd.url, ssh=files)


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
    code = hosts_cli.func(argparse.Namespace(config=str(config), timeout=3.0, json=False))
    lines = capsys.readouterr().out.splitlines()
    assert code == 0
    assert len(lines) == 2
    assert lines[0].startswith("tls-a  ok ") and "linux/" in lines[0] and " GB" in lines[0]
    assert lines[1].startswith("dead   unreachable  dead (tcp://127.0.0.1:")
    assert "connection refused" in lines[1]

    only_dead = write_matrix(tmp_path / "dead.yaml", [dead])
    assert hosts_cli.func(argparse.Namespace(config=str(only_dead), timeout=3.0, json=False)) == 1
