"""Every finished cell of a run, on disk as soon as it finishes.

A run keeps its results in memory until it publishes; the journal is what survives an
interrupt (Ctrl-C, SIGTERM, a Prefect cancellation) or a crash: ``interrupted_run``
turns it into a run of the cells that finished, every other cell a failed row saying
it was interrupted, so no finished measurement is lost and no cell goes missing.
"""

from __future__ import annotations

import pickle
import shutil
import threading
from datetime import UTC, datetime
from pathlib import Path

from tasks.records import INTERRUPTED, Cell, CellResult, RunRecord, Status

# The whole run, written when neither the store nor the local fallback folder took it;
# ``basebench publish <journal folder> --output URL`` publishes it from there.
KEPT_RUN = "run.pickle"


class RunJournal:
    """``cache_dir/journal/<run id>/``: one file per finished cell."""

    def __init__(self, cache_dir: Path, run_id: str) -> None:
        self.folder = cache_dir / "journal" / run_id
        self._lock = threading.Lock()
        self._closed = False

    def keep_run(self, run: RunRecord) -> Path:
        """Keep the complete ``run`` here (whole or not at all); ``OSError`` if it cannot."""
        self.folder.mkdir(parents=True, exist_ok=True)
        final = self.folder / KEPT_RUN
        partial = final.with_suffix(".partial")
        partial.write_bytes(pickle.dumps(run))
        partial.replace(final)
        return final

    def record(self, result: CellResult) -> None:
        """Keep ``result``; written whole or not at all (rename). Once the journal is
        closed, nothing more is kept."""
        with self._lock:
            if self._closed:
                return
            self.folder.mkdir(parents=True, exist_ok=True)
            final = self.folder / f"{result.cell.cell_id}.pickle"
            partial = final.with_suffix(".partial")
            partial.write_bytes(pickle.dumps(result))
            partial.replace(final)

    def close(self) -> None:
        """Keep no more results: a cell that ends after an interrupt was taken is kept
        as interrupted, and its late file cannot bring back a removed journal."""
        with self._lock:
            self._closed = True

    def results(self) -> dict[str, CellResult]:
        """The finished cells so far, by cell id (pickles this basebench wrote)."""
        if not self.folder.is_dir():
            return {}
        return {
            path.stem: pickle.loads(path.read_bytes())
            for path in sorted(self.folder.glob("*.pickle"))
        }

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def kept_run(folder: Path) -> RunRecord | None:
    """The run ``keep_run`` left in ``folder``; None when there is none."""
    path = folder / KEPT_RUN
    if not path.is_file():
        return None
    run = pickle.loads(path.read_bytes())
    if not isinstance(run, RunRecord):
        raise ValueError(f"{path}: not a run kept by basebench")
    return run


def interrupted_run(journal: RunJournal, cells: list[Cell], template: RunRecord) -> RunRecord:
    """``template`` (identity, times, versions) with a row for every cell: the journal's
    results, and an interrupted failure for each cell that had not finished."""
    finished = journal.results()
    now = datetime.now(UTC)
    rows = tuple(
        finished.get(cell.cell_id)
        or CellResult(
            cell=cell,
            status=Status.FAILED,
            host="",
            started_at=template.started_at,
            finished_at=now,
            error=INTERRUPTED,
        )
        for cell in cells
    )
    return RunRecord(
        run_id=template.run_id,
        matrix=template.matrix,
        config_hash=template.config_hash,
        started_at=template.started_at,
        finished_at=now,
        versions=template.versions,
        hosts=tuple(sorted({r.host for r in rows if r.host})),
        cells=rows,
        filters=template.filters,
        image_sources=template.image_sources,
        machines=template.machines,
    )
