"""benchmarks/simulate.py: the flow's lane rule and host pool in simulated time, checked
on schedules small enough to work out by hand."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tasks.hosts.config import HostConfig

SIMULATE = Path(__file__).resolve().parents[2] / "benchmarks" / "simulate.py"


@pytest.fixture(scope="module")
def sim() -> ModuleType:
    spec = importlib.util.spec_from_file_location("simulate", SIMULATE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["simulate"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def host(max_parallel: int) -> list[tuple[HostConfig, int]]:
    config = HostConfig(name="h", url="unix:///nonexistent.sock", max_parallel=max_parallel)
    return [(config, 8)]  # 8 cores: no stage here is slowed by another


def two_cells(sim: ModuleType) -> list[object]:
    times = sim.StageTimes(build=10, save=1, inspect=1, scan=1, probe=2, archive_bytes=0)
    return [times, times]


def test_one_cell_at_a_time_runs_every_stage_in_turn(sim: ModuleType) -> None:
    flow = sim.FlowMachine(cores=4, link_bytes_per_second=1e9, analysis_here=False)
    outcome = sim.simulate(two_cells(sim), 2, host(1), flow)
    assert outcome.makespan == pytest.approx(2 * (10 + 1 + 1 + 2))
    assert outcome.builds_beside_analysis == 0


def test_pipelined_the_second_build_overlaps_the_first_analysis_and_the_probe_waits(
    sim: ModuleType,
) -> None:
    # build 1: 0-10; build 2: 10-20 beside analysis 1 (10-12); probe 1 waits for build 2
    # (20-22); analysis 2 waits for the probe (22-24); probe 2: 24-26.
    flow = sim.FlowMachine(cores=4, link_bytes_per_second=1e9, analysis_here=False)
    outcome = sim.simulate(two_cells(sim), 2, host(2), flow)
    assert outcome.makespan == pytest.approx(26)
    assert outcome.builds_beside_analysis == 0.5  # the second build, beside save, inspect, scan
    assert outcome.probes_beside_anything == 0
    assert outcome.build_inflation == pytest.approx(1.0)  # 8 cores: nothing slowed it
    # 2 x (10 + 2) on one host's build lane; the longest cell alone is 14 s.
    assert outcome.bounds["build lanes"] == pytest.approx(24)
    assert outcome.bounds["longest cell"] == pytest.approx(14)


def test_a_shared_cpu_slows_the_build_beside_an_analysis(sim: ModuleType) -> None:
    small = [(HostConfig(name="h", url="unix:///x.sock", max_parallel=2), 2)]
    flow = sim.FlowMachine(cores=4, link_bytes_per_second=1e9, analysis_here=False)
    outcome = sim.simulate(two_cells(sim), 2, small, flow)
    # 1.85 + 0.5 cores on 2: the save and the build beside it run at 2 / 2.35 of full speed.
    assert outcome.build_inflation > 1.0
    assert outcome.makespan > 26


def test_images_moved_to_the_flow_machine_wait_for_its_link(sim: ModuleType) -> None:
    times = sim.StageTimes(build=10, save=1, inspect=1, scan=1, probe=2, archive_bytes=5e9)
    flow = sim.FlowMachine(cores=4, link_bytes_per_second=1e9, analysis_here=True)
    outcome = sim.simulate([times], 1, host(1), flow)
    assert outcome.makespan == pytest.approx(10 + 5 + 1 + 2)  # 5 GB over 1 GB/s
    assert outcome.bounds["flow link"] == pytest.approx(5)


def test_cores_bound_puts_probes_on_the_smallest_hosts(sim: ModuleType) -> None:
    # 20 core-seconds of work and 4 s of probes on a 2-core and an 8-core host. Split
    # freely (a relaxation, so still a bound): the 2-core host probes all T, the 8-core
    # one the remaining 4 - T and works 2 T - 4: 8 (2 T - 4) = 20 gives T = 3.25.
    assert sim._cores_bound(20, 4, [2, 8]) == pytest.approx(3.25)
    # 100 core-seconds: 2 (T - 4) + 8 T = 100 gives T = 10.8
    assert sim._cores_bound(100, 4, [8, 2]) == pytest.approx(10.8)
