"""The lane rule of tasks/sessions/lanes.py: plain state first, then with threads."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from pydantic import ValidationError

from tasks.hosts.config import HostConfig
from tasks.sessions.lanes import HostLanes, Lane, LaneGate, LaneLimits, LanesStopped
from tasks.sessions.pool import HostPool


def in_thread(target: Callable[[], object]) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


# --- HostLanes: the rule as plain state -------------------------------------------------


def test_one_build_at_a_time_by_default() -> None:
    lanes = HostLanes(LaneLimits())
    lanes.start(Lane.BUILD)
    assert not lanes.admits(Lane.BUILD)
    assert lanes.admits(Lane.ANALYSIS)  # the analysis lane runs beside the build
    lanes.start(Lane.ANALYSIS, "save")
    assert not lanes.admits(Lane.ANALYSIS)  # max_analyses 1


def test_a_probe_starts_only_on_an_idle_host_and_then_nothing_starts() -> None:
    lanes = HostLanes(LaneLimits(builds=2, analyses=2))
    analysis = lanes.start(Lane.ANALYSIS, "scan")
    assert not lanes.admits(Lane.PROBE)
    lanes.finish(analysis)
    assert lanes.admits(Lane.PROBE)
    lanes.start(Lane.PROBE)
    assert [lanes.admits(lane) for lane in Lane] == [False, False, False]


def test_one_waiting_probe_drains_a_host_with_one_build_lane() -> None:
    lanes = HostLanes(LaneLimits(builds=1, analyses=1))
    build = lanes.start(Lane.BUILD)
    lanes.want_probe()
    assert lanes.draining
    assert not lanes.admits(Lane.ANALYSIS)  # a cell's analysis waits behind the probe
    assert not lanes.admits(Lane.PROBE)  # the build runs on, never paused
    lanes.finish(build)
    assert lanes.admits(Lane.PROBE)
    assert not lanes.admits(Lane.BUILD)


def test_probes_are_batched_on_a_host_with_several_build_lanes() -> None:
    lanes = HostLanes(LaneLimits(builds=2, analyses=2))
    lanes.start(Lane.BUILD)
    lanes.want_probe()
    assert lanes.admits(Lane.BUILD)  # one probe waits: the second build lane still fills
    lanes.start(Lane.BUILD)
    lanes.want_probe()
    assert lanes.draining  # two wait: the host drains for both
    assert not lanes.admits(Lane.ANALYSIS) and not lanes.admits(Lane.PROBE)


def test_each_activity_records_what_ran_beside_it() -> None:
    lanes = HostLanes(LaneLimits(builds=1, analyses=2))
    early = lanes.start(Lane.ANALYSIS, "save")
    build = lanes.start(Lane.BUILD, "build")
    lanes.relabel(early, "inspect", "scan")
    lanes.finish(early)
    late = lanes.start(Lane.ANALYSIS, "save")
    lanes.finish(late)
    lanes.finish(build)
    probe = lanes.start(Lane.PROBE, "probe")
    lanes.finish(probe)
    assert build.concurrent_stages() == ("inspect", "save", "scan")
    assert early.concurrent_stages() == ("build",)
    assert late.concurrent_stages() == ("build",)
    assert probe.concurrent_stages() == ()


def test_starting_what_the_rule_refuses_is_an_error() -> None:
    lanes = HostLanes(LaneLimits())
    lanes.start(Lane.BUILD)
    with pytest.raises(RuntimeError, match="lane build is not free: build=1, analysis=0"):
        lanes.start(Lane.BUILD)


def test_lane_limits_come_from_the_host_config() -> None:
    host = HostConfig(max_parallel=4, max_builds=2, max_analyses=3)
    assert LaneLimits.of(host) == LaneLimits(builds=2, analyses=3)
    assert LaneLimits.of(HostConfig()) == LaneLimits(builds=1, analyses=1)


@pytest.mark.parametrize("key", ["max_builds", "max_analyses"])
def test_a_lane_wider_than_max_parallel_is_refused(key: str) -> None:
    with pytest.raises(ValidationError, match=f"{key} is 3 but max_parallel is 2"):
        HostConfig.model_validate({"max_parallel": 2, key: 3})


@pytest.mark.parametrize("value", [0, 65])
def test_max_builds_bounds(value: int) -> None:
    with pytest.raises(ValidationError, match="max_builds"):
        HostConfig(max_parallel=64, max_builds=value)


def test_pool_try_acquire_and_release() -> None:
    pool = HostPool([HostConfig(name="a", max_parallel=1), HostConfig(name="b", max_parallel=1)])
    first, second = pool.try_acquire(), pool.try_acquire()
    assert (first and first.name, second and second.name) == ("a", "b")
    assert pool.try_acquire() is None
    pool.release("a")
    again = pool.try_acquire()
    assert again is not None and again.name == "a"


# --- LaneGate: the rule with threads ----------------------------------------------------


def _hold(gate: LaneGate, lane: Lane, events: list[str], name: str, seconds: float = 0) -> None:
    with gate.hold(lane, name):
        events.append(name)
        time.sleep(seconds)


def test_a_probe_waits_for_the_running_build_and_the_next_build_for_the_probe() -> None:
    gate = LaneGate(LaneLimits())
    events: list[str] = []
    with gate.hold(Lane.BUILD, "build"):
        probe = in_thread(lambda: _hold(gate, Lane.PROBE, events, "probe"))
        time.sleep(0.05)
        next_build = in_thread(lambda: _hold(gate, Lane.BUILD, events, "next build"))
        analysis = in_thread(lambda: _hold(gate, Lane.ANALYSIS, events, "analysis"))
        time.sleep(0.05)
        assert events == []  # the probe waits for the build; the others behind the probe
        events.append("build done")
    for thread in (probe, next_build, analysis):
        thread.join(5)
    assert events[:2] == ["build done", "probe"]
    assert sorted(events[2:]) == ["analysis", "next build"]


def test_the_next_build_starts_while_the_last_cell_is_analysed() -> None:
    gate = LaneGate(LaneLimits())
    with gate.hold(Lane.ANALYSIS, "save") as analysing:
        events: list[str] = []
        build = in_thread(lambda: _hold(gate, Lane.BUILD, events, "build"))
        build.join(5)
        assert events == ["build"]
    assert analysing.concurrent_stages() == ("build",)


def test_probes_never_overlap_anything_under_threads() -> None:
    gate = LaneGate(LaneLimits(builds=2, analyses=2))
    guard = threading.Lock()
    running: list[Lane] = []
    overlaps: list[tuple[Lane, ...]] = []

    def stage(lane: Lane) -> None:
        with gate.hold(lane, str(lane)):
            with guard:
                running.append(lane)
                if Lane.PROBE in running and len(running) > 1:
                    overlaps.append(tuple(running))
            time.sleep(0.002)
            with guard:
                running.remove(lane)

    threads = [in_thread(lambda lane=lane: stage(lane)) for lane in list(Lane) * 15]
    for thread in threads:
        thread.join(10)
    assert overlaps == []
    assert running == []


def test_a_stopped_gate_starts_no_build_but_lets_built_cells_finish() -> None:
    gate = LaneGate(LaneLimits())
    errors: list[BaseException] = []
    events: list[str] = []

    def build() -> None:
        try:
            _hold(gate, Lane.BUILD, events, "late build")
        except LanesStopped as exc:
            errors.append(exc)

    with gate.hold(Lane.BUILD, "build"):
        waiter = in_thread(build)
        time.sleep(0.05)
        gate.stop()
        waiter.join(5)
    assert [str(e) for e in errors] == ["the run was stopped before this build started"]
    _hold(gate, Lane.ANALYSIS, events, "analysis")
    _hold(gate, Lane.PROBE, events, "probe")
    assert events == ["analysis", "probe"]
