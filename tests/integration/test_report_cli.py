"""``basebench report`` on a local folder: choosing the run, the output file, errors."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from cli.main import main
from tasks.dataset.stores import LocalStore
from tasks.dataset.writer import publish
from tests.records_factory import NIGHTLY_NEW_HIGH, T0, make_run, nightly_run
from tests.report_dom import parse_charts

pytestmark = pytest.mark.integration


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    store = LocalStore(tmp_path / "results")
    publish(nightly_run("night-1", T0), store)
    publish(nightly_run("night-2", T0 + timedelta(days=1), grow={"bookworm": 1}), store)
    publish(make_run("demo-1", T0 + timedelta(days=2)), store)  # another matrix, latest
    return tmp_path / "results"


def test_default_is_the_latest_run_written_beside(
    folder: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["report", str(folder)]) == 0
    assert capsys.readouterr().out == "report of run demo-1: report-demo-1.html\n"
    html = (tmp_path / "report-demo-1.html").read_text()
    charts, _ = parse_charts(html)
    assert charts["go-size"].bars == [
        "id-single-stage",
        "id-bookworm",
        "id-distroless-base",
        "id-alpine",
    ]
    # demo-1 is its matrix's only run: no trends, no compare section, no diff since a run.
    assert [name for name in charts if name.startswith("trend-")] == []
    assert 'id="trends"' not in html
    assert "Compared with run" not in html
    assert "Since run" not in html


def test_chosen_run_trends_over_its_matrix_up_to_it(folder: Path, tmp_path: Path) -> None:
    target = tmp_path / "out" / "night.html"
    target.parent.mkdir()
    assert main(["report", str(folder), "--run", "night-2", "--html", str(target)]) == 0
    html = target.read_text()
    charts, _ = parse_charts(html)
    assert {name: c.series for name, c in charts.items() if name.startswith("trend-size")} == {
        "trend-size-go-single-stage": {"id-single-stage": 2},
        "trend-size-go-bookworm": {"id-bookworm": 2},
        "trend-size-go-distroless-static": {"id-distroless-static": 2},
    }
    assert "<h2>Compared with run night-1</h2>" in html
    assert '<h3 id="diff-runs">Since run night-1</h3>' in html
    assert "No regression." in html  # +1 byte is far below the thresholds


def test_unknown_run_and_empty_store_exit_2(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", str(folder), "--run", "night-9"]) == 2
    assert capsys.readouterr().err == (
        f"basebench report: --run night-9: no complete run with that id in {folder}\n"
    )
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert "no complete runs in" in capsys.readouterr().err
    assert not list(tmp_path.glob("report-*.html"))


def test_against_picks_the_run_of_the_diffs_and_the_verdict(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = LocalStore(folder)
    third = nightly_run(
        "night-3", T0 + timedelta(days=3), extra_findings={"bookworm": (NIGHTLY_NEW_HIGH,)}
    )
    publish(third, store)
    target = tmp_path / "against.html"
    argv = ("report", str(folder), "--run", "night-3", "--html", str(target))
    assert main([*argv]) == 0
    assert "<h2>Compared with run night-2</h2>" in target.read_text()
    assert main([*argv, "--against", "night-1"]) == 0
    html = target.read_text()
    assert "<h2>Compared with run night-1</h2>" in html
    assert '<h3 id="diff-runs">Since run night-1</h3>' in html
    assert (
        '<div class="diff" data-diff="id-bookworm"><h4>go-hello go1.22.10 bookworm</h4>'
        '<ul><li data-kind="packages added">packages added: none</li>'
    ) in html
    assert "vulnerabilities added (1): CVE-2024-3000 (HIGH)" in html
    capsys.readouterr()
    assert main([*argv, "--against", "night-3"]) == 2
    assert capsys.readouterr().err == (
        "basebench report: --against night-3: that is the run shown; pick an earlier run\n"
    )
    assert main([*argv, "--against", "night-9"]) == 2
    assert capsys.readouterr().err == (
        f"basebench report: --against night-9: no complete run with that id in {folder}\n"
    )
