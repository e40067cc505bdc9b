"""Why a cell's vulnerability counts changed between two runs: the DB, the image or the scanner.

Counts are of unique vulnerability ids per severity, so each change is one id of one
cell that appeared, disappeared or changed severity. Its cause, first match wins:

1. **image**: a package the finding is in (name and installed version) is not in the
   other run's packages of that cell: a package was added, removed or upgraded;
2. **scanner**: the packages are the same but the scanner's version differs;
3. **db**: same packages, same scanner: the vulnerability DB changed (an advisory was
   added, withdrawn, or its severity changed).

A severity change is never the image's (an image has no severities). When a run's
packages are unknown the cause is ``unknown``. Only an ``image`` (or ``unknown``) change
can be an image regression; the report says so for the rest.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

from tasks.records import cell_label

IMAGE, DB, SCANNER, UNKNOWN = "image", "db", "scanner", "unknown"
CAUSES = (DB, IMAGE, SCANNER, UNKNOWN)
CAUSE_LABELS = {
    DB: "DB changed",
    IMAGE: "image changed",
    SCANNER: "scanner changed",
    UNKNOWN: "cause unknown",
}
# What happened to the vulnerability id in the head run.
ADDED, REMOVED, SEVERITY = "added", "removed", "severity"
CHANGES = (ADDED, REMOVED, SEVERITY)

PackageKey = tuple[str, str]  # (name, installed version)


@dataclass(frozen=True)
class Found:
    """One vulnerability id in one cell: its severity and the packages it is in."""

    severity: str
    packages: frozenset[PackageKey]


@dataclass(frozen=True)
class VulnerabilityChange:
    """One vulnerability id of one cell that appeared, disappeared or changed severity."""

    cell_id: str
    cell: str
    vulnerability_id: str
    change: str  # added, removed, severity
    cause: str  # db, image, scanner, unknown
    reason: str  # e.g. "advisory added", "libc6 2.36-9 -> 2.36-10"
    severity_before: str | None
    severity_after: str | None
    packages: tuple[str, ...]

    @property
    def image_regression_possible(self) -> bool:
        """False when the DB or the scanner made this change: never the image's fault."""
        return self.cause in (IMAGE, UNKNOWN)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def findings_of(vulnerabilities: pd.DataFrame, cell_id: str) -> dict[str, Found]:
    """vulnerability id -> its severity and (package, version) pairs in one cell."""
    rows = vulnerabilities[vulnerabilities["cell_id"] == cell_id]
    found: dict[str, Found] = {}
    for vuln_id, group in rows.groupby("vulnerability_id", sort=True):
        pairs = zip(group["package"], group["installed_version"], strict=True)
        found[str(vuln_id)] = Found(
            str(group["severity"].iloc[0]), frozenset((str(p), str(v)) for p, v in pairs)
        )
    return found


def packages_of(packages: pd.DataFrame | None, cell_id: str) -> frozenset[PackageKey] | None:
    """(name, version) of every package of one cell; None when the run's packages are unknown."""
    if packages is None:
        return None
    rows = packages[packages["cell_id"] == cell_id]
    return frozenset(zip(rows["name"].astype(str), rows["version"].astype(str), strict=True))


def attribute_cell(
    old: Mapping[str, Any],
    new: Mapping[str, Any],
    before: dict[str, Found],
    after: dict[str, Found],
    old_packages: frozenset[PackageKey] | None,
    new_packages: frozenset[PackageKey] | None,
) -> list[VulnerabilityChange]:
    """Every vulnerability change of one cell (``old`` and ``new`` are its results rows),
    with its cause; ids in order, added before removed before severity changes."""
    scanner = _scanner_change(old, new)
    label = cell_label(new)

    def change(
        vuln_id: str, kind: str, cause: str, reason: str, found: Found, was: str | None
    ) -> VulnerabilityChange:
        now = None if kind == REMOVED else found.severity
        if kind == REMOVED:
            was = found.severity
        return VulnerabilityChange(
            str(new["cell_id"]), label, vuln_id, kind, cause, reason, was, now,
            tuple(sorted({name for name, _ in found.packages})),
        )  # fmt: skip

    changes: list[VulnerabilityChange] = []
    for vuln_id in sorted(after.keys() - before.keys()):
        cause, reason = _cause(after[vuln_id], old_packages, scanner, ADDED)
        changes.append(change(vuln_id, ADDED, cause, reason, after[vuln_id], None))
    for vuln_id in sorted(before.keys() - after.keys()):
        cause, reason = _cause(before[vuln_id], new_packages, scanner, REMOVED)
        changes.append(change(vuln_id, REMOVED, cause, reason, before[vuln_id], None))
    for vuln_id in sorted(before.keys() & after.keys()):
        was, now = before[vuln_id].severity, after[vuln_id].severity
        if was != now:
            cause, reason = (SCANNER, scanner) if scanner else (DB, "advisory changed")
            reason = f"{reason}: severity {was} -> {now}"
            changes.append(change(vuln_id, SEVERITY, cause, reason, after[vuln_id], was))
    return changes


def _scanner_change(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    """``"scanner trivy 0.75.0 -> 0.76.0"`` when it differs; "" when the same or unknown."""
    was, now = _text(old, "scanner_version"), _text(new, "scanner_version")
    if not was or not now or was == now:
        return ""
    return f"scanner {_text(new, 'scanner') or ''} {was} -> {now}".replace("  ", " ")


def _text(row: Mapping[str, Any], column: str) -> str:
    value = row.get(column)
    return "" if value is None or pd.isna(value) else str(value)


def _cause(
    found: Found, other_packages: frozenset[PackageKey] | None, scanner: str, change: str
) -> tuple[str, str]:
    """Cause of an id that is in one run only (``change``: ADDED, in the head run; REMOVED,
    in the base run): ``found`` there, ``other_packages`` the other run's packages."""
    if other_packages is None:
        return UNKNOWN, "packages of the other run unknown"
    moved = sorted(found.packages - other_packages)
    if moved:
        versions: dict[str, set[str]] = {}
        for name, version in other_packages:
            versions.setdefault(name, set()).add(version)
        return IMAGE, "; ".join(_package_reason(name, ver, versions, change) for name, ver in moved)
    if scanner:
        return SCANNER, scanner
    return DB, "advisory added" if change == ADDED else "advisory withdrawn"


def _package_reason(name: str, version: str, other: dict[str, set[str]], change: str) -> str:
    """``package libssl3 3.0.11-1 added`` / ``removed``, or ``package libc6 2.36-9 -> 2.36-10``."""
    if name not in other:
        return f"package {name} {version} {'added' if change == ADDED else 'removed'}"
    others = ", ".join(sorted(other[name]))
    step = f"{others} -> {version}" if change == ADDED else f"{version} -> {others}"
    return f"package {name} {step}"


def attribution_counts(changes: list[VulnerabilityChange]) -> dict[str, dict[str, int]]:
    """cause -> change -> count, every cause and change present (zeros included)."""
    counts = {cause: dict.fromkeys(CHANGES, 0) for cause in CAUSES}
    for change in changes:
        counts[change.cause][change.change] += 1
    return counts


def attribution_lines(changes: list[VulnerabilityChange]) -> list[str]:
    """Lines splitting every vulnerability change by cause, and what the split means;
    none when nothing changed, or when no cause is known (runs compared without packages)."""
    if all(change.cause == UNKNOWN for change in changes):
        return []
    counts = attribution_counts(changes)
    words = {ADDED: "added", REMOVED: "gone", SEVERITY: "severity changed"}
    parts = []
    for cause in CAUSES:
        total = sum(counts[cause].values())
        if total:
            kinds = ", ".join(f"{n} {words[k]}" for k, n in counts[cause].items() if n)
            parts.append(f"{CAUSE_LABELS[cause]} {total} ({kinds})")
    lines = ["vulnerability changes by cause: " + "; ".join(parts)]
    not_image = sum(sum(counts[c].values()) for c in (DB, SCANNER))
    if not_image:
        lines.append(
            f"{not_image} change(s) made by the DB or the scanner alone, with the same "
            "packages: not image regressions"
        )
    return lines
