"""HostPool slots and failover: pure scheduling logic with threads, no Docker."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from tasks.hosts.config import HostConfig
from tasks.records import CellResult, Stage, Status
from tasks.sessions.pool import HostPool, NoHostLeft, run_with_failover
from tests.records_factory import make_cell

CELL = make_cell("distroless-static")


def hosts(**max_parallel: int) -> list[HostConfig]:
    return [HostConfig(name=name, max_parallel=n) for name, n in max_parallel.items()]


def in_thread(target: Callable[[], object]) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


# --- HostPool ---------------------------------------------------------------------------


def test_least_loaded_host_first() -> None:
    pool = HostPool(hosts(a=2, b=2))
    with pool.slot() as first, pool.slot() as second, pool.slot() as third:
        assert [first.name, second.name, third.name] == ["a", "b", "a"]
        assert (pool.busy("a"), pool.busy("b")) == (2, 1)
    assert (pool.busy("a"), pool.busy("b")) == (0, 0)


def test_load_is_relative_to_max_parallel() -> None:
    pool = HostPool(hosts(small=1, big=4))
    with pool.slot() as h1, pool.slot() as h2, pool.slot() as h3, pool.slot() as h4:
        # small 0/1 vs big 0/4: the first listed; then small is full.
        assert [h1.name, h2.name, h3.name, h4.name] == ["small", "big", "big", "big"]


def test_avoid_prefers_other_hosts_but_falls_back() -> None:
    pool = HostPool(hosts(a=2, b=2))
    with pool.slot(avoid=frozenset({"a"})) as host:
        assert host.name == "b"
    with pool.slot(avoid=frozenset({"a", "b"})) as host:
        assert host.name == "a"  # nothing else lives: better than not running


def test_max_parallel_is_never_exceeded_under_threads() -> None:
    pool = HostPool(hosts(a=1, b=3))
    lock = threading.Lock()
    running: Counter[str] = Counter()
    peak: Counter[str] = Counter()
    done: Counter[str] = Counter()

    def cell() -> None:
        with pool.slot() as host:
            with lock:
                running[host.name] += 1
                peak[host.name] = max(peak[host.name], running[host.name])
            time.sleep(0.01)
            with lock:
                running[host.name] -= 1
                done[host.name] += 1

    threads = [in_thread(cell) for _ in range(40)]
    for thread in threads:
        thread.join(10)
    assert sum(done.values()) == 40
    assert peak == Counter(a=1, b=3)
    assert done["a"] > 0 and done["b"] > done["a"]


def test_dead_host_gets_no_new_cells() -> None:
    pool = HostPool(hosts(a=1, b=1))
    got: list[str] = []
    with pool.slot() as a_slot, pool.slot():
        assert a_slot.name == "a"
        waiter = in_thread(lambda: got.append(_take(pool)))
        time.sleep(0.05)
        assert got == []  # both full: it waits
        pool.mark_dead("a")
    # Both slots freed at once: the waiter must take b although a is free too.
    waiter.join(5)
    assert got == ["b"]
    assert pool.dead == frozenset({"a"})
    assert [h.name for h in pool.live] == ["b"]
    for _ in range(3):
        assert _take(pool) == "b"


def _take(pool: HostPool) -> str:
    with pool.slot() as host:
        return host.name


def test_no_host_left_raises_also_for_waiters() -> None:
    pool = HostPool(hosts(a=1))
    errors: list[BaseException] = []

    def wait_for_slot() -> None:
        try:
            _take(pool)
        except NoHostLeft as exc:
            errors.append(exc)

    with pool.slot():
        waiter = in_thread(wait_for_slot)
        time.sleep(0.05)
        pool.mark_dead("a")
        waiter.join(5)
    assert len(errors) == 1 and "stopped answering" in str(errors[0])
    with pytest.raises(NoHostLeft):
        _take(pool)


# --- run_with_failover ------------------------------------------------------------------


def result(host: HostConfig, status: Status, error: str | None = None) -> CellResult:
    now = datetime.now(UTC)
    return CellResult(
        cell=CELL,
        status=status,
        host=host.name,
        started_at=now,
        finished_at=now,
        failed_stage=Stage.BUILD if status is Status.FAILED else None,
        error=error,
    )


def test_cell_moves_when_its_host_is_lost() -> None:
    pool = HostPool(hosts(a=2, b=2))
    moved: list[str] = []

    def run(host: HostConfig) -> CellResult:
        if host.name == "a":
            return result(host, Status.FAILED, "build: connection aborted")
        return result(host, Status.OK)

    final = run_with_failover(
        CELL, pool, run, lost=lambda h: h.name == "a", on_moved=lambda h, r: moved.append(h.name)
    )
    assert (final.status, final.host, final.attempts) == (Status.OK, "b", 2)
    assert final.error is None
    assert moved == ["a"]
    assert pool.dead == frozenset({"a"})


def test_own_failure_is_not_retried() -> None:
    pool = HostPool(hosts(a=1, b=1))
    calls: list[str] = []

    def run(host: HostConfig) -> CellResult:
        calls.append(host.name)
        return result(host, Status.FAILED, "build: syntax error")

    final = run_with_failover(CELL, pool, run, lost=lambda h: False)
    assert calls == ["a"]
    assert (final.status, final.attempts, final.error) == (Status.FAILED, 1, "build: syntax error")
    assert pool.dead == frozenset()


def test_ok_result_does_not_ping() -> None:
    pool = HostPool(hosts(a=1))

    def lost(host: HostConfig) -> bool:
        raise AssertionError("an ok cell must not ask whether its host is lost")

    final = run_with_failover(CELL, pool, lambda h: result(h, Status.OK), lost=lost)
    assert (final.status, final.attempts) == (Status.OK, 1)


def test_attempts_are_bounded() -> None:
    pool = HostPool(hosts(a=1, b=1, c=1, d=1))
    calls: list[str] = []

    def run(host: HostConfig) -> CellResult:
        calls.append(host.name)
        return result(host, Status.FAILED, "scan: connection refused")

    final = run_with_failover(CELL, pool, run, lost=lambda h: True, max_attempts=3)
    assert calls == ["a", "b", "c"]
    assert (final.status, final.host, final.attempts) == (Status.FAILED, "c", 3)
    assert final.error == "scan: connection refused (host c stopped answering)"
    assert [h.name for h in pool.live] == ["d"]


def test_last_host_lost_keeps_the_last_result() -> None:
    pool = HostPool(hosts(a=1, b=1))

    final = run_with_failover(
        CELL, pool, lambda h: result(h, Status.FAILED, "probe: reset"), lost=lambda h: True
    )
    assert (final.host, final.attempts, final.status) == ("b", 2, Status.FAILED)
    assert final.error == "probe: reset (host b stopped answering)"


def test_no_host_at_all_gives_a_failed_row() -> None:
    pool = HostPool(hosts(a=1))
    pool.mark_dead("a")

    final = run_with_failover(CELL, pool, lambda h: result(h, Status.OK))
    assert (final.status, final.host, final.attempts) == (Status.FAILED, "", 0)
    assert final.failed_stage is Stage.BUILD
    assert final.error == "build: every Docker host of the pool stopped answering"
    assert final.cell == CELL


def test_waiting_cells_move_off_a_lost_host_without_an_attempt() -> None:
    # a (1 slot) is lost while a second cell waits for it: the second cell must run on b
    # in its first attempt, not fail on a first.
    pool = HostPool(hosts(a=1, b=1))
    release_b = threading.Event()
    calls: list[tuple[str, str]] = []
    results: list[CellResult] = []

    def run_as(name: str) -> Callable[[HostConfig], CellResult]:
        def run(host: HostConfig) -> CellResult:
            calls.append((name, host.name))
            if host.name == "a":
                time.sleep(0.05)
                return result(host, Status.FAILED, "build: connection reset")
            release_b.wait(5)
            return result(host, Status.OK)

        return run

    first = in_thread(
        lambda: results.append(run_with_failover(CELL, pool, run_as("1"), lambda h: h.name == "a"))
    )
    time.sleep(0.01)
    second = in_thread(
        lambda: results.append(run_with_failover(CELL, pool, run_as("2"), lambda h: h.name == "a"))
    )
    time.sleep(0.01)
    third = in_thread(
        lambda: results.append(run_with_failover(CELL, pool, run_as("3"), lambda h: h.name == "a"))
    )
    time.sleep(0.2)
    release_b.set()
    for thread in (first, second, third):
        thread.join(5)
    assert sorted(r.attempts for r in results) == [1, 1, 2]
    assert {r.host for r in results} == {"b"}
    assert [c for c in calls if c[1] == "a"] == [("1", "a")]
