"""A run's session on one Docker host: opened once, shared by every cell, closed once.

``open_session`` checks the host, connects, creates the run's network and pulls every
base and builder the cells need (once per host per run); ``close_session`` removes what
the run left there (its images and network), unless the host is gone. Everything a run
makes carries the label ``org.basebench.run=<run id>``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import docker
import docker.errors

from tasks import labels
from tasks.apps import App
from tasks.config_file import ConfigError
from tasks.hosts.config import HostConfig
from tasks.hosts.connection import HostUnavailable, connect, describe_error, responds
from tasks.hosts.health import HostHealth, check_host
from tasks.hosts.sweep import Swept, sweep_host
from tasks.matrix import MatrixConfig
from tasks.readers.layers import LayerCache
from tasks.records import BuildTool, Cell, PulledImage
from tasks.scanners.base import Scanner
from tasks.sessions.lanes import LaneGate, LaneLimits
from tasks.sessions.pool import LOST_PING_SECONDS
from tasks.sessions.toolbox import Toolbox, analysis_image, install_toolbox
from tasks.stages.analyse_on_host import HostAnalysis
from tasks.stages.probe import ProbeTarget

HEALTH_SECONDS = 10.0  # the health check before any work waits this long per host
# How registries (through the engine) say an image does not exist.
ABSENT_MARKERS = ("manifest unknown", "not found", "does not exist")


class BaseUnavailable(RuntimeError):
    """A base or builder image could not be pulled. ``absent``: the registry said it has
    no such image (as opposed to a pull that failed on the way)."""

    def __init__(self, ref: str, message: str, absent: bool) -> None:
        super().__init__(message)
        self.ref = ref
        self.absent = absent


@dataclass(frozen=True)
class RunSettings:
    """What a run gives each of its sessions, the same on every host."""

    run_id: str
    scanner: Scanner
    repeat: int  # startup timings per cell
    apps: Mapping[str, App]  # by name: the plan's, read once
    build_tool: BuildTool = "legacy"
    layer_cache: LayerCache | None = None
    archive_dir: Path | None = None  # where saved images go; None: the system's temp dir

    @classmethod
    def of(
        cls, config: MatrixConfig, run_id: str, scanner: Scanner, apps: Mapping[str, App]
    ) -> RunSettings:
        """A run's settings from its matrix and the apps its plan read."""
        return cls(
            run_id=run_id,
            scanner=scanner,
            repeat=config.repeat,
            apps=apps,
            build_tool=config.build_tool,
            layer_cache=LayerCache(config.cache_dir / "layers"),
            archive_dir=config.cache_dir / "archives",
        )

    def app(self, name: str) -> App:
        """The app ``name``; ``ConfigError`` when the run has no such app."""
        if name not in self.apps:
            raise ConfigError(f"unknown app {name!r}; the run's apps: {', '.join(self.apps)}")
        return self.apps[name]


@dataclass(frozen=True)
class HostSession:
    """A run on one host, made of three parts: the host as reached (its config, a
    client, what it said when opened), the run's settings, and what the run holds
    there (its probe network, the images it pulled, the host's lanes, the analysis set-up)."""

    host: HostConfig
    client: docker.DockerClient
    run: RunSettings
    probe: ProbeTarget
    pulled: dict[str, PulledImage | BaseUnavailable] = field(default_factory=dict)
    # Build, analysis and exclusive probe lanes of the host (tasks/sessions/lanes.py).
    lanes: LaneGate = field(default_factory=lambda: LaneGate(LaneLimits()))
    health: HostHealth | None = None  # what the host said when the run opened it
    swept: Swept | None = None  # what dead runs had left there, removed at opening
    on_host: HostAnalysis | None = None  # set when save, inspect and scan run on the host

    @property
    def engine_version(self) -> str:
        """The engine's version, as the host said when opened ("" when unknown)."""
        return (self.health.version if self.health else None) or ""

    def pulled_image(self, ref: str) -> PulledImage:
        """The pulled ``ref``; raises its ``BaseUnavailable`` when no registry had it."""
        outcome = self.pulled[ref]
        if isinstance(outcome, BaseUnavailable):
            raise outcome
        return outcome


def open_session(
    host: HostConfig,
    config: MatrixConfig,
    run: RunSettings,
    cells: list[Cell],
    alive: Callable[[str], bool] | None = None,
    toolbox: Toolbox | None = None,
) -> HostSession:
    """Ready ``host`` for the run's ``cells``; first remove what dead runs left there
    (``alive`` tells which runs are not dead; None: sweep nothing). A host that analyses
    its own images also gets the analysis image and ``toolbox`` (required then).

    Raises ``HostUnavailable`` (one line naming the host) when it does not answer, or
    stops answering while this runs; a base no registry serves is kept as a value.
    """
    health = check_host(host, timeout=HEALTH_SECONDS)
    if not health.ok:
        raise HostUnavailable(health.error or f"{host.name} ({host.url}): no answer")
    client = connect(host)
    try:
        swept = sweep_host(client, alive) if alive is not None else None
        # The network before the pulls: a host that cannot have one (its address pools
        # exhausted) is dropped before it pulls gigabytes of builders for nothing.
        target = ProbeTarget(
            network=create_run_network(client, run.run_id),
            address=host.publish_address,
            timeout=config.probe_timeout_seconds,
        )
        refs = sorted({c.builder_ref for c in cells} | {c.base_ref for c in cells})
        pulled = {ref: _pull_or_reason(client, ref) for ref in refs}
        on_host = None
        if host.analyses_on_host:
            if toolbox is None:
                raise ValueError("analysis on the host needs the run's toolbox")
            image = analysis_image(config.mirrors)
            pull_image(client, image)
            on_host = install_toolbox(client, toolbox, image, host.socket)
    except Exception as exc:
        # A host that answers but cannot be readied is dropped like one that does not
        # answer: the run goes on with the others, and nothing of ours stays behind.
        with contextlib.suppress(Exception):
            remove_run_network(client, run.run_id)
        client.close()
        state = "answers but" if responds(host, LOST_PING_SECONDS) else "stopped answering and"
        raise HostUnavailable(
            f"{host.name} ({host.url}): {state} could not be readied: {describe_error(exc)}"
        ) from exc
    return HostSession(
        host=host,
        client=client,
        run=run,
        probe=target,
        pulled=pulled,
        lanes=LaneGate(LaneLimits.of(host)),
        health=health,
        swept=swept,
        on_host=on_host,
    )


def close_session(session: HostSession, keep_images: bool, lost: bool) -> str | None:
    """Remove the run's images (unless ``keep_images``) and network from the host.

    A ``lost`` host is not touched (its leftovers stay; asking it would only wait).
    Returns a one-line warning when something stayed behind, else None.
    """
    try:
        if lost:
            return f"host {session.host.name} was lost: the run's images and network stay there"
        if not keep_images:
            remove_run_images(session.client, session.run.run_id)
        remove_run_network(session.client, session.run.run_id)
    except Exception as exc:
        return f"cleanup of {session.host.name} failed: {describe_error(exc)}"
    finally:
        session.client.close()
    return None


def pull_image(client: docker.DockerClient, ref: str) -> PulledImage:
    """Pull ``ref`` and record its digest and provenance."""
    try:
        image = client.images.pull(ref)
    except docker.errors.APIError as exc:
        explanation = str(exc.explanation or exc)
        absent = isinstance(exc, docker.errors.NotFound) or any(
            marker in explanation for marker in ABSENT_MARKERS
        )
        raise BaseUnavailable(ref, f"pull {ref}: {explanation}", absent) from exc
    repository = ref.rsplit(":", 1)[0] if "@" not in ref else ref.split("@", 1)[0]
    digests = [d for d in image.attrs.get("RepoDigests", []) if d.startswith(repository + "@")]
    digest = digests[0].split("@", 1)[1] if digests else None
    forged = (image.labels or {}).get(labels.FORGED) == "true"
    layers = tuple(image.attrs["RootFS"].get("Layers") or ())
    return PulledImage(ref=ref, digest=digest, forged=forged, layers=layers)


def _pull_or_reason(client: docker.DockerClient, ref: str) -> PulledImage | BaseUnavailable:
    try:
        return pull_image(client, ref)
    except BaseUnavailable as exc:
        return exc


def create_run_network(client: docker.DockerClient, run_id: str) -> str:
    """A bridge network of the run's own (the engine's default bridge may be absent)."""
    name = f"basebench-{run_id.lower()}"
    if not client.networks.list(names=[name]):
        client.networks.create(name, driver="bridge", labels={labels.RUN: run_id})
    return name


def remove_run_network(client: docker.DockerClient, run_id: str) -> None:
    """Remove the network ``create_run_network`` made."""
    for network in client.networks.list(filters={"label": f"{labels.RUN}={run_id}"}):
        network.remove()


def remove_run_images(client: docker.DockerClient, run_id: str) -> None:
    """Remove every image this run built, and the build stages it left dangling."""
    for image in client.images.list(filters={"label": f"{labels.RUN}={run_id}"}):
        for tag in image.tags:
            client.images.remove(tag, force=True)
    client.images.prune(filters={"dangling": True, "label": f"{labels.RUN}={run_id}"})
