"""Runs publishing to the same output at once: every run lands whole, none twice.

Against moto's S3 server (delta-rs commits with conditional puts, ``conditional_put:
etag``) and a local folder. The tables do not exist when the writers start, so they
also race to create them.
"""

from __future__ import annotations

import multiprocessing
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from deltalake import DeltaTable

from tasks.dataset.reader import list_runs, read_table
from tasks.dataset.schema import TABLES
from tasks.dataset.stores import ResultStore, S3Store
from tasks.dataset.writer import Published, publish
from tests.records_factory import T0, nightly_run
from tests.s3_server import S3Server

pytestmark = pytest.mark.integration

# Rows of one nightly_run per table (three cells, five startup samples each).
NIGHT = {"results": 3, "samples": 15, "vulnerabilities": 6, "packages": 8, "runs": 1}


def night(number: int) -> str:
    return f"night-{number}"


def publish_night(store: ResultStore, number: int) -> Published:
    return publish(nightly_run(night(number), T0 + timedelta(hours=number)), store)


def test_eight_runs_at_once_all_land(store: ResultStore) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        published = list(pool.map(lambda n: publish_night(store, n), range(8)))
    assert all(commit.written for p in published for commit in p.commits)
    assert [run["run_id"] for run in list_runs(store)] == [night(n) for n in range(8)]
    for name in TABLES:
        counts = read_table(store, name).groupby("run_id").size().to_dict()
        assert counts == {night(n): NIGHT[name] for n in range(8)}, name


def test_the_same_run_at_once_lands_once(store: ResultStore) -> None:
    with ThreadPoolExecutor(max_workers=4) as pool:
        published = list(pool.map(lambda _: publish_night(store, 1), range(4)))
    # Every table took the run from exactly one writer; the others found it there.
    for index, name in enumerate(("samples", "vulnerabilities", "packages", "results", "runs")):
        assert sum(p.commits[index].written for p in published) == 1, name
    assert {name: len(read_table(store, name)) for name in TABLES} == NIGHT


def publish_from_a_process(endpoint: str, bucket: str, prefix: str, number: int, at: float) -> int:
    """In a child process: wait until ``at`` (so both children publish at once), publish."""
    store = S3Store(bucket, prefix, endpoint)
    time.sleep(max(0.0, at - time.time()))
    return sum(commit.written for commit in publish_night(store, number).commits)


def test_two_processes_publish_to_one_s3_prefix_at_once(
    s3_server: S3Server, s3_store: S3Store
) -> None:
    start = time.time() + 4  # both children have imported basebench by then
    spawn = multiprocessing.get_context("spawn")
    with spawn.Pool(2) as pool:
        written = pool.starmap(
            publish_from_a_process,
            [(s3_server.endpoint_url, s3_store.bucket, s3_store.prefix, n, start) for n in (1, 2)],
        )
    assert written == [len(TABLES), len(TABLES)]
    assert [run["run_id"] for run in list_runs(s3_store)] == ["night-1", "night-2"]
    for name in TABLES:
        location = s3_store.table_location(name)
        table = DeltaTable(location.uri, storage_options=location.storage_options)
        assert table.transaction_version("basebench-run:night-1") == 1
        assert table.transaction_version("basebench-run:night-2") == 1
        counts = read_table(s3_store, name).groupby("run_id").size().to_dict()
        assert counts == {"night-1": NIGHT[name], "night-2": NIGHT[name]}, name
