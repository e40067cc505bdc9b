"""How a run ends, the same for every caller: published, or kept, and after an interrupt
what finished kept and what the run made removed.

``publish_or_keep`` is the one path from a run to its store: the store (with retries),
else the local fallback folder ``cache_dir/unpublished``, else the run's journal, else a
message saying what was lost. ``keep_interrupted`` turns an interrupted run's journal
into a run (every cell that had not finished a row saying it was interrupted), ends it
through ``publish_or_keep`` and sweeps the run from its hosts and the cache. The
benchmark and rescan flows end through here, whoever started them: ``basebench run``,
``basebench rescan`` or a Prefect worker.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tasks.analysis.compare import Comparison
from tasks.dataset.layout import PublishError
from tasks.dataset.stores import ResultStore, open_store
from tasks.dataset.writer import (
    PublishOutcome,
    RetryPolicy,
    keep_unpublished,
    publish_with_fallback,
)
from tasks.hosts.config import HostConfig
from tasks.hosts.sweep import sweep_archives, sweep_hosts
from tasks.journal import RunJournal, interrupted_run
from tasks.matrix import MatrixConfig
from tasks.records import INTERRUPTED, Cell, RunRecord

UNPUBLISHED = "unpublished"  # the fallback folder under cache_dir


@dataclass(frozen=True)
class RunOutcome:
    """What a run (a benchmark or a rescan) produced: its records, where they were
    published, and how it compares with the run before it (a rescan: with its source)."""

    record: RunRecord
    published: PublishOutcome
    comparison: Comparison | None


def publish_or_keep(
    run: RunRecord, store: ResultStore, cache_dir: Path, retry: RetryPolicy | None = None
) -> PublishOutcome:
    """Publish ``run`` to ``store``; when the store keeps failing, keep it in
    ``cache_dir/unpublished``; when that fails too, in its journal; when even that
    fails, the outcome says what was lost. The journal goes once every row is in the
    store or the fallback folder. Raises ``ValueError`` for records that cannot be
    published anywhere (a bad run id, no cells)."""
    retry = retry or RetryPolicy()
    journal = RunJournal(cache_dir, run.run_id)
    try:
        outcome = publish_with_fallback(run, store, cache_dir / UNPUBLISHED, retry)
    except (PublishError, OSError) as exc:
        outcome = keep_unpublished(run, store, journal, exc, retry.attempts)
    if outcome.fallback_dir != journal.folder and outcome.lost is None:
        journal.remove()
    return outcome


@dataclass(frozen=True)
class InterruptedRun:
    """What ``keep_interrupted`` did with a run."""

    published: PublishOutcome  # where the run's rows went
    finished: int  # cells that had finished
    cells: int  # cells of the run
    removed: str  # what was swept, per host and from the cache

    @property
    def message(self) -> str:
        """One line for the log or the terminal."""
        return (
            f"interrupted; {self.finished} of {self.cells} cells had finished. "
            f"{self.published.message}; removed what run {self.published.run_id} made: "
            f"{self.removed}"
        )


def keep_interrupted(
    config: MatrixConfig, cells: Sequence[Cell], template: RunRecord, journal: RunJournal
) -> InterruptedRun:
    """After an interrupt (Ctrl-C, SIGTERM, a Prefect cancellation): close ``journal``,
    make the run of ``template`` (identity, times, versions, machines) with the cells it
    holds and an interrupted row for each other cell, publish or keep it, then remove
    what the run made on every host of ``config`` and in its cache."""
    journal.close()
    record = interrupted_run(journal, list(cells), template)
    finished = sum(1 for cell in record.cells if cell.error != INTERRUPTED)
    # Kept whole first: a cancelled flow run is killed 30 s after its SIGTERM, perhaps
    # mid-publish; ``basebench publish <journal>`` then publishes it from there.
    with contextlib.suppress(OSError):  # publish_or_keep says what could not be kept
        journal.keep_run(record)
    store = open_store(config.output, config.s3)
    published = publish_or_keep(record, store, config.cache_dir)
    removed = sweep_run(config.hosts, config.cache_dir, template.run_id)
    return InterruptedRun(published, finished, len(cells), removed)


def sweep_run(hosts: Sequence[HostConfig], cache_dir: Path, run_id: str) -> str:
    """Remove run ``run_id``'s containers, networks, images and archives from ``hosts``
    and ``cache_dir``; one line saying what went, host by host."""

    def alive(run: str) -> bool:
        return run != run_id

    parts = [
        f"{host.host}: {host.swept.summary()}"
        if host.swept is not None
        else f"{host.host}: unreachable ({host.error})"
        for host in sweep_hosts(hosts, alive)
    ]
    archives = sweep_archives(cache_dir / "archives", alive)
    return "; ".join([*parts, f"archives: {archives.summary()}"])
