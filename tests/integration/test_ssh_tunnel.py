"""SshTunnel against a real OpenSSH server on loopback and the machine's real Docker engine."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from tasks.hosts.ssh_tunnel import SshOptions, SshTunnel, TunnelError
from tests.sshd import Sshd, free_port, known_hosts_line, make_key, running_sshd

pytestmark = pytest.mark.integration

ENGINE_URL = "unix:///var/run/docker.sock"
# Every failure must be reported quickly, not after a connect or open timeout.
FAST = 10.0


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    """A running sshd on 127.0.0.1 that lets root in with its one client key."""
    with running_sshd(tmp_path_factory.mktemp("sshd")) as server:
        yield server


@pytest.fixture(scope="module")
def engine_id() -> str:
    """The ID of the engine on this machine's default socket."""
    client = docker.DockerClient(base_url=ENGINE_URL, timeout=10)
    try:
        return str(client.info()["ID"])
    finally:
        client.close()


def options(sshd: Sshd, **changes: Path) -> SshOptions:
    files = {"identity_file": sshd.identity_file, "known_hosts_file": sshd.known_hosts_file}
    return SshOptions(**{**files, **changes})


def open_fails(url: str, opts: SshOptions) -> str:
    """The TunnelError message of opening a tunnel that must fail, checked to be quick."""
    started = time.monotonic()
    with pytest.raises(TunnelError) as failure:
        SshTunnel(url, opts).open(timeout=30)
    assert time.monotonic() - started < FAST
    message = str(failure.value)
    assert "\n" not in message and message.startswith(f"{url}: ")
    return message


def test_tunnel_reaches_the_same_engine(sshd: Sshd, engine_id: str) -> None:
    with SshTunnel(sshd.url, options(sshd)) as url:
        assert url.startswith("unix:///") and url.endswith("/docker.sock")
        client = docker.DockerClient(base_url=url, timeout=10)
        try:
            assert client.ping()
            assert client.info()["ID"] == engine_id
        finally:
            client.close()


def test_wrong_identity_is_denied(sshd: Sshd, tmp_path: Path) -> None:
    stranger = make_key(tmp_path / "stranger_ed25519")
    message = open_fails(sshd.url, options(sshd, identity_file=stranger))
    assert "Permission denied" in message


def test_unknown_host_key_is_refused(sshd: Sshd, tmp_path: Path) -> None:
    other = make_key(tmp_path / "other_host_ed25519").with_suffix(".pub").read_text()
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(known_hosts_line(sshd.port, " ".join(other.split()[:2])))
    message = open_fails(sshd.url, options(sshd, known_hosts_file=known_hosts))
    assert "Host key verification failed" in message


def test_nothing_listening_is_refused(sshd: Sshd) -> None:
    url = f"ssh://root@127.0.0.1:{free_port()}"
    message = open_fails(url, options(sshd))
    assert "Connection refused" in message


def test_close_ends_ssh_and_removes_the_socket_folder(sshd: Sshd) -> None:
    tunnel = SshTunnel(sshd.url, options(sshd))
    tunnel.open()
    pid, folder = tunnel.pid, tunnel.socket_dir
    assert pid is not None and folder is not None
    assert folder.stat().st_mode & 0o777 == 0o700
    assert (folder / "docker.sock").is_socket()
    tunnel.close()
    assert not folder.exists()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # reaped by close(), so no zombie keeps the pid either
