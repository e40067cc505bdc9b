"""Probe stage: start the image, time it to its first good HTTP answer, measure idle memory.

A container that exits before it answers (a binary whose loader the base lacks, a crash)
is reported as soon as the engine says so, with its exit code and last output lines.
"""

from __future__ import annotations

import http.client
import time
from collections.abc import Callable
from dataclasses import dataclass

import docker
import docker.errors
from docker.models.containers import Container
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks import labels
from tasks.apps import App
from tasks.records import BuildResult, ProbeResult

POLL_SECONDS = 0.005
# How often a start that has not answered yet asks the engine whether the container is
# still running: an exited one is reported at once, not after the whole timeout.
STATE_POLL_SECONDS = 0.05
OUTPUT_LINES = 5  # of an exited container's output, kept in the error
SETTLE_SECONDS = 0.5  # the app answered; let it finish start-up work before reading memory


class ProbeError(RuntimeError):
    """The app did not answer as expected."""


class ContainerExited(ProbeError):
    """The container stopped before it answered: its exit code and last output lines."""

    def __init__(self, request: str, exit_code: int, output: list[str], after: float) -> None:
        self.exit_code = exit_code
        self.output = output
        said = " | ".join(output) if output else "(none)"
        super().__init__(
            f"probe: the container exited with code {exit_code} before answering {request} "
            f"({after:.2f} s after start); last output: {said}"
        )


def wait_for_http(
    address: str,
    port: int,
    path: str,
    timeout: float,
    check: Callable[[], None] | None = None,
) -> None:
    """Poll until GET returns 200. Resets are retried: Docker's port proxy accepts
    connections before the app inside listens. ``check`` (e.g. "is the container still
    running?") is called every ``STATE_POLL_SECONDS`` while there is no answer; what it
    raises ends the wait."""
    deadline = time.monotonic() + timeout
    next_check = time.monotonic() + STATE_POLL_SECONDS
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
        if check is not None and time.monotonic() >= next_check:
            check()
            next_check = time.monotonic() + STATE_POLL_SECONDS
        time.sleep(POLL_SECONDS)
    raise ProbeError(f"probe: no HTTP 200 on {path} within {timeout:g} s (last: {last_error})")


def _published_port(container: Container, app: App, started: float) -> int:
    container.reload()
    bindings = (container.attrs["NetworkSettings"]["Ports"] or {}).get(f"{app.port}/tcp") or []
    if not bindings:
        _raise_if_exited(container, app, started, reload=False)  # it would publish nothing
        raise ProbeError(f"probe: port {app.port} was not published")
    return int(bindings[0]["HostPort"])


def _raise_if_exited(container: Container, app: App, started: float, reload: bool = True) -> None:
    """``ContainerExited`` when the container is no longer running (``started``: the
    ``perf_counter`` of its start)."""
    if reload:
        container.reload()
    state = container.attrs["State"]
    if state["Status"] not in ("exited", "dead"):
        return
    after = time.perf_counter() - started
    output = container.logs(tail=OUTPUT_LINES).decode(errors="replace").splitlines()
    lines = [line.strip() for line in output if line.strip()]
    request = f"GET {app.probe_path} on port {app.port}"
    raise ContainerExited(request, int(state["ExitCode"]), lines, after)


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
        port = _published_port(container, app, started)
        wait_for_http(
            target.address,
            port,
            app.probe_path,
            target.timeout,
            check=lambda: _raise_if_exited(container, app, started),
        )
        return container, time.perf_counter() - started
    except BaseException as exc:
        logs = container.logs(tail=OUTPUT_LINES).decode(errors="replace").strip()
        container.remove(force=True)
        if isinstance(exc, ProbeError) and not isinstance(exc, ContainerExited) and logs:
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
