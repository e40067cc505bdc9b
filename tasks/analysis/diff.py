"""What an image gained or lost: packages and vulnerabilities added or removed between
two runs of one cell, or between two cells (two bases) of one run.

Pure functions over rows of the published ``packages`` and ``vulnerabilities`` tables.
A package is its name and version: a new version shows as a change, not as one removed
and one added. A vulnerability is its id (with its severity), whichever packages have it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tasks.records import SEVERITIES

_RANK = {s: n for n, s in enumerate(SEVERITIES)}


@dataclass(frozen=True)
class Contents:
    """Packages and vulnerability ids of one cell in one run."""

    packages: dict[str, frozenset[str]]  # name -> versions installed
    vulnerabilities: dict[str, str]  # id -> severity


@dataclass(frozen=True)
class ContentDiff:
    """From ``old`` to ``new``: what was added, removed or changed."""

    old: str  # what the left side is, e.g. a run id or a base
    new: str
    packages_added: tuple[str, ...]  # "name version"
    packages_removed: tuple[str, ...]
    packages_changed: tuple[tuple[str, str, str], ...]  # (name, old version, new version)
    cves_added: tuple[tuple[str, str], ...]  # (id, severity), most severe first
    cves_removed: tuple[tuple[str, str], ...]

    @property
    def empty(self) -> bool:
        return not (
            self.packages_added
            or self.packages_removed
            or self.packages_changed
            or self.cves_added
            or self.cves_removed
        )


def contents(packages: list[dict[str, Any]], vulnerabilities: list[dict[str, Any]]) -> Contents:
    """The contents of one cell from its ``packages`` and ``vulnerabilities`` rows (see
    ``tasks.analysis.compare.rows_by_cell``)."""
    versions: dict[str, set[str]] = {}
    for row in packages:
        versions.setdefault(str(row["name"]), set()).add(str(row["version"]))
    cves: dict[str, str] = {}
    for row in vulnerabilities:
        vuln_id = str(row["vulnerability_id"])
        cves[vuln_id] = _worse(cves.get(vuln_id), str(row["severity"]))
    return Contents({n: frozenset(v) for n, v in versions.items()}, cves)


def _worse(old: str | None, new: str) -> str:
    if old is None:
        return new
    return old if _RANK.get(old, 99) <= _RANK.get(new, 99) else new


def diff_contents(old: Contents, new: Contents, old_name: str, new_name: str) -> ContentDiff:
    """Everything that differs from ``old`` to ``new``."""
    added, removed, changed = [], [], []
    for name in sorted(old.packages.keys() | new.packages.keys()):
        before, after = old.packages.get(name, frozenset()), new.packages.get(name, frozenset())
        if before == after:
            continue
        if len(before) == 1 and len(after) == 1:
            changed.append((name, next(iter(before)), next(iter(after))))
            continue
        added += [f"{name} {v}" for v in sorted(after - before)]
        removed += [f"{name} {v}" for v in sorted(before - after)]
    return ContentDiff(
        old_name,
        new_name,
        tuple(added),
        tuple(removed),
        tuple(changed),
        _cves(new.vulnerabilities, old.vulnerabilities),
        _cves(old.vulnerabilities, new.vulnerabilities),
    )


def _cves(have: dict[str, str], lack: dict[str, str]) -> tuple[tuple[str, str], ...]:
    only = [(vuln_id, have[vuln_id]) for vuln_id in have.keys() - lack.keys()]
    return tuple(sorted(only, key=lambda item: (_RANK.get(item[1], 99), item[0])))
