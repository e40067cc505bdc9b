"""Build stage: a cell's image, built without cache and without network, timed.

Two build tools, recorded per cell (``build_tool``):

- ``buildkit`` (the default, as in Docker Engine 23 and later): the docker.io package's
  own CLI with ``DOCKER_BUILDKIT=1``, pointed at the cell's host. It runs with an empty
  ``DOCKER_CONFIG``, so no registry credentials go to the host.
- ``legacy``: the Docker SDK's ``images.build`` (the classic builder, deprecated upstream).
"""

from __future__ import annotations

import os
import tempfile
import time
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Protocol

import docker
import docker.errors
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks import labels
from tasks.apps import App
from tasks.processes import run_program
from tasks.programs import ProgramMissing, find_program
from tasks.records import BuildResult, BuildTool, Cell, PulledImage

DOCKER_CLI = "/usr/bin/docker"  # docker.io's CLI: BuildKit built in (see tasks/programs.tsv)
LOG_LINES = 8  # of a failed build's output, kept in the error


class EngineCli(Protocol):
    """How the docker CLI reaches the cell's engine (a ``tasks.hosts.DockerHost`` is one)."""

    def cli_arguments(self) -> AbstractContextManager[list[str]]:
        """Global ``docker`` options that reach the engine, valid inside the block."""
        ...


class BuildError(RuntimeError):
    """The image could not be built (the app's own failure, not the host's)."""


def image_tag(cell: Cell, run_id: str) -> str:
    """The local tag of a cell's image; never pushed anywhere."""
    return f"basebench/{cell.app}:{run_id.lower()}-{cell.cell_id}"


@task(name="build", cache_policy=NO_CACHE)  # live clients and images: never cached
def build_image(
    client: docker.DockerClient,
    cell: Cell,
    app: App,
    run_id: str,
    builder: PulledImage,
    base: PulledImage,
    engine: EngineCli | None = None,
    tool: BuildTool = "legacy",
) -> BuildResult:
    """Build the cell's image with no cache and no network; the time is the whole build.

    ``tool="buildkit"`` needs ``engine`` (the CLI connects on its own).
    """
    single = cell.variant == "single-stage"
    buildargs = {"BUILDER": cell.builder_ref, "RUN_ID": run_id}
    if not single:
        buildargs["BASE"] = cell.base_ref
    if not single and app.own_dockerfile(cell.base) is None:
        # The catalogue's linkage; an app's own Dockerfile decides for itself.
        buildargs |= {"CGO_ENABLED": "1" if cell.cgo_enabled else "0", "LINKAGE": cell.linkage}
    dockerfile = app.dockerfile(cell.base)
    tag = image_tag(cell, run_id)
    started = time.perf_counter()
    if tool == "buildkit":
        if engine is None:
            raise ValueError("build_image: tool='buildkit' needs the engine")
        image_id = _buildkit(engine, app.directory, dockerfile, buildargs, tag, run_id)
    else:
        image_id = _legacy(client, app.directory, dockerfile, buildargs, tag, run_id)
    elapsed = time.perf_counter() - started
    return BuildResult(
        run_id=run_id,
        image_id=image_id,
        tag=tag,
        build_seconds=elapsed,
        builder_digest=builder.digest,
        base_digest=base.digest,
        build_tool=tool,
        base_layers=base.layers,
    )


def _legacy(
    client: docker.DockerClient,
    context: Path,
    dockerfile: Path,
    buildargs: dict[str, str],
    tag: str,
    run_id: str,
) -> str:
    try:
        image, _ = client.images.build(
            path=str(context),
            dockerfile=dockerfile.name,
            buildargs=buildargs,
            tag=tag,
            labels={labels.RUN: run_id},
            nocache=True,
            pull=False,
            rm=True,
            forcerm=True,
            network_mode="none",
        )
    except docker.errors.BuildError as exc:
        tail = [line.get("stream", line.get("error", "")) for line in exc.build_log][-5:]
        raise BuildError(f"build: {exc.msg}: {''.join(str(t) for t in tail).strip()}") from exc
    return str(image.id)


def _buildkit(
    engine: EngineCli,
    context: Path,
    dockerfile: Path,
    buildargs: dict[str, str],
    tag: str,
    run_id: str,
) -> str:
    try:
        cli = find_program(DOCKER_CLI)
    except ProgramMissing as exc:
        raise BuildError(f"build: {exc}") from exc
    with (
        tempfile.TemporaryDirectory(prefix="basebench-build-") as scratch,
        engine.cli_arguments() as connection,
    ):
        iidfile = Path(scratch) / "image-id"
        argv = [cli, *connection, "build", "--no-cache", "--network", "none", "--progress", "plain"]
        argv += ["--file", str(dockerfile), "--tag", tag, "--label", f"{labels.RUN}={run_id}"]
        argv += [
            arg for key, value in buildargs.items() for arg in ("--build-arg", f"{key}={value}")
        ]
        argv += ["--iidfile", str(iidfile), str(context)]
        # An empty config: no credential helpers, no registry credentials sent to the host.
        env = {**os.environ, "DOCKER_BUILDKIT": "1", "DOCKER_CONFIG": scratch}
        env.pop("DOCKER_HOST", None)
        env.pop("DOCKER_CONTEXT", None)
        done = run_program(argv, env)
        if done.returncode != 0 or not iidfile.is_file():
            tail = "\n".join(done.stderr.strip().splitlines()[-LOG_LINES:])
            raise BuildError(f"build: docker build exited {done.returncode}: {tail}")
        return iidfile.read_text().strip()
