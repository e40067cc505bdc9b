"""The answer a reader wants first: per language, the best base on each metric, and how
the smallest image compares with the single-stage builder image.

Pure functions over one run's ``results`` rows (pandas). The metrics are those of
``tasks.metrics`` with a ``best`` line. Only ``ok`` cells count. Ties go to the smaller
image, then to the label, so the answer is stable from run to run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from tasks.metrics import METRIC, METRICS, Metric, present, with_totals
from tasks.records import cell_label

SINGLE_STAGE = "single-stage"
ANSWER_METRICS = tuple(metric for metric in METRICS if metric.best)


@dataclass(frozen=True)
class Best:
    """The best ok cell of a language on one metric, beside the reference cell's value."""

    metric: Metric
    row: dict[str, Any]
    value: float
    reference: float | None


@dataclass(frozen=True)
class LanguageAnswer:
    """One language's answer: the smallest image against the reference (the single-stage
    builder image of the same toolchain), and the best cell on every metric."""

    language: str
    winner: dict[str, Any]
    reference: dict[str, Any] | None
    best: tuple[Best, ...]


def answers(results: pd.DataFrame) -> list[LanguageAnswer]:
    """One answer per language that has an ok cell with a size, languages by name."""
    ok = with_totals(results)
    ok = ok[ok["status"] == "ok"]
    found = []
    for language, rows in sorted(ok.groupby("language"), key=lambda item: str(item[0])):
        records = rows.to_dict("records")
        sized = [r for r in records if present(r["size_bytes"])]
        if not sized:
            continue
        winner = min(sized, key=lambda r: _order(r, METRIC["size_bytes"]))
        reference = _reference(records, winner)
        best = []
        for metric in ANSWER_METRICS:
            measured = [r for r in records if present(r[metric.column])]
            if not measured:
                continue
            top = min(measured, key=lambda r, m=metric: _order(r, m))  # type: ignore[misc]
            ref_value: Any = None if reference is None else reference[metric.column]
            value = float(top[metric.column])
            best.append(Best(metric, top, value, float(ref_value) if present(ref_value) else None))
        found.append(LanguageAnswer(str(language), winner, reference, tuple(best)))
    return found


def _order(row: dict[str, Any], metric: Metric) -> tuple[float, float, str]:
    size = float(row["size_bytes"]) if present(row["size_bytes"]) else float("inf")
    value = float(row[metric.column])
    return value if metric.lower_is_better else -value, size, cell_label(row)


def _reference(records: list[dict[str, Any]], winner: dict[str, Any]) -> dict[str, Any] | None:
    """The single-stage cell of the winner's toolchain, else the language's largest
    single-stage image; None when the run has no single-stage cell of the language."""
    single = [r for r in records if r["variant"] == SINGLE_STAGE and present(r["size_bytes"])]
    same = [r for r in single if r["toolchain_version"] == winner["toolchain_version"]]
    pool = same or single
    return max(pool, key=lambda r: (float(r["size_bytes"]), cell_label(r))) if pool else None
