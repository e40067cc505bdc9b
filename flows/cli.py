"""The ``basebench`` command line: the edge where arguments and environment become config."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flows.deploy_command import add_parser as add_deploy_parser
from flows.embedded_prefect import EmbeddedPrefect, EmbeddedPrefectError
from flows.hosts_command import HOST_OPTION, parse_host_options
from flows.hosts_command import add_parser as add_hosts_parser
from flows.report_command import add_parser as add_report_parser
from infra.cli import add_parser as add_infra_parser
from tasks.docker_host import HostUnavailable
from tasks.matrix import CellFilter, ConfigError, MatrixConfig, expand, load_matrix

if TYPE_CHECKING:
    from flows.benchmark import BenchmarkOutcome

# Prefect runs embedded: a temporary local server on a SQLite file under the cache dir
# (after the first run its schema is in place, which halves the server's start-up
# compared with an in-memory database), and nothing is sent out.
PREFECT_DEFAULTS = {
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_LOGGING_LEVEL": "WARNING",
}


def parse_only(pairs: list[str]) -> list[CellFilter]:
    """``--only base=distroless-* --only toolchain=1.22.*`` -> one filter all cells must match."""
    fields: dict[str, str] = {}
    for pair in pairs:
        key, sep, glob = pair.partition("=")
        if not sep or key not in CellFilter.model_fields:
            allowed = ", ".join(CellFilter.model_fields)
            raise ConfigError(f"--only {pair!r}: expected KEY=GLOB with KEY one of {allowed}")
        fields[key] = glob
    return [CellFilter.model_validate(fields)] if fields else []


def _load(args: argparse.Namespace) -> MatrixConfig:
    overrides: dict[str, Any] = {}
    if getattr(args, "output", None):
        overrides["output"] = args.output
    if getattr(args, "upstream", False):
        overrides["mirrors"] = {}
    if getattr(args, "host", None):
        overrides["hosts"] = parse_host_options(args.host)
    return load_matrix(Path(args.config), overrides)


def cmd_plan(args: argparse.Namespace) -> int:
    config = _load(args)
    cells = expand(config, parse_only(args.only))
    for cell in cells:
        print(f"{cell.cell_id}  {cell.label:<42} {cell.variant:<12} {cell.base_ref}")
    print(f"{len(cells)} cells")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    config = _load(args)
    only = parse_only(args.only)
    for key, value in PREFECT_DEFAULTS.items():
        os.environ.setdefault(key, value)
    home = os.environ.setdefault("PREFECT_HOME", str(config.cache_dir / "prefect"))
    Path(home).mkdir(parents=True, exist_ok=True)
    # Without a configured server, start the embedded one now: it comes up while the
    # flow's modules load (they import Prefect, which reads the env set above).
    server = None if os.environ.get("PREFECT_API_URL") else EmbeddedPrefect()
    try:
        if server:
            server.start()
        outcome = _run_flow(config, only, server)
    finally:
        if server:
            server.stop()
    from flows.summary import render_summary  # imports the flow, and with it Prefect

    render_summary(outcome)
    if not outcome.published.published:
        print(f"basebench: {outcome.published.message}", file=sys.stderr)
        return 3
    return 1 if any(c.status == "failed" for c in outcome.record.cells) else 0


def _run_flow(
    config: MatrixConfig, only: list[CellFilter], server: EmbeddedPrefect | None
) -> BenchmarkOutcome:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.benchmark import benchmark
    from flows.summary import progress_bar

    settings: dict[Any, Any] = {}
    if server:
        server.wait_ready()
        # No heartbeats: only a long-lived server watches them for crashed runs.
        settings = {PREFECT_API_URL: server.api_url, "flows.heartbeat_frequency": None}
    with temporary_settings(settings), progress_bar(len(expand(config, only))):
        # Host limits belong to a configured server, shared with its other runs.
        return benchmark(config=config, only=only, host_limits=False if server else None)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="basebench",
        description="Benchmark container base images: size, packages, vulnerabilities, startup.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name, func, help_text in [
        ("plan", cmd_plan, "print the cells a matrix expands to, without doing any work"),
        ("run", cmd_run, "build, inspect, scan and probe every cell; publish Parquet"),
    ]:
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("config", help="matrix YAML file, e.g. configs/default.yaml")
        sub.add_argument("--only", action="append", default=[], metavar="KEY=GLOB")
        sub.add_argument("--upstream", action="store_true", help="pull from upstream registries")
        sub.add_argument("--output", help="results folder or s3://bucket/prefix")
        sub.add_argument(
            "--host",
            action="append",
            default=[],
            metavar=HOST_OPTION,
            help="use this Docker host instead of the matrix's hosts (repeatable)",
        )
        sub.set_defaults(func=func)
    for add_parser in (add_infra_parser, add_hosts_parser, add_report_parser, add_deploy_parser):
        add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``basebench`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (ConfigError, HostUnavailable, EmbeddedPrefectError) as exc:
        print(f"basebench: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
