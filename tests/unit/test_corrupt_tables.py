"""A corrupt data file in a table is named with the runs it holds; other runs stay readable."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

import pytest

from cli.main import main
from tasks.analysis.compare import load_run, pick_runs
from tasks.dataset.layout import PublishError
from tasks.dataset.reader import list_runs
from tasks.dataset.stores import LocalStore
from tasks.dataset.tables import open_table
from tasks.dataset.writer import publish
from tests.records_factory import T0, nightly_run

DAY = timedelta(days=1)


def data_file(store: LocalStore, table: str, run_id: str) -> Path:
    """The one data file of ``run_id`` in ``table`` (each publish writes its own)."""
    delta = open_table(store, table)
    assert delta is not None
    day = (T0 + DAY * (int(run_id[-1]) - 1)).date().isoformat()
    (path,) = [p for p in delta.file_uris() if f"date={day}/" in p]
    return Path(path)


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    store = LocalStore(tmp_path / "out")
    for n in (1, 2, 3):
        publish(nightly_run(f"night-{n}", T0 + DAY * (n - 1)), store)
    return store


def test_a_corrupt_results_file_names_itself_and_spares_other_runs(
    store: LocalStore, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = data_file(store, "results", "night-1")
    bad.write_bytes(b"not parquet at all")
    # The latest two runs compare as before: the bad file holds neither.
    assert pick_runs(store) == ("night-2", "night-3")
    assert len(load_run(store, "night-3").results) == 3
    assert main(["compare", store.location()]) == 0
    assert capsys.readouterr().out.startswith("compare night-2 -> night-3\n")
    # The run in the bad file: one line naming the file and the run.
    with pytest.raises(PublishError) as caught:
        load_run(store, "night-1")
    message = str(caught.value)
    assert message.startswith(f"{store.location('results')}/date=2024-05-01/part-")
    assert "unreadable data file (" in message
    assert message.endswith("it holds rows of run night-1; runs in other files stay readable")
    argv = ["compare", store.location(), "--base", "night-1", "--head", "night-3"]
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"basebench compare: {store.location('results')}/date=2024-05-01/")
    assert error.count("\n") == 1  # one line, no traceback


def test_a_corrupt_runs_file_leaves_its_run_out_with_a_warning(
    store: LocalStore, caplog: pytest.LogCaptureFixture
) -> None:
    data_file(store, "runs", "night-2").write_bytes(b"\x00" * 64)
    with caplog.at_level(logging.WARNING, logger="basebench"):
        runs = list_runs(store)
    assert [run["run_id"] for run in runs] == ["night-1", "night-3"]
    (warning,) = caplog.messages
    assert warning.startswith(f"basebench: {store.location('runs')}/date=2024-05-02/part-")
    assert warning.endswith("it holds rows of run night-2; those runs are left out")
    # night-3's previous comparable run is now night-1, and both are readable.
    assert pick_runs(store) == ("night-1", "night-3")


def log_entry(store: LocalStore, table: str, version: int) -> Path:
    return Path(store.location(f"{table}/_delta_log/{version:020d}.json"))


def test_a_corrupt_log_entry_is_named_and_earlier_runs_stay_readable(
    store: LocalStore, capsys: pytest.CaptureFixture[str]
) -> None:
    entry = log_entry(store, "results", 2)  # version 0 created the table; 2 added night-2
    entry.write_text('{"commitInfo": {truncated')
    assert len(load_run(store, "night-1").results) == 3  # committed before the bad entry
    with pytest.raises(PublishError) as caught:
        load_run(store, "night-3")
    message = str(caught.value)
    assert message.startswith(f"{entry}: corrupt commit log entry of table results (")
    assert message.endswith(
        "the table cannot be read past it: restore that file; runs committed before it stay "
        "readable"
    )
    assert " 0: " not in message  # no backtrace of delta-rs in the line
    assert main(["compare", store.location()]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"basebench compare: {entry}: corrupt commit log entry")
    assert error.count("\n") == 1


def test_a_corrupt_runs_log_entry_leaves_later_runs_out_with_a_warning(
    store: LocalStore, caplog: pytest.LogCaptureFixture
) -> None:
    entry = log_entry(store, "runs", 2)
    entry.write_bytes(b"\xff\xfe not json")
    with caplog.at_level(logging.WARNING, logger="basebench"):
        runs = list_runs(store)
    assert [run["run_id"] for run in runs] == ["night-1"]
    (warning,) = caplog.messages
    assert warning.startswith(f"basebench: {entry}: corrupt commit log entry of table runs (")
    assert warning.endswith("restore that file; runs committed after it are left out")
