"""Small multiples for one language: the same grouping (a base, one bar per toolchain)
in every chart, so a reader's eye moves across metrics, not across layouts; and a
base x toolchain grid when the language has more than one toolchain.

Writers over one run's ``results`` rows and its ``vulnerabilities`` rows (for the
severities inherited from the base apart from those added by the build).
"""

from __future__ import annotations

from collections.abc import Callable
from html import escape
from typing import Any

import pandas as pd

from tasks.dataset.schema import ORIGIN_BASE, ORIGIN_BUILD
from tasks.records import SEVERITIES, cell_label
from tasks.render.charts import PALETTE, Bar, Group, Segment, bar_chart
from tasks.render.units import format_bytes, format_count, format_seconds

SEVERITY_COLOURS = {
    "CRITICAL": "#7b0d1e",
    "HIGH": "#d62728",
    "MEDIUM": "#ff7f0e",
    "LOW": "#e6c229",
    "UNKNOWN": "#9e9e9e",
}
# Chart kind -> title after the language's name; tests and readers find charts by these.
MULTIPLE_TITLES = {
    "size": "image size, uncompressed",
    "compressed": "image size, compressed (registry layers)",
    "vulns-base": "vulnerabilities inherited from the base, by severity",
    "vulns-build": "vulnerabilities added by the build, by severity",
    "startup": "startup time, median with min-max",
    "memory": "idle memory",
}
BYTES_UNIT = "bytes, decimal (1 MB = 1,000,000 bytes)"
VULNS_UNIT = "unique vulnerability ids"
ORIGINS = {"vulns-base": ORIGIN_BASE, "vulns-build": ORIGIN_BUILD}
LANGUAGE_NAMES = {"go": "Go", "python": "Python", "node": "Node.js", "java": "Java", "rust": "Rust"}

Row = dict[str, Any]


def language_name(language: str) -> str:
    """How a language is written for readers: ``node`` -> ``Node.js``."""
    return LANGUAGE_NAMES.get(language, language.capitalize())


def present(value: Any) -> bool:
    """False for None, NaN and pd.NA: the value was not measured."""
    return not bool(pd.isna(value))


def _version_key(version: str) -> tuple[tuple[int, ...], str]:
    parts = tuple(int(p) if p.isdigit() else -1 for p in version.split("."))
    return parts, version


def toolchains(rows: list[Row]) -> list[str]:
    """The language's toolchain versions in the run, oldest first."""
    return sorted({str(r["toolchain_version"]) for r in rows}, key=_version_key)


def toolchain_colours(rows: list[Row]) -> dict[str, str]:
    """One colour per toolchain version, the same in every chart of the language."""
    return {v: PALETTE[n % len(PALETTE)] for n, v in enumerate(toolchains(rows))}


def base_order(rows: list[Row]) -> list[str]:
    """Bases by their largest image, largest first (from the builder image down to
    distroless, as the classic chart reads); unmeasured bases last, by name."""

    def largest(base: str) -> float:
        sizes = [r["size_bytes"] for r in rows if r["base"] == base]
        return max((float(s) for s in sizes if present(s)), default=-1.0)

    return sorted({str(r["base"]) for r in rows}, key=lambda b: (-largest(b), b))


def _groups(rows: list[Row], bar: Callable[[Row], Bar]) -> list[Group]:
    versions = toolchains(rows)
    groups = []
    for base in base_order(rows):
        mine = sorted(
            (r for r in rows if r["base"] == base),
            key=lambda r: versions.index(str(r["toolchain_version"])),
        )
        groups.append(Group(base, tuple(bar(r) for r in mine)))
    return groups


def origin_counts(vulnerabilities: pd.DataFrame) -> dict[tuple[str, str], dict[str, int]]:
    """(cell_id, origin) -> severity -> unique vulnerability ids (an id found in both a
    base layer and a layer of the build counts once in each)."""
    counts: dict[tuple[str, str], dict[str, int]] = {}
    known = vulnerabilities.dropna(subset=["origin"])
    unique = known.drop_duplicates(["cell_id", "origin", "vulnerability_id", "severity"])
    for (cell_id, where, severity), n in (
        unique.groupby(["cell_id", "origin", "severity"]).size().items()
    ):
        counts.setdefault((str(cell_id), str(where)), {})[str(severity)] = int(n)
    return counts


def language_charts(language: str, rows: list[Row], vulnerabilities: pd.DataFrame) -> list[str]:
    """The six small multiples of one language, in ``MULTIPLE_TITLES`` order."""
    colours = toolchain_colours(rows)
    name = language_name(language)
    legend = [(f"{name} {v}", c) for v, c in colours.items()]
    by_origin = origin_counts(vulnerabilities)

    def single(column: str) -> Callable[[Row], Bar]:
        def bar(row: Row) -> Bar:
            value = row[column]
            colour = colours[str(row["toolchain_version"])]
            segments = (Segment(column, float(value), colour),) if present(value) else ()
            return Bar(
                str(row["cell_id"]), str(row["toolchain_version"]), segments, None, cell_label(row)
            )

        return bar

    def severities(kind: str) -> Callable[[Row], Bar]:
        def bar(row: Row) -> Bar:
            label = str(row["toolchain_version"])
            # Null for cells not scanned, and for runs published before origins were kept.
            if not present(row.get("vulns_from_base")):
                return Bar(str(row["cell_id"]), label, tooltip=cell_label(row))
            counts = by_origin.get((str(row["cell_id"]), ORIGINS[kind]), {})
            segments = tuple(
                Segment(s, float(counts.get(s, 0)), SEVERITY_COLOURS[s]) for s in SEVERITIES
            )
            return Bar(str(row["cell_id"]), label, segments, None, cell_label(row))

        return bar

    def startup(row: Row) -> Bar:
        label, tooltip = str(row["toolchain_version"]), cell_label(row)
        if not present(row["startup_seconds"]):
            return Bar(str(row["cell_id"]), label, tooltip=tooltip)
        colour = colours[label]
        whisker = (float(row["startup_min_seconds"]), float(row["startup_max_seconds"]))
        segment = Segment("median", float(row["startup_seconds"]), colour)
        return Bar(str(row["cell_id"]), label, (segment,), whisker, tooltip)

    severity_legend = [(s, SEVERITY_COLOURS[s]) for s in SEVERITIES]
    specs: dict[str, tuple[Callable[[Row], Bar], Callable[[float], str], str, str, Any]] = {
        "size": (single("size_bytes"), format_bytes, BYTES_UNIT, "", legend),
        "compressed": (
            single("compressed_bytes"),
            format_bytes,
            BYTES_UNIT,
            "what a pull downloads: the registry's compressed layers",
            legend,
        ),
        "vulns-base": (
            severities("vulns-base"),
            format_count,
            VULNS_UNIT,
            "found in the runtime base image's layers",
            severity_legend,
        ),
        "vulns-build": (
            severities("vulns-build"),
            format_count,
            VULNS_UNIT,
            "found in the layers the build added (the program, its runtime libraries)",
            severity_legend,
        ),
        "startup": (
            startup,
            format_seconds,
            "seconds",
            "container start to first HTTP response; whiskers span min to max",
            legend,
        ),
        "memory": (
            single("idle_memory_bytes"),
            format_bytes,
            BYTES_UNIT,
            "cgroup usage minus inactive file pages, as docker stats shows it",
            legend,
        ),
    }
    return [
        bar_chart(
            f"{language}-{kind}",
            f"{name}: {MULTIPLE_TITLES[kind]}",
            unit,
            _groups(rows, bar),
            fmt,
            note=note,
            legend_entries=entries,
            integer=fmt is format_count,
        )
        for kind, (bar, fmt, unit, note, entries) in specs.items()
    ]


def toolchain_grid(language: str, rows: list[Row]) -> str:
    """Base x toolchain: each cell's size and vulnerability count; "" for one toolchain."""
    versions = toolchains(rows)
    if len(versions) < 2:
        return ""
    name = language_name(language)
    by_cell = {(str(r["base"]), str(r["toolchain_version"])): r for r in rows}
    head = "".join(f"<th>{escape(name)} {escape(v)}</th>" for v in versions)
    body = []
    for base in base_order(rows):
        cells = []
        for version in versions:
            row = by_cell.get((base, version))
            cells.append(f"<td>{_grid_cell(row)}</td>")
        body.append(f"<tr><th>{escape(base)}</th>{''.join(cells)}</tr>")
    return (
        f'<figure class="grid" id="grid-{escape(language)}">'
        f"<h3>{escape(name)}: base x toolchain</h3>"
        f'<p class="unit">unit: image size in {BYTES_UNIT}; vulnerabilities in {VULNS_UNIT}</p>'
        f"<table><thead><tr><th>base</th>{head}</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table></figure>"
    )


def _grid_cell(row: Row | None) -> str:
    if row is None:
        return "not in the matrix"
    if not present(row["size_bytes"]):
        return escape(str(row["status"]))
    vulns = row.get("vulns_total")
    text = format_bytes(row["size_bytes"])
    if present(vulns):
        text += f"<br>{format_count(vulns)} vulns"
    return text
