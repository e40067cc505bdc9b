"""How every output writes a quantity: one formatter per unit, used by the terminal
table, the HTML report, compare's summaries and ``basebench hosts`` (a metric's unit
says which: ``tasks.metrics``)."""

from __future__ import annotations

import math
from collections.abc import Callable
from enum import StrEnum

MISSING = "-"  # a value that was not measured (or is not known)


def format_bytes(count: float | None) -> str:
    """Decimal units, as registries and ``docker images`` print them: ``914 MB``,
    ``8.6 MB``, ``2.1 GB``, ``512 B``."""
    if count is None or math.isnan(count):
        return MISSING
    value = float(count)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(value) < 1000 or unit == "TB":
            break
        value /= 1000
    if unit == "B":
        return f"{value:.0f} B"
    return f"{value:.0f} {unit}" if abs(value) >= 100 else f"{value:.1f} {unit}"


def format_seconds(seconds: float | None) -> str:
    """Milliseconds shown: ``0.227 s``."""
    return MISSING if seconds is None or math.isnan(seconds) else f"{seconds:.3f} s"


def format_count(count: float | None) -> str:
    """Whole numbers with thousands separators: ``1,234``."""
    return MISSING if count is None or math.isnan(count) else f"{count:,.0f}"


class Unit(StrEnum):
    BYTES = "bytes"
    SECONDS = "seconds"
    COUNT = "count"


FORMATTERS: dict[Unit, Callable[[float | None], str]] = {
    Unit.BYTES: format_bytes,
    Unit.SECONDS: format_seconds,
    Unit.COUNT: format_count,
}
