"""Every run records its vulnerability DB and its age; a DB over the limit is stale."""

from __future__ import annotations

import argparse
import dataclasses
from datetime import timedelta
from pathlib import Path

import pytest

from cli.rescan import parse_max_age, rescan_settings
from tasks.config_file import ConfigError
from tasks.dataset.schema import build_tables
from tasks.matrix import load_matrix
from tasks.records import RunKind, VulnerabilityDb
from tasks.scanners.config import DEFAULT_MAX_DB_AGE_HOURS
from tests.records_factory import T0, make_run

MATRIX = """name: t
apps: [go-hello]
toolchains: ["1.25.5"]
bases: [bookworm]
"""


def test_the_runs_row_records_the_db_its_age_and_the_verdict() -> None:
    run = dataclasses.replace(
        make_run(),
        db=VulnerabilityDb(2, T0 - timedelta(hours=30)),
        max_db_age_hours=24.0,
        kind=RunKind.RESCAN,
        source_run_id="run-0",
    )
    (row,) = build_tables(run)["runs"].to_pylist()
    columns = [
        "kind",
        "source_run_id",
        "scanner_db_version",
        "scanner_db_updated_at",
        "scanner_db_age_seconds",
        "scanner_db_max_age_hours",
        "scanner_db_stale",
    ]
    assert {k: row[k] for k in columns} == {
        "kind": "rescan",
        "source_run_id": "run-0",
        "scanner_db_version": 2,
        "scanner_db_updated_at": T0 - timedelta(hours=30),
        "scanner_db_age_seconds": 30 * 3600,
        "scanner_db_max_age_hours": 24.0,
        "scanner_db_stale": True,
    }
    assert run.db_staleness() == (
        "STALE DB: the vulnerability DB was 30.0 h old when the run started, older than the "
        "limit of 24 h (scanner.max_db_age_hours); its counts miss what the DB has learnt since"
    )


def test_a_fresh_db_an_unknown_db_and_no_limit() -> None:
    fresh = dataclasses.replace(
        make_run(), db=VulnerabilityDb(2, T0 - timedelta(hours=24)), max_db_age_hours=24.0
    )
    assert (fresh.db_age_seconds(), fresh.db_stale(), fresh.db_staleness()) == (86400, False, None)
    unknown = dataclasses.replace(make_run(), max_db_age_hours=24.0)
    assert (unknown.db_age_seconds(), unknown.db_stale()) == (None, None)
    unlimited = dataclasses.replace(fresh, max_db_age_hours=None)
    assert (unlimited.db_age_seconds(), unlimited.db_stale()) == (86400, None)
    (row,) = build_tables(make_run())["runs"].to_pylist()
    assert (row["kind"], row["source_run_id"], row["scanner_db_stale"]) == ("benchmark", None, None)


def test_the_limit_is_a_validated_config_key_outside_the_config_hash(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(MATRIX)
    default = load_matrix(path)
    assert default.scanner.max_db_age_hours == DEFAULT_MAX_DB_AGE_HOURS == 168.0
    path.write_text(MATRIX + "scanner: {max_db_age_hours: 12}\n")
    twelve = load_matrix(path)
    assert twelve.scanner.max_db_age_hours == 12.0
    assert twelve.config_hash() == default.config_hash()  # it judges a run, measures nothing
    path.write_text(MATRIX + "scanner: {max_db_age_hours: null}\n")
    assert load_matrix(path).scanner.max_db_age_hours is None
    path.write_text(MATRIX + "scanner: {max_db_age_hours: 0}\n")
    with pytest.raises(ConfigError) as error:
        load_matrix(path)
    assert str(error.value).startswith(f"{path}: scanner.max_db_age_hours: ")
    assert "greater than 0" in str(error.value)


def test_rescan_options(tmp_path: Path) -> None:
    assert parse_max_age("24") == 24.0
    assert parse_max_age("None") is None
    for bad in ("0", "-1", "soon", "9000"):
        with pytest.raises(ConfigError, match=rf"^--max-db-age-hours '{bad}': expected hours"):
            parse_max_age(bad)
    path = tmp_path / "m.yaml"
    path.write_text(MATRIX + f"scanner: {{db_dir: {tmp_path}, max_db_age_hours: 6}}\n")
    args = argparse.Namespace(
        output="out", run=None, db=None, config=path, max_db_age_hours=None, s3_endpoint=None
    )
    settings = rescan_settings(args)
    assert (settings["db_dir"], settings["max_db_age_hours"]) == (tmp_path, 6.0)
    args.db, args.max_db_age_hours = tmp_path / "other", "none"
    settings = rescan_settings(args)
    assert (settings["db_dir"], settings["max_db_age_hours"]) == (tmp_path / "other", None)


def test_a_benchmark_compares_with_the_previous_benchmark_and_a_rescan_with_its_source(
    tmp_path: Path,
) -> None:
    from tasks.analysis.compare import pick_runs
    from tasks.dataset.reader import find_run, previous_run
    from tasks.dataset.stores import LocalStore
    from tasks.dataset.writer import publish

    store = LocalStore(tmp_path / "results")
    night = timedelta(days=1)
    publish(make_run("night-1", T0), store)
    publish(make_run("night-2", T0 + night), store)
    rescan = dataclasses.replace(
        make_run("rescan-1", T0 + 2 * night), kind=RunKind.RESCAN, source_run_id="night-1"
    )
    publish(rescan, store)
    publish(make_run("night-3", T0 + 3 * night), store)
    # night-3's previous run is night-2, not the rescan published between them.
    assert previous_run(store, find_run(store, "night-3"))["run_id"] == "night-2"  # type: ignore[index]
    assert pick_runs(store) == ("night-2", "night-3")
    assert pick_runs(store, head="rescan-1") == ("night-1", "rescan-1")


def test_the_prefect_summary_says_the_db_is_stale() -> None:
    from tasks.render.artifacts import summary_markdown

    run = dataclasses.replace(
        make_run(), db=VulnerabilityDb(2, T0 - timedelta(hours=200)), max_db_age_hours=168.0
    )
    results = build_tables(run)["results"].to_pandas()
    lines = summary_markdown(run.run_id, results, None, run.db_staleness()).splitlines()
    assert lines[4:7] == [
        "",
        "**STALE DB: the vulnerability DB was 200.0 h old when the run started, older than "
        "the limit of 168 h (scanner.max_db_age_hours); its counts miss what the DB has "
        "learnt since**",
        "",
    ]
