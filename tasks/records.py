"""Plain data produced by each stage of a cell, and the cell record that carries them.

Every writer (Parquet, the terminal table, Prefect artifacts) reads these records; no
stage formats output itself. Records are frozen: a stage returns a new value.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


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


@dataclass(frozen=True)
class BuildResult:
    run_id: str
    image_id: str
    tag: str
    build_seconds: float
    builder_digest: str | None
    base_digest: str | None


@dataclass(frozen=True)
class InspectResult:
    size_bytes: int
    compressed_bytes: int
    layers: int
    user: str
    runs_as_root: bool
    has_shell: bool
    has_package_manager: bool
    setuid_files: int
    files: int
    base_forged: bool
    builder_forged: bool


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    source_name: str
    type: str  # trivy's result type: debian, alpine, gobinary, ...


@dataclass(frozen=True)
class Finding:
    """One vulnerability in one installed package."""

    vulnerability_id: str
    package: str
    installed_version: str
    fixed_version: str
    severity: str  # CRITICAL, HIGH, MEDIUM, LOW, UNKNOWN
    status: str


SEVERITIES = ("CRITICAL", "HIGH", "MEDIUM", "LOW", "UNKNOWN")


@dataclass(frozen=True)
class ScanResult:
    os_family: str
    os_version: str
    packages: tuple[Package, ...]
    findings: tuple[Finding, ...]
    scanner: str
    scanner_version: str
    db_updated_at: datetime | None

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
    idle_memory_bytes: int


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

    def cell_counts(self) -> dict[str, int]:
        """``cells`` and ``cells_<status>`` for every status: the run's tally, everywhere."""
        counts = Counter(str(result.status) for result in self.cells)
        return {"cells": len(self.cells)} | {f"cells_{s}": counts[str(s)] for s in Status}
