"""The report's first section: per language, the headline and the best base on each
metric, phrased the way the classic comparison put it ("distroless-static: 8.6 MB
against 914 MB, no vulnerabilities against 333"), from ``tasks.analysis.answer``."""

from __future__ import annotations

from html import escape
from typing import Any

import pandas as pd

from tasks.analysis.answer import LanguageAnswer, answers
from tasks.metrics import METRIC, present
from tasks.render.multiples import language_name
from tasks.units import format_count

SIZE = METRIC["size_bytes"]


def vulnerabilities_phrase(count: Any) -> str:
    """0 -> "no vulnerabilities", 1 -> "1 vulnerability", 333 -> "333 vulnerabilities"."""
    n = int(count)
    if n == 0:
        return "no vulnerabilities"
    return f"{format_count(n)} vulnerabilit{'y' if n == 1 else 'ies'}"


def ratio_text(reference: float, value: float) -> str:
    """How many times ``reference`` is ``value``: ``106x``, ``3.2x``; "" when undefined."""
    if value <= 0 or reference <= 0:
        return ""
    ratio = reference / value
    return f"{ratio:.0f}x" if ratio >= 10 else f"{ratio:.1f}x"


def headline(answer: LanguageAnswer) -> str:
    """One sentence: the smallest image against the single-stage builder image."""
    w, ref = answer.winner, answer.reference
    text = f"{w['base']}: {SIZE.text(w['size_bytes'])}"
    if ref is not None and ref["cell_id"] != w["cell_id"]:
        text += f" against {SIZE.text(ref['size_bytes'])}"
    if present(w["vulns_total"]):
        text += f", {vulnerabilities_phrase(w['vulns_total'])}"
        if ref is not None and ref["cell_id"] != w["cell_id"] and present(ref["vulns_total"]):
            text += f" against {format_count(ref['vulns_total'])}"
    return text


def context(answer: LanguageAnswer) -> str:
    """What the headline compares: which toolchain, and the ratio."""
    w, ref = answer.winner, answer.reference
    name = language_name(answer.language)
    if ref is None:
        return f"Smallest {name} image ({name} {w['toolchain_version']}); no single-stage cell ran."
    if ref["cell_id"] == w["cell_id"]:
        return f"The single-stage builder image is the smallest {name} image in this run."
    ratio = ratio_text(float(ref["size_bytes"]), float(w["size_bytes"]))
    return (
        f"Smallest {name} image ({name} {w['toolchain_version']}), {ratio} smaller than the "
        f"single-stage builder image ({name} {ref['toolchain_version']})."
    )


def answer_section(results: pd.DataFrame) -> str:
    """``<section id="answer">``: one block per language, languages by name."""
    blocks = [_language_block(a) for a in answers(results)]
    if not blocks:
        return '<section id="answer"><h2>The answer</h2><p>No cell completed.</p></section>'
    return f'<section id="answer"><h2>The answer</h2>{"".join(blocks)}</section>'


def _language_block(answer: LanguageAnswer) -> str:
    name = language_name(answer.language)
    rows = []
    for best in answer.best:
        metric = best.metric
        ratio = "" if best.reference is None else ratio_text(best.reference, best.value)
        rows.append(
            f"<tr><td>{escape(metric.best)}</td><td>{escape(str(best.row['base']))}</td>"
            f"<td>{escape(name)} {escape(str(best.row['toolchain_version']))}</td>"
            f"<td>{metric.text(best.value)}</td><td>{metric.text(best.reference)}</td>"
            f"<td>{ratio}</td></tr>"
        )
    return (
        f'<div class="answer" id="answer-{escape(answer.language)}"><h3>{escape(name)}</h3>'
        f'<p class="headline">{escape(headline(answer))}</p>'
        f'<p class="context">{escape(context(answer))}</p>'
        f'<table class="best"><thead><tr><th>best on</th><th>base</th><th>toolchain</th>'
        "<th>value</th><th>single-stage builder image</th><th>ratio</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )
