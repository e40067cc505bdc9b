"""Idle memory from the engine's stats: usage minus inactive page cache, or null and why."""

from __future__ import annotations

from typing import Any

from tasks.stages.probe import _memory_bytes


class Stats:
    """What ``docker.models.containers.Container.stats`` returns, canned."""

    def __init__(self, memory_stats: dict[str, Any]) -> None:
        self.memory_stats = memory_stats

    def stats(self, stream: bool, one_shot: bool) -> dict[str, Any]:
        assert (stream, one_shot) == (False, True)
        return {"memory_stats": self.memory_stats}


def test_cgroup_v1_usage_minus_inactive_file() -> None:
    stats = {"usage": 5_000_000, "stats": {"total_inactive_file": 3_600_000}}
    assert _memory_bytes(Stats(stats)) == (1_400_000, None)  # type: ignore[arg-type]


def test_cgroup_v2_inactive_file() -> None:
    stats = {"usage": 2_000_000, "stats": {"inactive_file": 500_000}}
    assert _memory_bytes(Stats(stats)) == (1_500_000, None)  # type: ignore[arg-type]


def test_no_usage_is_null_with_the_reason_not_zero() -> None:
    for empty in ({}, {"stats": {}}):
        assert _memory_bytes(Stats(empty)) == (  # type: ignore[arg-type]
            None,
            "the engine reported no memory usage for the container",
        )
