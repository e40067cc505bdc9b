"""The ``basebench`` command line: the edge where arguments and environment become config.

Every command module registers itself with ``add_parser(subparsers)`` and sets
``func(args) -> int``. Exit codes: 0 done, 1 a cell failed (run, rescan), a regression
(compare) or rows that differ (publish, migrate), 2 bad input or an unusable host or
store, 3 the store failed and the run was kept locally, 4 an unexpected error, 5 the
run (or rescan) is published but its vulnerability DB was older than
``scanner.max_db_age_hours``, 130 interrupted. No path ends in a traceback unless
``--debug`` (or ``BASEBENCH_DEBUG=1``) asks for one.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from importlib.metadata import version

from cli import dataset, deploy, hosts, infra, report, rescan, run
from cli.embedded_prefect import EmbeddedPrefectError
from infra.errors import InfraError
from tasks.catalogue import CatalogueError
from tasks.config_file import ConfigError
from tasks.hosts.connection import HostUnavailable
from tasks.programs import ProgramMissing

# Errors whose message is one line written for the user: printed as they are.
USER_ERRORS = (
    ConfigError,
    CatalogueError,
    HostUnavailable,
    EmbeddedPrefectError,
    InfraError,
    ProgramMissing,
)
EXIT_USER_ERROR, EXIT_UNEXPECTED, EXIT_INTERRUPTED, EXIT_BROKEN_PIPE = 2, 4, 130, 141


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="basebench",
        description="Benchmark container base images: size, packages, vulnerabilities, startup.",
    )
    parser.add_argument("--version", action="version", version=f"basebench {version('basebench')}")
    parser.add_argument(
        "--debug", action="store_true", help="show the traceback of an unexpected error"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for module in (run, rescan, hosts, report, dataset, deploy, infra):
        module.add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``basebench`` console script."""
    args = build_parser().parse_args(argv)
    debug = args.debug or os.environ.get("BASEBENCH_DEBUG", "") not in ("", "0")
    try:
        return int(args.func(args))
    except USER_ERRORS as exc:
        print(f"basebench: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("basebench: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader went away (``basebench plan ... | head``)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except Exception as exc:
        if debug:
            traceback.print_exc()
        detail = " ".join(str(exc).split()) or "no message"
        print(
            f"basebench {args.command}: unexpected error: {type(exc).__name__}: {detail}"
            " (run with --debug or BASEBENCH_DEBUG=1 for the traceback)",
            file=sys.stderr,
        )
        return EXIT_UNEXPECTED


if __name__ == "__main__":
    sys.exit(main())
