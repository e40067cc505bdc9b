"""render_report on hand-made runs: the answer, small multiples per language (titles,
units, one bar per cell, stacked severities by origin), trends, diffs, the cells table."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import timedelta

import pandas as pd
import pytest

from tasks.analysis.compare import RunData, compare_runs
from tasks.analysis.diff import Contents, diff_contents
from tasks.dataset.reader import record_table
from tasks.dataset.schema import build_tables
from tasks.records import RunRecord
from tasks.render.artifacts import artifact_key, artifact_rows, summary_markdown
from tasks.render.charts import nice_range, nice_ticks, thinned_labels
from tasks.render.html import render_report
from tasks.render.multiples import MULTIPLE_TITLES
from tasks.render.terminal import COLUMNS, summary_row
from tests.records_factory import (
    NIGHTLY_NEW_HIGH,
    NIGHTLY_STDLIB_HIGH,
    T0,
    make_run,
    nightly_run,
    report_input,
)
from tests.report_dom import parse_charts

CELLS = ["id-single-stage", "id-bookworm", "id-distroless-static"]  # largest first
BYTES = "unit: bytes, decimal (1 MB = 1,000,000 bytes)"
UNITS = {
    "size": BYTES,
    "compressed": BYTES,
    "vulns-base": "unit: unique vulnerability ids",
    "vulns-build": "unit: unique vulnerability ids",
    "startup": "unit: seconds",
    "memory": BYTES,
    "unowned": "unit: regular files",
}


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


@pytest.fixture(scope="module")
def page(two_nights: tuple[RunRecord, RunRecord]) -> str:
    first, second = two_nights
    return render_report(report_input(second, first, compare=True))


def test_every_chart_has_its_title_its_unit_and_one_bar_per_cell(page: str) -> None:
    charts, scripts = parse_charts(page)
    assert scripts == 0
    multiples = {f"go-{kind}": f"Go: {title}" for kind, title in MULTIPLE_TITLES.items()}
    trends = {
        f"trend-{metric}-go-{base}": f"Go on {base}: {what} across runs"
        for base in ("single-stage", "bookworm", "distroless-static")
        for metric, what in (("startup", "startup"), ("size", "image size"))
    }
    assert {name: c.title for name, c in charts.items()} == multiples | trends
    for kind, unit in UNITS.items():
        chart = charts[f"go-{kind}"]
        assert chart.unit == unit, kind
        assert chart.groups == ["single-stage", "bookworm", "distroless-static"], kind
        assert chart.bars == CELLS, kind
    assert charts["trend-startup-go-bookworm"].unit == "unit: seconds"
    assert charts["trend-size-go-bookworm"].unit == BYTES


def test_the_answer_comes_first(page: str) -> None:
    answer = page.split('<section id="answer">', 1)[1].split("</section>", 1)[0]
    assert page.index('<section id="answer">') < page.index('<section id="languages">')
    assert '<p class="headline">distroless-static: 6.9 MB against 914 MB, 1 vulnerability ' \
        "against 4</p>" in answer  # fmt: skip
    assert (
        '<p class="context">Smallest Go image (Go 1.22.10), 132x smaller than the single-stage '
        "builder image (Go 1.22.10).</p>"
    ) in answer
    rows = re.findall(r"<tr><td>(.*?)</td></tr>", answer)
    assert [r.split("</td><td>") for r in rows] == [
        ["smallest image", "distroless-static", "Go 1.22.10", "6.9 MB", "914 MB", "132x"],
        ["smallest download (compressed)", "distroless-static", "Go 1.22.10", "2.3 MB",
         "305 MB", "132x"],
        ["fewest vulnerabilities", "distroless-static", "Go 1.22.10", "1", "4", "4.0x"],
        ["fewest files no package owns", "distroless-static", "Go 1.22.10", "16", "10,605",
         "663x"],
        # Equal startups: the smaller image wins the tie.
        ["fastest startup (median)", "distroless-static", "Go 1.22.10", "0.250 s", "0.250 s",
         "1.0x"],
        ["least idle memory", "distroless-static", "Go 1.22.10", "2.5 MB", "4.0 MB", "1.6x"],
    ]  # fmt: skip


def test_the_answer_says_no_vulnerabilities(two_nights: tuple[RunRecord, RunRecord]) -> None:
    html = render_report(report_input(two_nights[0]))
    assert (
        '<p class="headline">distroless-static: 6.9 MB against 914 MB, no vulnerabilities '
        "against 4</p>"
    ) in html


def test_bar_lengths_follow_the_values(page: str) -> None:
    charts, _ = parse_charts(page)
    size = {cell: segs[0][1] for cell, segs in charts["go-size"].segments.items()}
    # 1000 MB axis over 300 px: 914 MB -> 274.2 px, 132 MB -> 39.6 px, 6.9 MB -> 2.1 px
    assert size == {"id-single-stage": 274.2, "id-bookworm": 39.6, "id-distroless-static": 2.1}
    assert charts["go-size"].values == {
        "id-single-stage": "914 MB",
        "id-bookworm": "132 MB",
        "id-distroless-static": "6.9 MB",
    }
    # A third of each image compressed; the axis is 0..400 MB over 300 px.
    assert charts["go-compressed"].values == {
        "id-single-stage": "305 MB",
        "id-bookworm": "44.0 MB",
        "id-distroless-static": "2.3 MB",
    }
    assert charts["go-compressed"].segments["id-single-stage"] == [("compressed_bytes", 228.5)]


def test_vulnerabilities_stack_by_severity(page: str) -> None:
    vulns = parse_charts(page)[0]["go-vulns-base"]
    # single-stage: 1 critical, 1 high, 1 medium, 1 low; axis 0..4 over 300 px
    assert [(n, w) for n, w in vulns.segments["id-single-stage"] if w] == [
        ("CRITICAL", 75.0),
        ("HIGH", 75.0),
        ("MEDIUM", 75.0),
        ("LOW", 75.0),
    ]
    assert [(n, w) for n, w in vulns.segments["id-distroless-static"] if w] == [("HIGH", 75.0)]
    assert vulns.values == {"id-single-stage": "4", "id-bookworm": "2", "id-distroless-static": "1"}


def test_vulnerabilities_inherited_from_the_base_apart_from_added_by_the_build() -> None:
    head = nightly_run(
        "night-2",
        T0,
        extra_findings={"single-stage": (NIGHTLY_STDLIB_HIGH,), "bookworm": (NIGHTLY_STDLIB_HIGH,)},
    )
    html = render_report(report_input(head))
    charts, _ = parse_charts(html)
    base, build = charts["go-vulns-base"], charts["go-vulns-build"]
    assert base.values == {"id-single-stage": "4", "id-bookworm": "2", "id-distroless-static": "0"}
    assert build.values == {"id-single-stage": "1", "id-bookworm": "1", "id-distroless-static": "0"}
    # The build's chart: axis 0..1 (whole ids only) over 300 px; CVE-2024-6000 is HIGH.
    assert [(n, w) for n, w in build.segments["id-single-stage"] if w] == [("HIGH", 300.0)]
    assert [w for _, w in build.segments["id-distroless-static"]] == [0.0] * 5
    table = html.split('<table id="cells">', 1)[1]
    assert "<th>inherited from the base (vulns / packages)</th>" in table
    assert "<th>added by the build (vulns / packages)</th>" in table
    # single-stage: 4 / 3 from the base (CVEs / Debian packages), 1 / 1 from the build.
    assert "<td>4 / 3</td><td>1 / 1</td>" in table


def test_terminal_row_splits_vulnerabilities_by_origin() -> None:
    head = nightly_run("night-2", T0, extra_findings={"single-stage": (NIGHTLY_STDLIB_HIGH,)})
    single, bookworm, _ = record_table(head, "results").to_dict("records")
    assert len(summary_row(single)) == len(COLUMNS)
    assert COLUMNS[7] == "vulns base/build"
    assert summary_row(single)[6:8] == ["1/2/1/1", "4/1"]  # CVE-6000 is HIGH, from the build
    assert summary_row(bookworm)[7] == "2/0"
    failed = record_table(make_run(), "results").to_dict("records")[2]  # its scan failed
    assert summary_row(failed)[7] == "-"


def test_runs_without_origins_say_not_measured() -> None:
    data = report_input(nightly_run("night-1", T0))
    old = data.run.results.assign(
        vulns_from_base=None, vulns_from_build=None, packages_from_base=None
    )
    charts, _ = parse_charts(render_report(replace(data, run=replace(data.run, results=old))))
    assert set(charts["go-vulns-base"].values.values()) == {"not measured"}
    assert set(charts["go-vulns-build"].values.values()) == {"not measured"}


def test_startup_has_whiskers_and_memory_and_packages(page: str) -> None:
    charts, _ = parse_charts(page)
    assert charts["go-startup"].whiskers == CELLS
    assert charts["go-startup"].values["id-bookworm"] == "0.250 s"
    assert charts["go-memory"].values["id-single-stage"] == "4.0 MB"  # 2 MB + 4 x 0.5 MB
    table = page.split('<table id="cells">', 1)[1]
    packages = re.findall(r"<tr><td>go-hello go1.22.10 ([a-z-]+)</td>(?:<td>[^<]*</td>){4}"
                          r"<td>([^<]*)</td>", table)  # fmt: skip
    assert packages == [("single-stage", "4"), ("bookworm", "3"), ("distroless-static", "1")]


def test_trend_panels_one_line_per_toolchain_with_change_points(page: str) -> None:
    charts, _ = parse_charts(page)
    for base in ("single-stage", "bookworm", "distroless-static"):
        for metric in ("startup", "size"):
            assert charts[f"trend-{metric}-go-{base}"].series == {f"id-{base}": 2}
    # bookworm grew by 12 MB on the second night: an exact change, marked on its panel.
    assert charts["trend-size-go-bookworm"].change_points == 1
    assert charts["trend-size-go-single-stage"].change_points == 0
    assert (
        "go-hello go1.22.10 bookworm: 120 MB -&gt; 132 MB (+10.0%) from run night-2 "
        "(2024-05-02, exact)"
    ) in page
    assert ">05-01</text>" in page and ">05-02</text>" in page
    assert "2 runs from 2024-05-01 to 2024-05-02 (UTC, dates as month-day)" in page
    changes = page.split('<table id="trend-changes">', 1)[1].split("</table>", 1)[0]
    assert re.findall(r"<tr><td>.*?</tr>", changes) == [
        "<tr><td>2024-05-02</td><td>go-hello go1.22.10 bookworm</td><td>size_bytes</td>"
        "<td>120 MB</td><td>132 MB</td><td>+10.0%</td><td>exact</td><td>night-2</td></tr>"
    ]


def test_startup_band_spans_each_nights_min_to_max(page: str) -> None:
    panel = page.split('id="chart-trend-startup-go-bookworm"', 1)[1].split("</figure>", 1)[0]
    # Samples 0.22 .. 0.27 each night, median 0.25; y axis 0.22 .. 0.28 over the 110 px
    # from y=30 (under the legend's row) to y=140; the runs at x=70 and x=370.
    band = re.search(r'<polygon class="band" points="([^"]+)"', panel)
    assert band is not None
    assert band.group(1) == "70.0,48.3 370.0,48.3 370.0,140.0 70.0,140.0"
    line = re.search(r'<path d="([^"]+)" fill="none"', panel)
    assert line is not None and line.group(1) == "M70.0,85.0 L370.0,85.0"


def test_diffs_between_runs_and_between_bases(page: str) -> None:
    diffs = page.split('<section id="diffs">', 1)[1].split("</section>", 1)[0]
    blocks = re.findall(
        r'<div class="diff" data-diff="([^"]+)"><h4>(.*?)</h4><ul>(.*?)</ul>', diffs
    )
    items = {key: (title, re.findall(r"<li[^>]*>(.*?)</li>", ul)) for key, title, ul in blocks}
    assert items == {
        "id-distroless-static": (
            "go-hello go1.22.10 distroless-static",
            [
                "packages added: none",
                "packages removed: none",
                "packages changed: none",
                "vulnerabilities added (1): CVE-2024-3000 (HIGH)",
                "vulnerabilities removed: none",
            ],
        ),
        "bases-go": (
            "Go: from single-stage (1.22.10) (single-stage) to distroless-static (1.22.10) "
            "(smallest)",
            [
                "packages added: none",
                "packages removed (3): libc-bin 2.36-9+deb12u4, libc6 2.36-9+deb12u4, "
                "libssl3 3.0.11-1~deb12u2",
                "packages changed: none",
                "vulnerabilities added (1): CVE-2024-3000 (HIGH)",
                "vulnerabilities removed (4): CVE-2024-1000 (CRITICAL), CVE-2024-2000 (HIGH), "
                "CVE-2024-4000 (MEDIUM), CVE-2024-5000 (LOW)",
            ],
        ),
    }
    assert '<h3 id="diff-runs">Since run night-1</h3>' in diffs


def test_content_diff_sees_a_new_version_as_a_change() -> None:
    old = Contents({"libssl3": frozenset({"3.0.11-1"}), "zlib1g": frozenset({"1.2.13"})},
                   {"CVE-1": "LOW", "CVE-2": "HIGH"})  # fmt: skip
    new = Contents({"libssl3": frozenset({"3.0.15-1"}), "tzdata": frozenset({"2024a"})},
                   {"CVE-2": "HIGH", "CVE-3": "CRITICAL", "CVE-4": "MEDIUM"})  # fmt: skip
    diff = diff_contents(old, new, "night-1", "night-2")
    assert diff.packages_changed == (("libssl3", "3.0.11-1", "3.0.15-1"),)
    assert diff.packages_added == ("tzdata 2024a",)
    assert diff.packages_removed == ("zlib1g 1.2.13",)
    assert diff.cves_added == (("CVE-3", "CRITICAL"), ("CVE-4", "MEDIUM"))
    assert diff.cves_removed == (("CVE-1", "LOW"),)
    assert not diff.empty and diff_contents(old, old, "a", "b").empty


def test_base_by_toolchain_grid_for_two_toolchains() -> None:
    newer = tuple(
        replace(
            r,
            cell=replace(r.cell, cell_id=f"{r.cell.cell_id}-new", toolchain_version="1.23.9"),
            inspect=replace(r.inspect, size_bytes=r.inspect.size_bytes + 1_000_000),
        )
        for r in nightly_run("night-1", T0).cells
        if r.inspect
    )
    run = nightly_run("night-1", T0)
    html = render_report(report_input(replace(run, cells=run.cells + newer)))
    grid = html.split('<figure class="grid" id="grid-go">', 1)[1].split("</figure>", 1)[0]
    assert "<h3>Go: base x toolchain</h3>" in grid
    assert "<th>Go 1.22.10</th><th>Go 1.23.9</th>" in grid
    assert re.findall(r"<tr><th>([^<]+)</th><td>(.*?)</td><td>(.*?)</td></tr>", grid) == [
        ("single-stage", "914 MB<br>4 vulns", "915 MB<br>4 vulns"),
        ("bookworm", "120 MB<br>2 vulns", "121 MB<br>2 vulns"),
        ("distroless-static", "6.9 MB<br>0 vulns", "7.9 MB<br>0 vulns"),
    ]
    charts, _ = parse_charts(html)
    assert charts["go-size"].bars == [
        "id-single-stage", "id-single-stage-new", "id-bookworm", "id-bookworm-new",
        "id-distroless-static", "id-distroless-static-new",
    ]  # fmt: skip
    assert "grid-go" not in render_report(report_input(run))  # one toolchain: no grid


def test_failed_and_skipped_cells_keep_a_row_that_says_not_measured() -> None:
    charts, _ = parse_charts(render_report(report_input(make_run())))
    size = charts["go-size"]
    assert size.bars == ["id-single-stage", "id-bookworm", "id-distroless-base", "id-alpine"]
    assert size.values["id-alpine"] == "not measured"
    assert "id-alpine" not in size.segments
    assert charts["go-vulns-base"].values["id-bookworm"] == "not measured"  # scan failed
    assert charts["go-vulns-base"].values["id-single-stage"] == "0"  # scanned, none found
    assert not [name for name in charts if name.startswith("trend-")]  # one run: no trends


def test_page_is_self_contained_and_escaped() -> None:
    data = report_input(make_run())
    results = data.run.results.copy()
    results.loc[0, "app"] = "<script>alert(1)</script>"
    html = render_report(replace(data, run=replace(data.run, results=results)), title="A & B")
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<h1>A &amp; B</h1>" in html
    assert not re.search(r"(src|href)=", html)  # nothing loaded from anywhere
    assert "http" not in html


def test_verdict_section(page: str) -> None:
    assert "<h2>Compared with run night-1</h2>" in page
    assert "REGRESSION: 2 regression(s)" in page
    assert "new HIGH CVE-2024-3000 in libssl3" in page


def test_nice_ticks_ranges_and_thinned_dates() -> None:
    assert nice_ticks(914e6) == [0, 200e6, 400e6, 600e6, 800e6, 1000e6]
    assert nice_ticks(4) == [0, 1, 2, 3, 4]
    assert nice_ticks(0.5) == [0, 0.1, 0.2, 0.30000000000000004, 0.4, 0.5]
    assert nice_ticks(0) == [0.0, 1.0]
    assert nice_ticks(1, 4, integer=True) == [0, 1]  # not 0, 0.5, 1: counts are whole
    assert nice_range(0.22, 0.27) == [0.22, 0.24, 0.26, 0.28]
    # A flat series: padded by 5 % each way, 114 .. 126 MB, in steps of 5 MB.
    assert nice_range(120e6, 120e6) == [110e6, 115e6, 120e6, 125e6, 130e6]
    # 200 bytes apart at 132 MB: still flat, not a cliff with five ticks reading "132 MB".
    assert nice_range(132_009_700, 132_009_900) == [125e6, 130e6, 135e6, 140e6]
    # 30 dates 10 px apart, each at most 35 px wide plus a 12 px gap: every 5th shows.
    dates = [f"05-{d:02d}" for d in range(1, 31)]
    assert thinned_labels(dates, 10.0) == [0, 5, 10, 15, 20, 25]
    assert thinned_labels(dates[:2], 300.0) == [0, 1]


def test_artifact_rows_and_summary(two_nights: tuple[RunRecord, RunRecord]) -> None:
    first, second = two_nights
    results = frames(second)["results"]
    rows = artifact_rows(results)
    assert rows[1] == {
        "cell": "go-hello go1.22.10 bookworm",
        "variant": "multi-stage",
        "status": "ok",
        "size_mb": 132.0,
        "compressed_mb": 44.0,
        "packages": 3,
        "vulns_critical": 0,
        "vulns_high": 1,
        "vulns_medium": 0,
        "vulns_low": 1,
        "vulns_from_base": 2,
        "vulns_from_build": 0,
        "unowned_files": 66,
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


def test_the_answer_without_a_single_stage_cell_and_with_failed_cells() -> None:
    run = nightly_run("night-1", T0, bases=("bookworm", "distroless-static"))
    html = render_report(report_input(run))
    assert '<p class="headline">distroless-static: 6.9 MB, no vulnerabilities</p>' in html
    assert (
        '<p class="context">Smallest Go image (Go 1.22.10); no single-stage cell ran.</p>'
    ) in html
    assert (
        "<tr><td>smallest image</td><td>distroless-static</td><td>Go 1.22.10</td>"
        "<td>6.9 MB</td><td>-</td><td></td></tr>"
    ) in html
    # The demo run: bookworm failed (its size is known, but only ok cells count), alpine
    # was skipped; distroless-base is the smallest ok image. Its four findings are three
    # ids (one glibc CVE in libc6 and libc-bin).
    demo = render_report(report_input(make_run()))
    assert (
        '<p class="headline">distroless-base: 26.0 MB against 395 MB, 3 vulnerabilities '
        "against 0</p>"
    ) in demo
    assert (
        '<p class="context">Smallest Go image (Go 1.22.10), 15x smaller than the single-stage '
        "builder image (Go 1.22.10).</p>"
    ) in demo
