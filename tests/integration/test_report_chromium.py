"""``basebench report`` on runs in moto S3, opened in headless Chromium (Debian's package).

Chromium renders the page offline (no network flags), takes a screenshot and dumps the
DOM it built; the test checks the pixels are the charts' colours and the DOM has every
chart title and one bar per cell.
"""

from __future__ import annotations

import argparse
import struct
import subprocess
import uuid
import zlib
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest

from cli.report import add_parser
from tasks.dataset.stores import S3Store
from tasks.dataset.writer import publish
from tasks.render.charts import BAR_COLOUR
from tasks.render.html import CHART_TITLES, SEVERITY_COLOURS
from tests.records_factory import NIGHTLY_NEW_HIGH, T0, nightly_run
from tests.report_dom import parse_charts
from tests.s3_server import S3Server

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
WIDTH, HEIGHT = 1000, 2600
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
    parser = argparse.ArgumentParser(prog="basebench")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(
        [
            "report",
            f"s3://{s3_server.bucket}/{prefix}",
            "--s3-endpoint",
            s3_server.endpoint_url,
            "--html",
            str(target),
        ]
    )
    assert args.func(args) == 0
    return target


def test_chromium_dom_has_every_chart_and_one_bar_per_cell(
    report_file: Path, tmp_path: Path
) -> None:
    dom = chromium(tmp_path / "profile", "--dump-dom", report_file.as_uri()).stdout
    charts, scripts = parse_charts(dom)
    assert scripts == 0
    assert {name: chart.title for name, chart in charts.items()} == CHART_TITLES
    for name in ("size", "vulnerabilities", "startup", "memory", "packages"):
        assert charts[name].bars == CELLS, name
    assert [len(charts["size"].segments[c]) for c in CELLS] == [1, 1, 1]
    assert charts["size"].values == {
        "id-single-stage": "914 MB",
        "id-bookworm": "132 MB",
        "id-distroless-static": "6.9 MB",
    }
    assert charts["trend-size"].series == dict.fromkeys(sorted(CELLS), 2)
    assert "REGRESSION: 2 regression(s)" in dom
    assert "basebench report: run night-2" in dom


def test_chromium_screenshot_shows_the_charts(report_file: Path, tmp_path: Path) -> None:
    png = tmp_path / "report.png"
    chromium(tmp_path / "profile", f"--screenshot={png}", report_file.as_uri())
    width, height, pixels = read_png(png)
    assert (width, height) == (WIDTH, HEIGHT)
    colours = Counter(pixels)
    white = colours[(255, 255, 255)]
    assert white < 0.97 * len(pixels), "the page is (almost) blank"
    # Bars are solid fills of known colours: size, startup, memory and packages bars in
    # blue (914 MB alone is 475 x 16 px), CRITICAL and HIGH vulnerability segments.
    assert colours[rgb(BAR_COLOUR)] > 4 * 475 * 16
    assert colours[rgb(SEVERITY_COLOURS["CRITICAL"])] > 100 * 14
    assert colours[rgb(SEVERITY_COLOURS["HIGH"])] > 2 * 100 * 14
    assert len(colours) > 20  # text, grid lines, legends, antialiasing
