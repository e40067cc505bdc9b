"""``basebench report``, ``compare`` and ``history``: read published runs.

``add_parser(subparsers)`` registers the three; each sets ``func(args) -> int``.
Exit codes: 0 done / no regression, 1 regression (compare), 2 bad input or unreadable store.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from cli.store_options import add_store_arguments
from tasks.analysis.compare import (
    CompareError,
    Thresholds,
    compare_runs,
    load_run,
    pick_runs,
)
from tasks.analysis.history import METRICS, history_changes, load_history
from tasks.dataset.layout import PublishError
from tasks.dataset.output import S3Config
from tasks.dataset.reader import RunNotFound
from tasks.dataset.stores import ResultStore, StoreError, open_store
from tasks.render.html import build_report
from tasks.render.terminal import render_comparison, render_history

EXIT_CLEAN, EXIT_REGRESSION, EXIT_ERROR = 0, 1, 2


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``report`` and ``compare`` on the ``basebench`` command's subparsers."""
    report = subparsers.add_parser("report", help="write one HTML page of charts for a run")
    add_store_arguments(report)
    report.add_argument("--run", metavar="ID", help="run to show (default: the latest)")
    report.add_argument(
        "--against",
        metavar="RUN",
        help="run the diffs and the verdict are against (default: the previous run)",
    )
    report.add_argument(
        "--html", metavar="FILE", type=Path, help="output file (default: report-<run id>.html)"
    )
    report.set_defaults(func=cmd_report)

    compare = subparsers.add_parser(
        "compare", help="compare two runs; exit 1 on a regression (for CI)"
    )
    add_store_arguments(compare)
    compare.add_argument("--base", metavar="RUN", help="default: the run before --head")
    compare.add_argument("--head", metavar="RUN", help="default: the latest run")
    compare.add_argument("--json", action="store_true", help="print JSON instead of a table")
    compare.add_argument(
        "--threshold",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="size-ratio=0.05, size-bytes=1000000, alpha=0.05, startup-ratio=0.05",
    )
    compare.set_defaults(func=cmd_compare)
    _add_history(subparsers)


def _add_history(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    history = subparsers.add_parser(
        "history", help="change points per cell and metric over a matrix's runs"
    )
    add_store_arguments(history)
    history.add_argument("--matrix", help="matrix name (default: the latest run's)")
    history.add_argument(
        "--metric", action="append", choices=METRICS, help="only these metrics (repeatable)"
    )
    history.add_argument(
        "--alpha", type=float, default=0.05, help="significance of a change point (default 0.05)"
    )
    history.add_argument("--json", action="store_true", help="print JSON instead of lines")
    history.set_defaults(func=cmd_history)


def cmd_history(args: argparse.Namespace) -> int:
    """Print every change in a matrix's history; always 0 unless the input is bad."""
    if not 0 < args.alpha < 1:
        print(f"basebench history: --alpha {args.alpha}: must be between 0 and 1", file=sys.stderr)
        return EXIT_ERROR
    try:
        results, run_ids = load_history(_store(args), args.matrix)
    except (RunNotFound, PublishError, StoreError, ValueError) as exc:
        print(f"basebench history: {exc}", file=sys.stderr)
        return EXIT_ERROR
    changes = history_changes(results, run_ids, tuple(args.metric or METRICS), args.alpha)
    if args.json:
        print(json.dumps([c.to_dict() for c in changes], indent=2))
    else:
        print(f"{len(run_ids)} runs")
        print(render_history(changes))
    return EXIT_CLEAN


def _store(args: argparse.Namespace) -> ResultStore:
    return open_store(args.url, S3Config(endpoint_url=args.s3_endpoint))


def parse_thresholds(pairs: list[str]) -> Thresholds:
    """``["size-ratio=0.1", "alpha=0.01"]`` -> Thresholds; ValueError names the bad pair."""
    types = {f.name: f.type for f in fields(Thresholds)}
    values: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        name = key.strip().replace("-", "_")
        if not sep or name not in types:
            allowed = ", ".join(n.replace("_", "-") for n in types)
            raise ValueError(f"--threshold {pair!r}: expected KEY=VALUE with KEY one of {allowed}")
        try:
            number = int(raw) if types[name] in (int, "int") else float(raw)
        except ValueError:
            raise ValueError(f"--threshold {pair!r}: {raw!r} is not a number") from None
        if number < 0:
            raise ValueError(f"--threshold {pair!r}: must not be negative")
        values[name] = number
    return replace(Thresholds(), **values)


def cmd_report(args: argparse.Namespace) -> int:
    """Write the HTML report of one run and print where it went."""
    try:
        run_id, html = build_report(_store(args), args.run, args.against)
        target = args.html or Path(f"report-{run_id}.html")
        target.write_text(html, encoding="utf-8")
    except (CompareError, PublishError, StoreError, ValueError, OSError) as exc:
        print(f"basebench report: {exc}", file=sys.stderr)
        return EXIT_ERROR
    print(f"report of run {run_id}: {target}")
    return EXIT_CLEAN


def cmd_compare(args: argparse.Namespace) -> int:
    """Compare two runs, print the changes, exit 1 when any is a regression."""
    try:
        thresholds = parse_thresholds(args.threshold)
        store = _store(args)
        base, head = pick_runs(store, args.base, args.head)
        comparison = compare_runs(load_run(store, base), load_run(store, head), thresholds)
    except (CompareError, PublishError, StoreError, ValueError) as exc:
        print(f"basebench compare: {exc}", file=sys.stderr)
        return EXIT_ERROR
    print(
        json.dumps(comparison.to_dict(), indent=2) if args.json else render_comparison(comparison)
    )
    return EXIT_REGRESSION if comparison.regressed else EXIT_CLEAN
