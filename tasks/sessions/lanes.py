"""When a cell's stages may run on its Docker host: a build lane, an analysis lane and an
exclusive probe lane per host.

The rule (what ``build_seconds`` and the startup samples mean depends on it):

- **Cells in flight.** A cell holds one of its host's ``max_parallel`` slots from the
  start of its build to the end of its probe (``HostPool``); it is placed on the
  least-loaded live host with a free slot and stays there: the image lives on that host.
- **Build lane.** At most ``max_builds`` builds run at once on a host (default 1): with
  one, ``build_seconds`` is a no-cache build with no other build beside it on the host.
  Other cells' analysis stages may run beside a build; each build records which did
  (``concurrent_stages``), so the data shows it.
- **Analysis lane.** At most ``max_analyses`` cells save, inspect and scan at once.
- **Probe lane, exclusive.** A probe starts only when nothing else of the run is running
  on the host, and nothing starts there while it runs: startups are never timed beside a
  compile or a scan. Each probe records what ran beside it, which is nothing by this
  rule (it checks the rule; other flow runs on the same host are bounded by the host's
  Prefect limit, not seen here).
- **How builds and probes interleave.** Once as many probes wait on a host as it may run
  builds at once (``max_builds``: with the default 1, as soon as one waits), the host
  drains: no build or analysis starts, the running ones end, the waiting probes run one
  after another, then builds resume. A build is never paused or slowed by a probe; a
  probe waits at most for the builds and analyses running when it asked. With several
  build lanes, one drain serves several probes. A probe also starts whenever the host
  happens to be idle.

``HostLanes`` is that rule as plain state, with no threads and no clock: the flow drives
it through ``LaneGate`` (threads wait on a condition), and the scheduling simulator
(``benchmarks/simulate.py``) drives the same class with simulated time.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum

from tasks.hosts.config import HostConfig
from tasks.hosts.limits import held_slots, quiet_limit_name


class Lane(StrEnum):
    BUILD = "build"
    ANALYSIS = "analysis"  # save, then inspect and scan side by side
    PROBE = "probe"


# The lanes a cell passes through, in order, all on the host that built it.
CELL_LANES = (Lane.BUILD, Lane.ANALYSIS, Lane.PROBE)


class LanesStopped(RuntimeError):
    """The run was interrupted: no build starts any more."""


@dataclass(frozen=True)
class LaneLimits:
    """How many stages of each lane may run at once on one host."""

    builds: int = 1
    analyses: int = 1

    @classmethod
    def of(cls, host: HostConfig) -> LaneLimits:
        return cls(builds=host.max_builds, analyses=host.max_analyses)


@dataclass(eq=False)
class Activity:
    """One stage (or stages run side by side) of one cell, running in a lane."""

    lane: Lane
    doing: tuple[str, ...]  # stage names, e.g. ("inspect", "scan")
    seen: set[str] = field(default_factory=set)  # stages of other cells met meanwhile

    def concurrent_stages(self) -> tuple[str, ...]:
        """The distinct stages of other cells that ran on the host at some moment while
        this one ran, sorted; read it once the activity ended."""
        return tuple(sorted(self.seen))


class HostLanes:
    """The lane rule of one host as plain state (see the module docstring).

    Callers ask ``admits(lane)`` and then ``start`` it; a probe that cannot start yet is
    announced with ``want_probe`` (it counts towards draining the host) and withdrawn
    with ``unwant_probe`` once it starts or gives up.
    """

    def __init__(self, limits: LaneLimits) -> None:
        self.limits = limits
        self.running: list[Activity] = []
        self.waiting_probes = 0

    def count(self, lane: Lane) -> int:
        return sum(1 for activity in self.running if activity.lane is lane)

    @property
    def draining(self) -> bool:
        """Waiting probes have reached the batch size: nothing new but probes starts."""
        return self.waiting_probes >= self.limits.builds

    def admits(self, lane: Lane) -> bool:
        """Whether a stage of ``lane`` may start now."""
        if lane is Lane.PROBE:
            return not self.running
        if self.count(Lane.PROBE) or self.draining:
            return False
        limit = self.limits.builds if lane is Lane.BUILD else self.limits.analyses
        return self.count(lane) < limit

    def want_probe(self) -> None:
        self.waiting_probes += 1

    def unwant_probe(self) -> None:
        self.waiting_probes -= 1

    def start(self, lane: Lane, *doing: str) -> Activity:
        """Start a stage the rule admits; what runs already is seen by it and sees it."""
        if not self.admits(lane):
            raise RuntimeError(f"lane {lane} is not free: {self.describe()}")
        activity = Activity(lane, doing or (str(lane),))
        for other in self.running:
            activity.seen.update(other.doing)
            other.seen.update(activity.doing)
        self.running.append(activity)
        return activity

    def relabel(self, activity: Activity, *doing: str) -> None:
        """The activity moved on to other stages (save -> inspect and scan)."""
        activity.doing = doing
        for other in self.running:
            if other is not activity:
                other.seen.update(doing)

    def finish(self, activity: Activity) -> None:
        self.running.remove(activity)

    def describe(self) -> str:
        lanes = ", ".join(f"{lane}={self.count(lane)}" for lane in Lane)
        return f"{lanes}, waiting probes={self.waiting_probes}"


class LaneGate:
    """``HostLanes`` for threads: each cell's thread waits in ``hold`` until its lane admits it."""

    def __init__(self, limits: LaneLimits) -> None:
        self._lanes = HostLanes(limits)
        self._changed = threading.Condition()
        self._stopped = False
        self._server_limit: tuple[str, int] | None = None  # limit name, its slots

    def across_runs(self, host_name: str, slots: int) -> None:
        """Also hold the server's ``docker-host-quiet:<host_name>`` limit (``slots`` in
        size): one slot per build or analysis, all of them per probe, so that the other
        flow runs on the host keep to the same rule. Without it the lanes see this run only."""
        self._server_limit = (quiet_limit_name(host_name), slots)

    @contextmanager
    def _server_slots(self, lane: Lane) -> Iterator[None]:
        if self._server_limit is None:
            yield
            return
        name, slots = self._server_limit
        with held_slots(name, slots if lane is Lane.PROBE else 1):
            yield

    @contextmanager
    def hold(self, lane: Lane, *doing: str) -> Iterator[Activity]:
        """Wait until ``lane`` admits a stage, run the block as that stage, then free it.

        After ``stop`` a build that has not started raises ``LanesStopped``; analyses and
        probes of cells already built still run (their cells can still finish).
        """
        with self._changed:
            probe = lane is Lane.PROBE
            if probe:
                self._lanes.want_probe()
            try:
                while not self._lanes.admits(lane):
                    if self._stopped and lane is Lane.BUILD:
                        raise LanesStopped("the run was stopped before this build started")
                    self._changed.wait()
                if self._stopped and lane is Lane.BUILD:
                    raise LanesStopped("the run was stopped before this build started")
            finally:
                if probe:
                    self._lanes.unwant_probe()
                    self._changed.notify_all()  # a withdrawn probe may end a drain
            activity = self._lanes.start(lane, *doing)
        try:
            with self._server_slots(lane):  # waits outside the condition: others go on
                yield activity
        finally:
            with self._changed:
                self._lanes.finish(activity)
                self._changed.notify_all()

    def relabel(self, activity: Activity, *doing: str) -> None:
        with self._changed:
            self._lanes.relabel(activity, *doing)

    def stop(self) -> None:
        """Start no more builds: waiting ones raise ``LanesStopped``."""
        with self._changed:
            self._stopped = True
            self._changed.notify_all()

    def count(self, lane: Lane) -> int:
        with self._changed:
            return self._lanes.count(lane)
