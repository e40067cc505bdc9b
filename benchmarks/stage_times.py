"""Seconds per stage for each cell of a matrix, run directly (no Prefect, no publish).

Explains where `basebench run` spends time beyond a shell loop's build + scan + curl,
and records the stage durations the scheduling simulator (benchmarks/simulate.py)
replays. Stages run one after the other here (a run does inspect and scan side by side).

    .venv/bin/python benchmarks/stage_times.py configs/default.yaml --only toolchain=1.22.*
    .venv/bin/python benchmarks/stage_times.py configs/default.yaml --csv benchmarks/stage_times.csv

``--csv`` writes one row per cell: the wall seconds of each stage, the image's size and
its ``docker save`` archive's size (what a flow machine would receive), and the CPU
seconds the whole machine spent during each stage (from /proc/stat: other work on the
machine counts too, so they are an upper bound of the stage's own).
"""

from __future__ import annotations

import argparse
import csv
import itertools
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from tasks.apps import load_app
from tasks.hosts.connection import connect, docker_host
from tasks.matrix import expand, load_matrix, parse_only
from tasks.readers.layers import LayerCache
from tasks.scanners import make_scanner
from tasks.sessions.session import (
    BaseUnavailable,
    create_run_network,
    pull_image,
    remove_run_images,
    remove_run_network,
)
from tasks.stages.build import build_image
from tasks.stages.inspect import inspect_image
from tasks.stages.probe import ProbeTarget, probe_image
from tasks.stages.save import save_image

RUN_ID = "stage-times"
STAGES = ("build", "save", "inspect", "scan", "probe")
CSV_COLUMNS = (
    "app",
    "language",
    "toolchain_version",
    "base",
    "variant",
    "repeat",
    *(f"{stage}_seconds" for stage in STAGES),
    *(f"{stage}_cpu_seconds" for stage in STAGES),
    "size_bytes",
    "archive_bytes",
    "cores",
)


def busy_cpu_seconds() -> float:
    """CPU seconds the whole machine has spent not idle since boot (/proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("--only", action="append", default=[], metavar="KEY=GLOB")
    parser.add_argument("--csv", type=Path, help="also write one row per cell to this file")
    args = parser.parse_args()
    config = load_matrix(Path(args.config))
    host = config.hosts[0]
    client = connect(host)
    scanner = make_scanner(config.scanner, config.cache_dir)
    cache = LayerCache(config.cache_dir / "layers")
    target = ProbeTarget(create_run_network(client, RUN_ID), host.publish_address, 30)
    rows: list[dict[str, object]] = []
    print(f"{'base':<18}" + "".join(f"{s:>9}" for s in STAGES) + "  (seconds)")
    try:
        for cell in expand(config, parse_only(args.only)):
            app = load_app(cell.app, config.apps_dir)
            try:
                builder = pull_image(client, cell.builder_ref)
                base = pull_image(client, cell.base_ref)
            except BaseUnavailable as exc:
                print(f"{cell.base:<18} skipped: {exc}")
                continue
            cpu = [busy_cpu_seconds()]
            started = time.perf_counter()
            built = build_image.fn(
                client,
                cell,
                app,
                RUN_ID,
                builder,
                base,
                engine=docker_host(host),
                tool=config.build_tool,
            )
            marks = [time.perf_counter()]
            cpu.append(busy_cpu_seconds())
            with tempfile.TemporaryDirectory(dir=config.cache_dir) as folder:
                archive = save_image.fn(client, built.image_id, Path(folder))
                archive_bytes = archive.stat().st_size
                marks.append(time.perf_counter())
                cpu.append(busy_cpu_seconds())
                inspected = inspect_image.fn(client, built, builder, base, archive, cache)
                marks.append(time.perf_counter())
                cpu.append(busy_cpu_seconds())
                scanned = scanner.scan(archive)  # its time includes the SBOM and SARIF
                marks.append(time.perf_counter())
                cpu.append(busy_cpu_seconds())
                if scanned.documents is not None:  # nothing publishes them here
                    shutil.rmtree(scanned.documents.report.parent, ignore_errors=True)
            probe_image.fn(client, built, app, target, config.repeat)
            marks.append(time.perf_counter())
            cpu.append(busy_cpu_seconds())
            spans = [b - a for a, b in zip([started, *marks], marks, strict=False)]
            cpu_spans = [b - a for a, b in itertools.pairwise(cpu)]
            print(f"{cell.base:<18}" + "".join(f"{s:>9.1f}" for s in spans))
            rows.append(
                {
                    "app": cell.app,
                    "language": cell.language,
                    "toolchain_version": cell.toolchain_version,
                    "base": cell.base,
                    "variant": cell.variant,
                    "repeat": config.repeat,
                    **{f"{s}_seconds": round(v, 3) for s, v in zip(STAGES, spans, strict=True)},
                    **{
                        f"{s}_cpu_seconds": round(v, 2)
                        for s, v in zip(STAGES, cpu_spans, strict=True)
                    },
                    "size_bytes": inspected.size_bytes,
                    "archive_bytes": archive_bytes,
                    "cores": os.cpu_count(),
                }
            )
    finally:
        remove_run_images(client, RUN_ID)
        remove_run_network(client, RUN_ID)
    if args.csv is not None:
        with args.csv.open("w", newline="") as out:
            writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
        print(f"wrote {len(rows)} rows to {args.csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
