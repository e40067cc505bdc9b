"""Pytest plugin: extra TLS Docker daemons on this machine, standing in for remote hosts.

``tls_hosts`` (session) starts two daemons and removes every trace of them at the end,
also when tests failed; the teardown fails loudly if anything was left behind.
``make_wrong_ca_host`` builds a config that trusts an unrelated CA.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from infra.certs import make_ca
from infra.registry import free_port
from infra.tls_hosts import TlsHost, leftovers, start_tls_host, stop_tls_host
from tasks.hosts.config import HostConfig, TlsFiles

TLS_HOST_NAMES = ("tls-a", "tls-b")


def wrong_ca_host(host: TlsHost, directory: Path) -> HostConfig:
    """``host``'s config, but trusting a second CA that signed nothing of ``host``'s."""
    other = make_ca(directory, f"unrelated-{host.name}")
    tls = TlsFiles(ca=other.cert, cert=host.tls.cert, key=host.tls.key)
    return HostConfig(name=f"{host.name}-wrong-ca", url=host.url, tls=tls)


@pytest.fixture(scope="session")
def tls_hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[TlsHost]]:
    """Two running TLS daemons (``tls-a``, ``tls-b``); stopped and removed after the session."""
    root = tmp_path_factory.mktemp("tls-hosts")
    started: list[TlsHost] = []
    try:
        for name in TLS_HOST_NAMES:
            started.append(start_tls_host(name, root / name, free_port()))
        yield started
    finally:
        for host in started:
            stop_tls_host(host)
    left = [item for host in started for item in leftovers(host)]
    assert not left, f"tls hosts left behind: {left}"


@pytest.fixture
def make_wrong_ca_host(tmp_path: Path) -> Callable[[TlsHost], HostConfig]:
    """``make_wrong_ca_host(host)`` -> a config for ``host`` that trusts an unrelated CA."""
    return lambda host: wrong_ca_host(host, tmp_path / "wrong-ca")
