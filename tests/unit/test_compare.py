"""compare_runs and the Mann-Whitney U test on hand-made runs (no store)."""

from __future__ import annotations

import dataclasses
import itertools
from datetime import timedelta

import pandas as pd
import pytest

from tasks.analysis.compare import Comparison, RunData, Thresholds, compare_runs
from tasks.analysis.statistics import cliffs_delta, hodges_lehmann_shift, mann_whitney_u
from tasks.dataset.schema import build_tables
from tasks.records import MachineFacts, RunRecord
from tests.records_factory import (
    APP_LAYER,
    NIGHTLY_HIGH,
    NIGHTLY_LOW,
    NIGHTLY_NEW_HIGH,
    NIGHTLY_STDLIB_HIGH,
    T0,
    failed_cell,
    make_run,
    nightly_run,
    ok_cell,
)

DAY = timedelta(days=1)


def run_data(run: RunRecord) -> RunData:
    tables = build_tables(run)
    frames = {name: table.to_pandas() for name, table in tables.items()}
    return RunData(run.run_id, frames["results"], frames["samples"], frames["vulnerabilities"])


def compare(base: RunRecord, head: RunRecord, **limits: float) -> Comparison:
    return compare_runs(run_data(base), run_data(head), Thresholds(**limits))  # type: ignore[arg-type]


def kinds(comparison: Comparison) -> list[tuple[str, str, bool]]:
    return [(c.kind, c.cell_id, c.regression) for c in comparison.changes]


def test_identical_runs_have_no_changes() -> None:
    result = compare(nightly_run("a", T0), nightly_run("b", T0 + DAY))
    assert result.changes == ()
    assert result.regressed is False
    assert (result.base_run, result.head_run) == ("a", "b")


def test_grown_image_and_new_high_cve_are_exactly_the_regressions() -> None:
    base = nightly_run("a", T0)
    head = nightly_run(
        "b",
        T0 + DAY,
        grow={"bookworm": 12_000_000},
        extra_findings={"distroless-static": (NIGHTLY_NEW_HIGH,)},
    )
    result = compare(base, head)
    assert kinds(result) == [
        ("size", "id-bookworm", True),
        ("new-cve", "id-distroless-static", True),
    ]
    size, cve = result.regressions
    assert (size.base, size.head) == (120_000_000, 132_000_000)
    assert size.summary == "size 120 MB -> 132 MB (+12.0 MB, +10.0%)"
    assert cve.summary == "new HIGH CVE-2024-3000 in libssl3, inherited from the base"
    assert cve.detail == {
        "vulnerability_id": "CVE-2024-3000",
        "severity": "HIGH",
        "packages": ["libssl3"],
        "origins": ["base"],
    }
    assert result.to_dict()["regressed"] is True


def test_new_cves_say_whether_the_base_or_the_build_brought_them() -> None:
    base = nightly_run("a", T0)
    head = nightly_run(
        "b",
        T0 + DAY,
        extra_findings={
            "distroless-static": (NIGHTLY_NEW_HIGH, NIGHTLY_STDLIB_HIGH),
            "bookworm": (NIGHTLY_STDLIB_HIGH,),
        },
    )
    result = compare(base, head)
    assert [(c.cell_id, c.summary) for c in result.regressions] == [
        ("id-bookworm", "new HIGH CVE-2024-6000 in stdlib, added by the build"),
        ("id-distroless-static", "new HIGH CVE-2024-3000 in libssl3, inherited from the base"),
        ("id-distroless-static", "new HIGH CVE-2024-6000 in stdlib, added by the build"),
    ]
    assert result.new_serious_by_origin() == {"base": 1, "build": 2, "unknown": 0}
    fixed = compare(head, base)  # and back: gone, with the same origins
    assert [c.summary for c in fixed.changes][-1] == (
        "gone HIGH CVE-2024-6000 in stdlib, added by the build"
    )


def test_a_cve_in_a_base_and_a_build_package_names_both() -> None:
    in_build = dataclasses.replace(NIGHTLY_NEW_HIGH, package="app-libssl", layer_diff_id=APP_LAYER)
    head = nightly_run("b", T0, extra_findings={"bookworm": (NIGHTLY_NEW_HIGH, in_build)})
    (change,) = compare(nightly_run("a", T0), head).changes
    assert change.summary == (
        "new HIGH CVE-2024-3000 in app-libssl, libssl3, inherited from the base and added by "
        "the build"
    )
    assert change.detail["origins"] == ["base", "build"]


def test_runs_without_origins_compare_without_the_phrase() -> None:
    # Runs migrated from the manifest layout have no origin: no claim is made.
    base, head = (
        run_data(nightly_run("a", T0)),
        run_data(nightly_run("b", T0, extra_findings={"distroless-static": (NIGHTLY_NEW_HIGH,)})),
    )
    head = dataclasses.replace(head, vulnerabilities=head.vulnerabilities.drop(columns="origin"))
    (change,) = compare_runs(base, head).changes
    assert change.summary == "new HIGH CVE-2024-3000 in libssl3"
    assert change.detail["origins"] == []
    assert compare_runs(base, head).new_serious_by_origin() == {
        "base": 0,
        "build": 0,
        "unknown": 1,
    }


@pytest.mark.parametrize(
    ("growth", "regression"),
    [
        (900_000, False),  # +0.75 %, < 1 MB: neither limit
        (5_000_000, False),  # +4.2 %: over 1 MB but under 5 %
        (6_100_000, True),  # +5.1 % and +6.1 MB: both limits
    ],
)
def test_size_needs_both_limits(growth: int, regression: bool) -> None:
    result = compare(nightly_run("a", T0), nightly_run("b", T0, grow={"bookworm": growth}))
    assert kinds(result) == [("size", "id-bookworm", regression)]


def test_small_image_growth_under_one_megabyte_is_not_a_regression() -> None:
    # distroless-static is 6.9 MB: +0.9 MB is +13 % but under the 1 MB floor.
    result = compare(
        nightly_run("a", T0), nightly_run("b", T0, grow={"distroless-static": 900_000})
    )
    assert kinds(result) == [("size", "id-distroless-static", False)]
    assert kinds(compare(nightly_run("a", T0), nightly_run("b", T0), size_bytes=0)) == []


def test_shrunk_image_and_fixed_cve_are_changes_not_regressions() -> None:
    base = nightly_run("a", T0, extra_findings={"bookworm": (NIGHTLY_NEW_HIGH,)})
    head = nightly_run("b", T0, grow={"bookworm": -50_000_000})
    result = compare(base, head)
    assert kinds(result) == [
        ("size", "id-bookworm", False),
        ("fixed-cve", "id-bookworm", False),
    ]
    assert result.regressed is False


def test_low_and_medium_cves_are_not_regressions() -> None:
    head = nightly_run("b", T0, extra_findings={"distroless-static": (NIGHTLY_LOW,)})
    assert compare(nightly_run("a", T0), head).changes == ()


def test_cve_already_in_the_cell_is_not_new() -> None:
    # CVE-2024-2000 is already in bookworm; in distroless-static it is new.
    head = nightly_run("b", T0, extra_findings={"bookworm": (NIGHTLY_HIGH,)})
    assert compare(nightly_run("a", T0), head).changes == ()
    head = nightly_run("b", T0, extra_findings={"distroless-static": (NIGHTLY_HIGH,)})
    assert kinds(compare(nightly_run("a", T0), head)) == [("new-cve", "id-distroless-static", True)]


def test_cells_appeared_and_disappeared() -> None:
    base = nightly_run("a", T0, bases=("single-stage", "bookworm"))
    head = nightly_run("b", T0, bases=("bookworm", "distroless-static"))
    result = compare(base, head)
    assert kinds(result) == [
        ("cell-appeared", "id-distroless-static", False),
        ("cell-disappeared", "id-single-stage", False),
    ]
    assert result.changes[0].cell == "go-hello go1.22.10 distroless-static"


def test_cell_that_failed_is_a_regression_and_its_missing_scan_is_not_all_fixed() -> None:
    base = make_run("a", cells=(ok_cell(),))
    broken = dataclasses.replace(failed_cell(), cell=ok_cell().cell)  # same cell, now failed
    head = make_run("b", cells=(broken,))
    result = compare(base, head)
    # Only the status: no "fixed-cve" for CVEs the failed scan could not see.
    assert [c.kind for c in result.changes] == ["status", "size"]
    status = result.changes[0]
    assert status.regression is True
    assert status.summary == "status ok -> failed: scan: trivy exited 1: database not found"


def test_slower_startup_beyond_noise_is_a_regression() -> None:
    slow = (0.40, 0.38, 0.41, 0.39, 0.42)
    head = nightly_run("b", T0, startup={"bookworm": slow})
    result = compare(nightly_run("a", T0), head)
    assert kinds(result) == [("startup", "id-bookworm", True)]
    change = result.changes[0]
    assert change.detail["p_value"] == pytest.approx(2 / 252)  # the most extreme split
    assert (change.base, change.head) == (0.25, 0.40)
    assert "Mann-Whitney p=0.0079, n=5/5" in change.summary


def test_faster_startup_is_reported_but_not_a_regression() -> None:
    fast = (0.12, 0.11, 0.13, 0.10, 0.14)
    result = compare(nightly_run("a", T0), nightly_run("b", T0, startup={"bookworm": fast}))
    assert kinds(result) == [("startup", "id-bookworm", False)]


def test_startup_shift_inside_the_noise_is_not_a_change() -> None:
    # The medians differ by 8 %, but the samples overlap: the test finds no difference.
    noisy = (0.20, 0.35, 0.27, 0.22, 0.30)
    result = compare(nightly_run("a", T0), nightly_run("b", T0, startup={"bookworm": noisy}))
    assert result.changes == ()


def test_significant_but_tiny_startup_shift_is_not_a_change() -> None:
    base = nightly_run("a", T0, startup={"bookworm": (0.2500, 0.2501, 0.2502, 0.2503, 0.2504)})
    head = nightly_run("b", T0, startup={"bookworm": (0.2600, 0.2601, 0.2602, 0.2603, 0.2604)})
    assert compare(base, head).changes == ()  # p = 0.008 but only +4 %
    assert kinds(compare(base, head, startup_ratio=0.01)) == [("startup", "id-bookworm", True)]


def brute_force_p(x: list[float], y: list[float]) -> float:
    """Two-sided permutation p-value of the U statistic by relabelling every split."""
    pooled = [*x, *y]
    n = len(x)

    def u_of(first: list[float], second: list[float]) -> float:
        return sum((a > b) + 0.5 * (a == b) for a in first for b in second)

    centre = n * len(y) / 2
    observed = abs(u_of(x, y) - centre)
    hits = total = 0
    for idx in itertools.combinations(range(len(pooled)), n):
        first = [pooled[i] for i in idx]
        second = [pooled[i] for i in range(len(pooled)) if i not in idx]
        total += 1
        hits += abs(u_of(first, second) - centre) >= observed - 1e-9
    return hits / total


@pytest.mark.parametrize(
    ("x", "y"),
    [
        ([1.0, 2.0, 3.0], [4.0, 5.0, 6.0]),
        ([0.25, 0.22, 0.27, 0.24, 0.26], [0.40, 0.38, 0.41, 0.39, 0.42]),
        ([1.0, 2.0, 2.0, 3.0], [2.0, 3.0, 3.0, 4.0, 5.0]),  # ties
        ([0.2, 0.35, 0.27, 0.22, 0.30], [0.25, 0.22, 0.27, 0.24, 0.26]),
    ],
)
def test_exact_p_matches_brute_force_relabelling(x: list[float], y: list[float]) -> None:
    u, p = mann_whitney_u(x, y)
    assert u == sum((a > b) + 0.5 * (a == b) for a in x for b in y)
    assert p == pytest.approx(brute_force_p(x, y))


def test_known_values() -> None:
    # Fully separated 3 vs 3: 2 of the 20 splits are as extreme (scipy: p=0.1).
    u, p = mann_whitney_u([1, 2, 3], [4, 5, 6])
    assert u == 0.0
    assert p == pytest.approx(0.1)
    assert mann_whitney_u([1, 1, 1], [1, 1, 1]) == (4.5, 1.0)


def test_normal_approximation_for_large_samples() -> None:
    x = [float(i) for i in range(30)]
    y = [float(i) + 5.5 for i in range(30)]  # C(60, 30) splits: approximation
    u, p = mann_whitney_u(x, y)
    assert u == 300.0  # x_i > y_j for i - 5 values of j, i = 6..29: 1 + ... + 24
    # By hand: mean 450, variance 30*30*61/12 = 4575, z = (150 - 0.5) / 67.64 = 2.2103
    assert p == pytest.approx(0.02708, abs=1e-4)
    assert mann_whitney_u([2.0] * 30, [2.0] * 30)[1] == 1.0


def test_significant_shift_with_overlapping_samples_is_not_a_change() -> None:
    # 40 starts each, shifted by 60 ms: p = 0.03 and a 5.0 % shift, but Cliff's delta is
    # 0.28: most pairs overlap, below the "medium" effect a verdict needs.
    before = tuple(1.0 + i * 0.01 for i in range(40))
    after = tuple(b + 0.06 for b in before)
    assert mann_whitney_u(before, after)[1] == pytest.approx(0.030, abs=5e-4)
    assert cliffs_delta(before, after) == pytest.approx(0.2825)
    assert hodges_lehmann_shift(before, after) == pytest.approx(0.06)
    base = nightly_run("a", T0, startup={"bookworm": before})
    head = nightly_run("b", T0, startup={"bookworm": after})
    assert kinds(compare(base, head)) == []
    assert kinds(compare(base, head, startup_effect=0.25)) == [("startup", "id-bookworm", True)]


def test_effect_sizes() -> None:
    assert hodges_lehmann_shift([1.0, 2.0, 3.0], [2.0, 3.0, 4.0]) == 1.0
    assert hodges_lehmann_shift([0.25, 0.26], [0.24]) == pytest.approx(-0.015)
    assert cliffs_delta([1.0, 2.0, 3.0], [4.0, 5.0, 6.0]) == 1.0
    assert cliffs_delta([4.0, 5.0], [1.0, 2.0]) == -1.0
    assert cliffs_delta([1.0, 2.0], [1.0, 2.0]) == 0.0
    assert cliffs_delta([1.0, 3.0], [2.0]) == 0.0


def test_empty_sample_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least one value in each sample"):
        mann_whitney_u([], [1.0])


def test_json_shape() -> None:
    head = nightly_run("b", T0, grow={"bookworm": 12_000_000})
    data = compare(nightly_run("a", T0), head).to_dict()
    assert data["thresholds"] == {
        "size_ratio": 0.05,
        "size_bytes": 1_000_000,
        "alpha": 0.05,
        "startup_ratio": 0.05,
        "startup_effect": 0.33,
    }
    assert data["changes"][0]["kind"] == "size"
    assert data["changes"][0]["detail"]["growth_bytes"] == 12_000_000
    assert isinstance(pd.Series(data["changes"]).iloc[0], dict)


def on_machine(run: RunRecord, machine: MachineFacts) -> RunRecord:
    return dataclasses.replace(run, machines=(machine,))


LOCAL = MachineFacts("local", "Xeon", 2, 4_000_000_000, "6.1.0", "linux/amd64", "20.10.24")


def test_startup_on_another_host_class_is_a_move_not_a_regression() -> None:
    slow = (0.40, 0.38, 0.41, 0.39, 0.42)
    base = on_machine(nightly_run("a", T0), LOCAL)
    bigger = dataclasses.replace(LOCAL, cpus=8)
    head = on_machine(nightly_run("b", T0 + DAY, startup={"bookworm": slow}), bigger)
    result = compare(base, head)
    assert kinds(result) == [
        ("host-class", f"id-{cell}", False)
        for cell in ("bookworm", "distroless-static", "single-stage")
    ]
    assert result.changes[0].summary == (
        f"moved host class {LOCAL.host_class} -> {bigger.host_class} (host local -> local); "
        "timings not compared"
    )
    # The same class on both sides: the slower startup is judged, and is a regression.
    same = on_machine(nightly_run("c", T0 + DAY, startup={"bookworm": slow}), LOCAL)
    assert kinds(compare(base, same)) == [("startup", "id-bookworm", True)]


def test_host_class_ignores_the_host_name_and_counts_every_fact() -> None:
    assert dataclasses.replace(LOCAL, host="other").host_class == LOCAL.host_class
    for fact, value in [
        ("cpu_model", "EPYC"),
        ("cpus", 4),
        ("memory_bytes", 8_000_000_000),
        ("kernel", "6.12.0"),
        ("platform", "linux/arm64"),
        ("engine_version", "28.0.1"),
        ("storage_driver", "vfs"),
        ("builder", "legacy"),
    ]:
        assert dataclasses.replace(LOCAL, **{fact: value}).host_class != LOCAL.host_class, fact


def test_a_cell_pulled_instead_of_forged_is_reported_not_judged() -> None:
    base = nightly_run("a", T0)  # every image forged here
    head = nightly_run("b", T0 + DAY, grow={"bookworm": 50_000_000})
    pulled = tuple(
        dataclasses.replace(c, inspect=dataclasses.replace(c.inspect, base_forged=False))
        if c.cell.base == "bookworm" and c.inspect
        else c
        for c in head.cells
    )
    result = compare(base, dataclasses.replace(head, cells=pulled))
    assert kinds(result) == [("image-source", "id-bookworm", False)]
    assert result.changes[0].summary == (
        "image source changed (base forged -> pulled); size, vulnerabilities and timings not "
        "compared"
    )
