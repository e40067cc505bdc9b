"""``basebench report`` opened in headless Chromium (Debian's package), offline.

Two nights in moto S3: Chromium's DOM has every chart, one bar per cell, and its
screenshot shows the charts' colours. Thirty nights of the whole nightly matrix (five
languages, 79 cells, ``tests.nightly_fixture``) published to a folder: a copy of the page
with a measuring script appended (the report itself has none) reports from inside
Chromium the box of every text in every chart, the resources the page loaded, every
chart's title and unit; no two labels overlap, none leaves its chart, nothing is
fetched, and the page stays under 2 MB.
"""

from __future__ import annotations

import html
import json
import re
import struct
import subprocess
import uuid
import zlib
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from cli.main import main
from tasks.dataset.stores import LocalStore, S3Store
from tasks.dataset.writer import publish
from tasks.render.charts import PALETTE
from tasks.render.multiples import MULTIPLE_TITLES, SEVERITY_COLOURS, language_name
from tests.nightly_fixture import NIGHTS, nightly_cells, nightly_runs
from tests.records_factory import NIGHTLY_NEW_HIGH, T0, nightly_run
from tests.report_dom import parse_charts
from tests.s3_server import S3Server

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
WIDTH, HEIGHT = 1200, 2600
CELLS = ["id-single-stage", "id-bookworm", "id-distroless-static"]  # largest image first


def chromium(profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run headless Chromium with everything that could reach the network turned off."""
    assert CHROMIUM.exists(), "Debian's chromium package is needed: apt-get install chromium"
    command = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
        f"--window-size={WIDTH},{HEIGHT}",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)


def read_png(path: Path) -> tuple[int, int, list[tuple[int, int, int]]]:
    """(width, height, RGB pixels) of an 8-bit RGB or RGBA PNG, decoded with zlib only."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, colour_type = struct.unpack(">IIBB", header[:10])
    assert depth == 8 and colour_type in (2, 6), (depth, colour_type)
    channels = 3 if colour_type == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * channels
    previous = bytearray(stride)
    pixels: list[tuple[int, int, int]] = []
    for row in range(height):
        start = row * (stride + 1)
        line = _unfilter(
            raw[start], bytearray(raw[start + 1 : start + 1 + stride]), previous, channels
        )
        pixels.extend((line[i], line[i + 1], line[i + 2]) for i in range(0, stride, channels))
        previous = line
    return width, height, pixels


def _unfilter(kind: int, line: bytearray, above: bytearray, bpp: int) -> bytearray:
    for i in range(len(line)):
        left = line[i - bpp] if i >= bpp else 0
        up = above[i]
        corner = above[i - bpp] if i >= bpp else 0
        if kind == 1:
            line[i] = (line[i] + left) & 0xFF
        elif kind == 2:
            line[i] = (line[i] + up) & 0xFF
        elif kind == 3:
            line[i] = (line[i] + (left + up) // 2) & 0xFF
        elif kind == 4:
            p = left + up - corner
            pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
            predictor = left if pa <= pb and pa <= pc else up if pb <= pc else corner
            line[i] = (line[i] + predictor) & 0xFF
    return line


def rgb(hex_colour: str) -> tuple[int, int, int]:
    value = int(hex_colour.lstrip("#"), 16)
    return value >> 16, (value >> 8) & 0xFF, value & 0xFF


@pytest.fixture(scope="module")
def report_file(s3_server: S3Server, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two nightly runs published to moto S3, reported with the CLI into an HTML file."""
    prefix = f"report/{uuid.uuid4().hex}"
    store = S3Store(s3_server.bucket, prefix, s3_server.endpoint_url, s3_server.region)
    publish(nightly_run("night-1", T0), store)
    publish(
        nightly_run(
            "night-2",
            T0 + timedelta(days=1),
            grow={"bookworm": 12_000_000},
            extra_findings={"distroless-static": (NIGHTLY_NEW_HIGH,)},
        ),
        store,
    )
    target = tmp_path_factory.mktemp("report") / "report.html"
    url = f"s3://{s3_server.bucket}/{prefix}"
    assert (
        main(["report", url, "--s3-endpoint", s3_server.endpoint_url, "--html", str(target)]) == 0
    )
    return target


CELLS = ["id-single-stage", "id-bookworm", "id-distroless-static"]  # largest image first


def test_chromium_dom_has_every_chart_and_one_bar_per_cell(
    report_file: Path, tmp_path: Path
) -> None:
    dom = chromium(tmp_path / "profile", "--dump-dom", report_file.as_uri()).stdout
    charts, scripts = parse_charts(dom)
    assert scripts == 0
    multiples = {f"go-{kind}": f"Go: {title}" for kind, title in MULTIPLE_TITLES.items()}
    assert {name: c.title for name, c in charts.items() if name in multiples} == multiples
    for name in multiples:
        assert charts[name].bars == CELLS, name
    assert [len(charts["go-size"].segments[c]) for c in CELLS] == [1, 1, 1]
    assert charts["go-size"].values == {
        "id-single-stage": "914 MB",
        "id-bookworm": "132 MB",
        "id-distroless-static": "6.9 MB",
    }
    assert {name: c.series for name, c in charts.items() if name.startswith("trend-size")} == {
        f"trend-size-go-{cell.removeprefix('id-')}": {cell: 2} for cell in CELLS
    }
    assert "REGRESSION: 2 regression(s)" in dom
    assert "basebench report: run night-2" in dom
    assert "distroless-static: 6.9 MB against 914 MB, 1 vulnerability against 4" in dom


def test_chromium_screenshot_shows_the_charts(report_file: Path, tmp_path: Path) -> None:
    png = tmp_path / "report.png"
    chromium(tmp_path / "profile", f"--screenshot={png}", report_file.as_uri())
    width, height, pixels = read_png(png)
    assert (width, height) == (WIDTH, HEIGHT)
    colours = Counter(pixels)
    white = colours[(255, 255, 255)]
    assert white < 0.97 * len(pixels), "the page is (almost) blank"
    # Bars are solid fills of known colours: the one toolchain's colour in the size,
    # compressed, startup and memory charts (914 MB alone is 274 x 11 px), CRITICAL
    # and HIGH vulnerability segments (75 px per id).
    assert colours[rgb(PALETTE[0])] > 4 * 274 * 11
    assert colours[rgb(SEVERITY_COLOURS["CRITICAL"])] > 70 * 10
    assert colours[rgb(SEVERITY_COLOURS["HIGH"])] > 2 * 70 * 10
    assert len(colours) > 20  # text, grid lines, legends, antialiasing


# Appended to a copy of the page: measures what Chromium laid out, writes it as JSON.
MEASURE = """<script>
(() => {
  const boxes = (nodes) => [...nodes].map((n) => {
    const r = n.getBoundingClientRect();
    return {text: n.textContent, left: r.left, right: r.right, top: r.top, bottom: r.bottom};
  });
  const hit = (a, b) => a.left < b.right - 0.5 && b.left < a.right - 0.5 &&
    a.top < b.bottom - 0.5 && b.top < a.bottom - 0.5;
  const out = {charts: [], overlaps: [], outside: [], figure_overlaps: [], texts: 0,
               resources: performance.getEntriesByType("resource").map((e) => e.name)};
  for (const figure of document.querySelectorAll("figure")) {
    const title = figure.querySelector("h3"), unit = figure.querySelector("p.unit");
    const svg = figure.querySelector("svg");
    out.charts.push({id: figure.id, title: title ? title.textContent : "",
                     unit: unit ? unit.textContent : "",
                     ticks: svg ? svg.querySelectorAll("text.tick").length : 0});
    if (!svg) continue;
    const frame = svg.getBoundingClientRect();
    const texts = boxes(svg.querySelectorAll("text"));
    out.texts += texts.length;
    for (const t of texts) {
      if (t.left < frame.left - 0.5 || t.right > frame.right + 0.5 ||
          t.top < frame.top - 0.5 || t.bottom > frame.bottom + 0.5) {
        out.outside.push([figure.id, t.text]);
      }
    }
    for (let i = 0; i < texts.length; i++) {
      for (let j = i + 1; j < texts.length; j++) {
        if (hit(texts[i], texts[j])) out.overlaps.push([figure.id, texts[i].text, texts[j].text]);
      }
    }
  }
  for (const box of document.querySelectorAll(".multiples, .panels")) {
    const figures = boxes(box.children);
    for (let i = 0; i < figures.length; i++) {
      for (let j = i + 1; j < figures.length; j++) {
        if (hit(figures[i], figures[j])) out.figure_overlaps.push([i, j]);
      }
    }
  }
  const pre = document.createElement("pre");
  pre.id = "measured";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
</script>"""


@pytest.fixture(scope="module")
def nightly_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Thirty nights of the nightly matrix published to a folder, reported with the CLI."""
    folder = tmp_path_factory.mktemp("nightly")
    store = LocalStore(folder / "results")
    for run in nightly_runs():
        publish(run, store)
    target = folder / "report.html"
    assert main(["report", str(folder / "results"), "--html", str(target)]) == 0
    return target


@pytest.fixture(scope="module")
def measured(nightly_report: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """What Chromium laid out, measured from inside the page (a copy with MEASURE)."""
    folder = tmp_path_factory.mktemp("measure")
    copy = folder / "measure.html"
    copy.write_text(nightly_report.read_text().replace("</body>", MEASURE + "</body>"))
    dom = chromium(folder / "profile", "--dump-dom", copy.as_uri()).stdout
    found = re.search(r'<pre id="measured">(.*?)</pre>', dom, re.S)
    assert found is not None, dom[-2000:]
    result: dict[str, Any] = json.loads(html.unescape(found.group(1)))
    return result


def expected_charts() -> dict[str, str]:
    """Chart id -> title for every chart the nightly report must have."""
    cells = nightly_cells()
    charts = {
        f"chart-{language}-{kind}": f"{language_name(language)}: {title}"
        for language in {c.language for c in cells}
        for kind, title in MULTIPLE_TITLES.items()
    }
    for language, base in {(c.language, c.base) for c in cells}:
        name = language_name(language)
        charts[f"chart-trend-startup-{language}-{base}"] = f"{name} on {base}: startup across runs"
        charts[f"chart-trend-size-{language}-{base}"] = f"{name} on {base}: image size across runs"
    # The base x toolchain grids: every language here has two toolchains or more.
    charts |= {
        f"grid-{language}": f"{language_name(language)}: base x toolchain"
        for language in {c.language for c in cells}
    }
    return charts


def test_no_label_overlaps_another_or_leaves_its_chart(measured: dict[str, Any]) -> None:
    assert measured["overlaps"] == []
    assert measured["outside"] == []
    assert measured["figure_overlaps"] == []


def test_every_chart_has_a_title_and_units(measured: dict[str, Any], nightly_report: Path) -> None:
    charts = {c["id"]: c for c in measured["charts"]}
    assert {name: c["title"] for name, c in charts.items()} == expected_charts()
    assert len(charts) == 5 * 7 + 32 * 2 + 5
    for name, chart in charts.items():
        assert chart["unit"].startswith("unit: ") and len(chart["unit"]) > 10, name
        if not name.startswith("grid-"):
            assert chart["ticks"] >= 2, name  # the axis is labelled with values and units
    # Every chart's texts in the page as written: the number Chromium measured.
    page = nightly_report.read_text()
    svg_texts = sum(svg.count("<text") for svg in re.findall(r"<svg.*?</svg>", page, re.S))
    assert measured["texts"] == svg_texts
    # No axis has two ticks that read the same (a flat trend is not drawn as a cliff).
    for svg in re.findall(r"<svg.*?</svg>", page, re.S):
        ticks = re.findall(r'<text class="tick"[^>]*>([^<]+)</text>', svg)
        assert len(ticks) == len(set(ticks)) >= 2, ticks


def test_page_works_offline_and_stays_under_2_mb(
    measured: dict[str, Any], nightly_report: Path
) -> None:
    assert measured["resources"] == []  # Chromium fetched nothing for the page
    page = nightly_report.read_text()
    assert not re.search(r"(src|href)=|url\(|@import|<script|<link", page)
    assert "http" not in page
    assert 300_000 < nightly_report.stat().st_size < 2_000_000


def test_nightly_answer_trends_and_diffs(nightly_report: Path) -> None:
    page = nightly_report.read_text()
    charts, _ = parse_charts(page)
    headlines = re.findall(r'<p class="headline">(.*?)</p>', page)
    assert headlines == [
        "distroless-static-debian12: 8.3 MB against 920 MB, no vulnerabilities against 37",
        "distroless-java17-debian12: 190 MB against 470 MB, 6 vulnerabilities against 37",
        "distroless-nodejs18-debian12: 118 MB against 196 MB, 6 vulnerabilities against 37",
        "distroless-python3-debian13: 55.0 MB against 132 MB, 5 vulnerabilities against 37",
        "distroless-static-debian12: 3.2 MB against 721 MB, no vulnerabilities against 37",
    ]
    # One line per toolchain over every night; the Go panels have four.
    bookworm = charts["trend-startup-go-bookworm"]
    assert sorted(bookworm.series.values()) == [NIGHTS] * 4
    # Thirty dates 10.3 px apart: every fifth is labelled.
    panel = page.split('id="chart-trend-startup-go-bookworm"', 1)[1].split("</figure>", 1)[0]
    assert re.findall(r'class="tick date"[^>]*>([^<]+)<', panel) == [
        "05-01", "05-06", "05-11", "05-16", "05-21", "05-26",
    ]  # fmt: skip
    # The planted events: a 20 % slower start (E-divisive), a grown binary (exact).
    slow = charts["trend-startup-python-distroless-python3-debian12"]
    assert slow.change_points == 1
    assert "from run night-19 (2024-05-19, e-divisive)" in page
    assert charts["trend-size-go-distroless-static-debian12"].change_points == 1
    assert all(c.change_points == 0 for n, c in charts.items() if n.startswith("trend-startup-go"))
    # The last night's failed Java 25 cell: no point that night, the others all 30.
    java = charts["trend-startup-java-distroless-java25-debian13"]
    assert list(java.series.values()) == [NIGHTS - 1]
    assert "No package or vulnerability changed in any cell." in page
