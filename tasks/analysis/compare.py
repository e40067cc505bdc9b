"""Compare two runs cell by cell and decide whether the head run regressed.

Pure functions over the published tables (pandas DataFrames of ``results``, ``samples``
and ``vulnerabilities``); ``load_run`` and ``pick_runs`` are the only parts that read
a store. A regression is:

- an image that grew by more than ``size_ratio`` AND more than ``size_bytes``;
- a CRITICAL or HIGH vulnerability id in a cell that the base run's cell did not have,
  when the image made it appear (``tasks.analysis.attribution``: a package was added,
  removed or upgraded); one that the vulnerability DB or the scanner alone made appear
  (same packages) is a change, never an image regression. Each says whether it is
  inherited from the base image's layers or added by the build (``origin``);
- a startup time that got slower beyond the noise: a two-sided Mann-Whitney U test on
  the two runs' samples gives p < ``alpha``, AND the Hodges-Lehmann shift is at least
  ``startup_ratio`` of the base median, AND |Cliff's delta| >= ``startup_effect``
  (evidence and magnitude, as asv and bencher judge benchmarks);
- a cell that was ``ok`` and is now ``failed`` or ``skipped``.

Cells that appeared or disappeared, shrunk images, fixed CVEs, faster startups and a
change of any other exact metric ``tasks.metrics`` marks ``compared`` (files no package
owns) are reported as changes but are not regressions. Only like is compared with like:
runs of the same matrix, filters and image sources (``tasks.dataset.reader.COMPARABLE_BY``);
a cell whose base or builder came from another source is reported as such and not
judged, and startup times are judged only when the cell ran on the same host class both
times (a cell that moved is reported as having moved, never as a regression).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from tasks.analysis.attribution import (
    CAUSE_LABELS,
    IMAGE,
    UNKNOWN,
    VulnerabilityChange,
    attribute_cell,
    attribution_counts,
    findings_of,
    packages_of,
)
from tasks.analysis.statistics import cliffs_delta, hodges_lehmann_shift, mann_whitney_u
from tasks.dataset.reader import RunNotFound, differences, find_run, previous_run, read_table
from tasks.dataset.stores import ResultStore
from tasks.metrics import METRIC, METRICS, Kind, Metric
from tasks.records import cell_label

SERIOUS = ("CRITICAL", "HIGH")
SIZE, STARTUP = METRIC["size_bytes"], METRIC["startup_seconds"]
# Exact metrics whose every change is reported (the change's kind: the label, dashed).
COMPARED = tuple(m for m in METRICS if m.compared and m.kind is Kind.EXACT)
# How a finding's ``origin`` reads: where the vulnerable package came from.
ORIGIN_LABELS = {"base": "inherited from the base", "build": "added by the build"}


def origin_phrase(origins: list[str]) -> str:
    """``["base"]`` -> "inherited from the base"; both -> both joined; none -> ""."""
    return " and ".join(ORIGIN_LABELS[o] for o in ("base", "build") if o in origins)


@dataclass(frozen=True)
class Thresholds:
    """Limits beyond which a difference counts as a regression."""

    size_ratio: float = 0.05  # 5 % growth ...
    size_bytes: int = 1_000_000  # ... and at least 1 MB
    alpha: float = 0.05  # significance level of the startup test
    startup_ratio: float = 0.05  # minimal shift (Hodges-Lehmann, of the base median) ...
    startup_effect: float = 0.33  # ... and minimal |Cliff's delta| (a "medium" effect)


@dataclass(frozen=True)
class RunData:
    """The tables of one run that a comparison needs."""

    run_id: str
    results: pd.DataFrame
    samples: pd.DataFrame
    vulnerabilities: pd.DataFrame
    packages: pd.DataFrame | None = None  # None: vulnerability changes get no cause


@dataclass(frozen=True)
class Change:
    """One difference in one cell; ``regression`` says whether it fails the comparison."""

    # size, unowned-files (a compared metric: its label), new-cve, fixed-cve,
    # cve-severity, startup, status, cell-appeared, cell-disappeared, image-source,
    # host-class
    kind: str
    cell_id: str
    cell: str  # human label
    regression: bool
    summary: str
    base: float | str | None = None
    head: float | str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Comparison:
    """Every change between two runs and the thresholds they were judged by."""

    base_run: str
    head_run: str
    thresholds: Thresholds
    changes: tuple[Change, ...]
    # Every vulnerability id that appeared, went or changed severity (all severities),
    # with its cause: the DB, the image or the scanner (tasks.analysis.attribution).
    vulnerability_changes: tuple[VulnerabilityChange, ...] = ()

    @property
    def regressions(self) -> tuple[Change, ...]:
        """Only the changes that fail the comparison."""
        return tuple(c for c in self.changes if c.regression)

    @property
    def regressed(self) -> bool:
        """True when at least one change is a regression (exit code 1)."""
        return bool(self.regressions)

    def new_serious_by_origin(self) -> dict[str, int]:
        """New CRITICAL/HIGH findings (cell x id) per origin: ``base``, ``build`` and
        ``unknown`` (runs from before origins were recorded)."""
        counts = {"base": 0, "build": 0, "unknown": 0}
        for change in self.changes:
            if change.kind == "new-cve":
                for origin in change.detail["origins"] or ["unknown"]:
                    counts[origin] += 1
        return counts

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``--json`` and artifacts."""
        return {
            "base_run": self.base_run,
            "head_run": self.head_run,
            "regressed": self.regressed,
            "thresholds": asdict(self.thresholds),
            "new_serious_by_origin": self.new_serious_by_origin(),
            "changes": [asdict(c) for c in self.changes],
            "vulnerability_changes_by_cause": attribution_counts(list(self.vulnerability_changes)),
            "vulnerability_changes": [c.to_dict() for c in self.vulnerability_changes],
        }


def compare_runs(base: RunData, head: RunData, thresholds: Thresholds | None = None) -> Comparison:
    """All changes from ``base`` to ``head``, cell by cell (matched by ``cell_id``)."""
    limits = thresholds or Thresholds()
    base_cells = _by_cell(base.results)
    head_cells = _by_cell(head.results)
    base_vulns, head_vulns = rows_by_cell(base.vulnerabilities), rows_by_cell(head.vulnerabilities)
    changes: list[Change] = []
    vulnerability_changes: list[VulnerabilityChange] = []
    for cell_id in sorted(head_cells.keys() - base_cells.keys()):
        changes.append(_presence("cell-appeared", head_cells[cell_id]))
    for cell_id in sorted(base_cells.keys() - head_cells.keys()):
        changes.append(_presence("cell-disappeared", base_cells[cell_id]))
    for cell_id in sorted(base_cells.keys() & head_cells.keys()):
        old, new = base_cells[cell_id], head_cells[cell_id]
        changes.extend(_status_change(old, new))
        source = _source_change(old, new)
        if source:  # another image is not a regression of this one
            changes.extend(source)
            continue
        for metric in COMPARED:
            changes.extend(_exact_change(metric, old, new, limits))
        found = _attributed(old, new, base, head)
        vulnerability_changes.extend(found)
        changes.extend(_cve_changes(new, found, base_vulns, head_vulns))
        moved = _host_class_change(old, new)
        changes.extend(moved)
        if not moved:  # timings only within one host class
            changes.extend(_startup_change(old, new, base.samples, head.samples, limits))
    return Comparison(
        base.run_id, head.run_id, limits, tuple(changes), tuple(vulnerability_changes)
    )


def _by_cell(results: pd.DataFrame) -> dict[str, dict[str, Any]]:
    return {str(row["cell_id"]): row for row in results.to_dict("records")}


def _value(row: dict[str, Any], column: str) -> Any:
    value = row.get(column)
    return None if value is None or value is pd.NA or _is_nan(value) else value


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _presence(kind: str, row: dict[str, Any]) -> Change:
    verb = "appeared" if kind == "cell-appeared" else "disappeared"
    return Change(kind, row["cell_id"], cell_label(row), False, f"cell {verb}")


def _source_change(old: dict[str, Any], new: dict[str, Any]) -> list[Change]:
    # A base or builder forged here in one run and pulled from its registry in the other.
    changed = [
        f"{role} {'forged' if _value(old, column) else 'pulled'} -> "
        f"{'forged' if _value(new, column) else 'pulled'}"
        for role, column in (("base", "base_forged"), ("builder", "builder_forged"))
        if _value(old, column) is not None
        and _value(new, column) is not None
        and _value(old, column) != _value(new, column)
    ]
    if not changed:
        return []
    return [
        Change(
            "image-source",
            new["cell_id"],
            cell_label(new),
            False,
            f"image source changed ({', '.join(changed)}); size, vulnerabilities and "
            "timings not compared",
        )
    ]


def _host_class_change(old: dict[str, Any], new: dict[str, Any]) -> list[Change]:
    before, after = _value(old, "host_class"), _value(new, "host_class")
    if before == after:
        return []
    return [
        Change(
            "host-class",
            new["cell_id"],
            cell_label(new),
            False,
            f"moved host class {before or 'unknown'} -> {after or 'unknown'} "
            f"(host {old['host']} -> {new['host']}); timings not compared",
            before,
            after,
        )
    ]


def _status_change(old: dict[str, Any], new: dict[str, Any]) -> list[Change]:
    if old["status"] == new["status"]:
        return []
    regression = old["status"] == "ok"
    reason = f": {new['error']}" if _value(new, "error") else ""
    return [
        Change(
            "status",
            new["cell_id"],
            cell_label(new),
            regression,
            f"status {old['status']} -> {new['status']}{reason}",
            old["status"],
            new["status"],
        )
    ]


def _exact_change(
    metric: Metric, old: dict[str, Any], new: dict[str, Any], limits: Thresholds
) -> list[Change]:
    """A change of an exact metric; only an image grown beyond the limits regresses."""
    before, after = _value(old, metric.column), _value(new, metric.column)
    if before is None or after is None or before == after:
        return []
    growth = int(after) - int(before)
    ratio = growth / before if before else math.inf
    regression = metric is SIZE and growth > limits.size_bytes and ratio > limits.size_ratio
    return [
        Change(
            metric.label.replace(" ", "-"),
            new["cell_id"],
            cell_label(new),
            regression,
            f"{metric.label} {metric.text(before)} -> {metric.text(after)} "
            f"({'+' if growth >= 0 else '-'}{metric.text(abs(growth))}, {ratio:+.1%})",
            int(before),
            int(after),
            {f"growth_{metric.unit}": growth, "growth_ratio": ratio},
        )
    ]


Found = tuple[str, list[str], list[str]]  # severity, sorted packages, sorted origins


def rows_by_cell(table: pd.DataFrame) -> dict[str, list[dict[str, Any]]]:
    """cell_id -> that cell's rows as dicts, in table order (one pass over the table:
    a nightly run has hundreds of cells)."""
    found: dict[str, list[dict[str, Any]]] = {}
    for row in table.to_dict("records"):
        found.setdefault(str(row["cell_id"]), []).append(row)
    return found


def _cves(rows: list[dict[str, Any]]) -> dict[str, Found]:
    """vulnerability id -> (severity, packages, known origins) of one cell's rows."""
    by_id: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_id.setdefault(str(row["vulnerability_id"]), []).append(row)
    found: dict[str, Found] = {}
    for vuln_id, group in sorted(by_id.items()):
        # Runs published before origins were recorded have nulls (or no column) here.
        origins = [row.get("origin") for row in group]
        found[vuln_id] = (
            str(group[0]["severity"]),
            sorted({str(row["package"]) for row in group}),
            sorted({str(origin) for origin in origins if not pd.isna(origin)}),
        )
    return found


def _attributed(
    old: dict[str, Any], new: dict[str, Any], base: RunData, head: RunData
) -> list[VulnerabilityChange]:
    # A cell that was not scanned in one run has no vulnerability rows: not "all fixed".
    if _value(old, "vulns_critical") is None or _value(new, "vulns_critical") is None:
        return []
    cell_id = str(new["cell_id"])
    return attribute_cell(
        old,
        new,
        findings_of(base.vulnerabilities, cell_id),
        findings_of(head.vulnerabilities, cell_id),
        packages_of(base.packages, cell_id),
        packages_of(head.packages, cell_id),
    )


def _cve_changes(
    new: dict[str, Any],
    attributed: list[VulnerabilityChange],
    base_vulns: dict[str, list[dict[str, Any]]],
    head_vulns: dict[str, list[dict[str, Any]]],
) -> list[Change]:
    """The CRITICAL/HIGH changes among ``attributed``: a new one is a regression only
    when the image made it (or its cause is unknown)."""
    before = _cves(base_vulns.get(new["cell_id"], []))
    after = _cves(head_vulns.get(new["cell_id"], []))
    changes = []
    for change in attributed:
        vuln_id = change.vulnerability_id
        if change.change == "added" and after[vuln_id][0] in SERIOUS:
            regression = change.image_regression_possible
            changes.append(_cve_change("new-cve", new, after[vuln_id], change, regression))
        elif change.change == "removed" and before[vuln_id][0] in SERIOUS:
            changes.append(_cve_change("fixed-cve", new, before[vuln_id], change, False))
        elif change.change == "severity" and {
            change.severity_before,
            change.severity_after,
        } & set(SERIOUS):
            changes.append(_cve_change("cve-severity", new, after[vuln_id], change, False))
    return changes


def _cve_change(
    kind: str, row: dict[str, Any], found: Found, change: VulnerabilityChange, regression: bool
) -> Change:
    severity, packages, origins = found
    vuln_id = change.vulnerability_id
    where = origin_phrase(origins)
    if kind == "cve-severity":
        head = f"{vuln_id} {change.severity_before} -> {change.severity_after}"
    else:
        head = f"{'new' if kind == 'new-cve' else 'gone'} {severity} {vuln_id}"
    summary = f"{head} in {', '.join(packages)}" + (f", {where}" if where else "")
    if change.cause != UNKNOWN:
        summary += f" [{CAUSE_LABELS[change.cause]}: {change.reason}"
        if kind == "new-cve" and change.cause != IMAGE:
            summary += "; not an image regression"
        summary += "]"
    return Change(
        kind,
        row["cell_id"],
        cell_label(row),
        regression,
        summary,
        change.severity_before,
        change.severity_after,
        detail={
            "vulnerability_id": vuln_id,
            "severity": severity,
            "packages": packages,
            "origins": origins,
            # Runs compared without their packages (or from before they were kept): no cause.
            **({"cause": change.cause, "reason": change.reason} if change.cause != UNKNOWN else {}),
        },
    )


def _samples(samples: pd.DataFrame, cell_id: str) -> list[float]:
    rows = samples[samples["cell_id"] == cell_id].sort_values("repetition")
    return [float(v) for v in rows["startup_seconds"]]


def _startup_change(
    old: dict[str, Any],
    new: dict[str, Any],
    base_samples: pd.DataFrame,
    head_samples: pd.DataFrame,
    limits: Thresholds,
) -> list[Change]:
    before = _samples(base_samples, old["cell_id"])
    after = _samples(head_samples, new["cell_id"])
    if len(before) < 2 or len(after) < 2:
        return []  # no spread, no judgement
    p_value = mann_whitney_u(before, after)[1]
    shift = hodges_lehmann_shift(before, after)
    effect = cliffs_delta(before, after)
    median_before, median_after = statistics.median(before), statistics.median(after)
    ratio = shift / median_before if median_before else 0.0
    if p_value >= limits.alpha or abs(ratio) < limits.startup_ratio:
        return []  # within the noise, or too small to matter
    if abs(effect) < limits.startup_effect:
        return []  # the samples overlap too much to call it a change
    return [
        Change(
            "startup",
            new["cell_id"],
            cell_label(new),
            ratio > 0,
            f"startup median {STARTUP.text(median_before)} -> {STARTUP.text(median_after)} "
            f"(shift {ratio:+.1%}, Cliff's delta {effect:+.2f}, "
            f"Mann-Whitney p={p_value:.4f}, n={len(before)}/{len(after)})",
            median_before,
            median_after,
            {
                "p_value": p_value,
                "ratio": ratio,
                "shift_seconds": shift,
                "cliffs_delta": effect,
                "n_base": len(before),
                "n_head": len(after),
            },
        )
    ]


def origin_summary(comparison: Comparison) -> list[str]:
    """One line splitting the new CRITICAL/HIGH findings by where they came from; none
    when there are none."""
    counts = comparison.new_serious_by_origin()
    if not sum(counts.values()):
        return []
    line = (
        f"new CRITICAL/HIGH: {counts['base']} inherited from the base, "
        f"{counts['build']} added by the build"
    )
    if counts["unknown"]:
        line += f", {counts['unknown']} of unknown origin (published before origins were kept)"
    return [line]


class CompareError(ValueError):
    """The runs to compare cannot be chosen (too few runs, unknown run id)."""


def pick_runs(
    store: ResultStore, base: str | None = None, head: str | None = None
) -> tuple[str, str]:
    """(base, head) run ids; by default the latest run and the previous run of its matrix
    (for a rescan: the run it rescanned)."""
    try:
        head_run = find_run(store, head, "--head")
        base_run: dict[str, Any] | None
        if base:
            base_run = find_run(store, base, "--base")
        elif head_run.get("source_run_id"):
            base_run = find_run(store, head_run["source_run_id"], "--head's source run")
        else:
            base_run = previous_run(store, head_run)
    except RunNotFound as exc:
        raise CompareError(f"{exc}; publish two runs first" if head is None else str(exc)) from exc
    if base_run is None:
        raise CompareError(
            f"run {head_run['run_id']} has no earlier comparable run (matrix "
            f"{head_run.get('matrix')!r}, filters {head_run.get('filters')!r}, image sources "
            f"{head_run.get('image_sources')!r}) in {store.location()}; pass --base RUN"
        )
    unlike = differences(base_run, head_run)
    if unlike:
        raise CompareError(
            f"runs {base_run['run_id']} and {head_run['run_id']} are not comparable: "
            f"{'; '.join(unlike)}"
        )
    return base_run["run_id"], head_run["run_id"]


def load_run(store: ResultStore, run_id: str) -> RunData:
    """The results, samples and vulnerabilities of one complete run."""
    return RunData(
        run_id,
        read_table(store, "results", [run_id]),
        read_table(store, "samples", [run_id]),
        read_table(store, "vulnerabilities", [run_id]),
        read_table(store, "packages", [run_id]),
    )


def compare_with_previous(
    store: ResultStore, run_id: str, thresholds: Thresholds | None = None
) -> Comparison | None:
    """``run_id`` against the previous run of its matrix (a rescan: against its source
    run); None for a matrix's first run."""
    try:
        head = find_run(store, run_id)
        source = head.get("source_run_id")
        base = find_run(store, source) if source else previous_run(store, head)
    except RunNotFound as exc:
        raise CompareError(str(exc)) from exc
    if base is None:
        return None
    return compare_runs(load_run(store, base["run_id"]), load_run(store, run_id), thresholds)
