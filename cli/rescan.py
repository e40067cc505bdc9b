"""``basebench rescan``: a published run's SBOMs against the current DB; no Docker, no builds.

Exit codes: 0 done, 1 a cell's SBOM scan failed, 2 bad input (no run to rescan, no DB, bad
option or matrix file), 3 the store failed and the rescan was kept locally, 5 the
rescan is published but its DB is older than the limit (``scanner.max_db_age_hours``).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cli.embedded_prefect import EmbeddedPrefect
from cli.run import PREFECT_DEFAULTS
from cli.store_options import add_store_arguments
from tasks.config_file import ConfigError
from tasks.dataset.layout import PublishError
from tasks.dataset.output import S3Config
from tasks.dataset.reader import RunNotFound
from tasks.dataset.stores import StoreError, open_store
from tasks.matrix import DEFAULT_CACHE, load_matrix
from tasks.scanners.base import ScanError
from tasks.scanners.config import ScannerConfig

if TYPE_CHECKING:
    from tasks.lifecycle import RunOutcome

EXIT_DONE, EXIT_CELL_FAILED, EXIT_ERROR, EXIT_KEPT_LOCALLY, EXIT_STALE_DB = 0, 1, 2, 3, 5


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``rescan``."""
    rescan = subparsers.add_parser(
        "rescan",
        help="scan a run's stored SBOMs against the current vulnerability DB (no Docker)",
    )
    add_store_arguments(rescan, "output")
    rescan.add_argument("--run", metavar="ID", help="run to rescan (default: the latest benchmark)")
    rescan.add_argument(
        "--db", metavar="DIR", type=Path, help="Trivy cache dir holding db/ (default: fixture DB)"
    )
    rescan.add_argument(
        "--config",
        metavar="MATRIX",
        type=Path,
        help="take scanner.db_dir, scanner.max_db_age_hours, s3 and cache_dir from this matrix",
    )
    rescan.add_argument(
        "--max-db-age-hours",
        metavar="HOURS",
        help="a DB older than this is stale (exit 5); 'none' for no limit (default: 168)",
    )
    rescan.set_defaults(func=cmd_rescan)


def rescan_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The flow's keyword arguments from the options (and ``--config``), validated.

    Raises ``ConfigError`` naming the option or the matrix file and key.
    """
    scanner, s3, cache_dir = ScannerConfig(), S3Config(), DEFAULT_CACHE
    if args.config is not None:
        config = load_matrix(args.config)
        scanner, s3, cache_dir = config.scanner, config.s3, config.cache_dir
    if args.s3_endpoint:
        s3 = s3.model_copy(update={"endpoint_url": args.s3_endpoint})
    limit = scanner.max_db_age_hours
    if args.max_db_age_hours is not None:
        limit = parse_max_age(args.max_db_age_hours)
    return {
        "output": args.output,
        "source_run_id": args.run,
        "db_dir": args.db if args.db is not None else scanner.db_dir,
        "max_db_age_hours": limit,
        "s3": s3,
        "cache_dir": cache_dir,
    }


def parse_max_age(raw: str) -> float | None:
    """``"24"`` -> 24.0, ``"none"`` -> None; ``ConfigError`` for anything else."""
    if raw.strip().lower() == "none":
        return None
    try:
        hours = float(raw)
    except ValueError:
        hours = float("nan")
    if not 0 < hours <= 24 * 365:
        raise ConfigError(
            f"--max-db-age-hours {raw!r}: expected hours above 0 and at most 8760, or none"
        )
    return hours


def cmd_rescan(args: argparse.Namespace) -> int:
    settings = rescan_settings(args)
    for key, value in PREFECT_DEFAULTS.items():
        os.environ.setdefault(key, value)
    home = os.environ.setdefault("PREFECT_HOME", str(settings["cache_dir"] / "prefect"))
    Path(home).mkdir(parents=True, exist_ok=True)
    from tasks.stages.sbom_scan import pick_source, require_db  # imports Prefect: after the env

    # What can be checked without Prefect is checked first: no server starts for bad input.
    try:
        store = open_store(settings["output"], settings["s3"])
        settings["source_run_id"] = pick_source(store, settings["source_run_id"])["run_id"]
        require_db(settings["db_dir"] or settings["cache_dir"] / "trivy")
    except (RunNotFound, ScanError, PublishError, StoreError) as exc:
        print(f"basebench rescan: {exc}; nothing was published", file=sys.stderr)
        return EXIT_ERROR
    server = None if os.environ.get("PREFECT_API_URL") else EmbeddedPrefect()
    try:
        if server:
            server.start()
        outcome = _run_flow(settings, server)
    except (RunNotFound, ScanError, PublishError, StoreError) as exc:
        print(f"basebench rescan: {exc}; nothing was published", file=sys.stderr)
        return EXIT_ERROR
    finally:
        if server:
            server.stop()
    from tasks.render.terminal import render_summary  # imports rich

    render_summary(outcome)
    return exit_status(outcome)


def exit_status(outcome: RunOutcome) -> int:
    """3 kept locally, 1 a cell's scan failed (cells the source run had failed are carried
    as they were and do not count), 5 a stale DB, else 0 (the first that applies)."""
    from tasks.stages.sbom_scan import scan_failures  # imports Prefect: after its settings

    if not outcome.published.published:
        print(f"basebench: {outcome.published.message}", file=sys.stderr)
        return EXIT_KEPT_LOCALLY
    if scan_failures(outcome.record.cells):
        return EXIT_CELL_FAILED
    return EXIT_STALE_DB if outcome.record.db_stale() else EXIT_DONE


def _run_flow(settings: dict[str, Any], server: EmbeddedPrefect | None) -> RunOutcome:
    # Imported here: Prefect reads its settings at import, after cmd_rescan has set them.
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.rescan_run import rescan

    prefect: dict[Any, Any] = {}
    if server:
        server.wait_ready()
        prefect = {PREFECT_API_URL: server.api_url, "flows.heartbeat_frequency": None}
    with temporary_settings(prefect):
        outcome: RunOutcome = rescan(**settings)
    return outcome
