"""Why vulnerability counts changed: the DB, the image or the scanner (hand-made runs)."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pandas as pd

from tasks.analysis.attribution import attribution_lines
from tasks.analysis.compare import Comparison, RunData, compare_runs
from tasks.dataset.schema import build_tables
from tasks.records import Finding, Package, RunRecord, ScanResult
from tests.records_factory import (
    BASE_LAYER,
    DEBIAN_PACKAGES,
    T0,
    deb,
    deb_purl,
    finding,
    make_run,
    ok_result,
)

DAY = timedelta(days=1)
LIBC = "2.36-9+deb12u4"
OPENSSL = "3.0.11-1~deb12u2"
CRIT_LIBC = (
    finding("CVE-2024-0001", "libc6", LIBC, "", "CRITICAL", "affected"),
    finding("CVE-2024-0001", "libc-bin", LIBC, "", "CRITICAL", "affected"),
)
HIGH_SSL = finding("CVE-2024-0002", "libssl3", OPENSSL, "", "HIGH", "affected")
LOW_LIBC = finding("CVE-2024-0003", "libc6", LIBC, "", "LOW", "affected")


def run(
    run_id: str,
    findings: tuple[Finding, ...],
    packages: tuple[Package, ...] = DEBIAN_PACKAGES,
    scanner_version: str = "0.76.0",
) -> RunRecord:
    result = ok_result("bookworm", 120_000_000, findings=findings, packages=packages)
    assert result.scan is not None
    scan: ScanResult = dataclasses.replace(result.scan, scanner_version=scanner_version)
    day = T0 + DAY * int(run_id[-1])
    return make_run(run_id=run_id, started_at=day, cells=(dataclasses.replace(result, scan=scan),))


def data(record: RunRecord, with_packages: bool = True) -> RunData:
    frames = {name: table.to_pandas() for name, table in build_tables(record).items()}
    packages: pd.DataFrame | None = frames["packages"] if with_packages else None
    return RunData(
        record.run_id, frames["results"], frames["samples"], frames["vulnerabilities"], packages
    )


def compare(base: RunRecord, head: RunRecord) -> Comparison:
    return compare_runs(data(base), data(head))


def causes(comparison: Comparison) -> list[tuple[str, str, str, str]]:
    return [
        (c.vulnerability_id, c.change, c.cause, c.reason) for c in comparison.vulnerability_changes
    ]


def test_same_packages_new_advisory_is_the_db_and_no_regression() -> None:
    result = compare(run("r1", (LOW_LIBC,)), run("r2", (LOW_LIBC, HIGH_SSL)))
    assert causes(result) == [("CVE-2024-0002", "added", "db", "advisory added")]
    (change,) = result.changes
    assert (change.kind, change.regression) == ("new-cve", False)
    assert change.summary == (
        "new HIGH CVE-2024-0002 in libssl3, inherited from the base "
        "[DB changed: advisory added; not an image regression]"
    )
    assert change.detail["cause"] == "db"
    assert result.regressed is False


def test_withdrawn_and_reseveritied_advisories_are_the_db() -> None:
    raised = dataclasses.replace(HIGH_SSL, severity="CRITICAL")
    result = compare(run("r1", (*CRIT_LIBC, HIGH_SSL, LOW_LIBC)), run("r2", (raised,)))
    assert causes(result) == [
        ("CVE-2024-0001", "removed", "db", "advisory withdrawn"),
        ("CVE-2024-0003", "removed", "db", "advisory withdrawn"),
        ("CVE-2024-0002", "severity", "db", "advisory changed: severity HIGH -> CRITICAL"),
    ]
    assert [(c.kind, c.regression) for c in result.changes] == [
        ("fixed-cve", False),
        ("cve-severity", False),
    ]
    assert result.to_dict()["vulnerability_changes_by_cause"]["db"] == {
        "added": 0,
        "removed": 2,
        "severity": 1,
    }


def test_an_added_package_is_the_image_and_a_regression() -> None:
    zlib = deb("zlib1g", "1:1.2.13", "zlib")
    zlib_high = finding("CVE-2024-0009", "zlib1g", "1:1.2.13", "", "HIGH", "affected")
    result = compare(
        run("r1", (LOW_LIBC,)), run("r2", (LOW_LIBC, zlib_high), (*DEBIAN_PACKAGES, zlib))
    )
    assert causes(result) == [
        ("CVE-2024-0009", "added", "image", "package zlib1g 1:1.2.13 added"),
    ]
    (change,) = result.changes
    assert change.regression is True
    assert change.summary.endswith("[image changed: package zlib1g 1:1.2.13 added]")


def test_an_upgraded_package_is_the_image_both_ways() -> None:
    newer = "2.36-9+deb12u9"
    upgraded = tuple(
        deb(p.name, newer, p.source_name) if p.source_name == "glibc" else p
        for p in DEBIAN_PACKAGES
    )
    fixed_by_upgrade = compare(run("r1", (*CRIT_LIBC, HIGH_SSL)), run("r2", (HIGH_SSL,), upgraded))
    assert causes(fixed_by_upgrade) == [
        ("CVE-2024-0001", "removed", "image", f"package libc-bin {LIBC} -> {newer}; "
         f"package libc6 {LIBC} -> {newer}"),
    ]  # fmt: skip
    new_in_upgrade = (
        Finding("CVE-2024-0005", "libc6", newer, "", "HIGH", "affected",
                deb_purl("libc6", newer), BASE_LAYER),
    )  # fmt: skip
    broken_by_upgrade = compare(run("r1", ()), run("r2", new_in_upgrade, upgraded))
    assert causes(broken_by_upgrade) == [
        ("CVE-2024-0005", "added", "image", f"package libc6 {LIBC} -> {newer}"),
    ]
    assert broken_by_upgrade.regressed is True


def test_same_packages_with_another_scanner_version_is_the_scanner() -> None:
    result = compare(
        run("r1", (LOW_LIBC,)), run("r2", (LOW_LIBC, HIGH_SSL), scanner_version="0.77.0")
    )
    assert causes(result) == [
        ("CVE-2024-0002", "added", "scanner", "scanner trivy 0.76.0 -> 0.77.0"),
    ]
    assert result.regressed is False
    assert result.changes[0].summary.endswith(
        "[scanner changed: scanner trivy 0.76.0 -> 0.77.0; not an image regression]"
    )


def test_without_packages_the_cause_is_unknown_and_the_old_verdict_stands() -> None:
    base, head = run("r1", (LOW_LIBC,)), run("r2", (LOW_LIBC, HIGH_SSL))
    result = compare_runs(data(base, with_packages=False), data(head, with_packages=False))
    assert causes(result) == [
        ("CVE-2024-0002", "added", "unknown", "packages of the other run unknown")
    ]
    assert result.regressed is True
    assert result.changes[0].summary == "new HIGH CVE-2024-0002 in libssl3, inherited from the base"
    assert "cause" not in result.changes[0].detail
    assert attribution_lines(list(result.vulnerability_changes)) == []


def test_attribution_lines_count_by_cause() -> None:
    zlib = deb("zlib1g", "1:1.2.13", "zlib")
    zlib_high = finding("CVE-2024-0009", "zlib1g", "1:1.2.13", "", "HIGH", "affected")
    result = compare(
        run("r1", (LOW_LIBC,)), run("r2", (HIGH_SSL, zlib_high), (*DEBIAN_PACKAGES, zlib))
    )
    assert attribution_lines(list(result.vulnerability_changes)) == [
        "vulnerability changes by cause: DB changed 2 (1 added, 1 gone); image changed 1 (1 added)",
        "2 change(s) made by the DB or the scanner alone, with the same packages: "
        "not image regressions",
    ]
    assert attribution_lines([]) == []
