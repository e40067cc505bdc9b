"""The fixture vulnerability DB: advisories YAML in, a Trivy cache dir's ``db/`` out.

Real sites use Trivy's published DB; this machine cannot download it, so tests and the
demo scan against a small DB written from ``advisories.yaml``. The layout is what
Trivy (trivy-db schema 2) reads:

- ``data-source``: ``"debian 12"`` -> ``{"ID": "debian", "Name": ..., "URL": ...}``
- ``"debian 12"``: SOURCE package name (``glibc``, not ``libc6``) -> CVE id ->
  ``{"FixedVersion": ...}``
- ``vulnerability``: CVE id -> ``{"Title", "Severity", "VendorSeverity": {"debian": n}}``

The write is atomic (a temp dir beside ``db/``, then renames) and skipped when the
content hash of the validated advisories has not changed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from infra.trivydb import boltdb
from tasks.config_file import read_mapping, validate

DEFAULT_ADVISORIES = Path(__file__).resolve().parent / "advisories.yaml"

# Bump when the DB layout written below changes, so existing fixture DBs are rewritten.
LAYOUT_VERSION = 1
SCHEMA_VERSION = 2  # Trivy's DB schema version (metadata.json "Version")
HASH_FILE = "fixture.sha256"

SEVERITY_NUMBERS = {"UNKNOWN": 0, "LOW": 1, "MEDIUM": 2, "HIGH": 3, "CRITICAL": 4}
Severity = Literal["CRITICAL", "HIGH", "MEDIUM", "LOW", "UNKNOWN"]
VulnId = Annotated[str, StringConstraints(pattern=r"^[A-Z]+-[0-9]{4}-[0-9]{4,}$")]
PackageName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9.+-]*$")]
DebVersion = Annotated[str, StringConstraints(pattern=r"^[0-9A-Za-z.+~:-]+$")]


class FixtureError(ValueError):
    """Advisories that cannot become a DB; the message names file, entry and what is allowed."""


class DataSource(BaseModel):
    """Where the advisories come from; ``bucket`` is Trivy's platform name, e.g. ``debian 12``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    bucket: Annotated[str, StringConstraints(pattern=r"^[a-z]+ [0-9.]+$")]
    id: Annotated[str, StringConstraints(pattern=r"^[a-z0-9-]+$")]
    name: str
    url: str = ""


class Advisory(BaseModel):
    """One vulnerability in one source package."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: VulnId
    source_package: PackageName
    fixed_version: DebVersion | None = None  # None: affected, no fix yet
    severity: Severity
    title: str = Field(min_length=1)


class Advisories(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    data_source: DataSource
    advisories: list[Advisory] = Field(min_length=1)


def load_advisories(path: Path) -> Advisories:
    """Read and validate an advisories file; ``FixtureError`` on anything wrong."""
    advisories = validate(Advisories, read_mapping(path, FixtureError), path, FixtureError)
    _check_unique(path, advisories)
    return advisories


def _check_unique(path: Path, advisories: Advisories) -> None:
    seen: dict[tuple[str, str], int] = {}
    for index, advisory in enumerate(advisories.advisories):
        key = (advisory.id, advisory.source_package)
        if key in seen:
            raise FixtureError(
                f"{path}: advisories[{index}]: {advisory.id} on {advisory.source_package}"
                f" repeats advisories[{seen[key]}]; each (id, source_package) once"
            )
        seen[key] = index
    severities: dict[str, str] = {}
    for index, advisory in enumerate(advisories.advisories):
        first = severities.setdefault(advisory.id, advisory.severity)
        if first != advisory.severity:
            raise FixtureError(
                f"{path}: advisories[{index}].severity: {advisory.id} is {first} elsewhere;"
                " one severity per vulnerability id"
            )


def build_tree(advisories: Advisories) -> boltdb.Tree:
    """The bbolt buckets Trivy reads, from validated advisories."""
    source = advisories.data_source
    packages: dict[bytes, dict[bytes, bytes]] = {}
    vulnerabilities: dict[bytes, bytes] = {}
    for advisory in advisories.advisories:
        fixed = {"FixedVersion": advisory.fixed_version} if advisory.fixed_version else {}
        packages.setdefault(advisory.source_package.encode(), {})[advisory.id.encode()] = _json(
            fixed
        )
        vulnerabilities[advisory.id.encode()] = _json(
            {
                "Title": advisory.title,
                "Severity": advisory.severity,
                "VendorSeverity": {source.id: SEVERITY_NUMBERS[advisory.severity]},
            }
        )
    data_source = {"ID": source.id, "Name": source.name, "URL": source.url}
    return {
        b"data-source": {source.bucket.encode(): _json(data_source)},
        source.bucket.encode(): packages,
        b"vulnerability": vulnerabilities,
    }


def _json(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def content_hash(advisories: Advisories) -> str:
    """Hash of what the DB holds; equal hashes mean the DB need not be rewritten."""
    payload = {"layout": LAYOUT_VERSION, "advisories": advisories.model_dump(mode="json")}
    return hashlib.sha256(_json(payload)).hexdigest()


def write_fixture_db(advisories: Path, cache_dir: Path) -> Path:
    """Write ``<cache_dir>/db/trivy.db`` and ``metadata.json`` from an advisories file.

    Returns the ``db`` directory. Validation happens before anything is written, and the
    new directory replaces the old one by rename, so bad input or a crash leaves the
    previous DB as it was. Nothing is written when the content hash is unchanged.
    """
    parsed = load_advisories(advisories)
    digest = content_hash(parsed)
    db_dir = cache_dir / "db"
    hash_file = db_dir / HASH_FILE
    complete = (db_dir / "trivy.db").is_file() and (db_dir / "metadata.json").is_file()
    if complete and hash_file.is_file() and hash_file.read_text().strip() == digest:
        return db_dir
    cache_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".db-new-", dir=cache_dir))
    try:
        boltdb.write(staging / "trivy.db", build_tree(parsed))
        (staging / "metadata.json").write_text(json.dumps(_metadata(datetime.now(UTC))))
        (staging / HASH_FILE).write_text(digest + "\n")
        _swap_in(staging, db_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return db_dir


def _metadata(now: datetime) -> dict[str, object]:
    def stamp(moment: datetime) -> str:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    return {
        "Version": SCHEMA_VERSION,
        "NextUpdate": stamp(now + timedelta(days=1)),
        "UpdatedAt": stamp(now),
        "DownloadedAt": stamp(now),
    }


def _swap_in(staging: Path, db_dir: Path) -> None:
    """Replace ``db_dir`` with ``staging`` by two renames on the same filesystem."""
    retired = None
    if db_dir.exists():
        retired = Path(tempfile.mkdtemp(prefix=".db-old-", dir=db_dir.parent))
        os.rename(db_dir, retired / "db")
    try:
        os.rename(staging, db_dir)
    except OSError:
        if retired is not None:  # put the previous DB back
            os.rename(retired / "db", db_dir)
        raise
    finally:
        if retired is not None:
            shutil.rmtree(retired, ignore_errors=True)
