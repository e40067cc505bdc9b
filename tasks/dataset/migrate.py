"""Move runs of the manifest layout (basebench before the Delta tables) into the tables.

For every complete run (one with a manifest): read its Parquet files, check their rows
against the manifest, append them to the tables (the run's app transaction, so a
migration that was cut off and runs again adds nothing twice), count the run's rows
in every table again, and only when both counts agree remove its old files, the
manifest first. Files of runs without a manifest (a publish that died) are left alone,
unless the tables already hold that run (a migration cut off after its commits).
"""

from __future__ import annotations

from dataclasses import dataclass

from tasks.dataset import legacy
from tasks.dataset.layout import PublishError
from tasks.dataset.stores import ResultStore
from tasks.dataset.tables import append_run, count_rows
from tasks.dataset.writer import COMMIT_ORDER


@dataclass(frozen=True)
class MigratedRun:
    """One run: its rows per table in the old files and in the tables afterwards."""

    run_id: str
    before: dict[str, int]
    after: dict[str, int]
    written: tuple[str, ...]  # tables that took a commit (the rest held the run already)
    removed_files: int  # old files (data and manifest) removed once the counts agreed

    @property
    def moved(self) -> bool:
        """True when every table holds exactly the rows the old files had."""
        return self.before == self.after


@dataclass(frozen=True)
class Migration:
    """What ``migrate`` did to one output."""

    output: str
    runs: tuple[MigratedRun, ...]
    kept_incomplete: tuple[str, ...]  # old data files of runs without a manifest

    @property
    def complete(self) -> bool:
        """True when every run moved with its rows counted equal."""
        return all(run.moved for run in self.runs)


def migrate(store: ResultStore, remove_old: bool = True) -> Migration:
    """Move every manifest-layout run of ``store`` into its tables (see the module).

    ``remove_old=False`` keeps the old files even when the counts agree. Raises
    ``PublishError`` naming the file when an old file disagrees with its manifest (that
    run and the ones after it are not touched) or the store fails.
    """
    runs: list[MigratedRun] = []
    for manifest in legacy.list_manifests(store):
        run_id = manifest["run_id"]
        tables = legacy.read_run(store, manifest)
        before = {name: tables[name].num_rows for name in COMMIT_ORDER}
        for name, entry in manifest["tables"].items():
            if name in before and entry["rows"] != before[name]:
                raise PublishError(
                    f"{store.location(entry['path'])} has {before[name]} rows, its manifest "
                    f"says {entry['rows']}; run {run_id} was not migrated"
                )
        commits = [append_run(store, name, tables[name], run_id) for name in COMMIT_ORDER]
        after = {name: count_rows(store, name, run_id) for name in COMMIT_ORDER}
        removed = 0
        if after == before and remove_old:
            removed = _remove(store, run_id, legacy.remove_run)
        written = tuple(commit.table for commit in commits if commit.written)
        runs.append(MigratedRun(run_id, before, after, written, removed))
    kept: list[str] = []
    for run_id, paths in sorted(legacy.data_files(store).items()):
        if remove_old and count_rows(store, "runs", run_id):
            _remove(store, run_id, legacy.remove_data_files)  # its manifest went already
        else:
            kept += [store.location(path) for path in paths]
    return Migration(store.location(), tuple(runs), tuple(kept))


def _remove(store: ResultStore, run_id: str, remove: legacy.Remover) -> int:
    try:
        return remove(store, run_id)
    except OSError as exc:
        where = store.location()
        raise PublishError(f"remove old files of run {run_id} in {where}: {exc}") from exc
