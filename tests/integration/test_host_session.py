"""Hosts whose address pools are exhausted, through `basebench run` (TLS daemons whose
user-defined networks come from one /16 in /24 subnets: 256 networks fill it).

- Networks of no basebench run fill the pool: the sweep must leave them alone, so the
  host is dropped with one line; the run goes on with another host (exit 0), or, when
  it was the only one, ends with exit 2 having built and published nothing.
- A dead run's leaked networks fill the pool: the sweep at run start removes them, which
  frees the pool, and the run builds there.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest

from cli.main import main
from infra.tls_hosts import TlsHost
from infra.up import InfraState
from tasks import labels
from tasks.hosts.config import HostConfig
from tasks.hosts.connection import connect
from tests.integration.test_multi_host import host_entry, run_leftovers, run_matrix

pytestmark = pytest.mark.integration

DEAD_RUN = "20200101T000000Z-leak01"  # years old, no lease: a dead run's leftovers
FOREIGN = "not-basebench"  # name prefix of networks no basebench run made (no run label)
POOL_EXHAUSTED = "could not find an available, non-overlapping"  # the engine's words


def fill_address_pool(
    client: docker.DockerClient, prefix: str, made: list[str], run_label: str | None = None
) -> None:
    """Create networks (``prefix-1``, ...; labelled as run ``run_label``'s, if given)
    until the engine has no subnet left. Each name goes to ``made`` as soon as it exists,
    so that the caller removes all of them, also when this fails half-way."""
    network_labels = {labels.RUN: run_label} if run_label else {}
    for count in range(1, 1000):
        name = f"{prefix}-{count}"
        try:
            client.networks.create(name, labels=network_labels)
        except docker.errors.APIError as exc:
            assert POOL_EXHAUSTED in str(exc)
            return
        made.append(name)
    raise AssertionError("the pool never ran out")


def remove_networks(client: docker.DockerClient, names: list[str]) -> None:
    doomed = set(names)
    for network in client.networks.list():
        if network.name in doomed:
            network.remove()


@dataclass
class FullPool:
    """A TLS host whose pool networks of no basebench run have taken."""

    host: HostConfig
    client: docker.DockerClient
    foreign: list[str]  # the networks' names

    def foreign_left(self) -> int:
        names = {network.name for network in self.client.networks.list()}
        return sum(1 for name in self.foreign if name in names)


@pytest.fixture(scope="module")
def full_pool(tls_hosts: list[TlsHost]) -> Iterator[FullPool]:
    """tls-a with its address pool exhausted by networks that belong to no run; they are
    removed afterwards, also when a test failed."""
    host = tls_hosts[0].host_config(max_parallel=1)
    client = connect(host)
    foreign: list[str] = []
    try:
        fill_address_pool(client, FOREIGN, foreign)
        assert len(foreign) >= 200  # a /16 pool in /24 networks, less the ones in use
        yield FullPool(host, client, foreign)
    finally:
        remove_networks(client, foreign)
        client.close()


def write_one_cell(tmp_path: Path, infra: InfraState, hosts: list[HostConfig]) -> Path:
    """One cheap cell (go-hello, Go 1.22.10, distroless-static) with a cache of its own,
    so that whatever a run leaves there shows; returns the config's path."""
    config = tmp_path / "matrix.json"
    matrix: dict[str, Any] = {
        "name": "full-pools",
        "apps": ["go-hello"],
        "toolchains": ["1.22.10"],
        "bases": ["distroless-static"],
        "repeat": 1,
        "probe_timeout_seconds": 5,
        "cache_dir": str(tmp_path / "cache"),
        "scanner": {"db_dir": str(infra.cache_dir / "trivy")},
        "hosts": [host_entry(host) for host in hosts],
        "output": str(tmp_path / "results"),
    }
    config.write_text(json.dumps(matrix))
    return config


def run_debris(cache: Path) -> list[str]:
    """What a run left in its cache: archives, journal, leases, unpublished runs."""
    folders = ("archives", "journal", "runs", "unpublished")
    return sorted(str(p.relative_to(cache)) for f in folders for p in (cache / f).glob("*"))


def labelled(client: docker.DockerClient) -> list[str]:
    """Every container, image and network carrying a run label on the engine."""
    label = {"label": labels.RUN}
    return sorted(
        [f"container {c.name}" for c in client.containers.list(all=True, filters=label)]
        + [f"image {i.id}" for i in client.images.list(all=True, filters=label)]
        + [f"network {n.name}" for n in client.networks.list(filters=label)]
    )


def test_only_an_exhausted_host_ends_the_run_with_exit_2_and_leaves_nothing(
    full_pool: FullPool,
    infra: InfraState,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect"))
    config = write_one_cell(tmp_path, infra, [full_pool.host])
    before = labelled(full_pool.client)  # what other tests' runs keep there

    code = main(["run", str(config)])

    stderr = capsys.readouterr().err.splitlines()
    errors = [line for line in stderr if line.startswith("basebench:")]
    assert code == 2
    assert len(errors) == 1, errors
    host = full_pool.host
    assert errors[0].startswith(
        "basebench: no Docker host could be used, nothing was built or published: "
        f"{host.name} ({host.url}): answers but could not be readied: "
    )
    assert POOL_EXHAUSTED in errors[0]
    results = tmp_path / "results"
    assert not results.exists() or not any(results.rglob("*"))
    assert labelled(full_pool.client) == before
    assert run_debris(tmp_path / "cache") == []
    assert full_pool.foreign_left() == len(full_pool.foreign)  # not ours: never swept


def test_an_exhausted_host_is_dropped_and_a_swept_one_runs_the_cell(
    full_pool: FullPool,
    infra: InfraState,
    tls_hosts: list[TlsHost],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect"))
    swept = tls_hosts[1].host_config(max_parallel=1)
    client = connect(swept)
    leaked: list[str] = []
    try:
        fill_address_pool(client, "leak", leaked, run_label=DEAD_RUN)
        assert len(leaked) >= 200
        config = write_one_cell(tmp_path, infra, [full_pool.host, swept])

        run = run_matrix(config, tmp_path / "results")

        assert run.exit_code == 0
        (row,) = run.results.to_dict("records")
        assert (row["status"], row["host"], row["attempts"]) == ("ok", swept.name, 1)
        assert run.run_hosts == [swept.name]  # the dropped host is not the run's
        host = full_pool.host
        dropped = [line for line in run.warnings if line.startswith("dropping host")]
        assert len(dropped) == 1, run.warnings
        assert dropped[0].startswith(
            f"dropping host {host.name} ({host.url}): answers but could not be readied: "
        )
        assert POOL_EXHAUSTED in dropped[0] and "\n" not in dropped[0]
        # The dead run's networks were swept at the start, which freed the pool.
        assert f"swept {swept.name}: {len(leaked)} networks of 1 dead run" in run.warnings
        dead = {"label": f"{labels.RUN}={DEAD_RUN}"}
        assert client.networks.list(filters=dead) == []
        assert full_pool.foreign_left() == len(full_pool.foreign)  # not ours: never swept
        assert run_leftovers(swept, run.run_id) == []
        assert run_leftovers(host, run.run_id) == []
        assert run_debris(tmp_path / "cache") == []
    finally:  # only what this test made: other runs may share the engine
        remove_networks(client, leaked)
        client.close()
