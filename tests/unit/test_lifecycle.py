"""How a run ends (tasks/lifecycle.py, tasks/journal.py, tasks/processes.py): published or
kept, with its journal; a closed journal keeps nothing more; stage programs stopped.

Real local stores in a temporary folder and real child processes; no Docker.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from cli.main import main as cli_main
from tasks import lifecycle
from tasks.dataset.reader import list_runs, read_table
from tasks.dataset.stores import LocalStore
from tasks.dataset.writer import RetryPolicy
from tasks.journal import RunJournal, interrupted_run, kept_run
from tasks.lifecycle import InterruptedRun, keep_interrupted, publish_or_keep
from tasks.matrix import MatrixConfig, expand, load_matrix
from tasks.processes import run_program, stop_programs
from tasks.records import INTERRUPTED, Status
from tests.records_factory import T0, make_run, nightly_run

FAST = RetryPolicy(attempts=2, first_delay=0.01, factor=1.0, max_delay=0.01)


def journaled(cache: Path, run_id: str, finished: int) -> RunJournal:
    """A journal of run ``run_id`` holding its first ``finished`` cells."""
    journal = RunJournal(cache, run_id)
    for result in nightly_run(run_id, T0).cells[:finished]:
        journal.record(result)
    return journal


def test_published_run_leaves_no_journal(tmp_path: Path) -> None:
    journal = journaled(tmp_path / "cache", "night-1", 3)
    store = LocalStore(tmp_path / "results")
    outcome = publish_or_keep(nightly_run("night-1", T0), store, tmp_path / "cache", FAST)
    assert (outcome.published, outcome.location) == (True, str(tmp_path / "results"))
    assert [run["run_id"] for run in list_runs(store)] == ["night-1"]
    assert len(read_table(store, "results")) == 3
    assert not journal.folder.exists()


def test_store_failing_keeps_the_run_in_the_fallback_folder(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    journal = journaled(tmp_path / "cache", "night-1", 3)
    run = nightly_run("night-1", T0)
    outcome = publish_or_keep(run, LocalStore(blocker / "results"), tmp_path / "cache", FAST)
    fallback = tmp_path / "cache" / "unpublished"
    assert (outcome.published, outcome.fallback_dir, outcome.attempts) == (False, fallback, 2)
    assert outcome.message.endswith(f"basebench publish {fallback} --output {blocker}/results")
    assert len(read_table(LocalStore(fallback), "results")) == 3
    assert not journal.folder.exists()  # every row is in the fallback folder


def test_store_and_fallback_failing_keep_the_run_in_its_journal(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    journal = journaled(cache, "night-1", 3)
    (cache / "unpublished").write_text("not a folder")  # the fallback folder cannot be made
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    run = nightly_run("night-1", T0)
    outcome = publish_or_keep(run, LocalStore(blocker / "results"), cache, FAST)
    assert (outcome.published, outcome.fallback_dir) == (False, journal.folder)
    assert kept_run(journal.folder) == run
    assert len(list(journal.folder.glob("*.pickle"))) == 4  # 3 cells and the whole run


def test_interrupted_run_keeps_finished_cells_and_marks_the_rest(tmp_path: Path) -> None:
    journal = journaled(tmp_path / "cache", "night-1", 1)
    run = nightly_run("night-1", T0)
    template = make_run("night-1", T0, cells=())
    record = interrupted_run(journal, [result.cell for result in run.cells], template)
    assert [r.cell.cell_id for r in record.cells] == [r.cell.cell_id for r in run.cells]
    assert record.cells[0] == run.cells[0]
    assert [(r.status, r.error, r.failed_stage) for r in record.cells[1:]] == [
        (Status.FAILED, INTERRUPTED, None)
    ] * 2
    outcome = publish_or_keep(record, LocalStore(tmp_path / "results"), tmp_path / "cache")
    interrupted = InterruptedRun(outcome, finished=1, cells=3, removed="local: nothing")
    assert interrupted.message == (
        f"interrupted; 1 of 3 cells had finished. published run night-1: {tmp_path}/results; "
        "removed what run night-1 made: local: nothing"
    )


def test_a_closed_journal_keeps_nothing_more(tmp_path: Path) -> None:
    journal = journaled(tmp_path / "cache", "night-1", 1)
    journal.close()
    journal.remove()
    for result in nightly_run("night-1", T0).cells[1:]:
        journal.record(result)  # a cell that ended after the interrupt was taken
    assert not journal.folder.exists()


def test_run_program_returns_what_the_program_wrote() -> None:
    done = run_program([sys.executable, "-c", "import sys; print('out'); sys.exit('err')"])
    assert (done.returncode, done.stdout, done.stderr) == (1, "out\n", "err\n")


def test_run_program_kills_a_program_past_its_timeout() -> None:
    began = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        run_program([sys.executable, "-c", "import time; time.sleep(60)"], timeout=0.5)
    assert time.monotonic() - began < 10
    assert stop_programs() == 0  # nothing left running


def test_stop_programs_stops_every_program_in_flight() -> None:
    done: list[subprocess.CompletedProcess[str]] = []
    argv = [sys.executable, "-c", "import time; time.sleep(60)"]
    threads = [threading.Thread(target=lambda: done.append(run_program(argv))) for _ in range(2)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 10
    while len(done) < 2 and time.monotonic() < deadline:  # each, once it has started
        stop_programs()
        time.sleep(0.05)
    for thread in threads:
        thread.join(timeout=10)
    assert [result.returncode for result in done] == [-15, -15]  # SIGTERM
    assert stop_programs() == 0


def interrupted_config(tmp_path: Path) -> MatrixConfig:
    """A 3-cell matrix whose only host is a socket nobody listens on."""
    path = tmp_path / "matrix.yaml"
    path.write_text(
        f"""
name: lifecycle
apps: [go-hello]
toolchains: ["1.22.10"]
bases: [distroless-static, distroless-base, bookworm-slim]
hosts: [{{name: gone, url: "unix://{tmp_path}/nobody.sock"}}]
output: {tmp_path}/results
cache_dir: {tmp_path}/cache
"""
    )
    return load_matrix(path)


def test_keep_interrupted_publishes_and_says_what_it_swept(tmp_path: Path) -> None:
    config = interrupted_config(tmp_path)
    cells = expand(config)
    journal = journaled(config.cache_dir, "night-1", 0)
    finished = nightly_run("night-1", T0).cells[0]
    journal.record(dataclasses.replace(finished, cell=cells[1]))
    (config.cache_dir / "archives" / "night-1-abc").mkdir(parents=True)
    kept = keep_interrupted(config, cells, make_run("night-1", T0, cells=()), journal)
    assert (kept.finished, kept.cells, kept.published.published) == (1, 3, True)
    assert kept.removed.startswith(f"gone: unreachable (gone (unix://{tmp_path}/nobody.sock): ")
    assert kept.removed.endswith("; archives: 1 archive folder of 1 dead run")
    table = read_table(LocalStore(tmp_path / "results"), "results")
    rows = {row.base: (row.status, row.error == INTERRUPTED) for row in table.itertuples()}
    assert rows == {
        cells[0].base: ("failed", True),
        cells[1].base: ("ok", False),  # the journal's cell, as it finished
        cells[2].base: ("failed", True),
    }
    assert not journal.folder.exists()


def test_keep_interrupted_killed_mid_publish_leaves_a_publishable_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = interrupted_config(tmp_path)
    journal = RunJournal(config.cache_dir, "night-1")

    def killed(*_: object) -> None:  # as SIGKILL would end it, 30 s after a cancellation
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(lifecycle, "publish_or_keep", killed)
    with pytest.raises(KeyboardInterrupt):
        keep_interrupted(config, expand(config), make_run("night-1", T0, cells=()), journal)
    kept = kept_run(journal.folder)
    assert kept is not None and [r.error for r in kept.cells] == [INTERRUPTED] * 3
    assert cli_main(["publish", str(journal.folder), "--output", str(tmp_path / "later")]) == 0
    assert len(read_table(LocalStore(tmp_path / "later"), "results")) == 3
