"""render_report on hand-made runs: titles, one bar per cell, stacked severities, trends."""

from __future__ import annotations

import re
from datetime import timedelta

import pandas as pd
import pytest

from tasks.analysis.compare import RunData, compare_runs
from tasks.dataset.schema import build_tables
from tasks.records import RunRecord
from tasks.render.artifacts import artifact_key, artifact_rows, summary_markdown
from tasks.render.charts import nice_ticks
from tasks.render.html import CHART_TITLES, render_report
from tasks.render.terminal import COLUMNS, summary_row
from tests.records_factory import NIGHTLY_NEW_HIGH, NIGHTLY_STDLIB_HIGH, T0, make_run, nightly_run
from tests.report_dom import parse_charts

CELL_CHARTS = ("size", "vulnerabilities", "origin", "startup", "memory", "packages")


def frames(run: RunRecord) -> dict[str, pd.DataFrame]:
    return {name: t.to_pandas() for name, t in build_tables(run).items()}


def run_data(run: RunRecord) -> RunData:
    f = frames(run)
    return RunData(run.run_id, f["results"], f["samples"], f["vulnerabilities"])


@pytest.fixture(scope="module")
def two_nights() -> tuple[RunRecord, RunRecord]:
    first = nightly_run("night-1", T0)
    second = nightly_run(
        "night-2",
        T0 + timedelta(days=1),
        grow={"bookworm": 12_000_000},
        extra_findings={"distroless-static": (NIGHTLY_NEW_HIGH,)},
    )
    return first, second


def test_every_chart_has_its_title_and_one_bar_per_cell(
    two_nights: tuple[RunRecord, RunRecord],
) -> None:
    first, second = two_nights
    history = pd.concat([frames(first)["results"], frames(second)["results"]])
    html = render_report(frames(second)["results"], history, frames(second)["runs"])
    charts, scripts = parse_charts(html)
    assert scripts == 0
    assert {name: c.title for name, c in charts.items()} == CHART_TITLES
    cells = ["id-single-stage", "id-bookworm", "id-distroless-static"]  # largest first
    for name in CELL_CHARTS:
        assert charts[name].bars == cells, name


def test_bar_lengths_follow_the_values(two_nights: tuple[RunRecord, RunRecord]) -> None:
    charts, _ = parse_charts(render_report(frames(two_nights[1])["results"]))
    size = {cell: segs[0][1] for cell, segs in charts["size"].segments.items()}
    # 1000 MB axis over 520 px: 914 MB -> 475.3 px, 132 MB -> 68.6 px, 6.9 MB -> 3.6 px
    assert size == {
        "id-single-stage": pytest.approx(475.3, abs=0.1),
        "id-bookworm": pytest.approx(68.6, abs=0.1),
        "id-distroless-static": pytest.approx(3.6, abs=0.1),
    }
    assert charts["size"].values == {
        "id-single-stage": "914 MB",
        "id-bookworm": "132 MB",
        "id-distroless-static": "6.9 MB",
    }


def test_vulnerabilities_stack_by_severity(two_nights: tuple[RunRecord, RunRecord]) -> None:
    charts, _ = parse_charts(render_report(frames(two_nights[1])["results"]))
    vulns = charts["vulnerabilities"]
    # single-stage: 1 critical, 1 high, 1 medium, 1 low; axis 0..4 over 520 px
    assert [(n, w) for n, w in vulns.segments["id-single-stage"] if w] == [
        ("CRITICAL", 130.0),
        ("HIGH", 130.0),
        ("MEDIUM", 130.0),
        ("LOW", 130.0),
    ]
    assert [(n, w) for n, w in vulns.segments["id-distroless-static"] if w] == [("HIGH", 130.0)]
    assert vulns.values == {"id-single-stage": "4", "id-bookworm": "2", "id-distroless-static": "1"}


def test_vulnerabilities_inherited_from_the_base_apart_from_added_by_the_build() -> None:
    head = nightly_run(
        "night-2",
        T0,
        extra_findings={"single-stage": (NIGHTLY_STDLIB_HIGH,), "bookworm": (NIGHTLY_STDLIB_HIGH,)},
    )
    html = render_report(frames(head)["results"])
    charts, _ = parse_charts(html)
    origin = charts["origin"]
    # single-stage: 4 inherited + 1 added, axis 0..5 over 520 px (104 px per id)
    assert origin.segments["id-single-stage"] == [
        ("inherited from the base", 416.0),
        ("added by the build", 104.0),
    ]
    assert origin.segments["id-distroless-static"] == [
        ("inherited from the base", 0.0),
        ("added by the build", 0.0),
    ]
    assert origin.values == {
        "id-single-stage": "5",
        "id-bookworm": "3",
        "id-distroless-static": "0",
    }
    table = html.split('<table id="cells">', 1)[1]
    assert "<th>inherited from the base (vulns / packages)</th>" in table
    assert "<th>added by the build (vulns / packages)</th>" in table
    # single-stage: 4 / 3 from the base (CVEs / Debian packages), 1 / 1 from the build.
    assert "<td>4 / 3</td><td>1 / 1</td>" in table


def test_terminal_row_splits_vulnerabilities_by_origin() -> None:
    head = nightly_run("night-2", T0, extra_findings={"single-stage": (NIGHTLY_STDLIB_HIGH,)})
    single, bookworm, _ = head.cells
    assert len(summary_row(single)) == len(COLUMNS)
    assert COLUMNS[7] == "vulns base/build"
    assert summary_row(single)[6:8] == ["1/2/1/1", "4/1"]  # CVE-6000 is HIGH, from the build
    assert summary_row(bookworm)[7] == "2/0"
    failed = make_run().cells[2]  # its scan failed
    assert summary_row(failed)[7] == "-"


def test_runs_without_origins_say_not_measured() -> None:
    results = frames(nightly_run("night-1", T0))["results"]
    old = results.assign(vulns_from_base=None, vulns_from_build=None, packages_from_base=None)
    charts, _ = parse_charts(render_report(old))
    assert set(charts["origin"].values.values()) == {"not measured"}


def test_startup_has_whiskers_and_memory_and_packages(
    two_nights: tuple[RunRecord, RunRecord],
) -> None:
    charts, _ = parse_charts(render_report(frames(two_nights[1])["results"]))
    assert charts["startup"].whiskers == ["id-single-stage", "id-bookworm", "id-distroless-static"]
    assert charts["startup"].values["id-bookworm"] == "0.250 s"
    assert charts["packages"].values == {
        "id-single-stage": "4",
        "id-bookworm": "3",
        "id-distroless-static": "1",
    }
    assert charts["memory"].values["id-single-stage"] == "4.0 MB"  # 2 MB + 4 x 0.5 MB


def test_trend_lines_have_one_point_per_run(two_nights: tuple[RunRecord, RunRecord]) -> None:
    first, second = two_nights
    history = pd.concat([frames(first)["results"], frames(second)["results"]])
    html = render_report(frames(second)["results"], history)
    charts, _ = parse_charts(html)
    expected = {"id-bookworm": 2, "id-distroless-static": 2, "id-single-stage": 2}
    assert charts["trend-size"].series == expected
    assert charts["trend-vulnerabilities"].series == expected
    assert "2024-05-01 02:00" in html and "2024-05-02 02:00" in html
    assert "go-hello go1.22.10 bookworm: 132 MB" in html  # the second point's tooltip


def test_failed_and_skipped_cells_keep_a_row_that_says_not_measured() -> None:
    charts, _ = parse_charts(render_report(frames(make_run())["results"]))
    size = charts["size"]
    assert size.bars == ["id-single-stage", "id-bookworm", "id-distroless-base", "id-alpine"]
    assert size.values["id-alpine"] == "not measured"
    assert "id-alpine" not in size.segments
    assert charts["vulnerabilities"].values["id-bookworm"] == "not measured"  # scan failed
    assert charts["vulnerabilities"].values["id-single-stage"] == "0"  # scanned, none found
    assert "trend-size" not in charts  # no history given


def test_page_is_self_contained_and_escaped() -> None:
    results = frames(make_run())["results"]
    results.loc[0, "app"] = "<script>alert(1)</script>"
    html = render_report(results, title="A & B")
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<h1>A &amp; B</h1>" in html
    assert not re.search(r"(src|href)=", html)  # nothing loaded from anywhere
    assert "http" not in html


def test_verdict_section(two_nights: tuple[RunRecord, RunRecord]) -> None:
    first, second = two_nights
    comparison = compare_runs(run_data(first), run_data(second))
    html = render_report(frames(second)["results"], comparison=comparison)
    assert "<h2>Compared with run night-1</h2>" in html
    assert "REGRESSION: 2 regression(s)" in html
    assert "new HIGH CVE-2024-3000 in libssl3" in html


def test_nice_ticks() -> None:
    assert nice_ticks(914e6) == [0, 200e6, 400e6, 600e6, 800e6, 1000e6]
    assert nice_ticks(4) == [0, 1, 2, 3, 4]
    assert nice_ticks(0.5) == [0, 0.1, 0.2, 0.30000000000000004, 0.4, 0.5]
    assert nice_ticks(0) == [0.0, 1.0]


def test_artifact_rows_and_summary(two_nights: tuple[RunRecord, RunRecord]) -> None:
    first, second = two_nights
    results = frames(second)["results"]
    rows = artifact_rows(results)
    assert rows[1] == {
        "cell": "go-hello go1.22.10 bookworm",
        "variant": "multi-stage",
        "status": "ok",
        "size_mb": 132.0,
        "packages": 3,
        "vulns_critical": 0,
        "vulns_high": 1,
        "vulns_medium": 0,
        "vulns_low": 1,
        "vulns_from_base": 2,
        "vulns_from_build": 0,
        "startup_seconds": 0.25,
        "idle_memory_mb": 3.5,
    }
    comparison = compare_runs(run_data(first), run_data(second))
    text = summary_markdown("night-2", results, comparison)
    assert text.splitlines() == [
        "# basebench run night-2",
        "",
        "3 cells: 3 ok, 0 failed, 0 skipped.",
        "Smallest image: go-hello go1.22.10 distroless-static (6.9 MB).",
        "",
        "## Compare",
        "",
        "Against run night-1: **REGRESSION**.",
        "",
        "- **regression**: go-hello go1.22.10 bookworm: size 120 MB -> 132 MB (+12.0 MB, +10.0%)",
        "- **regression**: go-hello go1.22.10 distroless-static: new HIGH CVE-2024-3000 in "
        "libssl3, inherited from the base",
        "",
        "new CRITICAL/HIGH: 1 inherited from the base, 0 added by the build",
    ]
    assert "No earlier run" in summary_markdown("night-1", results, None)
    failed_rows = artifact_rows(frames(make_run())["results"])
    assert failed_rows[3]["size_mb"] is None  # skipped alpine: null, not 0


def test_artifact_keys_are_lowercase_with_dashes() -> None:
    assert artifact_key("nightly", "cells") == "basebench-nightly-cells"
    assert artifact_key("Go_1.22 Nightly", "summary") == "basebench-go-1-22-nightly-summary"
