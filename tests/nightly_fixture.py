"""Thirty synthetic nights of the nightly matrix (every language), for the report's tests.

The cells are the real ones: ``configs/nightly.yaml`` expanded by ``tasks.matrix``. Their
measurements are made up but shaped like this machine's (sizes of the forged images,
startup around 0.25 s with a few percent of noise, five samples a night), and they go
through the real write path (``publish`` into a result store), so the report reads them
back exactly as it reads a real nightly history. Deterministic: a seeded generator.

Known events, for tests to find:

- night 10 (2024-05-10): CVE-2024-7000 (HIGH) appears in every bookworm-based base
  (inherited from the base: the scanner's database learned of it);
- night 15: the Go 1.25.5 binary grows by 600 kB (every Go 1.25.5 cell, exact change);
- night 18: Python 3.11.2 on distroless-python3-debian12 starts 20 % slower (a step
  that E-divisive has to find in the noise);
- night 20: bookworm-slim's libssl3 moves to a new version (a package changed);
- the last night: Java 25 on distroless-java25-debian13 fails at the probe stage.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tasks.matrix import expand, load_matrix
from tasks.records import (
    BuildResult,
    Cell,
    CellResult,
    Finding,
    InspectResult,
    Package,
    ProbeResult,
    RunRecord,
    ScanResult,
    Stage,
    Status,
)

ROOT = Path(__file__).resolve().parents[1]
NIGHTS = 30
START = datetime(2024, 5, 1, 2, 0, tzinfo=UTC)
BASE_LAYER = "sha256:" + "a" * 64
APP_LAYER = "sha256:" + "b" * 64

# Uncompressed size of each base family, bytes (forged stand-ins as measured here).
BASE_SIZES = {
    "bookworm": 116_000_000,
    "bookworm-slim": 74_000_000,
    "trixie": 120_000_000,
    "trixie-slim": 78_000_000,
    "alpine": 2_800_000,
    "distroless-static": 2_100_000,
    "distroless-base": 21_000_000,
    "distroless-cc": 24_000_000,
    "distroless-python3": 55_000_000,
    "distroless-nodejs18": 118_000_000,
    "distroless-nodejs20": 124_000_000,
    "distroless-java17": 190_000_000,
    "distroless-java21": 205_000_000,
    "distroless-java25": 212_000_000,
}
BUILDER_SIZES = {
    "go": 914_000_000,
    "python": 132_000_000,
    "node": 196_000_000,
    "java": 470_000_000,
    "rust": 720_000_000,
}
APP_SIZES = {"go": 6_800_000, "rust": 1_200_000, "python": 9_000, "node": 11_000, "java": 48_000}
STARTUP = {"go": 0.25, "rust": 0.24, "python": 0.42, "node": 0.47, "java": 0.88}
# Debian packages of each family (how many) and the CVEs found in them (how many).
PACKAGES = {
    "builder": 60,
    "full": 40,
    "slim": 24,
    "alpine": 14,
    "static": 5,
    "base": 8,
    "runtime": 16,
}
CVES = {"builder": 36, "full": 14, "slim": 8, "alpine": 1, "static": 0, "base": 3, "runtime": 5}
# Files no package owns in each family, before the build adds its program (one file): the
# forged bookworm, alpine and distroless static and base as measured, the others alike.
UNOWNED = {"builder": 10_604, "full": 65, "slim": 62, "alpine": 3, "static": 15, "base": 16}
SEVERITY_CYCLE = ("LOW", "MEDIUM", "HIGH", "LOW", "MEDIUM", "CRITICAL", "LOW", "UNKNOWN")

DB_CVE_NIGHT, GROW_NIGHT, SLOW_NIGHT, BUMP_NIGHT = 10, 15, 18, 20
SLOW_CELL = ("python", "3.11.2", "distroless-python3-debian12")
GROWN_GO = "1.25.5"
FAILING_CELL = ("java", "25", "distroless-java25-debian13")


def nightly_cells() -> list[Cell]:
    """The cells of ``configs/nightly.yaml`` (79, over five languages)."""
    return expand(load_matrix(ROOT / "configs" / "nightly.yaml"))


def family(base: str) -> str:
    """``distroless-static-debian12`` -> ``distroless-static``; others unchanged."""
    return base.rsplit("-debian", 1)[0]


def content_kind(cell: Cell) -> str:
    if cell.variant == "single-stage":
        return "builder"
    name = family(cell.base)
    if name in ("bookworm", "trixie"):
        return "full"
    if name.endswith("-slim"):
        return "slim"
    if name in ("alpine", "distroless-static", "distroless-base"):
        return name.removeprefix("distroless-")
    if name == "distroless-cc":
        return "base"
    return "runtime"


def _jitter(key: str, spread: float) -> float:
    """A stable factor in 1 +- spread for ``key`` (cells differ a little, nights do not)."""
    digest = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16)
    return 1 + spread * (digest / 0xFFFFFFFF * 2 - 1)


def _bookworm_based(cell: Cell) -> bool:
    return cell.variant == "single-stage" or "bookworm" in cell.base or "debian12" in cell.base


def _packages(cell: Cell, night: int) -> tuple[Package, ...]:
    kind = content_kind(cell)
    prefix = "apk" if kind == "alpine" else "deb"
    found = []
    for n in range(PACKAGES[kind]):
        name = "libssl3" if n == 0 else f"lib{kind}{n}"
        version = "3.0.11-1~deb12u2"
        if n == 0 and family(cell.base) == "bookworm-slim" and night >= BUMP_NIGHT:
            version = "3.0.11-1~deb12u3"
        elif n:
            version = f"1.{n}.0-1"
        purl = f"pkg:{prefix}/debian/{name}@{version}"
        found.append(Package(name, version, name, "debian", purl, BASE_LAYER))
    if cell.language in ("go", "rust"):
        found.append(Package("stdlib", cell.toolchain_version, "stdlib", "gobinary", "", APP_LAYER))
    return tuple(found)


def _findings(cell: Cell, packages: tuple[Package, ...], night: int) -> tuple[Finding, ...]:
    kind = content_kind(cell)
    found = []
    for n in range(CVES[kind]):
        package = packages[n % max(len(packages) - 1, 1)]
        severity = SEVERITY_CYCLE[n % len(SEVERITY_CYCLE)]
        found.append(
            Finding(
                f"CVE-2024-{1000 + n:04d}",
                package.name,
                package.version,
                "",
                severity,
                "affected",
                package.purl,
                BASE_LAYER,
            )
        )
    if night >= DB_CVE_NIGHT and _bookworm_based(cell) and kind != "static":
        found.append(
            Finding(
                "CVE-2024-7000",
                "libssl3",
                "3.0.11-1~deb12u2",
                "",
                "HIGH",
                "affected",
                "",
                BASE_LAYER,
            )
        )
    if cell.language == "go" and cell.toolchain_version == "1.22.10":
        found.append(
            Finding("CVE-2024-6000", "stdlib", "1.22.10", "1.22.11", "HIGH", "fixed", "", APP_LAYER)
        )
    return tuple(found)


def _size(cell: Cell, night: int) -> int:
    base = (
        BUILDER_SIZES[cell.language]
        if cell.variant == "single-stage"
        else BASE_SIZES[family(cell.base)]
    )
    app = APP_SIZES[cell.language] * _jitter(cell.toolchain_version, 0.1)
    if cell.language == "go" and cell.toolchain_version == GROWN_GO and night >= GROW_NIGHT:
        app += 600_000
    return int(base + app)


def _startup(cell: Cell, night: int, rng: random.Random) -> tuple[float, ...]:
    level = STARTUP[cell.language] * _jitter(cell.cell_id, 0.08)
    if (cell.language, cell.toolchain_version, cell.base) == SLOW_CELL and night >= SLOW_NIGHT:
        level *= 1.2
    return tuple(round(level * (1 + rng.gauss(0, 0.04)), 4) for _ in range(5))


def cell_result(cell: Cell, night: int, started: datetime, rng: random.Random) -> CellResult:
    """One cell's result on night ``night`` (0-based)."""
    size = _size(cell, night)
    packages = _packages(cell, night)
    failing = (cell.language, cell.toolchain_version, cell.base) == FAILING_CELL
    last = night == NIGHTS - 1
    root = cell.variant == "single-stage"
    return CellResult(
        cell=cell,
        status=Status.FAILED if failing and last else Status.OK,
        host="local",
        started_at=started,
        finished_at=started + timedelta(seconds=40),
        failed_stage=Stage.PROBE if failing and last else None,
        error="probe: no HTTP response within 30 s" if failing and last else None,
        build=BuildResult(
            run_id=f"night-{night + 1:02d}",
            image_id=f"sha256:{cell.cell_id}{night:02d}",
            tag=f"bb/{cell.cell_id}",
            build_seconds=round(30 * _jitter(cell.cell_id + "build", 0.3), 2),
            builder_digest="sha256:builder",
            base_digest="sha256:base",
            base_layers=(BASE_LAYER,),
        ),
        inspect=InspectResult(
            size_bytes=size,
            compressed_bytes=int(size * 0.38),
            layers=3 if cell.variant == "multi-stage" else 8,
            user="root" if root else "nonroot",
            runs_as_root=root,
            has_shell=content_kind(cell) in ("builder", "full", "slim", "alpine"),
            has_package_manager=content_kind(cell) in ("builder", "full", "slim"),
            setuid_files=2 if root else 0,
            files=1000 + len(packages) * 40,
            base_forged=True,
            builder_forged=True,
            unowned_files=UNOWNED.get(content_kind(cell), 16) + 1,
        ),
        scan=ScanResult(
            os_family="alpine" if content_kind(cell) == "alpine" else "debian",
            os_version="3.20.3" if content_kind(cell) == "alpine" else "12.5",
            packages=packages,
            findings=_findings(cell, packages, night),
            scanner="trivy",
            scanner_version="0.76.0",
            db_updated_at=started - timedelta(hours=20),
        ),
        probe=None
        if failing and last
        else ProbeResult(
            startup_seconds=_startup(cell, night, rng),
            idle_memory_bytes=int(1_400_000 * _jitter(cell.cell_id + "mem", 0.2))
            + (40_000_000 if cell.language == "java" else 0),
        ),
    )


def nightly_runs(nights: int = NIGHTS, seed: int = 2024) -> list[RunRecord]:
    """``nights`` runs of the nightly matrix, one a day from 2024-05-01, oldest first."""
    cells = nightly_cells()
    rng = random.Random(seed)
    runs = []
    for night in range(nights):
        started = START + timedelta(days=night)
        run_id = f"night-{night + 1:02d}"
        results = tuple(cell_result(c, night, started, rng) for c in cells)
        results = tuple(
            replace(r, build=replace(r.build, run_id=run_id)) if r.build else r for r in results
        )
        runs.append(
            RunRecord(
                run_id=run_id,
                matrix="nightly",
                config_hash="fedcba9876543210",
                started_at=started,
                finished_at=started + timedelta(minutes=50),
                versions={"basebench": "0.1.0", "trivy": "0.76.0", "docker": "20.10.24"},
                hosts=("local",),
                cells=results,
            )
        )
    return runs
