"""Change points over a nightly history: E-divisive on noisy metrics, exact diffs on the rest."""

from __future__ import annotations

import dataclasses
import random
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest

from cli.main import main
from tasks.analysis.history import history_changes
from tasks.analysis.statistics import e_divisive
from tasks.dataset.schema import build_tables
from tasks.dataset.stores import LocalStore
from tasks.dataset.writer import publish
from tasks.records import MachineFacts
from tests.records_factory import T0, nightly_run

NIGHTS = 12


def noisy(level: float, n: int, cv: float, seed: int) -> list[float]:
    rng = random.Random(seed)
    return [level * (1 + rng.gauss(0, cv)) for _ in range(n)]


def test_pure_noise_has_no_change_point() -> None:
    assert e_divisive(noisy(0.25, 30, 0.03, seed=7)) == []


def test_one_step_is_found_where_it_is() -> None:
    series = noisy(0.25, 15, 0.03, seed=1) + noisy(0.275, 15, 0.03, seed=2)
    (point,) = e_divisive(series)
    assert point.index == 15
    assert point.p_value == 0.005  # no shuffle of 199 reached it: 1 / 200
    assert point.before == pytest.approx(0.250, abs=0.006)  # medians of 3 % noise
    assert point.after == pytest.approx(0.275, abs=0.006)


def test_two_steps_are_both_found() -> None:
    series = [1.0] * 8 + [2.0] * 8 + [3.0] * 8
    assert [(p.index, p.before, p.after) for p in e_divisive(series)] == [(8, 1, 2), (16, 2, 3)]
    # A step that reverts needs longer plateaus: the first bisection sees both levels
    # on one side (p = 0.04 here, where 8 nights each stay below significance).
    reverted = [1.0] * 12 + [2.0] * 12 + [1.0] * 12
    assert [p.index for p in e_divisive(reverted)] == [12, 24]


def test_short_series_are_not_split() -> None:
    assert e_divisive([1.0, 1.0, 5.0, 5.0, 5.0]) == []  # fewer than 2 x min_size


def nightly_history() -> list:  # type: ignore[type-arg]
    """12 nights: bookworm starts 10 % slower from night 6, distroless-static grows
    by 1 MB on night 8; every startup sample jitters by 3 %."""
    runs = []
    for night in range(NIGHTS):
        level = 0.25 * (1.10 if night >= 6 else 1.0)
        startup = {
            base: tuple(noisy(level if base == "bookworm" else 0.25, 5, 0.03, seed=night * 3 + k))
            for k, base in enumerate(("single-stage", "bookworm", "distroless-static"))
        }
        runs.append(
            nightly_run(
                f"night-{night:02d}",
                T0 + timedelta(days=night),
                grow={"distroless-static": 1_000_000} if night >= 8 else None,
                startup=startup,
            )
        )
    return runs


def test_history_names_the_step_and_the_growth_and_nothing_else() -> None:
    runs = nightly_history()
    results = pd.concat([build_tables(r)["results"].to_pandas() for r in runs])
    changes = history_changes(results, [r.run_id for r in runs])
    found = {(c.cell, c.metric, c.run_id, c.method) for c in changes}
    assert found == {
        ("go-hello go1.22.10 bookworm", "startup_seconds", "night-06", "e-divisive"),
        ("go-hello go1.22.10 distroless-static", "size_bytes", "night-08", "exact"),
    }
    step = next(c for c in changes if c.metric == "startup_seconds")
    assert step.ratio == pytest.approx(0.10, abs=0.03)
    assert step.p_value is not None and step.p_value < 0.05
    growth = next(c for c in changes if c.metric == "size_bytes")
    assert (growth.before, growth.after) == (6_900_000, 7_900_000)


def test_history_command_over_a_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = LocalStore(tmp_path / "results")
    for run in nightly_history():
        publish(run, store)
    assert main(["history", str(tmp_path / "results"), "--metric", "startup_seconds"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{NIGHTS} runs"
    assert len(lines) == 2
    assert lines[1].startswith("go-hello go1.22.10 bookworm  startup_seconds    2024-")
    assert "night-06" in lines[1] and "p=0.0" in lines[1]
    assert main(["history", str(tmp_path / "results"), "--matrix", "nope"]) == 2
    assert "--matrix nope: no complete run" in capsys.readouterr().err


def test_a_step_that_came_with_another_host_class_is_not_a_timing_change() -> None:
    # The same 10 % slower startup from night 6, but from night 6 on every cell ran on
    # another class of host: timings are judged only within the latest class, whose
    # six nights show no step; the size growth is judged over every night.
    old = MachineFacts("local", "Xeon", 2, 4_000_000_000, "6.1.0", "linux/amd64", "20.10.24")
    new = dataclasses.replace(old, cpus=8)
    runs = [
        dataclasses.replace(run, machines=(old if night < 6 else new,))
        for night, run in enumerate(nightly_history())
    ]
    results = pd.concat([build_tables(r)["results"].to_pandas() for r in runs])
    found = {
        (c.cell, c.metric, c.run_id) for c in history_changes(results, [r.run_id for r in runs])
    }
    assert found == {("go-hello go1.22.10 distroless-static", "size_bytes", "night-08")}
