"""Opening a run's session on a host whose address pools leaked networks exhausted."""

from __future__ import annotations

from pathlib import Path

import docker
import docker.errors
import pytest

from infra.tls_hosts import TlsHost
from infra.up import InfraState
from tasks import labels
from tasks.hosts.connection import HostUnavailable, connect
from tasks.hosts.session import close_session, open_session
from tasks.hosts.sweep import RunLeases
from tasks.matrix import MatrixConfig, expand
from tasks.scanners import make_scanner

pytestmark = pytest.mark.integration

DEAD_RUN = "20200101T000000Z-leak01"  # years old, no lease: a dead run's leftovers


def fill_address_pool(client: docker.DockerClient) -> int:
    """Create networks labelled as a dead run's until the engine has no subnet left."""
    for count in range(1, 1000):
        try:
            client.networks.create(f"leak-{count}", labels={labels.RUN: DEAD_RUN})
        except docker.errors.APIError as exc:
            assert "could not find an available, non-overlapping" in str(exc)
            return count - 1
    raise AssertionError("the pool never ran out")


def test_exhausted_pools_drop_the_host_and_a_sweep_frees_them(
    infra: InfraState, tls_hosts: list[TlsHost], tmp_path: Path
) -> None:
    host = tls_hosts[0].host_config(max_parallel=1)
    config = MatrixConfig(
        name="session",
        apps=["go-hello"],
        toolchains=["1.22.10"],
        bases=["distroless-static"],
        hosts=[host],
        cache_dir=tmp_path,
    )
    client = connect(host)
    leaked = fill_address_pool(client)
    assert leaked >= 200  # a /16 pool in /24 networks, less the ones in use
    run_id = "20991231T000000Z-open01"
    try:
        with make_scanner(config.scanner, infra.cache_dir) as scanner:
            with pytest.raises(HostUnavailable) as caught:
                open_session(host, config, run_id, expand(config), scanner)  # no sweep
            message = str(caught.value)
            assert message.startswith(f"{host.name} ({host.url}): answers but could not be")
            assert "non-overlapping" in message and "\n" not in message

            alive = RunLeases(tmp_path).alive
            session = open_session(host, config, run_id, expand(config), scanner, alive)
            assert session.swept is not None
            assert len(session.swept.networks) == leaked
            assert session.swept.runs == {DEAD_RUN}
            assert close_session(session, keep_images=False, lost=False) is None
        dead = {"label": f"{labels.RUN}={DEAD_RUN}"}
        assert client.networks.list(filters=dead) == []
    finally:
        for network in client.networks.list(filters={"label": labels.RUN}):
            network.remove()
        client.close()
