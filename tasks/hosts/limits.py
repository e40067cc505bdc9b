"""Per-host concurrency shared by every flow run on a Prefect server.

``HostPool`` caps cells per host inside one flow run. When several flow runs (a nightly
and an ad-hoc) use the same Docker host, only the server can see them all: each cell
also holds one slot of the global concurrency limit ``docker-host:<name>``, whose size
is the host's ``max_parallel``. ``basebench deploy`` creates those limits
(``ensure_host_limits``); ``host_limit`` takes a slot around one cell.

Probes run alone on a host across flow runs too: each host also has the limit
``docker-host-quiet:<name>`` of the same size; shared work (build, save, inspect, scan)
holds one slot of it and a probe all of them (``LaneGate.across_runs``), so a startup
is never timed beside another flow run's compile.

The limits are strict: a cell on a server without its host's limit fails loudly
instead of silently running unlimited.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

from tasks.hosts.config import HostConfig

LIMIT_PREFIX = "docker-host:"
# Probes alone across flow runs: build, save, inspect and scan hold one slot of
# ``docker-host-quiet:<name>`` (size ``max_parallel``), a probe holds every slot.
QUIET_PREFIX = "docker-host-quiet:"


class HostLimitMissing(RuntimeError):
    """The Prefect server has no global concurrency limit for a host a cell runs on."""


class HostLimitConflict(ValueError):
    """Two matrices give the same host name different ``max_parallel`` values."""


@dataclass(frozen=True)
class HostLimit:
    """One global concurrency limit: its name on the server and how many slots it has."""

    name: str
    limit: int


def limit_name(host_name: str) -> str:
    """The server-side name of a host's limit, e.g. ``docker-host:local``."""
    return f"{LIMIT_PREFIX}{host_name}"


def quiet_limit_name(host_name: str) -> str:
    """The server-side name of a host's quiet limit, e.g. ``docker-host-quiet:local``."""
    return f"{QUIET_PREFIX}{host_name}"


def server_in_use() -> bool:
    """True when flows report to a configured Prefect server (``PREFECT_API_URL`` set).

    Without it Prefect starts a temporary local server that has no limits and serves
    only this process, so the in-process ``HostPool`` is enough.
    """
    from prefect.settings import PREFECT_API_URL

    return bool(PREFECT_API_URL.value())


@contextmanager
def host_limit(host_name: str, enabled: bool) -> Iterator[None]:
    """Hold one slot of ``docker-host:<host_name>`` on the server while the block runs.

    ``enabled=False`` (no server in use) does nothing. Raises ``HostLimitMissing`` when
    the server has no such limit.
    """
    if not enabled:
        yield
        return
    with held_slots(limit_name(host_name), 1):
        yield


@contextmanager
def held_slots(name: str, occupy: int) -> Iterator[None]:
    """Hold ``occupy`` slots of the server's global limit ``name`` while the block runs;
    ``HostLimitMissing`` when the server has no such limit."""
    from prefect.concurrency.asyncio import ConcurrencySlotAcquisitionError
    from prefect.concurrency.sync import concurrency

    with ExitStack() as held:
        try:
            held.enter_context(concurrency(name, occupy=occupy, strict=True))
        except ConcurrencySlotAcquisitionError as exc:
            raise HostLimitMissing(
                f"Prefect server has no concurrency limit {name!r} ({exc}); "
                "run `basebench deploy` with a matrix that lists this host"
            ) from exc
        yield


def host_limits(hosts: Iterable[tuple[str, HostConfig]]) -> list[HostLimit]:
    """One limit per host name from ``(source, host)`` pairs; ``source`` names the matrix file.

    The same host in several matrices must have the same ``max_parallel``: it is a
    property of the machine, not of the run.
    """
    seen: dict[str, tuple[str, int]] = {}
    for source, host in hosts:
        previous = seen.setdefault(host.name, (source, host.max_parallel))
        if previous[1] != host.max_parallel:
            raise HostLimitConflict(
                f"host {host.name!r}: max_parallel is {previous[1]} in {previous[0]} but "
                f"{host.max_parallel} in {source}; give the host one value everywhere"
            )
    return [
        HostLimit(named(name), limit)
        for name, (_, limit) in sorted(seen.items())
        for named in (limit_name, quiet_limit_name)
    ]


def ensure_host_limits(limits: list[HostLimit]) -> None:
    """Create or resize each limit on the configured Prefect server (idempotent)."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        for item in limits:
            client.upsert_global_concurrency_limit_by_name(item.name, item.limit)
