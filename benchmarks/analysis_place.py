"""Where to save, inspect and scan an image of a local engine: here, or on the host (issue 15).

For each image, each round runs side by side on this machine's engine, cold (no layer
cache):

- ``flow``: as `basebench run` with ``analysis: flow``: ``docker save`` streamed into a
  file here, then inspect and scan of that file side by side;
- ``host``: as with ``analysis: host``: the analysis container on the engine saves,
  inspects and scans, and only its results come back.

Both go through the pipeline's own ``inspect_and_scan``, with the stages' functions
(``.fn``) rather than Prefect tasks: the place is measured, not task bookkeeping.

It prints, best of ``--rounds`` with the spread, each path's wall time and their ratio,
and the bytes that reach this machine: the archive against the container's results.
Needs `basebench infra up` done first (forged images, the fixture DB).

    python benchmarks/analysis_place.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import docker
from docker.models.containers import Container

from tasks.hosts.config import HostConfig
from tasks.hosts.connection import connect
from tasks.matrix import DEFAULT_REGISTRY, MatrixConfig
from tasks.pipeline import Stages, inspect_and_scan
from tasks.records import BuildResult, PulledImage
from tasks.scanners import make_scanner
from tasks.scanners.config import ScannerConfig
from tasks.sessions.session import HostSession, RunSettings, pull_image
from tasks.sessions.toolbox import analysis_image, install_toolbox, pack_toolbox
from tasks.stages import analyse_on_host, inspect, save, scan
from tasks.stages.probe import ProbeTarget

CACHE = Path.home() / ".cache" / "basebench"
IMAGES = {  # what cells ship, from the largest (a single-stage cell is its builder + a layer)
    "golang builder (single-stage)": "library/golang:1.25.5-bookworm",
    "debian bookworm": "library/debian:bookworm",
    "distroless python3": "distroless/python3-debian13:latest",
    "distroless static": "distroless/static-debian12:latest",
}


class ArchiveMeter:
    """The size of the archive the flow path's save stage wrote: what it moves here."""

    def __init__(self) -> None:
        self.bytes = 0

    def save(self, client: docker.DockerClient, image_id: str, folder: Path) -> Path:
        archive = save.save_image.fn(client, image_id, folder)
        self.bytes = archive.stat().st_size
        return archive


class ResultsMeter:
    """Counts the bytes the flow fetches from analysis containers (``get_archive``)."""

    def __init__(self) -> None:
        self.bytes = 0
        original = Container.get_archive

        def counted(container: Container, path: str, *args: Any, **kwargs: Any) -> Any:
            stream, stat = original(container, path, *args, **kwargs)
            chunks = list(stream)
            self.bytes = sum(len(chunk) for chunk in chunks)
            return iter(chunks), stat

        Container.get_archive = counted


def spread(values: list[float]) -> str:
    return f"{min(values):5.1f} ({min(values):.1f}-{max(values):.1f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    host = HostConfig(analysis="host")
    client = connect(host)
    meter, archives = ResultsMeter(), ArchiveMeter()
    stages = Stages(  # the stages' functions, not Prefect tasks: the place is measured
        save=archives.save,
        inspect=inspect.inspect_image.fn,
        scan=scan.scan_image.fn,
        on_host=analyse_on_host.analyse_on_host.fn,
    )
    with make_scanner(ScannerConfig(), CACHE) as scanner:
        image = analysis_image(MatrixConfig.model_fields["mirrors"].default)
        pull_image(client, image)
        toolbox = pack_toolbox(scanner, CACHE / "toolbox")
        run = RunSettings(
            run_id="bench-analysis-place",
            scanner=scanner,
            repeat=1,
            apps={},  # no builds here
            archive_dir=CACHE / "archives",
        )
        probe = ProbeTarget("none", "127.0.0.1", 1.0)
        sessions = {
            "flow": HostSession(
                host=HostConfig(analysis="flow"), client=client, run=run, probe=probe
            ),
            "host": HostSession(
                host=host,
                client=client,
                run=run,
                probe=probe,
                on_host=install_toolbox(client, toolbox, image, host.socket),
            ),
        }
        nothing = PulledImage(ref="", digest=None, forged=True, layers=())  # cold: no cache
        print(
            f"{'image':<30} {'MB':>5} {'flow s (spread)':>17} {'host s (spread)':>17}"
            f" {'host/flow':>9}  to this machine: archive MB / results KB"
        )
        for label, ref in IMAGES.items():
            built = client.images.get(f"{DEFAULT_REGISTRY}/{ref}")
            build = BuildResult("bench", built.id, ref, None, None, None)
            times: dict[str, list[float]] = {"flow": [], "host": []}
            for _ in range(args.rounds):
                for place, session in sessions.items():
                    started = time.perf_counter()
                    outcomes = inspect_and_scan(session, stages, build, nothing, nothing)
                    times[place].append(time.perf_counter() - started)
                    failed = [o for o in outcomes.values() if isinstance(o, Exception)]
                    if failed:
                        raise SystemExit(f"{label}, {place}: {failed[0]}")
            flow, host_s = min(times["flow"]), min(times["host"])
            print(
                f"{label:<30} {built.attrs['Size'] / 1e6:5.0f} {spread(times['flow']):>17}"
                f" {spread(times['host']):>17} {host_s / flow:9.2f}"
                f"  {archives.bytes / 1e6:.0f} MB / {meter.bytes / 1e3:.0f} KB"
            )
    client.close()


if __name__ == "__main__":
    main()
