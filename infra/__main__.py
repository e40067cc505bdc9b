"""``python -m infra up|down|status``: the infra commands without the rest of basebench."""

from __future__ import annotations

import argparse
import sys

from infra.cli import add_parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` as ``infra ...`` arguments and run the chosen command."""
    parser = argparse.ArgumentParser(prog="python -m infra")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["infra", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
