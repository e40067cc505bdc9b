"""Debris of dead runs, swept by label on a real engine; live runs are never touched."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import docker
import pytest

from cli.main import main
from infra.up import InfraState
from tasks import labels
from tasks.hosts.sweep import RunLeases
from tasks.records import run_started

pytestmark = pytest.mark.integration

OLD_DEAD = "20200101T000000Z-dead01"  # no lease here, years old: another machine's, dead
CRASHED = "20991231T000000Z-crash1"  # leased by a process that is gone
LIVE = "20991231T000000Z-alive1"  # leased by this test process


def scratch_image(client: docker.DockerClient, run_id: str) -> str:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        data = b"FROM scratch\nCOPY x /x\n"
        for name, payload in (("Dockerfile", data), ("x", run_id.encode())):
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    buffer.seek(0)
    tag = f"basebench-sweep-test:{run_id.lower()}"
    client.images.build(
        fileobj=buffer, custom_context=True, tag=tag, labels={labels.RUN: run_id}, rm=True
    )
    return tag


def debris(client: docker.DockerClient, cache: Path, run_id: str) -> None:
    """What a run leaves when it dies: network, container, image, archive folder."""
    tag = scratch_image(client, run_id)
    network = client.networks.create(f"basebench-{run_id.lower()}", labels={labels.RUN: run_id})
    client.containers.create(tag, command=["/x"], labels={labels.RUN: run_id}, network=network.name)
    (cache / "archives" / f"{run_id}-abc123").mkdir(parents=True)


def leftovers(client: docker.DockerClient, cache: Path, run_id: str) -> list[str]:
    label = {"label": f"{labels.RUN}={run_id}"}
    return sorted(
        [f"container {c.name}" for c in client.containers.list(all=True, filters=label)]
        + [f"network {n.name}" for n in client.networks.list(filters=label)]
        + [f"image {i.tags}" for i in client.images.list(filters=label)]
        + [f"archive {p.name}" for p in (cache / "archives").glob(f"{run_id}-*")]
    )


def test_gc_removes_dead_runs_debris_and_keeps_live_runs(
    docker_client: docker.DockerClient,
    infra: InfraState,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cache = tmp_path / "cache"
    leases = RunLeases(cache)
    (cache / "runs").mkdir(parents=True)
    (cache / "runs" / f"{CRASHED}.lease").write_text(json.dumps({"pid": 2**22 + 7}))
    matrix = tmp_path / "m.yaml"
    matrix.write_text(
        "name: sweep\napps: [go-hello]\ntoolchains: ['1.22.10']\nbases: [bookworm]\n"
        f"hosts: [{{name: local, url: '{infra.docker_url}'}}]\ncache_dir: {cache}\n"
    )
    with leases.hold(LIVE):
        for run in (OLD_DEAD, CRASHED, LIVE):
            debris(docker_client, cache, run)
        assert main(["gc", str(matrix), "--dry-run"]) == 0
        dry = capsys.readouterr().out.splitlines()
        assert dry[0] == "local: would remove 2 containers, 2 networks, 2 images of 2 dead runs"
        assert leftovers(docker_client, cache, OLD_DEAD) != []  # nothing removed yet
        assert main(["gc", str(matrix)]) == 0
        out = capsys.readouterr().out.splitlines()
        assert out == [
            "local: removed 2 containers, 2 networks, 2 images of 2 dead runs",
            f"archives in {cache / 'archives'}: removed 2 archive folders of 2 dead runs",
        ]
        assert leftovers(docker_client, cache, OLD_DEAD) == []
        assert leftovers(docker_client, cache, CRASHED) == []
        live = leftovers(docker_client, cache, LIVE)
        assert len(live) == 4  # container, network, image, archive: all still there
    assert leases.alive(LIVE) is True  # lease gone: now "another machine's", dated 2099: kept
    main(["gc", str(matrix), "--older-than", "0.0001"])  # not older than anything yet: kept
    assert len(leftovers(docker_client, cache, LIVE)) == 4
    for container in docker_client.containers.list(
        all=True, filters={"label": f"{labels.RUN}={LIVE}"}
    ):
        container.remove(force=True)
    for network in docker_client.networks.list(filters={"label": f"{labels.RUN}={LIVE}"}):
        network.remove()
    docker_client.images.remove(f"basebench-sweep-test:{LIVE.lower()}", force=True)


def test_run_ids_carry_their_start() -> None:
    started = run_started("20261129T043141Z-e62871")
    assert started is not None and started.isoformat() == "2026-11-29T04:31:41+00:00"
    assert run_started("nightly-1") is None
