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
