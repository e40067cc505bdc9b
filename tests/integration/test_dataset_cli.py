"""``basebench migrate`` and ``basebench publish`` on a local folder and moto's S3 server.

``store`` is each kind in turn (tests/s3_server.py); ``output_args`` gives the command
line that names it. Runs in the manifest layout are written by the writer basebench
used before the tables (``tasks.dataset.legacy.publish_manifest_layout``).
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from cli.main import main
from tasks.dataset import legacy
from tasks.dataset.reader import list_runs, read_table
from tasks.dataset.schema import TABLES
from tasks.dataset.stores import LocalStore, ResultStore, S3Store
from tasks.dataset.writer import RetryPolicy, publish_with_fallback
from tests.records_factory import NIGHTLY_NEW_HIGH, T0, make_run, nightly_run
from tests.s3_server import S3Server

pytestmark = pytest.mark.integration

DAY = timedelta(days=1)
FAST = RetryPolicy(attempts=1)


def output_args(store: ResultStore) -> list[str]:
    """The output URL of ``store`` and, for S3, the endpoint option."""
    if isinstance(store, S3Store):
        return [store.location(), "--s3-endpoint", str(store.endpoint_url)]
    return [store.location()]


def old_output(store: ResultStore) -> dict[str, pd.DataFrame]:
    """Three runs in the manifest layout and a dead publish (data files, no manifest);
    every table as the old layout reads back, per table."""
    legacy.publish_manifest_layout(nightly_run("night-1", T0), store)
    grown = nightly_run(
        "night-2",
        T0 + DAY,
        grow={"bookworm": 1_000},
        extra_findings={"distroless-static": (NIGHTLY_NEW_HIGH,)},
    )
    legacy.publish_manifest_layout(grown, store)
    legacy.publish_manifest_layout(make_run("demo-1", T0 + 2 * DAY), store)
    legacy.publish_manifest_layout(make_run("dead", T0 + 3 * DAY), store)
    store.delete(legacy.manifest_path("dead"))
    runs = legacy.list_manifests(store)
    before = [legacy.read_run(store, manifest) for manifest in runs]
    nullable = {
        pa.int32(): pd.Int32Dtype(),
        pa.int64(): pd.Int64Dtype(),
        pa.bool_(): pd.BooleanDtype(),
    }
    frames = {
        name: pd.concat([run[name].to_pandas(types_mapper=nullable.get) for run in before])
        for name in TABLES
    }
    for frame in frames.values():  # maps as dicts, as read_table gives them
        for column in ("packages_by_type", "versions"):
            if column in frame:
                frame[column] = [None if v is None else dict(v) for v in frame[column]]
    return frames


MIGRATED = """\
run night-1: moved
  table             before   after
  samples               15      15
  vulnerabilities        6       6
  packages               8       8
  results                3       3
  runs                   1       1
run night-2: moved
  table             before   after
  samples               15      15
  vulnerabilities        7       7
  packages               8       8
  results                3       3
  runs                   1       1
run demo-1: moved
  table             before   after
  samples                8       8
  vulnerabilities        4       4
  packages               6       6
  results                4       4
  runs                   1       1
"""


def test_migrate_moves_every_run_with_equal_counts(
    store: ResultStore, capsys: pytest.CaptureFixture[str]
) -> None:
    before = old_output(store)
    assert main(["migrate", *output_args(store)]) == 0
    out = capsys.readouterr().out
    dead = [store.location(p) for p in legacy.data_files(store)["dead"]]  # in TABLES order
    assert out == MIGRATED + "".join(
        f"kept {path}: its run has no manifest (an unfinished publish)\n" for path in dead
    ) + (f"3 of 3 run(s) moved into the tables of {store.location()}; 18 old file(s) removed\n")
    assert len(dead) == len(TABLES)  # the dead publish's files stay where they were
    assert [run["run_id"] for run in list_runs(store)] == ["night-1", "night-2", "demo-1"]
    assert legacy.list_manifests(store) == []
    assert sorted(legacy.data_files(store)) == ["dead"]
    for name in TABLES:  # nothing lost: every row and value as the old layout had it
        after = read_table(store, name)
        old = before[name]
        assert len(after) == len(old), name
        columns = [c for c in old.columns if c not in legacy.ADDED_WITH_TABLES]
        pd.testing.assert_frame_equal(
            after[columns].reset_index(drop=True),
            old[columns].reset_index(drop=True),
            check_dtype=False,
        )
        assert after["date"].map(str).tolist() == old["date"].map(str).tolist(), name
    # New columns the old files never had read as null (not measured then).
    assert read_table(store, "packages")["origin"].isna().all()


def test_migrate_again_moves_nothing(
    store: ResultStore, capsys: pytest.CaptureFixture[str]
) -> None:
    old_output(store)
    assert main(["migrate", *output_args(store)]) == 0
    capsys.readouterr()
    assert main(["migrate", *output_args(store)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert (
        lines[-1]
        == f"0 of 0 run(s) moved into the tables of {store.location()}; 0 old file(s) removed"
    )
    assert {name: len(read_table(store, name)) for name in TABLES} == {
        "samples": 38,
        "vulnerabilities": 17,
        "packages": 22,
        "results": 10,
        "runs": 3,
    }


def test_migration_cut_off_before_removal_finishes_without_duplicates(
    local_store: LocalStore, capsys: pytest.CaptureFixture[str]
) -> None:
    old_output(local_store)
    # The first attempt committed every run but died before removing old files ...
    assert main(["migrate", str(local_store.root), "--keep-old"]) == 0
    assert "0 old file(s) removed" in capsys.readouterr().out
    # ... so the second finds the runs in the tables: counts agree, only files go.
    assert main(["migrate", str(local_store.root)]) == 0
    assert capsys.readouterr().out.splitlines()[-1].endswith("; 18 old file(s) removed")
    assert len(read_table(local_store, "samples")) == 38


def test_a_file_that_disagrees_with_its_manifest_is_named(
    local_store: LocalStore, capsys: pytest.CaptureFixture[str]
) -> None:
    legacy.publish_manifest_layout(nightly_run("night-1", T0), local_store)
    path = legacy.manifest_path("night-1")
    manifest = json.loads(local_store.read(path))
    manifest["tables"]["samples"]["rows"] = 16
    local_store.write(path, json.dumps(manifest).encode())
    assert main(["migrate", str(local_store.root)]) == 2
    samples = local_store.location(legacy.table_path("samples", "2024-05-01", "night-1"))
    assert capsys.readouterr().err == (
        f"basebench migrate: {samples} has 15 rows, its manifest says 16; "
        "run night-1 was not migrated\n"
    )
    assert legacy.list_manifests(local_store)[0]["run_id"] == "night-1"  # nothing removed


def test_publish_sends_kept_runs_to_their_output(
    s3_server: S3Server, s3_store: S3Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = S3Store("no-such-bucket", "nightly", s3_server.endpoint_url, s3_server.region)
    kept = tmp_path / "unpublished"
    outcome = publish_with_fallback(nightly_run("night-1", T0), broken, kept, FAST)
    assert not outcome.published
    command = ["publish", str(kept), "--output", *output_args(s3_store)]
    assert main(command) == 0
    out = capsys.readouterr().out
    assert out.startswith("run night-1: published\n  table             before   after\n")
    assert "  samples               15      15\n" in out
    assert out.endswith(f"1 run(s) in {s3_store.location()}, 0 differ\n")
    assert [run["run_id"] for run in list_runs(s3_store)] == ["night-1"]
    assert main(command) == 0  # again: counted, not copied
    assert capsys.readouterr().out.startswith("run night-1: already there\n")
    assert len(read_table(s3_store, "samples")) == 15


def test_publish_takes_a_folder_kept_by_an_older_basebench(
    local_store: LocalStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kept = LocalStore(tmp_path / "old-unpublished")
    legacy.publish_manifest_layout(nightly_run("night-1", T0), kept)
    assert main(["publish", str(kept.root), "--output", str(local_store.root)]) == 0
    assert capsys.readouterr().out.startswith("run night-1: published\n")
    assert len(read_table(local_store, "vulnerabilities")) == 6


def test_publish_of_an_empty_folder_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["publish", str(tmp_path / "nothing"), "--output", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err == (
        f"basebench publish: no complete run in {tmp_path}/nothing to publish\n"
    )
