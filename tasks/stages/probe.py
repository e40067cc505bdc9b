"""Probe stage: start the image, time it to its first good HTTP answer, measure idle memory."""

from __future__ import annotations

import http.client
import time
from dataclasses import dataclass

import docker
import docker.errors
from docker.models.containers import Container
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks import labels
from tasks.matrix import App
from tasks.records import BuildResult, ProbeResult

POLL_SECONDS = 0.005
SETTLE_SECONDS = 0.5  # the app answered; let it finish start-up work before reading memory


class ProbeError(RuntimeError):
    """The app did not answer as expected."""


def wait_for_http(address: str, port: int, path: str, timeout: float) -> None:
    """Poll until GET returns 200. Resets are retried: Docker's port proxy accepts
    connections before the app inside listens."""
    deadline = time.monotonic() + timeout
    last_error = "no answer"
    while time.monotonic() < deadline:
        connection = http.client.HTTPConnection(address, port, timeout=1.0)
        try:
            connection.request("GET", path)
            status = connection.getresponse().status
            if status == 200:
                return
            last_error = f"HTTP {status}"
        except (OSError, http.client.HTTPException) as exc:
            last_error = type(exc).__name__
        finally:
            connection.close()
        time.sleep(POLL_SECONDS)
    raise ProbeError(f"probe: no HTTP 200 on {path} within {timeout:g} s (last: {last_error})")


def _published_port(container: Container, app: App) -> int:
    container.reload()
    bindings = container.attrs["NetworkSettings"]["Ports"].get(f"{app.port}/tcp") or []
    if not bindings:
        raise ProbeError(f"probe: port {app.port} was not published")
    return int(bindings[0]["HostPort"])


def _memory_bytes(container: Container) -> tuple[int | None, str | None]:
    """(bytes, None), or (None, why) when the engine has no memory figures for it."""
    # one_shot: memory needs one sample; the default waits a second for a CPU delta.
    stats = container.stats(stream=False, one_shot=True).get("memory_stats") or {}
    if "usage" not in stats:
        # e.g. cgroup v2 without the memory controller delegated to the engine
        return None, "the engine reported no memory usage for the container"
    details = stats.get("stats", {})
    # Page cache is reclaimable; what the app holds is usage minus inactive file pages.
    cache = details.get("total_inactive_file", details.get("inactive_file", 0))
    return int(stats["usage"]) - int(cache), None


@dataclass(frozen=True)
class ProbeTarget:
    """Where the probe runs containers: the run's network, and the address on which the
    host publishes their ports (127.0.0.1 for a local engine)."""

    network: str
    address: str
    timeout: float


def _start_once(
    client: docker.DockerClient, build: BuildResult, app: App, target: ProbeTarget
) -> tuple[Container, float]:
    container = client.containers.create(
        build.image_id,
        ports={f"{app.port}/tcp": (target.address, None)},
        network=target.network,
        labels={labels.RUN: build.run_id},
    )
    try:
        started = time.perf_counter()
        container.start()
        port = _published_port(container, app)
        wait_for_http(target.address, port, app.probe_path, target.timeout)
        return container, time.perf_counter() - started
    except BaseException as exc:
        logs = container.logs(tail=5).decode(errors="replace").strip()
        container.remove(force=True)
        if isinstance(exc, ProbeError) and logs:
            raise ProbeError(f"{exc}; container output: {logs}") from exc
        raise


@task(name="probe", cache_policy=NO_CACHE)
def probe_image(
    client: docker.DockerClient, build: BuildResult, app: App, target: ProbeTarget, repeat: int
) -> ProbeResult:
    """Start the image ``repeat`` times, each timed to its first good answer.

    Memory is read from the first instance once it has idled ``SETTLE_SECONDS`` and
    the later starts are timed: it stays up meanwhile (an idle server takes no CPU from
    them), so settling costs no extra wait when ``repeat`` > 1. Its idle time thus grows
    a little with ``repeat``; runs of one matrix are alike.
    """
    first, seconds = _start_once(client, build, app, target)
    settled_at = time.monotonic() + SETTLE_SECONDS
    samples = [seconds]
    try:
        for _ in range(repeat - 1):
            container, seconds = _start_once(client, build, app, target)
            container.remove(force=True)
            samples.append(seconds)
        time.sleep(max(0.0, settled_at - time.monotonic()))
        memory, why = _memory_bytes(first)
    finally:
        first.remove(force=True)
    return ProbeResult(tuple(samples), idle_memory_bytes=memory, idle_memory_error=why)
