"""Hand-made ``RunRecord``s for tests: no Docker, real record types.

The defaults describe one run of the demo matrix with four cells: an ok distroless-base
cell with four findings, an ok single-stage cell with unstable startup times, a cell
whose scan failed and a skipped alpine cell. Keyword arguments change one thing at a
time (a grown image, one more CVE, other startup samples) for compare and report tests.

Every built image has one base layer (``BASE_LAYER``, the base's, recorded in
``BuildResult.base_layers``) and one layer the build added (``APP_LAYER``): the Debian
packages and their findings are inherited from the base, the Go stdlib is added.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pandas as pd

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

if TYPE_CHECKING:
    from tasks.render.html import ReportInput

T0 = datetime(2024, 5, 1, 2, 0, tzinfo=UTC)
REGISTRY = "127.0.0.1:5000"
BUILDER = f"{REGISTRY}/library/golang:1.22.10-bookworm"

BASE_LAYER = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
APP_LAYER = "sha256:2222222222222222222222222222222222222222222222222222222222222222"


def deb_purl(name: str, version: str) -> str:
    """A Debian 12.5 package URL as Trivy writes it."""
    return f"pkg:deb/debian/{name}@{version.replace('+', '%2B')}?arch=amd64&distro=debian-12.5"


def deb(name: str, version: str, source: str) -> Package:
    """A Debian package inherited from the base layer."""
    return Package(name, version, source, "debian", deb_purl(name, version), BASE_LAYER)


def finding(
    vuln_id: str, package: str, version: str, fixed: str, severity: str, status: str
) -> Finding:
    """A finding in a Debian package of the base layer."""
    return Finding(
        vuln_id, package, version, fixed, severity, status, deb_purl(package, version), BASE_LAYER
    )


STDLIB_PURL = "pkg:golang/stdlib@v1.22.10"
DEBIAN_PACKAGES = (
    deb("libc6", "2.36-9+deb12u4", "glibc"),
    deb("libc-bin", "2.36-9+deb12u4", "glibc"),
    deb("libssl3", "3.0.11-1~deb12u2", "openssl"),
    Package("stdlib", "1.22.10", "stdlib", "gobinary", STDLIB_PURL, APP_LAYER),
)
FINDINGS = (
    # One glibc CVE hits libc6 and libc-bin: one unique id, two findings.
    finding("CVE-2024-0001", "libc6", "2.36-9+deb12u4", "2.36-9+deb12u7", "CRITICAL", "fixed"),
    finding("CVE-2024-0001", "libc-bin", "2.36-9+deb12u4", "2.36-9+deb12u7", "CRITICAL", "fixed"),
    finding("CVE-2024-0002", "libssl3", "3.0.11-1~deb12u2", "", "HIGH", "affected"),
    finding("CVE-2024-0003", "libc6", "2.36-9+deb12u4", "", "LOW", "will_not_fix"),
)
STABLE = (0.25, 0.22, 0.27, 0.24, 0.26)
UNSTABLE = (0.2, 0.5, 0.3)


def make_cell(base: str, variant: str = "multi-stage") -> Cell:
    """A go-hello cell on ``base``; its cell_id is ``id-<base>``."""
    return Cell(
        cell_id=f"id-{base}",
        app="go-hello",
        language="go",
        toolchain_version="1.22.10",
        base=base,
        variant=variant,
        builder_ref=BUILDER,
        base_ref=BUILDER if variant == "single-stage" else f"{REGISTRY}/distroless/{base}",
        cgo_enabled=base != "distroless-static",
    )


def make_inspect(size: int, user: str = "nonroot", unowned: int | None = None) -> InspectResult:
    """Inspection of an image of ``size`` bytes (a third of it compressed) with ``unowned``
    files no package owns (None: not counted, as in runs before that was counted)."""
    return InspectResult(
        size_bytes=size,
        compressed_bytes=size // 3,
        layers=4,
        user=user,
        runs_as_root=user == "root",
        has_shell=False,
        has_package_manager=False,
        setuid_files=2 if user == "root" else 0,  # su and passwd on the Debian-based images
        files=1234,
        base_forged=True,
        builder_forged=True,
        setuid_or_setgid_files=3 if user == "root" else 0,  # ... and setgid chage
        unowned_files=unowned,
    )


def make_scan(packages: tuple[Package, ...], findings: tuple[Finding, ...]) -> ScanResult:
    """A trivy scan of a Debian 12 image."""
    return ScanResult(
        os_family="debian",
        os_version="12.5",
        packages=packages,
        findings=findings,
        scanner="trivy",
        scanner_version="0.76.0",
        db_updated_at=datetime(2024, 4, 30, 6, 0),  # naive: taken as UTC
    )


def ok_result(
    base: str,
    size: int,
    *,
    variant: str = "multi-stage",
    findings: tuple[Finding, ...] = (),
    packages: tuple[Package, ...] = DEBIAN_PACKAGES,
    startup: tuple[float, ...] = STABLE,
    memory: int = 3_145_728,
    started_at: datetime = T0,
    user: str = "nonroot",
    host: str = "local",
    image_id: str | None = None,
    unowned: int | None = None,
) -> CellResult:
    """An ok cell on ``base`` with an image of ``size`` bytes and the given measurements."""
    return CellResult(
        cell=make_cell(base, variant),
        status=Status.OK,
        host=host,
        started_at=started_at,
        finished_at=started_at + timedelta(seconds=40),
        build=BuildResult(
            run_id="run-1",
            image_id=image_id or f"sha256:{base}",
            tag=f"bb/{base}",
            build_seconds=31.5,
            builder_digest="sha256:bld",
            base_digest="sha256:base",
            base_layers=(BASE_LAYER,),
        ),
        inspect=make_inspect(size, user=user, unowned=unowned),
        scan=make_scan(packages, findings),
        probe=ProbeResult(startup_seconds=startup, idle_memory_bytes=memory),
    )


def ok_cell() -> CellResult:
    return ok_result("distroless-base", 26_000_000, findings=FINDINGS, image_id="sha256:aaa")


def unstable_cell() -> CellResult:
    return CellResult(
        cell=make_cell("single-stage", variant="single-stage"),
        status=Status.OK,
        host="tls-1",
        started_at=T0,
        finished_at=T0 + timedelta(seconds=90),
        attempts=2,
        build=BuildResult(
            run_id="run-1",
            image_id="sha256:bbb",
            tag="bb/bbb",
            build_seconds=80.0,
            builder_digest="sha256:bld",
            base_digest="sha256:bld",
            base_layers=(BASE_LAYER,),
            concurrent_stages=("inspect", "save", "scan"),  # another cell analysed meanwhile
        ),
        inspect=make_inspect(395_000_000, user="root"),
        scan=make_scan(DEBIAN_PACKAGES[:2], ()),
        probe=ProbeResult(startup_seconds=UNSTABLE, idle_memory_bytes=4_000_000),
    )


def failed_cell() -> CellResult:
    return CellResult(
        cell=make_cell("bookworm"),
        status=Status.FAILED,
        host="local",
        started_at=T0,
        finished_at=T0 + timedelta(seconds=20),
        attempts=3,
        failed_stage=Stage.SCAN,
        error="scan: trivy exited 1: database not found",
        build=BuildResult(
            run_id="run-1",
            image_id="sha256:ccc",
            tag="bb/ccc",
            build_seconds=12.0,
            builder_digest=None,
            base_digest=None,
        ),
        inspect=make_inspect(120_000_000, user="root"),
    )


def skipped_cell() -> CellResult:
    return CellResult(
        cell=make_cell("alpine"),
        status=Status.SKIPPED,
        host="",
        started_at=T0,
        finished_at=T0,
        error="alpine: no registry serves docker.io/library/alpine:3.20 here",
    )


def make_run(
    run_id: str = "run-1",
    started_at: datetime = T0,
    cells: tuple[CellResult, ...] | None = None,
    matrix: str = "demo",
) -> RunRecord:
    """A run of ``cells`` (default: ok, unstable, failed and skipped cells)."""
    return RunRecord(
        run_id=run_id,
        matrix=matrix,
        config_hash="0123456789abcdef",
        started_at=started_at,
        finished_at=started_at + timedelta(minutes=5),
        versions={"basebench": "0.1.0", "trivy": "0.76.0", "docker": "20.10.24"},
        hosts=("local", "tls-1"),
        cells=(ok_cell(), unstable_cell(), failed_cell(), skipped_cell())
        if cells is None
        else cells,
    )


# The classic comparison, forged: three ok cells whose sizes and CVEs differ a lot.
NIGHTLY_CRITICAL = finding(
    "CVE-2024-1000", "libc6", "2.36-9+deb12u4", "2.36-9+deb12u9", "CRITICAL", "fixed"
)
NIGHTLY_HIGH = finding("CVE-2024-2000", "libssl3", "3.0.11-1~deb12u2", "", "HIGH", "affected")
NIGHTLY_NEW_HIGH = finding(
    "CVE-2024-3000", "libssl3", "3.0.11-1~deb12u2", "3.0.11-1~deb12u3", "HIGH", "fixed"
)
NIGHTLY_MEDIUM = finding("CVE-2024-4000", "libc-bin", "2.36-9+deb12u4", "", "MEDIUM", "affected")
NIGHTLY_LOW = finding("CVE-2024-5000", "libc6", "2.36-9+deb12u4", "", "LOW", "will_not_fix")
# A Go standard library CVE: in the binary the build added, not in anything inherited.
NIGHTLY_STDLIB_HIGH = Finding(
    "CVE-2024-6000", "stdlib", "1.22.10", "1.22.11", "HIGH", "fixed", STDLIB_PURL, APP_LAYER
)

NIGHTLY_SIZES = {
    "single-stage": 914_000_000,
    "bookworm": 120_000_000,
    "distroless-static": 6_900_000,
}
# Files no package owns: the golang builder's Go tree and more, the bases' set-up files
# (as measured on the forged images), and the binary the build added.
NIGHTLY_UNOWNED = {"single-stage": 10_605, "bookworm": 66, "distroless-static": 16}


def nightly_run(
    run_id: str,
    started_at: datetime,
    *,
    grow: dict[str, int] | None = None,
    extra_findings: dict[str, tuple[Finding, ...]] | None = None,
    startup: dict[str, tuple[float, ...]] | None = None,
    bases: tuple[str, ...] = tuple(NIGHTLY_SIZES),
) -> RunRecord:
    """A three-cell nightly run; ``grow`` adds bytes, ``extra_findings`` adds CVEs per base."""
    grow, extra_findings, startup = grow or {}, extra_findings or {}, startup or {}
    findings = {
        "single-stage": (NIGHTLY_CRITICAL, NIGHTLY_HIGH, NIGHTLY_MEDIUM, NIGHTLY_LOW),
        "bookworm": (NIGHTLY_HIGH, NIGHTLY_LOW),
        "distroless-static": (),
    }
    packages = {
        "single-stage": DEBIAN_PACKAGES,
        "bookworm": DEBIAN_PACKAGES[:3],
        "distroless-static": DEBIAN_PACKAGES[3:],
    }
    cells = tuple(
        ok_result(
            base,
            NIGHTLY_SIZES[base] + grow.get(base, 0),
            variant="single-stage" if base == "single-stage" else "multi-stage",
            findings=findings[base] + extra_findings.get(base, ()),
            packages=packages[base],
            startup=startup.get(base, STABLE),
            memory=2_000_000 + len(packages[base]) * 500_000,
            started_at=started_at,
            unowned=NIGHTLY_UNOWNED[base],
        )
        for base in bases
    )
    return make_run(run_id=run_id, started_at=started_at, cells=cells, matrix="nightly")


def report_input(head: RunRecord, *earlier: RunRecord, compare: bool = False) -> ReportInput:
    """What ``load_report_input`` would read back after publishing ``earlier`` runs and then
    ``head`` (oldest first); ``compare`` adds the verdict against the run before ``head``."""
    from tasks.analysis.compare import RunData, compare_runs
    from tasks.dataset.schema import build_tables
    from tasks.render.diffs import RunContents
    from tasks.render.html import ReportInput

    tables = [{n: t.to_pandas() for n, t in build_tables(r).items()} for r in (*earlier, head)]

    def run_contents(run: RunRecord, t: dict[str, pd.DataFrame]) -> RunContents:
        return RunContents(run.run_id, t["results"], t["packages"], t["vulnerabilities"])

    shown = run_contents(head, tables[-1])
    previous = run_contents(earlier[-1], tables[-2]) if earlier else None
    comparison = None
    if compare and earlier:
        old, new = tables[-2], tables[-1]
        comparison = compare_runs(
            RunData(earlier[-1].run_id, old["results"], old["samples"], old["vulnerabilities"]),
            RunData(head.run_id, new["results"], new["samples"], new["vulnerabilities"]),
        )
    history = pd.concat([t["results"] for t in tables], ignore_index=True)
    runs = pd.concat([t["runs"] for t in tables], ignore_index=True)
    return ReportInput(shown, history, runs, comparison, previous)
