"""``basebench plan`` and ``basebench run``: a matrix file in, cells or one run out."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cli.embedded_prefect import EmbeddedPrefect
from cli.hosts import HOST_OPTION, parse_host_options
from cli.store_options import output_url
from tasks.config_file import ConfigError
from tasks.matrix import (
    CellFilter,
    MatrixConfig,
    Plan,
    load_matrix,
    parse_only,
    plan,
)
from tasks.records import new_run_id

if TYPE_CHECKING:
    from tasks.lifecycle import InterruptedRun, RunOutcome

EXIT_INTERRUPTED = 130  # as a shell reports a command ended by SIGINT
EXIT_STALE_DB = 5  # published, but scanned against a DB older than scanner.max_db_age_hours

# Prefect runs embedded and quiet, and sends nothing out.
PREFECT_DEFAULTS = {
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_LOGGING_LEVEL": "WARNING",
}


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``plan`` and ``run``."""
    for name, func, help_text in [
        ("plan", cmd_plan, "print the cells a matrix expands to, without doing any work"),
        ("run", cmd_run, "build, inspect, scan and probe every cell; publish the run"),
    ]:
        sub = subparsers.add_parser(name, help=help_text)
        sub.add_argument("config", help="matrix YAML file, e.g. configs/default.yaml")
        sub.add_argument("--only", action="append", default=[], metavar="KEY=GLOB")
        sub.add_argument("--upstream", action="store_true", help="pull from upstream registries")
        sub.add_argument("--output", type=output_url, help="results folder or s3://bucket/prefix")
        sub.add_argument(
            "--host",
            action="append",
            default=[],
            metavar=HOST_OPTION,
            help="use this Docker host instead of the matrix's hosts (repeatable)",
        )
        if name == "plan":
            sub.add_argument(
                "--json",
                action="store_true",
                help='{"cells": [one object per cell], "left_out": [what cannot run, and why]}',
            )
        sub.set_defaults(func=func)


def load(args: argparse.Namespace) -> MatrixConfig:
    """The matrix file with the command line's overrides, validated."""
    overrides: dict[str, Any] = {}
    if args.output:
        overrides["output"] = args.output
    if args.upstream:
        overrides["mirrors"] = {}
    if args.host:
        overrides["hosts"] = parse_host_options(args.host)
    return load_matrix(Path(args.config), overrides)


def cmd_plan(args: argparse.Namespace) -> int:
    planned = plan(load(args), parse_only(args.only))
    if args.json:
        left_out = [vars(item) for item in planned.left_out]
        print(
            json.dumps({"cells": [vars(c) for c in planned.cells], "left_out": left_out}, indent=2)
        )
        return 0
    for cell in planned.cells:
        print(
            f"{cell.cell_id}  {cell.label:<46} {cell.variant:<12} {cell.linkage:<8} {cell.base_ref}"
        )
    if planned.left_out:
        print(f"left out, cannot run ({len(planned.left_out)}):")
        for item in planned.left_out:
            print(f"  {item.label}: {item.reason}")
    print(f"{len(planned.cells)} cells")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    config = load(args)
    only = parse_only(args.only)
    planned = plan(config, only)
    left_out = planned.left_out
    if not planned.cells:
        raise ConfigError(
            f"{args.config}: no cell can run ({len(left_out)} left out, "
            f"`basebench plan {args.config}` says why); nothing was built or published"
        )
    if left_out:
        print(f"basebench: {len(left_out)} coordinates cannot run and are left out "
              f"(`basebench plan {args.config}` says why)")  # fmt: skip
    run_id = new_run_id()
    for key, value in PREFECT_DEFAULTS.items():
        os.environ.setdefault(key, value)
    home = os.environ.setdefault("PREFECT_HOME", str(config.cache_dir / "prefect"))
    Path(home).mkdir(parents=True, exist_ok=True)
    # Without a configured server, start the embedded one now: it comes up while the
    # flow's modules load (they import Prefect, which reads the env set above).
    server = None if os.environ.get("PREFECT_API_URL") else EmbeddedPrefect()
    interrupted: list[InterruptedRun] = []  # what the flow kept, when it was interrupted
    # SIGTERM (a service stop, `kill`) ends the run as Ctrl-C does.
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        if server:
            server.start()
        outcome = _run_flow(config, only, planned, server, run_id, interrupted.append)
    except KeyboardInterrupt:
        if not interrupted:  # before its cells began, or once published: nothing to keep
            raise
        print(f"basebench: {interrupted[0].message}")
        return EXIT_INTERRUPTED
    finally:
        signal.signal(signal.SIGTERM, previous)
        if server:
            server.stop()
    from tasks.render.terminal import render_summary  # imports rich

    render_summary(outcome)
    if not outcome.published.published:
        print(f"basebench: {outcome.published.message}", file=sys.stderr)
        return 3
    if outcome.record.cell_counts()["cells_failed"]:
        return 1
    return EXIT_STALE_DB if outcome.record.db_stale() else 0


def _raise_interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _run_flow(
    config: MatrixConfig,
    only: list[CellFilter],
    planned: Plan,
    server: EmbeddedPrefect | None,
    run_id: str,
    on_interrupted: Callable[[InterruptedRun], None],
) -> RunOutcome:
    # Imported here: Prefect reads its settings at import, after cmd_run has set them.
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.benchmark import benchmark
    from tasks.render.terminal import progress_bar

    settings: dict[Any, Any] = {}
    if server:
        server.wait_ready()
        # No heartbeats: only a long-lived server watches them for crashed runs.
        settings = {PREFECT_API_URL: server.api_url, "flows.heartbeat_frequency": None}
    with temporary_settings(settings), progress_bar(len(planned.cells)) as tick:
        # Host limits belong to a configured server, shared with its other runs.
        return benchmark(
            config=config,
            only=only,
            run_id=run_id,
            host_limits=False if server else None,
            on_cell=tick,
            planned=planned,
            on_interrupted=on_interrupted,
        )
