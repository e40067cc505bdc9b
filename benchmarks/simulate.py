"""basebench's scheduling on paper: many cells on many hosts, in simulated time.

Drives the flow's own scheduling code, not a copy: ``HostPool`` (which host a cell goes
to, at most ``max_parallel`` cells in flight per host) and ``HostLanes`` (the build,
analysis and exclusive probe lanes of each host, tasks/sessions/lanes.py), with stage
durations recorded on a real run (benchmarks/stage_times.csv, written by
benchmarks/stage_times.py). Only time is simulated.

    .venv/bin/python benchmarks/simulate.py [--cells 720] [--stages benchmarks/stage_times.csv]

The model:

- Each stage's recorded wall time is its time alone; it keeps ``DEMAND`` cores busy
  (a Go build 1.85 cores: benchmarks/README.md). Stages on one CPU share it: when their
  demand exceeds its cores, each slows by cores / demand (processor sharing).
- ``moved`` (what basebench does today): ``docker save`` streams each image to the flow
  machine over its network link (shared by every save at once; a save takes at least its
  recorded time), and inspect and scan run on the flow machine's cores.
- ``on hosts`` (issue 15, item 4): save, inspect and scan run on the host that built the
  image; only results move.
- The lower bound is the largest of: the longest cell alone; the lane work per host (a
  host's builds and probes never overlap each other with one build lane, so the sum of
  build and probe times over the hosts' build lanes); every stage's core-seconds over
  all cores of the hosts, probes taking a whole host (``host cores``); the flow
  machine's cores and link when analysis runs there. No schedule under these rules beats
  it. ``host time`` is tighter: a probe takes the whole host *that built its cell*; it
  is exact for identical cells and an estimate for mixed ones, so it is printed apart
  and the ratio is given against it too.
- Cells take the recorded rows in turn (720 cells over 23 recorded cells: each row about
  31 times); architectures are not modelled apart (every host runs every cell).
"""

from __future__ import annotations

import argparse
import csv
import heapq
import statistics
import sys
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from tasks.hosts.config import HostConfig
from tasks.sessions.lanes import CELL_LANES, Activity, HostLanes, Lane, LaneLimits
from tasks.sessions.pool import HostPool

HERE = Path(__file__).resolve().parent
# Cores a stage keeps busy while it runs alone (build: go build measured at 14.3 CPU-s
# over 7.7 s; Trivy and the inspector are single-threaded; a probe mostly waits).
DEMAND = {"build": 1.85, "save": 0.5, "inspect": 1.0, "scan": 1.0, "probe": 0.5}
EPSILON = 1e-9


@dataclass(frozen=True)
class StageTimes:
    """One recorded cell: seconds of each stage alone, and its archive's bytes."""

    build: float
    save: float
    inspect: float
    scan: float
    probe: float
    archive_bytes: int

    @property
    def total(self) -> float:
        # inspect and scan run side by side
        return self.build + self.save + max(self.inspect, self.scan) + self.probe


def read_stage_times(path: Path) -> list[StageTimes]:
    with path.open() as rows:
        return [
            StageTimes(
                build=float(row["build_seconds"]),
                save=float(row["save_seconds"]),
                inspect=float(row["inspect_seconds"]),
                scan=float(row["scan_seconds"]),
                probe=float(row["probe_seconds"]),
                archive_bytes=int(row["archive_bytes"]),
            )
            for row in csv.DictReader(rows)
        ]


@dataclass(frozen=True)
class FlowMachine:
    """The machine running the flow: its cores, and its network link in bytes/s."""

    cores: float
    link_bytes_per_second: float
    analysis_here: bool  # True: images are moved here and analysed here (today)


@dataclass(eq=False)
class Job:
    """One stage running on one resource (a host's CPU, the flow machine's CPU or link)."""

    resource: str
    demand: float
    remaining: float  # seconds of work left, at the rate it would run alone
    done: Callable[[], None]


@dataclass
class Resource:
    capacity: float
    jobs: list[Job] = field(default_factory=list)

    def rate(self) -> float:
        demand = sum(job.demand for job in self.jobs)
        return 1.0 if demand <= self.capacity else self.capacity / demand


@dataclass
class CellRun:
    index: int
    times: StageTimes
    host: str = ""
    lane: int = 0  # index into CELL_LANES of the lane it waits for or runs in
    activity: Activity | None = None
    build_started: float = 0.0
    build_seconds: float = 0.0
    build_beside: tuple[str, ...] = ()


@dataclass(frozen=True)
class Outcome:
    makespan: float
    lower_bound: float
    estimate: float  # the lower bound with the host time estimate among its terms
    bounds: dict[str, float]
    build_inflation: float  # median of (build time here / build time alone)
    build_inflation_p90: float
    builds_beside_analysis: float  # share of builds that had an analysis beside them
    probes_beside_anything: int


class Simulation:
    """Cells through ``HostPool`` and each host's ``HostLanes``, in simulated time."""

    def __init__(self, hosts: list[tuple[HostConfig, int]], flow: FlowMachine) -> None:
        self.hosts = {config.name: config for config, _ in hosts}
        self.cores = {config.name: cores for config, cores in hosts}
        self.pool = HostPool([config for config, _ in hosts])
        self.lanes = {name: HostLanes(LaneLimits.of(c)) for name, c in self.hosts.items()}
        self.flow = flow
        self.resources = {f"cpu:{name}": Resource(cores) for name, cores in self.cores.items()}
        self.resources |= {"cpu:flow": Resource(flow.cores), "link:flow": Resource(1.0)}
        self.waiting: dict[str, deque[CellRun]] = {name: deque() for name in self.hosts}
        self.now = 0.0
        self.finished: list[CellRun] = []
        self.probes_beside_anything = 0

    def run(self, cells: list[CellRun]) -> float:
        queue = deque(cells)
        while True:
            self._place(queue)
            self._admit()
            if not any(r.jobs for r in self.resources.values()):
                break
            self._advance()
        if queue or any(self.waiting.values()):
            raise RuntimeError("simulation stalled with cells left: the lane rule deadlocked")
        return self.now

    def _place(self, queue: deque[CellRun]) -> None:
        while queue and (host := self.pool.try_acquire()) is not None:
            cell = queue.popleft()
            cell.host = host.name
            self._request(cell)

    def _request(self, cell: CellRun) -> None:
        if CELL_LANES[cell.lane] is Lane.PROBE:
            self.lanes[cell.host].want_probe()
        self.waiting[cell.host].append(cell)

    def _admit(self) -> None:
        """Start every waiting stage its host's lanes admit, oldest request first."""
        for name, waiting in self.waiting.items():
            lanes = self.lanes[name]
            for cell in list(waiting):
                lane = CELL_LANES[cell.lane]
                if not lanes.admits(lane):
                    continue
                waiting.remove(cell)
                if lane is Lane.PROBE:
                    lanes.unwant_probe()
                self._start(cell, lane)

    def _start(self, cell: CellRun, lane: Lane) -> None:
        lanes, times, cpu = self.lanes[cell.host], cell.times, f"cpu:{cell.host}"
        if lane is Lane.BUILD:
            cell.activity = lanes.start(lane, "build")
            cell.build_started = self.now
            self._job(cpu, "build", times.build, lambda: self._built(cell))
        elif lane is Lane.ANALYSIS:
            cell.activity = lanes.start(lane, "save")
            if self.flow.analysis_here:  # streamed to the flow machine, analysed there
                on_link = times.archive_bytes / self.flow.link_bytes_per_second
                seconds = max(times.save, on_link)
                # Its share of the link alone: a save slower than the link (the host's
                # tar) leaves the rest of the link to others.
                share = on_link / seconds if seconds else 1.0
                self._job("link:flow", "save", seconds, lambda: self._saved(cell), share)
            else:
                self._job(cpu, "save", times.save, lambda: self._saved(cell))
        else:
            cell.activity = lanes.start(lane, "probe")
            self._job(cpu, "probe", times.probe, lambda: self._probed(cell))

    def _built(self, cell: CellRun) -> None:
        cell.build_seconds = self.now - cell.build_started
        assert cell.activity is not None
        cell.build_beside = cell.activity.concurrent_stages()
        self._end_lane(cell)

    def _probed(self, cell: CellRun) -> None:
        assert cell.activity is not None
        self.probes_beside_anything += bool(cell.activity.concurrent_stages())
        self._end_lane(cell)

    def _saved(self, cell: CellRun) -> None:
        assert cell.activity is not None
        self.lanes[cell.host].relabel(cell.activity, "inspect", "scan")
        where = "cpu:flow" if self.flow.analysis_here else f"cpu:{cell.host}"
        pending = {"inspect", "scan"}

        def one_done(stage: str) -> Callable[[], None]:
            def done() -> None:
                pending.discard(stage)
                if not pending:
                    self._end_lane(cell)

            return done

        self._job(where, "inspect", cell.times.inspect, one_done("inspect"))
        self._job(where, "scan", cell.times.scan, one_done("scan"))

    def _end_lane(self, cell: CellRun) -> None:
        assert cell.activity is not None
        self.lanes[cell.host].finish(cell.activity)
        cell.activity = None
        cell.lane += 1
        if cell.lane < len(CELL_LANES):
            self._request(cell)
        else:
            self.pool.release(cell.host)
            self.finished.append(cell)

    def _job(
        self,
        resource: str,
        stage: str,
        seconds: float,
        done: Callable[[], None],
        demand: float | None = None,
    ) -> None:
        demand = DEMAND[stage] if demand is None else demand
        self.resources[resource].jobs.append(Job(resource, demand, seconds, done))

    def _advance(self) -> None:
        rates = {name: r.rate() for name, r in self.resources.items()}
        step = min(
            job.remaining / rates[name] for name, r in self.resources.items() for job in r.jobs
        )
        self.now += step
        ended: list[tuple[int, Job]] = []
        for name, resource in self.resources.items():
            for job in list(resource.jobs):
                job.remaining -= step * rates[name]
                if job.remaining <= EPSILON:
                    resource.jobs.remove(job)
                    heapq.heappush(ended, (len(ended), job))
        while ended:
            heapq.heappop(ended)[1].done()


def lower_bound(
    cells: list[StageTimes], hosts: list[tuple[HostConfig, int]], flow: FlowMachine
) -> dict[str, float]:
    """The bounds no schedule under the lane rule can beat (see the module docstring)."""
    analysis = [("save", c.save) for c in cells] + [
        (stage, seconds)
        for c in cells
        for stage, seconds in (("inspect", c.inspect), ("scan", c.scan))
    ]
    work = sum(DEMAND["build"] * c.build for c in cells)
    if not flow.analysis_here:
        work += sum(DEMAND[stage] * seconds for stage, seconds in analysis)
    probes = sum(c.probe for c in cells)
    lanes = sum(config.max_builds for config, _ in hosts)
    bounds = {
        "longest cell": max(c.total for c in cells),
        "build lanes": sum(c.build for c in cells) / lanes,
        "host cores": _cores_bound(work, probes, [cores for _, cores in hosts]),
    }
    if all(config.max_builds == 1 for config, _ in hosts):
        # One build lane: a host's builds and probes never overlap one another.
        bounds["build lanes"] = sum(c.build + c.probe for c in cells) / len(hosts)
    bounds["host time"] = _host_time_bound(cells, hosts, work, probes)
    if flow.analysis_here:
        scans = sum(DEMAND[s] * seconds for s, seconds in analysis if s != "save")
        bounds["flow cores"] = scans / flow.cores
        bounds["flow link"] = sum(c.archive_bytes for c in cells) / flow.link_bytes_per_second
    return bounds


def _host_time_bound(
    cells: list[StageTimes], hosts: list[tuple[HostConfig, int]], work: float, probes: float
) -> float:
    """Each cell's probe runs on the host that built it, with the host to itself: with the
    average cell (cells here differ little: builds 9.9-11.2 s, probes 1.7-1.8 s), host h
    spends ``work / cores + probe`` per cell, or its build lanes ``build (+ probe with one
    lane) / lanes``, whichever is more; the hosts share the cells so that all end together.
    Exact for identical cells; for mixed ones an estimate, not a proven bound."""
    count = len(cells)
    build = sum(c.build for c in cells) / count
    probe, per_cell_work = probes / count, work / count
    rate = 0.0  # cells per second of all hosts together
    for config, cores in hosts:
        lane = (build + (probe if config.max_builds == 1 else 0.0)) / config.max_builds
        rate += 1.0 / max(per_cell_work / cores + probe, lane)
    return count / rate


def _cores_bound(work: float, probes: float, cores: list[int]) -> float:
    """Least T such that the hosts, each busy T seconds, fit ``work`` core-seconds and
    ``probes`` seconds during which a host does nothing else: probes go on the smallest
    hosts first (they waste the fewest cores there). Bisection on T."""
    low, high = 0.0, (work + probes * max(cores)) / min(cores) + probes
    for _ in range(100):
        middle = (low + high) / 2
        left, capacity = probes, 0.0
        for count in sorted(cores):
            taken = min(left, middle)
            left -= taken
            capacity += count * (middle - taken)
        if left <= EPSILON and capacity >= work:
            high = middle
        else:
            low = middle
    return high


def simulate(
    recorded: list[StageTimes], count: int, hosts: list[tuple[HostConfig, int]], flow: FlowMachine
) -> Outcome:
    cells = [CellRun(i, recorded[i % len(recorded)]) for i in range(count)]
    simulation = Simulation(hosts, flow)
    makespan = simulation.run(cells)
    bounds = lower_bound([c.times for c in cells], hosts, flow)
    estimate = bounds.pop("host time")
    inflation = [c.build_seconds / c.times.build for c in simulation.finished]
    beside = [c for c in simulation.finished if {"save", "inspect", "scan"} & set(c.build_beside)]
    return Outcome(
        makespan=makespan,
        lower_bound=max(bounds.values()),
        estimate=max(estimate, *bounds.values()),
        bounds=bounds,
        build_inflation=statistics.median(inflation),
        build_inflation_p90=sorted(inflation)[int(0.9 * (len(inflation) - 1))],
        builds_beside_analysis=len(beside) / len(cells),
        probes_beside_anything=simulation.probes_beside_anything,
    )


def mixed_hosts(cores: Iterable[int], builds: str) -> list[tuple[HostConfig, int]]:
    """Hosts named h00, h01, ...; ``builds``: ``one`` (the default lane rule) or ``cores``
    (one build lane per 2 cores: builds share a host, and the data says so)."""
    hosts = []
    for index, count in enumerate(cores):
        lanes = 1 if builds == "one" else max(1, count // 2)
        config = HostConfig(
            name=f"h{index:02d}",
            url="unix:///nonexistent.sock",  # never contacted
            max_parallel=2 * lanes,  # probes waiting for a drain keep their slots
            max_builds=lanes,
            max_analyses=lanes,
        )
        hosts.append((config, count))
    return hosts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", type=Path, default=HERE / "stage_times.csv")
    parser.add_argument("--cells", type=int, default=720)
    parser.add_argument(
        "--cores", default="2,2,2,2,2,4,4,4,4,4,8,8,8,8,8,16,16,16,16,16",
        help="cores of each host, comma-separated (default: 20 hosts, 2 to 16 cores)",
    )  # fmt: skip
    parser.add_argument("--flow-cores", type=float, default=4)
    parser.add_argument("--link-gbit", type=float, default=1.0, help="flow machine's link")
    args = parser.parse_args()
    recorded = read_stage_times(args.stages)
    cores = [int(c) for c in args.cores.split(",")]
    link = args.link_gbit * 1e9 / 8
    print(
        f"{args.cells} cells from {len(recorded)} recorded in {args.stages.name}; "
        f"{len(cores)} hosts ({sum(cores)} cores); flow machine {args.flow_cores:g} cores, "
        f"{args.link_gbit:g} Gbit/s"
    )
    print(
        f"{'analysis':<10} {'build lanes':<12} {'makespan':>9} {'bound':>9} {'ratio':>6}"
        f" {'binding bound':<14} {'est.':>6} {'ratio':>6} {'build x':>7} {'p90':>5}"
        f" {'beside':>7}"
    )
    for here in (True, False):
        for builds in ("one", "cores"):
            hosts = mixed_hosts(cores, builds)
            flow = FlowMachine(args.flow_cores, link, analysis_here=here)
            outcome = simulate(recorded, args.cells, hosts, flow)
            binding = max(outcome.bounds, key=lambda k: outcome.bounds[k])
            print(
                f"{'moved' if here else 'on hosts':<10} {builds:<12}"
                f" {outcome.makespan:>8.0f}s {outcome.lower_bound:>8.0f}s"
                f" {outcome.makespan / outcome.lower_bound:>6.2f} {binding:<14}"
                f" {outcome.estimate:>5.0f}s {outcome.makespan / outcome.estimate:>6.2f}"
                f" {outcome.build_inflation:>7.2f} {outcome.build_inflation_p90:>5.2f}"
                f" {outcome.builds_beside_analysis:>7.0%}"
            )
            bounds = ", ".join(f"{k} {v:.0f} s" for k, v in outcome.bounds.items())
            print(f"{'':<24}bounds: {bounds}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
