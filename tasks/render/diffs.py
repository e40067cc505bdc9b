"""The report's diffs: packages and vulnerabilities added or removed since an earlier
run, cell by cell, and between the single-stage builder image and the smallest image
of each language. Long lists fold into ``<details>`` (no script needed)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from html import escape
from typing import Any

import pandas as pd

from tasks.analysis.answer import answers
from tasks.analysis.compare import rows_by_cell
from tasks.analysis.diff import ContentDiff, Contents, contents, diff_contents
from tasks.records import cell_label
from tasks.render.multiples import language_name


@dataclass(frozen=True)
class RunContents:
    """The ``results``, ``packages`` and ``vulnerabilities`` rows of one run."""

    run_id: str
    results: pd.DataFrame
    packages: pd.DataFrame
    vulnerabilities: pd.DataFrame

    @cached_property
    def _by_cell(self) -> tuple[dict[str, list[dict[str, Any]]], dict[str, list[dict[str, Any]]]]:
        # Split once: a nightly run has hundreds of cells.
        return rows_by_cell(self.packages), rows_by_cell(self.vulnerabilities)

    def cell(self, cell_id: str) -> Contents:
        """What one cell's image holds."""
        packages, vulnerabilities = self._by_cell
        return contents(packages.get(cell_id, []), vulnerabilities.get(cell_id, []))


def run_diffs(old: RunContents, new: RunContents) -> list[tuple[str, str, ContentDiff]]:
    """(cell_id, label, diff) of every cell scanned in both runs whose contents differ."""
    scanned_old = _scanned(old.results)
    found = []
    for row in new.results.to_dict("records"):
        cell_id = str(row["cell_id"])
        if cell_id not in scanned_old or not _is_scanned(row):
            continue
        diff = diff_contents(
            old.cell(cell_id),
            new.cell(cell_id),
            old.run_id,
            new.run_id,
        )
        if not diff.empty:
            found.append((cell_id, cell_label(row), diff))
    return found


def base_diffs(run: RunContents) -> list[tuple[str, ContentDiff]]:
    """(language, diff) from each language's single-stage builder image to its smallest
    image (the answer's two cells), when both were scanned."""
    found = []
    for answer in answers(run.results):
        ref, win = answer.reference, answer.winner
        if ref is None or ref["cell_id"] == win["cell_id"]:
            continue
        if not (_is_scanned(ref) and _is_scanned(win)):
            continue
        diff = diff_contents(
            run.cell(str(ref["cell_id"])),
            run.cell(str(win["cell_id"])),
            f"{ref['base']} ({ref['toolchain_version']})",
            f"{win['base']} ({win['toolchain_version']})",
        )
        found.append((answer.language, diff))
    return found


def _is_scanned(row: dict[str, object]) -> bool:
    return not bool(pd.isna(row.get("vulns_critical")))


def _scanned(results: pd.DataFrame) -> set[str]:
    return {str(r["cell_id"]) for r in results.to_dict("records") if _is_scanned(r)}


def diffs_section(new: RunContents, old: RunContents | None) -> str:
    """``<section id="diffs">``: since ``old`` (when given), then between bases."""
    parts = ['<section id="diffs"><h2>What changed</h2>']
    if old is not None:
        changed = run_diffs(old, new)
        parts.append(f'<h3 id="diff-runs">Since run {escape(old.run_id)}</h3>')
        if changed:
            parts += [_diff_block(label, diff, cell_id) for cell_id, label, diff in changed]
        else:
            parts.append("<p>No package or vulnerability changed in any cell.</p>")
    between = base_diffs(new)
    if between:
        parts.append('<h3 id="diff-bases">Between bases</h3>')
        for language, diff in between:
            title = (
                f"{language_name(language)}: from {diff.old} (single-stage) to {diff.new} "
                "(smallest)"
            )
            parts.append(_diff_block(title, diff, f"bases-{language}"))
    return "".join(parts) + "</section>"


def _diff_block(title: str, diff: ContentDiff, key: str) -> str:
    items = [
        _item("packages added", diff.packages_added),
        _item("packages removed", diff.packages_removed),
        _item("packages changed", tuple(f"{n} {a} -> {b}" for n, a, b in diff.packages_changed)),
        _item("vulnerabilities added", tuple(f"{i} ({s})" for i, s in diff.cves_added)),
        _item("vulnerabilities removed", tuple(f"{i} ({s})" for i, s in diff.cves_removed)),
    ]
    return (
        f'<div class="diff" data-diff="{escape(key)}"><h4>{escape(title)}</h4>'
        f"<ul>{''.join(items)}</ul></div>"
    )


SHOWN = 12  # items listed inline; the rest fold into <details>


def _item(what: str, names: tuple[str, ...]) -> str:
    if not names:
        return f'<li data-kind="{escape(what)}">{escape(what)}: none</li>'
    shown = ", ".join(escape(n) for n in names[:SHOWN])
    rest = ""
    if len(names) > SHOWN:
        rest = (
            f"<details><summary>{len(names) - SHOWN} more</summary>"
            f"{', '.join(escape(n) for n in names[SHOWN:])}</details>"
        )
    return f'<li data-kind="{escape(what)}">{escape(what)} ({len(names)}): {shown}{rest}</li>'
