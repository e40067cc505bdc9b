"""Command-line options that name a result store, checked as they are parsed.

A bad ``--output``, store URL or ``--s3-endpoint`` ends the command with exit 2 and one
line naming the option, before anything is read, built or published.
"""

from __future__ import annotations

import argparse

from tasks.dataset.output import check_endpoint, check_output


def output_url(value: str) -> str:
    """argparse type of an output: a folder or ``s3://<bucket>/<prefix>``."""
    try:
        return check_output(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def endpoint_url(value: str) -> str:
    """argparse type of an S3 endpoint: ``http(s)://host[:port]``."""
    try:
        return check_endpoint(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_store_arguments(parser: argparse.ArgumentParser, name: str = "url") -> None:
    """The positional store (``name``) and ``--s3-endpoint`` of a command that reads one."""
    parser.add_argument(
        name, metavar=name.upper(), type=output_url, help="results folder or s3://bucket/prefix"
    )
    parser.add_argument(
        "--s3-endpoint",
        metavar="URL",
        type=endpoint_url,
        help="S3 API endpoint (default: AWS or AWS_ENDPOINT_URL)",
    )
