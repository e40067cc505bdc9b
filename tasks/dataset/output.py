"""What an ``output`` and an S3 endpoint may be, checked before a run does any work, and
the ``s3:`` settings (``S3Config``) that reach an S3 output.

A store setting that is wrong (``s3://bench/a//b``, ``S3://b/x``, an endpoint without a
scheme) would otherwise surface only at publish time, after every cell was built. The
config models (``tasks.matrix``) and the commands that take ``--output`` or
``--s3-endpoint`` call these checks; ``tasks.dataset.stores.open_store`` calls them too.
"""

from __future__ import annotations

import re
from typing import Annotated
from urllib.parse import urlparse

from pydantic import AfterValidator, BaseModel, ConfigDict

S3_SCHEME = "s3://"
# Anything that reads as "<scheme>://": a URL, never a folder name.
_URL = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://")
# S3 bucket names: 3-63 lowercase letters, digits, dots and hyphens.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_ENDPOINT_SCHEMES = ("http", "https")


def check_output(value: str) -> str:
    """``value`` if it is a usable output, else ``ValueError`` saying what is allowed:
    a folder path, or ``s3://<bucket>[/<prefix>]`` with a valid bucket and a prefix of
    non-empty parts without ``.``/``..``/``\\``."""
    if not value.strip():
        raise ValueError("is empty; give a folder path or s3://<bucket>/<prefix>")
    url = _URL.match(value)
    if url is None:
        return value  # a local folder
    if url["scheme"] != "s3":
        raise ValueError(
            f"{value!r}: unknown scheme {url['scheme']!r}://; allowed: s3://<bucket>/<prefix> "
            "(lowercase) or a folder path"
        )
    bucket, _, prefix = value.removeprefix(S3_SCHEME).partition("/")
    if not _BUCKET.fullmatch(bucket):
        raise ValueError(
            f"{value!r}: bucket {bucket!r} is not an S3 bucket name "
            "(3-63 lowercase letters, digits, '.' or '-')"
        )
    parts = prefix.rstrip("/").split("/") if prefix.rstrip("/") else []
    if "\\" in prefix or any(part in ("", ".", "..") for part in parts):
        raise ValueError(
            f"{value!r}: prefix {prefix!r} is not allowed: use '/'-separated names without "
            "empty parts ('//'), '.', '..' or '\\'"
        )
    return value


def split_s3(value: str) -> tuple[str, str]:
    """``s3://bucket/a/b`` -> ``("bucket", "a/b")`` for an output ``check_output`` allows."""
    bucket, _, prefix = check_output(value).removeprefix(S3_SCHEME).partition("/")
    return bucket, prefix.strip("/")


def is_s3(value: str) -> bool:
    """True for an ``s3://`` output (after ``check_output``)."""
    return value.startswith(S3_SCHEME)


def check_endpoint(value: str) -> str:
    """``value`` if it is an S3 API endpoint URL (``http(s)://host[:port]``), else
    ``ValueError``; a bare ``host:port`` is refused, not guessed."""
    parsed = urlparse(value)
    if parsed.scheme not in _ENDPOINT_SCHEMES or not parsed.hostname:
        raise ValueError(
            f"{value!r} is not an endpoint URL; give http://host:port or https://host[:port]"
        )
    try:
        parsed.port  # noqa: B018  # raises for a port that is not a number in range
    except ValueError:
        raise ValueError(f"{value!r}: the port is not a number from 1 to 65535") from None
    if parsed.path not in ("", "/") or parsed.query or parsed.fragment:
        raise ValueError(f"{value!r}: an endpoint has no path; give http(s)://host[:port]")
    return value


class S3Config(BaseModel):
    """How to reach an ``s3://`` output: its endpoint (None: AWS) and region."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    endpoint_url: Annotated[str, AfterValidator(check_endpoint)] | None = None
    region: str | None = None  # None: boto3's own chain (AWS_REGION, profile, ...)
