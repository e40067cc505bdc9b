"""The metrics of a cell, each defined once: the table every writer reads.

A metric is a column of the ``results`` rows (``tasks.dataset.schema`` builds them from
the records; ``vulns_total`` is derived, by ``with_totals``) with its unit (its formatter
is ``tasks.units``'), its names, whether lower is better, and whether it is exact
(a size or a count: every change is real) or timed (build, startup, memory: noisy, judged
statistically and only on one host class). Where it shows is data too: a column of the
cells tables (terminal summary, the report's every-cell table, the Prefect table), a line
of the answer, a small multiple, a series of ``basebench history``, a change ``compare``
reports. The writers lay out what this table says and format values only through it.

Adding a metric: its stage computes it, the schema stores it, a row here names it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

import pandas as pd

from tasks.records import SEVERITIES
from tasks.units import FORMATTERS, MISSING, Unit

BYTES_UNIT = "bytes, decimal (1 MB = 1,000,000 bytes)"
VULNS_TOTAL = "vulns_total"
T = TypeVar("T")


class Kind(StrEnum):
    EXACT = "exact"  # deterministic: any change is a change
    TIMED = "timed"  # noisy: a change must stand out from the noise


@dataclass(frozen=True)
class Metric:
    """One row of the table: a ``results`` column and how every writer shows it."""

    column: str
    label: str  # a cells table's header: "size"
    title: str  # its chart's title, after the language: "image size, uncompressed"
    unit: Unit
    kind: Kind
    counts: str = ""  # what one unit of a count is: "regular files"
    lower_is_better: bool = True
    best: str = ""  # the answer's line for the best cell; "": not in the answer
    cells: bool = False  # a column of the cells tables
    chart: str = ""  # the id of its small multiple; "": none
    note: str = ""  # the chart's note: how it was measured
    spread: tuple[str, str] | None = None  # min and max columns (whiskers, trend bands)
    history: bool = False  # ``basebench history`` follows it
    compared: bool = False  # ``compare`` reports a change of it (exact metrics)

    def text(self, value: Any) -> str:
        """``value`` as every output writes it; ``-`` when it was not measured."""
        return FORMATTERS[self.unit](float(value)) if present(value) else MISSING

    @property
    def unit_text(self) -> str:
        """The unit line of its charts: ``seconds``, ``regular files``, ..."""
        return {Unit.BYTES: BYTES_UNIT, Unit.SECONDS: "seconds"}.get(self.unit, self.counts)


B, S, N = Unit.BYTES, Unit.SECONDS, Unit.COUNT
EXACT, TIMED = Kind.EXACT, Kind.TIMED
METRICS = (
    Metric(
        "size_bytes", "size", "image size, uncompressed", B, EXACT,
        best="smallest image", cells=True, chart="size", history=True, compared=True,
    ),
    Metric(
        "compressed_bytes", "compressed", "image size, compressed (registry layers)", B, EXACT,
        best="smallest download (compressed)", cells=True, chart="compressed",
        note="what a pull downloads: the registry's compressed layers",
    ),
    Metric("layers", "layers", "image layers", N, EXACT, counts="layers", history=True),
    Metric(
        "packages", "packages", "packages", N, EXACT, counts="packages found by the scanner",
        cells=True, history=True,
    ),
    # The cells tables and the charts spell vulnerabilities out: by severity, by origin.
    Metric(
        VULNS_TOTAL, "vulns", "vulnerabilities", N, EXACT, counts="unique vulnerability ids",
        best="fewest vulnerabilities", cells=True, chart="vulns", history=True,
    ),
    Metric(
        "unowned_files", "unowned files", "files no package owns", N, EXACT,
        counts="regular files", best="fewest files no package owns", cells=True,
        chart="unowned", note="what scanners reading the package databases cannot see",
        history=True, compared=True,
    ),
    Metric("build_seconds", "build", "no-cache build time", S, TIMED, history=True),
    Metric(
        "startup_seconds", "startup", "startup time, median with min-max", S, TIMED,
        best="fastest startup (median)", cells=True, chart="startup",
        note="container start to first HTTP response; whiskers span min to max",
        spread=("startup_min_seconds", "startup_max_seconds"), history=True,
    ),
    Metric(
        "idle_memory_bytes", "idle memory", "idle memory", B, TIMED, best="least idle memory",
        cells=True, chart="memory",
        note="cgroup usage minus inactive file pages, as docker stats shows it", history=True,
    ),
)  # fmt: skip
METRIC = {metric.column: metric for metric in METRICS}
CELL_METRICS = tuple(metric for metric in METRICS if metric.cells)


def present(value: Any) -> bool:
    """False for None, NaN and pandas' NA: a value that was not measured."""
    return value is not None and not bool(pd.isna(value))


def with_totals(results: pd.DataFrame) -> pd.DataFrame:
    """``results`` plus ``vulns_total``: unique vulnerability ids over all severities."""
    return results.assign(**{VULNS_TOTAL: sum(results[f"vulns_{s.lower()}"] for s in SEVERITIES)})


def severities_text(row: Mapping[str, Any], severities: Sequence[str] = SEVERITIES) -> str:
    """A row's unique vulnerability ids of each of ``severities``: ``1/2/1/1``; ``-`` when
    the cell was not scanned."""
    if not present(row["vulns_critical"]):
        return MISSING
    return "/".join(FORMATTERS[Unit.COUNT](row[f"vulns_{s.lower()}"]) for s in severities)


def laid_out(
    metrics: Iterable[Metric], each: Callable[[Metric], T], vulnerabilities: Sequence[T]
) -> list[T]:
    """``each(metric)`` for every one of ``metrics``, in order, but the vulnerability
    count, which every writer spells out as its own ``vulnerabilities`` (by severity, by
    origin): the columns of a cells table, the charts of a language."""
    found: list[T] = []
    for metric in metrics:
        found += vulnerabilities if metric.column == VULNS_TOTAL else [each(metric)]
    return found
