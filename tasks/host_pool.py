"""Slots on a pool of Docker hosts: each cell runs in a slot of the least-loaded live host."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from tasks.docker_host import HostConfig


class NoHostLeft(RuntimeError):
    """Every host of the pool has been marked dead."""


class HostPool:
    """Hands out host slots, never more than ``max_parallel`` per host at once."""

    def __init__(self, hosts: list[HostConfig]) -> None:
        self._hosts = {host.name: host for host in hosts}
        self._busy = dict.fromkeys(self._hosts, 0)
        self._dead: set[str] = set()
        self._changed = threading.Condition()

    @property
    def live(self) -> list[HostConfig]:
        with self._changed:
            return [h for name, h in self._hosts.items() if name not in self._dead]

    @contextmanager
    def slot(self, avoid: frozenset[str] = frozenset()) -> Iterator[HostConfig]:
        """Wait for a free slot (not on ``avoid`` unless nothing else lives) and hold it."""
        with self._changed:
            while (host := self._least_loaded(avoid)) is None:
                self._changed.wait()
            self._busy[host.name] += 1
        try:
            yield host
        finally:
            with self._changed:
                self._busy[host.name] -= 1
                self._changed.notify_all()

    def mark_dead(self, name: str) -> None:
        """Give ``name`` no new cells; waiting cells move to the other hosts."""
        with self._changed:
            self._dead.add(name)
            self._changed.notify_all()

    def _least_loaded(self, avoid: frozenset[str]) -> HostConfig | None:
        live = [h for name, h in self._hosts.items() if name not in self._dead]
        if not live:
            raise NoHostLeft("every Docker host of the pool stopped answering")
        preferred = [h for h in live if h.name not in avoid] or live
        free = [h for h in preferred if self._busy[h.name] < h.max_parallel]
        if not free:
            return None
        return min(free, key=lambda h: self._busy[h.name] / h.max_parallel)


class QuietLock:
    """Lets timed work run alone on a host: many ``shared`` holders or one ``exclusive``.

    Startup timings taken while another cell compiles on the same CPUs measure the
    neighbour, not the image. A waiting ``exclusive`` holder blocks new ``shared`` ones
    so probes are not starved by a stream of builds.
    """

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._shared = 0
        self._exclusive = False
        self._waiting_exclusive = 0

    @contextmanager
    def shared(self) -> Iterator[None]:
        with self._changed:
            while self._exclusive or self._waiting_exclusive:
                self._changed.wait()
            self._shared += 1
        try:
            yield
        finally:
            with self._changed:
                self._shared -= 1
                self._changed.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._changed:
            self._waiting_exclusive += 1
            while self._exclusive or self._shared:
                self._changed.wait()
            self._waiting_exclusive -= 1
            self._exclusive = True
        try:
            yield
        finally:
            with self._changed:
                self._exclusive = False
                self._changed.notify_all()
