"""``infra up`` from nothing with one and with two forges at a time, side by side.

    .venv/bin/python benchmarks/forge_workers.py configs/default.yaml --workers 1 2 --rounds 1

Each round, for each worker count, forges the images the matrix names as a new machine's
first ``infra up`` does: a scratch cache dir (no apt lists, no cached rootfs) and a scratch
registry on a free port, on the running engine. The Go wheels are copied in beforehand, so
no download is timed. Afterwards the scratch registry is stopped, its folder removed and its
images taken out of the engine. Printed: every round's seconds, the median per worker count
and its ratio to the first count.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import docker

from infra.forge.catalogue import Needs, needs_of
from infra.registry import free_port
from infra.up import down, up
from tasks.matrix import DEFAULT_CACHE, load_matrix


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    needs = needs_of(load_matrix(args.config))
    seconds: dict[int, list[float]] = {n: [] for n in args.workers}
    for _ in range(args.rounds):
        for workers in args.workers:
            seconds[workers].append(_forge_from_nothing(needs, workers))
            print(f"{workers} at a time: {seconds[workers][-1]:.1f} s", flush=True)
    first = statistics.median(seconds[args.workers[0]])
    print(f"\n{'workers':>8}{'median':>10}{'min-max':>18}{'ratio':>8}")
    for workers, taken in seconds.items():
        median = statistics.median(taken)
        spread = f"{min(taken):.1f}-{max(taken):.1f} s"
        print(f"{workers:>8}{median:>9.1f}s{spread:>18}{median / first:>8.2f}")
    return 0


def _forge_from_nothing(needs: Needs, workers: int) -> float:
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="forge-workers-", dir=DEFAULT_CACHE) as folder:
        cache = Path(folder)
        shutil.copytree(DEFAULT_CACHE / "wheels", cache / "wheels")
        started = time.monotonic()
        try:
            up([], port=port, cache_dir=cache, needs=needs, forge_workers=workers)
            return round(time.monotonic() - started, 1)
        finally:
            down(cache, [port])
            _remove_images(f"127.0.0.1:{port}/")


def _remove_images(prefix: str) -> None:
    client = docker.from_env()
    try:
        for image in client.images.list():
            if any(tag.startswith(prefix) for tag in image.tags):
                client.images.remove(image.id, force=True)
    finally:
        client.close()


if __name__ == "__main__":
    raise SystemExit(main())
