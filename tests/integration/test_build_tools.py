"""The build stage with both build tools, on the real engine and the forged images."""

from __future__ import annotations

from collections.abc import Iterator

import docker
import pytest

from infra.up import InfraState
from tasks import labels
from tasks.apps import load_app
from tasks.hosts.config import HostConfig
from tasks.hosts.connection import docker_host
from tasks.matrix import MatrixConfig, expand, parse_only
from tasks.sessions.session import pull_image, remove_run_images
from tasks.stages.build import BuildError, build_image

pytestmark = pytest.mark.integration

MATRIX = MatrixConfig(
    name="build-tools",
    apps=["go-hello"],
    toolchains=["1.22.10"],
    bases=["distroless-static"],
    hosts=[HostConfig()],
)


@pytest.fixture
def run_id(docker_client: docker.DockerClient, infra: InfraState) -> Iterator[str]:
    run = "build-tools-test"
    yield run
    remove_run_images(docker_client, run)


@pytest.mark.parametrize("tool", ["buildkit", "legacy"])
def test_both_tools_build_the_same_cell(
    tool: str, docker_client: docker.DockerClient, run_id: str
) -> None:
    (cell,) = expand(MATRIX, parse_only(["base=distroless-static"]))
    app = load_app(cell.app)
    builder, base = (
        pull_image(docker_client, cell.builder_ref),
        pull_image(docker_client, cell.base_ref),
    )
    built = build_image.fn(
        docker_client, cell, app, run_id, builder, base, engine=docker_host(HostConfig()), tool=tool
    )
    assert built.build_tool == tool
    image = docker_client.images.get(built.image_id)
    assert built.tag in image.tags
    assert image.labels[labels.RUN] == run_id
    # distroless static (~2.1 MB forged) plus a static Go server (~7 MB, trimmed paths)
    assert 5_000_000 < image.attrs["Size"] < 12_000_000
    assert image.attrs["RootFS"]["Layers"][:-1] == list(base.layers)  # base layers, + 1
    assert 1.0 < built.build_seconds < 300


def test_buildkit_failure_names_the_step(
    docker_client: docker.DockerClient, run_id: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    broken = tmp_path_factory.mktemp("apps") / "go-hello"
    source = load_app("go-hello").directory
    broken.mkdir()
    for name in ("app.yaml", "go.mod", "Dockerfile.single", "Dockerfile.multi"):
        (broken / name).write_bytes((source / name).read_bytes())
    (broken / "main.go").write_text("package main\n\nfunc main() { undefinedName() }\n")
    (cell,) = expand(MATRIX, parse_only(["base=distroless-static"]))
    app = load_app("go-hello", broken.parent)
    builder, base = (
        pull_image(docker_client, cell.builder_ref),
        pull_image(docker_client, cell.base_ref),
    )
    with pytest.raises(BuildError, match=r"^build: docker build exited 1: (.|\n)*undefined"):
        build_image.fn(
            docker_client,
            cell,
            app,
            run_id,
            builder,
            base,
            engine=docker_host(HostConfig()),
            tool="buildkit",
        )
