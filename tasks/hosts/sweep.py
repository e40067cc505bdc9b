"""What dead runs left behind: found by label, removed at run start and by ``basebench gc``.

Every container, network and image a run makes carries ``org.basebench.run=<run id>``,
and its saved archives live under ``cache_dir/archives/<run id>-*``. A run is alive
while its lease (``cache_dir/runs/<run id>.lease``, written by the run on this machine)
names a live process. A run without a lease here ran elsewhere (another flow machine
sharing the host): it counts as dead only once it is older than ``max_age``, read from
its run id's timestamp. Whatever a live run made is never touched.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import docker
import docker.errors

from tasks import labels
from tasks.hosts.config import HostConfig
from tasks.hosts.connection import HostUnavailable, connect
from tasks.processes import alive
from tasks.records import run_started

DEFAULT_MAX_AGE = timedelta(hours=24)  # longer than any nightly run takes


@dataclass
class Swept:
    """What a sweep removed (or, dry, would remove), by kind."""

    containers: list[str] = field(default_factory=list)
    networks: list[str] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    archives: list[str] = field(default_factory=list)
    runs: set[str] = field(default_factory=set)

    def summary(self) -> str:
        """``2 containers, 1 network of 1 dead run`` or ``nothing``."""
        kinds = [
            (len(self.containers), "container"),
            (len(self.networks), "network"),
            (len(self.images), "image"),
            (len(self.archives), "archive folder"),
        ]
        counts = [f"{n} {kind}{'s' if n > 1 else ''}" for n, kind in kinds if n]
        if not counts:
            return "nothing"
        runs = len(self.runs)
        return f"{', '.join(counts)} of {runs} dead run{'s' if runs > 1 else ''}"

    @property
    def empty(self) -> bool:
        return not (self.containers or self.networks or self.images or self.archives)


class RunLeases:
    """Which runs are alive: one lease file per run this machine is running."""

    def __init__(self, cache_dir: Path, max_age: timedelta = DEFAULT_MAX_AGE) -> None:
        self.folder = cache_dir / "runs"
        self.max_age = max_age

    @contextlib.contextmanager
    def hold(self, run_id: str) -> Iterator[None]:
        """A lease on ``run_id`` for as long as the block runs (and this process lives)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        lease = self.folder / f"{run_id}.lease"
        lease.write_text(json.dumps({"pid": os.getpid(), "machine": socket.gethostname()}))
        try:
            yield
        finally:
            lease.unlink(missing_ok=True)

    def alive(self, run_id: str, now: datetime | None = None) -> bool:
        lease = self.folder / f"{run_id}.lease"
        try:
            holder = json.loads(lease.read_text())
        except (OSError, ValueError):
            started = run_started(run_id)  # no lease here: another machine's run, maybe
            return started is None or (now or datetime.now(UTC)) - started < self.max_age
        return alive(int(holder.get("pid", 0)))


def sweep_host(
    client: docker.DockerClient, alive: Callable[[str], bool], dry_run: bool = False
) -> Swept:
    """Remove the containers, then networks, then images of dead runs on one engine."""
    swept = Swept()
    label = {"label": labels.RUN}
    for container in client.containers.list(all=True, filters=label, ignore_removed=True):
        run = container.labels.get(labels.RUN, "")
        if not alive(run):
            swept.containers.append(container.name)
            swept.runs.add(run)
            if not dry_run:
                with contextlib.suppress(docker.errors.NotFound):
                    container.remove(force=True)
    for network in client.networks.list(filters=label):
        run = (network.attrs.get("Labels") or {}).get(labels.RUN, "")
        if not alive(run):
            swept.networks.append(network.name)
            swept.runs.add(run)
            if not dry_run:
                with contextlib.suppress(docker.errors.NotFound):
                    network.remove()
    for image in client.images.list(filters=label):
        run = (image.labels or {}).get(labels.RUN, "")
        if not alive(run):
            swept.images.append(image.tags[0] if image.tags else image.short_id)
            swept.runs.add(run)
            if not dry_run:
                with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                    client.images.remove(image.id, force=True)
    return swept


@dataclass(frozen=True)
class HostSwept:
    """One host's sweep: what went from it, or why it could not be asked."""

    host: str
    swept: Swept | None  # None: the host did not answer
    error: str = ""


def sweep_hosts(
    hosts: Sequence[HostConfig], alive: Callable[[str], bool], dry_run: bool = False
) -> list[HostSwept]:
    """``sweep_host`` on every host, each on a connection of its own; a host that does
    not answer within 5 s is a value saying so, and the others are swept all the same."""
    swept = []
    for host in hosts:
        try:
            client = connect(host, ping_timeout=5)
        except HostUnavailable as exc:
            swept.append(HostSwept(host.name, None, str(exc)))
            continue
        try:
            swept.append(HostSwept(host.name, sweep_host(client, alive, dry_run)))
        finally:
            client.close()
    return swept


def sweep_archives(archive_dir: Path, alive: Callable[[str], bool], dry_run: bool = False) -> Swept:
    """Remove the archive folders (``<run id>-*``) of dead runs."""
    swept = Swept()
    if not archive_dir.is_dir():
        return swept
    for folder in sorted(archive_dir.iterdir()):
        run, _, _ = folder.name.rpartition("-")
        if folder.is_dir() and run and not alive(run):
            swept.archives.append(str(folder))
            swept.runs.add(run)
            if not dry_run:
                shutil.rmtree(folder, ignore_errors=True)
    return swept
