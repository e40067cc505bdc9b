"""The fixture vulnerability DB: advisories YAML in, a Trivy cache dir's ``db/`` out.

Real sites use Trivy's published DB; this machine cannot download it, so tests and the
demo scan against a small DB written from ``advisories.yaml``. The file lists data
sources, each with its advisories, and the layout written is what Trivy (trivy-db
schema 2) reads:

- ``data-source``: bucket name -> ``{"ID": ..., "Name": ..., "URL": ...}``;
- an OS data source (``"debian 12"``, ``"debian 13"``, ``"alpine 3.20"``): SOURCE package
  name (``glibc``, not ``libc6``; Alpine's origin, ``openssl`` for ``libcrypto3``) -> CVE
  id -> ``{"FixedVersion": ...}``;
- a language data source (``"<ecosystem>::<source name>"``, e.g. ``"go::The Go
  Vulnerability Database"`` whose package ``stdlib`` is the Go standard library, or
  ``"pip::GitHub Security Advisory pip"``): package name -> CVE id ->
  ``{"VulnerableVersions": [...], "PatchedVersions": [...]}``;
- ``vulnerability``: CVE id -> ``{"Title", "Severity", "VendorSeverity": {source id: n}}``
  (one entry per id: an id in several data sources has one severity, under each source's
  ID, which is the one Trivy reads for findings from that source).

The write is atomic (a temp dir beside ``db/``, then renames) and skipped when the
content hash of the validated advisories has not changed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
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
LAYOUT_VERSION = 2
SCHEMA_VERSION = 2  # Trivy's DB schema version (metadata.json "Version")
HASH_FILE = "fixture.sha256"

SEVERITY_NUMBERS = {"UNKNOWN": 0, "LOW": 1, "MEDIUM": 2, "HIGH": 3, "CRITICAL": 4}
Severity = Literal["CRITICAL", "HIGH", "MEDIUM", "LOW", "UNKNOWN"]
VulnId = Annotated[str, StringConstraints(pattern=r"^[A-Z]+-[0-9]{4}-[0-9]{4,}$")]
# Debian source packages, Alpine origins; language packages may add a scope or group
# (npm @scope/name, maven group:artifact, Go module paths).
PackageName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9@][a-z0-9.+_/:@-]*$")]
PackageVersion = Annotated[str, StringConstraints(pattern=r"^[0-9A-Za-z.+~:_-]+$")]
# One version range as Trivy's comparers read it: "<1.23.0", ">=1.25.0, <1.25.6".
VersionRange = Annotated[str, StringConstraints(pattern=r"^[0-9A-Za-z.,<>=!~^ *+_-]+$")]
OS_BUCKET = re.compile(r"^[a-z]+ [0-9.]+$")
# The ecosystems of the matrix's languages, as trivy-db prefixes their buckets.
LANGUAGE_BUCKET = re.compile(r"^(go|pip|npm|maven|cargo)::[A-Za-z0-9 .()-]+$")


class FixtureError(ValueError):
    """Advisories that cannot become a DB; the message names file, entry and what is allowed."""


class DataSource(BaseModel):
    """Where advisories come from; ``bucket`` is Trivy's bucket name (``debian 12``,
    ``alpine 3.20``, ``go::The Go Vulnerability Database``), ``id`` its source ID."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    bucket: Annotated[
        str, StringConstraints(pattern=OS_BUCKET.pattern + "|" + LANGUAGE_BUCKET.pattern)
    ]
    id: Annotated[str, StringConstraints(pattern=r"^[a-z0-9-]+$")]
    name: str
    url: str = ""

    @property
    def is_language(self) -> bool:
        """A language ecosystem's source (version ranges), not an OS's (fixed versions)."""
        return "::" in self.bucket


class Advisory(BaseModel):
    """One vulnerability in one package of one data source.

    OS sources: ``source_package`` and ``fixed_version`` (None: affected, no fix yet).
    Language sources: ``package``, ``vulnerable_versions`` and ``patched_versions``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: VulnId
    source_package: PackageName | None = None
    fixed_version: PackageVersion | None = None
    package: PackageName | None = None
    vulnerable_versions: list[VersionRange] | None = Field(None, min_length=1)
    patched_versions: list[PackageVersion] = []
    severity: Severity
    title: str = Field(min_length=1)

    @property
    def key(self) -> str:
        """The package name the data source's bucket is keyed by."""
        return self.package or self.source_package or ""


class Source(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    data_source: DataSource
    advisories: list[Advisory] = Field(min_length=1)


class Advisories(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    sources: list[Source] = Field(min_length=1)


def load_advisories(path: Path) -> Advisories:
    """Read and validate an advisories file; ``FixtureError`` on anything wrong."""
    advisories = validate(Advisories, read_mapping(path, FixtureError), path, FixtureError)
    _check_kinds(path, advisories)
    _check_unique(path, advisories)
    return advisories


# The keys an advisory of each kind of data source has (all) and needs (the first ones).
_KEYS = {
    "OS": (("source_package",), ("id", "source_package", "fixed_version", "severity", "title")),
    "language": (
        ("package", "vulnerable_versions"),
        ("id", "package", "vulnerable_versions", "patched_versions", "severity", "title"),
    ),
}


def _check_kinds(path: Path, advisories: Advisories) -> None:
    buckets: dict[str, int] = {}
    for s, source in enumerate(advisories.sources):
        bucket = source.data_source.bucket
        if bucket in buckets:
            raise FixtureError(
                f"{path}: sources[{s}].data_source.bucket: {bucket!r} repeats"
                f" sources[{buckets[bucket]}]; one entry per bucket"
            )
        buckets[bucket] = s
        kind = "language" if source.data_source.is_language else "OS"
        required, allowed = _KEYS[kind]
        for a, advisory in enumerate(source.advisories):
            where = f"{path}: sources[{s}].advisories[{a}]"
            given = advisory.model_fields_set
            for name in (n for n in allowed if n in required and n not in given):
                raise FixtureError(
                    f"{where}.{name}: required key is missing ({kind} data source {bucket!r})"
                )
            for name in sorted(given - set(allowed)):
                raise FixtureError(
                    f"{where}.{name}: not a key of an advisory of {kind} data source"
                    f" {bucket!r}; allowed: {', '.join(allowed)}"
                )


def _check_unique(path: Path, advisories: Advisories) -> None:
    seen: dict[tuple[str, str], int] = {}
    severities: dict[str, str] = {}
    for s, source in enumerate(advisories.sources):
        seen.clear()  # the same id on the same package is fine in another data source
        for a, advisory in enumerate(source.advisories):
            where = f"{path}: sources[{s}].advisories[{a}]"
            key = (advisory.id, advisory.key)
            if key in seen:
                raise FixtureError(
                    f"{where}: {advisory.id} on {advisory.key} repeats"
                    f" advisories[{seen[key]}]; each (id, package) once per data source"
                )
            seen[key] = a
            first = severities.setdefault(advisory.id, advisory.severity)
            if first != advisory.severity:
                raise FixtureError(
                    f"{where}.severity: {advisory.id} is {first} elsewhere;"
                    " one severity per vulnerability id"
                )


def build_tree(advisories: Advisories) -> boltdb.Tree:
    """The bbolt buckets Trivy reads, from validated advisories."""
    data_sources: dict[bytes, bytes] = {}
    buckets: dict[bytes, dict[bytes, dict[bytes, bytes]]] = {}
    vulnerabilities: dict[str, dict[str, object]] = {}
    for source in advisories.sources:
        ds = source.data_source
        data_sources[ds.bucket.encode()] = _json({"ID": ds.id, "Name": ds.name, "URL": ds.url})
        packages = buckets.setdefault(ds.bucket.encode(), {})
        for advisory in source.advisories:
            packages.setdefault(advisory.key.encode(), {})[advisory.id.encode()] = _json(
                _advisory_value(advisory)
            )
            entry = vulnerabilities.setdefault(
                advisory.id,
                {"Title": advisory.title, "Severity": advisory.severity, "VendorSeverity": {}},
            )
            vendor = entry["VendorSeverity"]
            assert isinstance(vendor, dict)
            vendor[ds.id] = SEVERITY_NUMBERS[advisory.severity]
    return {
        b"data-source": data_sources,
        **buckets,
        b"vulnerability": {k.encode(): _json(v) for k, v in vulnerabilities.items()},
    }


def _advisory_value(advisory: Advisory) -> dict[str, object]:
    if advisory.package is not None:  # a language data source
        return {
            "VulnerableVersions": advisory.vulnerable_versions,
            "PatchedVersions": advisory.patched_versions,
        }
    return {"FixedVersion": advisory.fixed_version} if advisory.fixed_version else {}


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
        _keep_current(db_dir / "metadata.json")
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


STAMP = "%Y-%m-%dT%H:%M:%S.%fZ"


def _keep_current(metadata: Path) -> None:
    """Move an unchanged DB's timestamps on once its ``NextUpdate`` has passed, as the
    daily download of a real DB would: runs hold the DB's age against a limit."""
    now = datetime.now(UTC)
    try:
        due = datetime.strptime(json.loads(metadata.read_text())["NextUpdate"], STAMP)
        if now < due.replace(tzinfo=UTC):
            return
    except (OSError, ValueError, KeyError):
        pass  # unreadable: write it anew
    fresh = metadata.with_name(metadata.name + ".new")
    fresh.write_text(json.dumps(_metadata(now)))
    os.replace(fresh, metadata)  # readers see the old file or the new one, never half


def _metadata(now: datetime) -> dict[str, object]:
    def stamp(moment: datetime) -> str:
        return moment.strftime(STAMP)

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
