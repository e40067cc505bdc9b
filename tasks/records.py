"""Plain data produced by each stage of a cell, and the cell record that carries them.

Every writer (Parquet, the terminal table, Prefect artifacts) reads these records; no
stage formats output itself. Records are frozen: a stage returns a new value.
"""

from __future__ import annotations

import hashlib
import secrets
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal


class Status(StrEnum):
    OK = "ok"
    FAILED = "failed"
    SKIPPED = "skipped"


class Stage(StrEnum):
    BUILD = "build"
    INSPECT = "inspect"
    SCAN = "scan"
    PROBE = "probe"


def cell_label(coordinates: Mapping[str, Any]) -> str:
    """A cell's short human name from its coordinates (a ``Cell`` or a results row)."""
    c = coordinates
    return f"{c['app']} {c['language']}{c['toolchain_version']} {c['base']}"


@dataclass(frozen=True)
class Cell:
    """One coordinate of the matrix: what to build, from what, on what."""

    cell_id: str
    app: str
    language: str
    toolchain_version: str
    base: str
    variant: str  # "single-stage" or "multi-stage"
    builder_ref: str  # reference as pulled (after the registry mirror)
    base_ref: str  # runtime base reference as pulled; the builder itself for single-stage
    cgo_enabled: bool
    # How the program meets its base: "dynamic" (linked against the base's C library),
    # "static", or "runtime" (run by the base's language runtime); "" when not recorded.
    linkage: str = ""

    @property
    def label(self) -> str:
        """Short human name, e.g. ``go-hello go1.22.10 distroless-static``."""
        return cell_label(vars(self))


@dataclass(frozen=True)
class PulledImage:
    """A base or builder image as a host pulled it."""

    ref: str
    digest: str | None  # repo digest (sha256:...) when the image came from a registry
    forged: bool  # carries the forge's stand-in label
    layers: tuple[str, ...] = ()  # diff ids, bottom to top


# buildkit: Docker's builder since Engine 23; legacy: the SDK's classic builder.
BuildTool = Literal["buildkit", "legacy"]


@dataclass(frozen=True)
class BuildResult:
    run_id: str
    image_id: str
    tag: str
    build_seconds: float | None  # None: not built in this run (a rescan carries the image)
    builder_digest: str | None
    base_digest: str | None
    build_tool: str = "legacy"  # "buildkit" or "legacy" (tasks/stages/build.py)
    # Diff ids of the runtime base's layers (the builder's for single-stage): what the
    # built image inherited; its other layers are what the build added.
    base_layers: tuple[str, ...] = ()
    # Stages of other cells that ran on the host while this build ran (sorted, distinct):
    # "save", "inspect", "scan", "build" (only with max_builds > 1), "probe" (never).
    concurrent_stages: tuple[str, ...] = ()


@dataclass(frozen=True)
class ProgramFacts:
    """The program an image runs, as read from the image (tasks/readers/program.py)."""

    path: str  # absolute, symlinks followed: /app/main, /usr/bin/python3.11
    linkage: str | None  # "static", "dynamic", "script"; None: neither ELF nor script
    interpreter: str | None  # the ELF program interpreter, or a script's #! program
    libraries: tuple[str, ...] = ()  # DT_NEEDED of a dynamic ELF: libc.so.6, ...
    cgo: bool | None = None  # a Go binary's CGO_ENABLED build setting; None: not Go


@dataclass(frozen=True)
class InspectResult:
    size_bytes: int
    compressed_bytes: int
    layers: int
    user: str
    runs_as_root: bool
    has_shell: bool
    has_package_manager: bool
    setuid_files: int  # regular files with the setuid bit
    files: int
    base_forged: bool
    builder_forged: bool
    # Regular files with the setuid or the setgid bit (or both); None: not counted.
    setuid_or_setgid_files: int | None = None
    program: ProgramFacts | None = None  # None: the image names no program it holds


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    source_name: str
    type: str  # trivy's result type: debian, alpine, gobinary, ...
    purl: str = ""  # package URL, e.g. pkg:deb/debian/libc6@2.36-9?arch=amd64
    layer_diff_id: str = ""  # the image layer the package was found in


@dataclass(frozen=True)
class Finding:
    """One vulnerability in one installed package."""

    vulnerability_id: str
    package: str
    installed_version: str
    fixed_version: str
    severity: str  # CRITICAL, HIGH, MEDIUM, LOW, UNKNOWN
    status: str
    purl: str = ""  # package URL of the affected package
    layer_diff_id: str = ""  # the image layer the affected package was found in


SEVERITIES = ("CRITICAL", "HIGH", "MEDIUM", "LOW", "UNKNOWN")


@dataclass(frozen=True)
class ScanDocuments:
    """The scanner's own outputs for one image, as local files until they are published."""

    report: Path  # the scanner's JSON report, as it printed it
    cyclonedx: Path  # CycloneDX SBOM (JSON)
    sarif: Path  # SARIF 2.1.0 log of the findings


@dataclass(frozen=True)
class ScanResult:
    os_family: str
    os_version: str
    packages: tuple[Package, ...]
    findings: tuple[Finding, ...]
    scanner: str
    scanner_version: str
    db_updated_at: datetime | None
    documents: ScanDocuments | None = None  # None when the scanner kept no documents

    def vulns_by_severity(self) -> dict[str, int]:
        """Unique vulnerability ids per severity (a CVE in two packages counts once)."""
        unique = {(f.vulnerability_id, f.severity) for f in self.findings}
        counts = Counter(severity for _, severity in unique)
        return {s: counts.get(s, 0) for s in SEVERITIES}

    def fixable(self) -> int:
        """Unique vulnerability ids with a fixed version available."""
        return len({f.vulnerability_id for f in self.findings if f.fixed_version})

    def packages_by_type(self) -> dict[str, int]:
        return dict(Counter(p.type for p in self.packages))


@dataclass(frozen=True)
class ProbeResult:
    startup_seconds: tuple[float, ...]  # one per repetition, in order
    idle_memory_bytes: int | None  # None when the engine reports no memory usage ...
    idle_memory_error: str | None = None  # ... and then why
    # Stages of other cells that ran on the host during the samples: none, by the probe
    # lane's rule (tasks/sessions/lanes.py); recorded so the data shows it.
    concurrent_stages: tuple[str, ...] = ()


@dataclass(frozen=True)
class CellResult:
    """Everything known about one cell after its pipeline ran (or stopped)."""

    cell: Cell
    status: Status
    host: str
    started_at: datetime
    finished_at: datetime
    attempts: int = 1
    failed_stage: Stage | None = None
    error: str | None = None
    build: BuildResult | None = None
    inspect: InspectResult | None = None
    scan: ScanResult | None = None
    probe: ProbeResult | None = None


RUN_ID_TIME = "%Y%m%dT%H%M%SZ"
# The error of a cell that had not finished when its run was interrupted.
INTERRUPTED = "interrupted: the run was stopped before this cell finished"


def stale_db_message(age_seconds: float, max_age_hours: float) -> str:
    """The one sentence every output uses for a run scanned against a stale DB."""
    return (
        f"STALE DB: the vulnerability DB was {age_seconds / 3600:.1f} h old when the run "
        f"started, older than the limit of {max_age_hours:g} h (scanner.max_db_age_hours); "
        "its counts miss what the DB has learnt since"
    )


def _aware(moment: datetime) -> datetime:
    # Naive datetimes are UTC (records are stamped with UTC).
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def new_run_id() -> str:
    """Sortable and unique: UTC start time plus a random suffix (``20261129T043141Z-e62871``)."""
    return f"{datetime.now(UTC):{RUN_ID_TIME}}-{secrets.token_hex(3)}"


def run_started(run_id: str) -> datetime | None:
    """The start time in a run id made by ``new_run_id``; None for other ids."""
    try:
        return datetime.strptime(run_id[:16], RUN_ID_TIME).replace(tzinfo=UTC)
    except ValueError:
        return None


class RunKind(StrEnum):
    BENCHMARK = "benchmark"  # every cell built, inspected, scanned and probed
    RESCAN = "rescan"  # a run's stored SBOMs scanned again against the current DB


@dataclass(frozen=True)
class VulnerabilityDb:
    """The vulnerability DB a run scanned against, as the scanner reports it."""

    version: int | None  # the DB's schema version (Trivy: metadata.json ``Version``)
    updated_at: datetime | None  # when the DB was built (Trivy: ``UpdatedAt``)


@dataclass(frozen=True)
class MachineFacts:
    """What a Docker host runs on, as it said when the run opened it (pyperf's rule:
    numbers from different machines are never compared blind). None: not known."""

    host: str
    cpu_model: str | None = None  # known for an engine on this machine only
    cpus: int | None = None
    memory_bytes: int | None = None
    kernel: str | None = None
    platform: str | None = None  # e.g. "linux/amd64"
    engine_version: str | None = None
    storage_driver: str | None = None
    builder: str | None = None  # the build tool: buildkit or legacy

    @property
    def host_class(self) -> str:
        """Stable short hash of every fact but the host's name: hosts of one class time
        alike, so timings are compared only within a class."""
        facts = [
            self.cpu_model,
            self.cpus,
            self.memory_bytes,
            self.kernel,
            self.platform,
            self.engine_version,
            self.storage_driver,
            self.builder,
        ]
        text = "|".join("" if fact is None else str(fact) for fact in facts)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class RunRecord:
    """One flow run: its identity, its configuration and every cell result."""

    run_id: str
    matrix: str
    config_hash: str
    started_at: datetime
    finished_at: datetime
    versions: dict[str, str] = field(default_factory=dict)  # basebench, docker, trivy...
    hosts: tuple[str, ...] = ()
    cells: tuple[CellResult, ...] = ()
    kind: RunKind = RunKind.BENCHMARK
    source_run_id: str | None = None  # the run whose SBOMs a rescan scanned
    db: VulnerabilityDb | None = None  # None: no cell was scanned, or the DB is unknown
    max_db_age_hours: float | None = None  # the limit the run was held to; None: no limit

    def db_age_seconds(self) -> int | None:
        """How old the DB was when the run started; None when its date is unknown."""
        if self.db is None or self.db.updated_at is None:
            return None
        started, updated = _aware(self.started_at), _aware(self.db.updated_at)
        return int((started - updated).total_seconds())

    def db_stale(self) -> bool | None:
        """True when the DB was older than ``max_db_age_hours``; None when either is unknown."""
        age = self.db_age_seconds()
        if age is None or self.max_db_age_hours is None:
            return None
        return age > self.max_db_age_hours * 3600

    def db_staleness(self) -> str | None:
        """One line saying the DB is stale, for the summary and the report; None when fresh."""
        if not self.db_stale():
            return None
        age = self.db_age_seconds()
        assert age is not None and self.max_db_age_hours is not None
        return stale_db_message(age, self.max_db_age_hours)

    # What decides which runs compare (``tasks.dataset.reader.comparable``): the
    # ``--only`` filters ("" = none) and the registries images came from (the mirrors).
    filters: str = ""
    image_sources: str = ""
    machines: tuple[MachineFacts, ...] = ()

    def host_class(self, host: str) -> str | None:
        """The host class of ``host`` in this run; None when its facts are unknown."""
        for machine in self.machines:
            if machine.host == host:
                return machine.host_class
        return None

    def cell_counts(self) -> dict[str, int]:
        """``cells`` and ``cells_<status>`` for every status: the run's tally, everywhere."""
        counts = Counter(str(result.status) for result in self.cells)
        return {"cells": len(self.cells)} | {f"cells_{s}": counts[str(s)] for s in Status}
