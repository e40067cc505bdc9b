"""Seconds per stage for each cell of a matrix, run directly (no Prefect, no publish).

Explains where `basebench run` spends time beyond a shell loop's build + scan + curl.
Stages run one after the other here (a run does inspect and scan side by side).

    .venv/bin/python benchmarks/stage_times.py configs/default.yaml --only toolchain=1.22.*
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from tasks.hosts.connection import connect
from tasks.hosts.session import (
    BaseUnavailable,
    create_run_network,
    pull_image,
    remove_run_images,
    remove_run_network,
)
from tasks.matrix import expand, load_app, load_matrix, parse_only
from tasks.scanners import make_scanner
from tasks.stages.build import build_image
from tasks.stages.inspect import LayerCache, inspect_image
from tasks.stages.probe import ProbeTarget, probe_image
from tasks.stages.save import save_image

RUN_ID = "stage-times"
STAGES = ("build", "save", "inspect", "scan", "probe")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("--only", action="append", default=[], metavar="KEY=GLOB")
    args = parser.parse_args()
    config = load_matrix(Path(args.config))
    host = config.hosts[0]
    client = connect(host)
    scanner = make_scanner(config.scanner, config.cache_dir)
    cache = LayerCache(config.cache_dir / "layers")
    target = ProbeTarget(create_run_network(client, RUN_ID), host.publish_address, 30)
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
            started = time.perf_counter()
            built = build_image.fn(client, cell, app, RUN_ID, builder, base)
            marks = [time.perf_counter()]
            with tempfile.TemporaryDirectory(dir=config.cache_dir) as folder:
                archive = save_image.fn(client, built.image_id, Path(folder))
                marks.append(time.perf_counter())
                inspect_image.fn(client, built, builder, base, archive, cache)
                marks.append(time.perf_counter())
                scanned = scanner.scan(archive)  # its time includes the SBOM and SARIF
                marks.append(time.perf_counter())
                if scanned.documents is not None:  # nothing publishes them here
                    shutil.rmtree(scanned.documents.report.parent, ignore_errors=True)
            probe_image.fn(client, built, app, target, config.repeat)
            marks.append(time.perf_counter())
            spans = [b - a for a, b in zip([started, *marks], marks, strict=False)]
            print(f"{cell.base:<18}" + "".join(f"{s:>9.1f}" for s in spans))
    finally:
        remove_run_images(client, RUN_ID)
        remove_run_network(client, RUN_ID)
    return 0


if __name__ == "__main__":
    sys.exit(main())
