"""``basebench publish`` and ``basebench migrate``: move runs into an output's tables.

- ``publish KEPT_DIR --output URL``: the runs a failed publish kept locally (or any
  output's runs) into the output they were meant for;
- ``migrate OUTPUT``: runs in the manifest layout of an older basebench into the tables.

Both print each run's rows per table before and after. Exit codes: 0 every run moved
with equal counts, 1 a run's counts differ (its old files are kept), 2 bad input or an
unusable store.
"""

from __future__ import annotations

import argparse
import pickle
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path

from cli.store_options import endpoint_url, output_url
from tasks.dataset.layout import PublishError
from tasks.dataset.migrate import migrate
from tasks.dataset.output import S3Config
from tasks.dataset.stores import StoreError, open_store
from tasks.dataset.writer import COMMIT_ORDER, publish_kept, publish_kept_run
from tasks.journal import kept_run

EXIT_DONE, EXIT_MISMATCH, EXIT_ERROR = 0, 1, 2


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``publish`` and ``migrate``."""
    publish = subparsers.add_parser(
        "publish", help="publish runs kept locally (after the store failed) to their output"
    )
    publish.add_argument("kept", metavar="KEPT_DIR", help="the folder the run was kept in")
    publish.add_argument(
        "--output",
        required=True,
        metavar="URL",
        type=output_url,
        help="results folder or s3://bucket/prefix",
    )
    _endpoint(publish)
    publish.set_defaults(func=cmd_publish)

    migrate_parser = subparsers.add_parser(
        "migrate", help="move runs of the older manifest layout into the output's tables"
    )
    migrate_parser.add_argument(
        "output", metavar="OUTPUT", type=output_url, help="folder or s3://bucket/prefix"
    )
    migrate_parser.add_argument(
        "--keep-old", action="store_true", help="keep the old files even when the counts agree"
    )
    _endpoint(migrate_parser)
    migrate_parser.set_defaults(func=cmd_migrate)


def _endpoint(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--s3-endpoint",
        metavar="URL",
        type=endpoint_url,
        help="S3 API endpoint (default: AWS or AWS_ENDPOINT_URL)",
    )


def format_counts(
    run_id: str, verdict: str, before: Mapping[str, int], after: Mapping[str, int]
) -> str:
    """A run's rows per table, before and after, as aligned lines."""
    lines = [f"run {run_id}: {verdict}", f"  {'table':<16}{'before':>8}{'after':>8}"]
    for table in COMMIT_ORDER:
        mark = "" if before.get(table) == after.get(table) else "  MISMATCH"
        lines.append(f"  {table:<16}{before.get(table, 0):>8}{after.get(table, 0):>8}{mark}")
    return "\n".join(lines)


def cmd_publish(args: argparse.Namespace) -> int:
    """Publish every run in KEPT_DIR (a fallback folder or a run's journal) to --output;
    counts per run and table."""
    s3 = S3Config(endpoint_url=args.s3_endpoint)
    try:
        target = open_store(args.output, s3)
        journaled = kept_run(Path(args.kept))
        if journaled is not None:
            copied = [publish_kept_run(journaled, target)]
        else:
            copied = publish_kept(open_store(args.kept, s3), target)
    except (PublishError, StoreError, ValueError, FileNotFoundError) as exc:
        print(f"basebench publish: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except (pickle.UnpicklingError, EOFError) as exc:
        print(f"basebench publish: {args.kept}: the kept run is unreadable: {exc}", file=sys.stderr)
        return EXIT_ERROR
    if journaled is not None and copied[0].complete:
        shutil.rmtree(args.kept, ignore_errors=True)  # the journal: its run is in the store
    for run in copied:
        verdict = "published" if run.written else "already there"
        if not run.complete:
            verdict = "rows differ"
        print(format_counts(run.run_id, verdict, run.source_rows, run.target_rows))
    failed = [run.run_id for run in copied if not run.complete]
    print(f"{len(copied) - len(failed)} run(s) in {args.output}, {len(failed)} differ")
    return EXIT_MISMATCH if failed else EXIT_DONE


def cmd_migrate(args: argparse.Namespace) -> int:
    """Move OUTPUT's manifest-layout runs into its tables; counts per run and table."""
    try:
        store = open_store(args.output, S3Config(endpoint_url=args.s3_endpoint))
        migration = migrate(store, remove_old=not args.keep_old)
    except (PublishError, StoreError, ValueError) as exc:
        print(f"basebench migrate: {exc}", file=sys.stderr)
        return EXIT_ERROR
    for run in migration.runs:
        verdict = "moved" if run.moved else "rows differ, old files kept"
        print(format_counts(run.run_id, verdict, run.before, run.after))
    for path in migration.kept_incomplete:
        print(f"kept {path}: its run has no manifest (an unfinished publish)")
    moved = sum(run.moved for run in migration.runs)
    removed = sum(run.removed_files for run in migration.runs)
    print(
        f"{moved} of {len(migration.runs)} run(s) moved into the tables of {migration.output}; "
        f"{removed} old file(s) removed"
    )
    return EXIT_DONE if migration.complete else EXIT_MISMATCH
