"""One table of metrics: every writer reads the same ``results`` rows and shows each metric
as ``tasks.metrics`` defines it; a metric of the table (``unowned_files``) appears in the
terminal, the report (answer, small multiples, every cell), the Prefect table, compare
and history; rows stored before it existed read as not measured."""

from __future__ import annotations

import dataclasses
import io
import re
from datetime import timedelta
from html import unescape
from pathlib import Path

import pandas as pd
import pytest
from rich.console import Console

from tasks.analysis.answer import answers
from tasks.analysis.compare import RunData, compare_runs
from tasks.analysis.history import HISTORY_METRICS, history_changes
from tasks.dataset.reader import read_table, record_table
from tasks.dataset.schema import SCHEMAS, build_tables, conform_table
from tasks.dataset.stores import LocalStore
from tasks.dataset.writer import PublishOutcome, publish
from tasks.metrics import CELL_METRICS, METRIC, METRICS, VULNS_TOTAL, Kind
from tasks.records import RunRecord
from tasks.render import terminal
from tasks.render.artifacts import artifact_rows
from tasks.render.html import build_report, render_report
from tasks.units import FORMATTERS
from tests.records_factory import T0, make_run, nightly_run, report_input
from tests.report_dom import parse_charts

UNOWNED = METRIC["unowned_files"]


def test_every_metric_is_a_results_column_with_a_formatter() -> None:
    columns = set(SCHEMAS["results"].names)
    for metric in METRICS:
        assert metric.column in columns | {VULNS_TOTAL}, metric.column
        assert set(metric.spread or ()) <= columns, metric.column
        assert metric.unit in FORMATTERS, metric.column
        assert metric.unit_text, metric.column
        assert metric.kind is Kind.TIMED or not metric.spread, metric.column
    assert [m.column for m in METRICS if m.kind is Kind.TIMED] == [
        "build_seconds",
        "startup_seconds",
        "idle_memory_bytes",
    ]
    assert len({m.label for m in METRICS}) == len(METRICS)


def summary_text(run: RunRecord) -> str:
    """What ``basebench run`` prints for ``run``."""
    published = PublishOutcome(run.run_id, "/tmp/results", attempts=1)
    outcome = type("Outcome", (), {"record": run, "published": published, "comparison": None})
    console = Console(width=400, file=io.StringIO())
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(terminal, "console", console)
        terminal.render_summary(outcome)  # type: ignore[arg-type]
    return console.file.getvalue()  # type: ignore[attr-defined, no-any-return]


def terminal_cells(text: str) -> list[dict[str, str]]:
    """The summary table's rows, by column header."""
    lines = [line for line in text.splitlines() if line.startswith(("┃", "│"))]
    split = [[cell.strip() for cell in line.strip("┃│").split(line[0])] for line in lines]
    header, *rows = split
    return [dict(zip(header, row, strict=True)) for row in rows]


def report_cells(page: str) -> list[dict[str, str]]:
    """The report's every-cell table, by column header."""
    table = page.split('<table id="cells">', 1)[1].split("</table>", 1)[0]
    header = [unescape(h) for h in re.findall(r"<th>(.*?)</th>", table)]
    rows = re.findall(r"<tr>(<td>.*?)</tr>", table)
    return [
        dict(zip(header, [unescape(c) for c in re.findall(r"<td>(.*?)</td>", row)], strict=True))
        for row in rows
    ]


@pytest.mark.parametrize(
    ("run", "unowned"),
    [
        (nightly_run("night-1", T0), ["10,605", "66", "16"]),
        # The demo run's records predate the metric: not counted.
        (make_run(), ["-", "-", "-", "-"]),
    ],
    ids=["nightly", "demo"],
)
def test_the_terminal_summary_prints_what_the_stored_runs_report_prints(
    run: RunRecord, unowned: list[str], tmp_path: Path
) -> None:
    store = LocalStore(tmp_path / "results")
    publish(run, store)
    shown = terminal_cells(summary_text(run))
    stored = report_cells(build_report(store, run.run_id)[1])
    labels = [m.label for m in CELL_METRICS if m.column != VULNS_TOTAL]
    assert [m for m in labels if m in shown[0] and m in stored[0]] == labels
    by_cell = {f"{r['app']} {r['toolchain']} {r['base']}": r for r in shown}
    assert len(by_cell) == len(stored) == len(run.cells)
    for row in stored:
        printed = by_cell[row["cell"]]
        assert {m: printed[m] for m in labels} == {m: row[m] for m in labels}, row["cell"]
        assert printed["status"] == row["status"]
    # Both read the rows of the results table, whose column the records fill.
    assert [r["unowned files"] for r in shown] == unowned
    stored_column = read_table(store, "results")["unowned_files"]
    assert [None if pd.isna(v) else v for v in stored_column] == [
        r.inspect.unowned_files if r.inspect else None for r in run.cells
    ]


def two_nights() -> tuple[RunRecord, RunRecord]:
    """The build of night 2 adds a vendored library to the distroless static image."""
    first = nightly_run("night-1", T0)
    second = nightly_run("night-2", T0 + timedelta(days=1))
    cells = tuple(
        dataclasses.replace(c, inspect=dataclasses.replace(c.inspect, unowned_files=17))
        if c.cell.base == "distroless-static" and c.inspect
        else c
        for c in second.cells
    )
    return first, dataclasses.replace(second, cells=cells)


def test_files_no_package_owns_appear_everywhere() -> None:
    first, second = two_nights()
    frames = [record_table(run, "results") for run in (first, second)]
    # The terminal and the Prefect table: a column.
    assert terminal.COLUMNS[8] == "unowned files"
    assert [terminal.summary_row(r)[8] for r in frames[1].to_dict("records")] == [
        "10,605",
        "66",
        "17",
    ]
    assert [row["unowned_files"] for row in artifact_rows(frames[1])] == [10_605, 66, 17]
    # The answer: the fewest, against the single-stage builder image.
    [go] = answers(frames[1])
    [best] = [b for b in go.best if b.metric is UNOWNED]
    assert (best.row["base"], best.value, best.reference) == ("distroless-static", 17, 10_605)
    # A small multiple of its own, in its unit.
    charts, _ = parse_charts(render_report(report_input(second, first)))
    assert charts["go-unowned"].title == "Go: files no package owns"
    assert charts["go-unowned"].unit == "unit: regular files"
    assert charts["go-unowned"].values == {
        "id-single-stage": "10,605",
        "id-bookworm": "66",
        "id-distroless-static": "17",
    }
    # compare: a change, never a regression; history: an exact change.
    tables = [{n: t.to_pandas() for n, t in build_tables(r).items()} for r in (first, second)]
    old, new = (
        RunData(r.run_id, t["results"], t["samples"], t["vulnerabilities"])
        for r, t in zip((first, second), tables, strict=True)
    )
    [change] = [c for c in compare_runs(old, new).changes if c.kind == "unowned-files"]
    assert (change.cell_id, change.regression, change.base, change.head) == (
        "id-distroless-static",
        False,
        16,
        17,
    )
    assert change.summary == "unowned files 16 -> 17 (+1, +6.2%)"
    assert change.detail == {"growth_count": 1, "growth_ratio": 1 / 16}
    assert "unowned_files" in HISTORY_METRICS
    history = history_changes(pd.concat(frames), ["night-1", "night-2"])
    assert [(c.cell_id, c.metric, c.before, c.after, c.method) for c in history] == [
        ("id-distroless-static", "unowned_files", 16, 17, "exact")
    ]
    assert terminal.render_history(history).endswith("16 -> 17 (+6.2%, exact)")


def test_rows_stored_before_the_metric_read_as_not_measured() -> None:
    first, second = two_nights()
    tables = [
        build_tables(run)["results"].drop_columns(["unowned_files"]) for run in (first, second)
    ]
    old = [conform_table("results", t, "old results", version=1).to_pandas() for t in tables]
    assert all(frame["unowned_files"].isna().all() for frame in old)
    assert all(b.metric is not UNOWNED for b in answers(old[1])[0].best)
    assert history_changes(pd.concat(old), ["night-1", "night-2"], ("unowned_files",)) == []
    data = report_input(second, first)
    page = render_report(
        dataclasses.replace(data, run=dataclasses.replace(data.run, results=old[1]))
    )
    assert [row["unowned files"] for row in report_cells(page)] == ["-", "-", "-"]
    assert set(parse_charts(page)[0]["go-unowned"].values.values()) == {"not measured"}
