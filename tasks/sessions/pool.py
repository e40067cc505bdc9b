"""Slots on a pool of Docker hosts: each cell runs in a slot of the least-loaded live host.

``run_with_failover`` moves a cell to another host when its host stops answering
mid-cell; a cell that fails while its host still answers failed for its own reasons
(a build error) and is not retried.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from tasks.hosts.config import HostConfig
from tasks.hosts.connection import responds
from tasks.records import INTERRUPTED, Cell, CellResult, Stage, Status

MAX_ATTEMPTS = 3  # a cell moves to another host at most twice
LOST_PING_SECONDS = 5.0  # a host that does not answer a fresh ping within this is lost


class NoHostLeft(RuntimeError):
    """Every host of the pool has been marked dead."""


class RunStopped(NoHostLeft):
    """The run was interrupted: no cell starts any more."""


class HostPool:
    """Hands out host slots, never more than ``max_parallel`` per host at once."""

    def __init__(self, hosts: list[HostConfig]) -> None:
        self._hosts = {host.name: host for host in hosts}
        self._busy = dict.fromkeys(self._hosts, 0)
        self._dead: set[str] = set()
        self._stopped = False
        self._changed = threading.Condition()

    @property
    def stopped(self) -> bool:
        """Whether ``stop`` was called."""
        with self._changed:
            return self._stopped

    def stop(self) -> None:
        """Hand out no more slots: waiting and later cells end as interrupted at once."""
        with self._changed:
            self._stopped = True
            self._changed.notify_all()

    @property
    def live(self) -> list[HostConfig]:
        with self._changed:
            return [h for name, h in self._hosts.items() if name not in self._dead]

    @contextmanager
    def slot(self, avoid: frozenset[str] = frozenset()) -> Iterator[HostConfig]:
        """Wait for a free slot (not on ``avoid`` unless nothing else lives) and hold it."""
        with self._changed:
            while (host := self.try_acquire(avoid)) is None:
                self._changed.wait()
        try:
            yield host
        finally:
            self.release(host.name)

    def try_acquire(self, avoid: frozenset[str] = frozenset()) -> HostConfig | None:
        """Take a slot of the least-loaded live host now, or None when none is free
        (``slot`` waits instead; the scheduling simulator calls this directly)."""
        with self._changed:
            host = self._least_loaded(avoid)
            if host is not None:
                self._busy[host.name] += 1
            return host

    def release(self, name: str) -> None:
        """Give back a slot of ``name`` taken by ``try_acquire``."""
        with self._changed:
            self._busy[name] -= 1
            self._changed.notify_all()

    @property
    def dead(self) -> frozenset[str]:
        """Names of the hosts marked dead."""
        with self._changed:
            return frozenset(self._dead)

    def busy(self, name: str) -> int:
        """How many slots of ``name`` are held right now."""
        with self._changed:
            return self._busy[name]

    def mark_dead(self, name: str) -> None:
        """Give ``name`` no new cells; waiting cells move to the other hosts."""
        with self._changed:
            self._dead.add(name)
            self._changed.notify_all()

    def _least_loaded(self, avoid: frozenset[str]) -> HostConfig | None:
        if self._stopped:
            raise RunStopped(INTERRUPTED)
        live = [h for name, h in self._hosts.items() if name not in self._dead]
        if not live:
            raise NoHostLeft("every Docker host of the pool stopped answering")
        preferred = [h for h in live if h.name not in avoid] or live
        free = [h for h in preferred if self._busy[h.name] < h.max_parallel]
        if not free:
            return None
        return min(free, key=lambda h: self._busy[h.name] / h.max_parallel)


def host_lost(host: HostConfig) -> bool:
    """True when ``host`` does not answer a fresh ping within ``LOST_PING_SECONDS``."""
    return not responds(host, LOST_PING_SECONDS)


def run_with_failover(
    cell: Cell,
    pool: HostPool,
    run: Callable[[HostConfig], CellResult],
    lost: Callable[[HostConfig], bool] = host_lost,
    max_attempts: int = MAX_ATTEMPTS,
    on_moved: Callable[[HostConfig, CellResult], None] | None = None,
) -> CellResult:
    """Run ``cell`` (``run(host)``) in a pool slot, moving it when its host is lost.

    A failed result whose host no longer answers marks that host dead (before its slot
    is freed, so no waiting cell lands there) and runs the cell again, from scratch, on
    another host: at most ``max_attempts`` runs in all. The result carries ``attempts``.
    When no live host is left, the last result (or a failed one) is returned; never raises.
    """
    result: CellResult | None = None
    tried: frozenset[str] = frozenset()
    for attempt in range(1, max_attempts + 1):
        try:
            with pool.slot(avoid=tried) as host:
                result = dataclasses.replace(run(host), attempts=attempt)
                moved = result.status is Status.FAILED and lost(host)
                if moved:
                    pool.mark_dead(host.name)
        except NoHostLeft as exc:
            return _no_host_left(cell, result, exc)
        if not moved:
            return result
        result = _lost_on(result, host)
        tried |= {host.name}
        if on_moved is not None and attempt < max_attempts:
            on_moved(host, result)
    assert result is not None  # max_attempts >= 1
    return result


def _lost_on(result: CellResult, host: HostConfig) -> CellResult:
    note = f"host {host.name} stopped answering"
    return dataclasses.replace(result, error=f"{result.error} ({note})" if result.error else note)


def _no_host_left(cell: Cell, last: CellResult | None, exc: NoHostLeft) -> CellResult:
    if last is not None:
        return last
    now = datetime.now(UTC)
    if isinstance(exc, RunStopped):
        return CellResult(cell, Status.FAILED, "", now, now, attempts=0, error=INTERRUPTED)
    return CellResult(
        cell=cell,
        status=Status.FAILED,
        host="",
        started_at=now,
        finished_at=now,
        attempts=0,
        failed_stage=Stage.BUILD,
        error=f"build: {exc}",
    )
