"""One host vs two: the same 12-cell matrix on one TLS Docker host, then on two.

Starts two extra dockerd processes on this machine (TLS on 127.0.0.1, as the tests do),
pulls every base onto both first (so neither run pays for pulls), then, per round, runs
the ``benchmark`` flow on one host and on two, each host with ``max_parallel: 1``, and
prints wall times, the speedup and the pool's slot utilisation = sum of cell busy time /
(wall x slots); then the best of the rounds with their spread.

Both daemons share this machine's CPUs: the speedup measures the scheduler and the
pool, not two machines. Run it standalone::

    .venv/bin/python benchmarks/multi_host.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from cli.run import PREFECT_DEFAULTS
from infra.registry import free_port
from infra.tls_hosts import TlsHost, start_tls_host, stop_tls_host
from infra.up import up
from tasks.apps import APPS_DIR
from tasks.hosts.config import HostConfig
from tasks.hosts.connection import connect
from tasks.matrix import MatrixConfig, expand, load_matrix
from tasks.sessions.session import pull_image

TOOLCHAINS = ["1.22.10", "1.25.5"]
BASES = ["bookworm", "bookworm-slim", "distroless-static", "distroless-base"]
TWIN_BASES = ["distroless-static", "distroless-base"]  # a second app: 8 + 4 = 12 cells
REPEAT = 3


@dataclass(frozen=True)
class Timing:
    """One run: wall seconds, busy seconds summed over cells, slots, cell phase span."""

    hosts: int
    slots: int
    cells: int
    ok: int
    wall: float
    busy: float
    span: float  # first cell start to last cell end

    @property
    def utilisation(self) -> float:
        return self.busy / (self.wall * self.slots)

    @property
    def span_utilisation(self) -> float:
        return self.busy / (self.span * self.slots)


def write_matrix(directory: Path, hosts: list[HostConfig], cache_dir: Path) -> Path:
    """The 12-cell matrix on ``hosts`` as a YAML-compatible JSON file."""
    apps = directory / "apps"
    if not apps.exists():
        shutil.copytree(APPS_DIR / "go-hello", apps / "go-hello")
        shutil.copytree(APPS_DIR / "go-hello", apps / "go-hello-twin")
    include = [
        {"app": "go-hello-twin", "toolchain": v, "base": b} for v in TOOLCHAINS for b in TWIN_BASES
    ]
    path = directory / f"matrix-{len(hosts)}.json"
    path.write_text(
        json.dumps(
            {
                "name": f"multi-host-{len(hosts)}",
                "apps": ["go-hello"],
                "toolchains": TOOLCHAINS,
                "bases": BASES,
                "include": include,
                "repeat": REPEAT,
                "apps_dir": str(apps),
                "cache_dir": str(cache_dir),
                "output": str(directory / f"results-{len(hosts)}"),
                "hosts": [
                    h.model_dump(mode="json", exclude={"publish_address", "context", "labels"})
                    for h in hosts
                ],
            }
        )
    )
    return path


def warm_hosts(config: MatrixConfig) -> None:
    """Pull every base and builder onto every host, untimed."""
    cells = expand(config)
    refs = sorted({c.builder_ref for c in cells} | {c.base_ref for c in cells})
    for host in config.hosts:
        client = connect(host)
        for ref in refs:
            pull_image(client, ref)
        client.close()


def timed_run(config: MatrixConfig) -> Timing:
    """Run the flow once; time it and sum its cells' busy time."""
    from flows.benchmark import benchmark

    started = time.perf_counter()
    outcome = benchmark(config=config)
    wall = time.perf_counter() - started
    cells = outcome.record.cells
    busy = sum((c.finished_at - c.started_at).total_seconds() for c in cells)
    span = (max(c.finished_at for c in cells) - min(c.started_at for c in cells)).total_seconds()
    return Timing(
        hosts=len(config.hosts),
        slots=sum(h.max_parallel for h in config.hosts),
        cells=len(cells),
        ok=sum(c.status == "ok" for c in cells),
        wall=wall,
        busy=busy,
        span=span,
    )


def warm_prefect() -> None:
    """Start the embedded Prefect server before timing anything (13-16 s on first use)."""
    from prefect import flow

    @flow(name="warm-up")
    def warm_up() -> None:
        return None

    warm_up()


def describe(t: Timing) -> str:
    return (
        f"{t.hosts} host(s), {t.slots} slot(s): {t.cells} cells ({t.ok} ok), "
        f"wall {t.wall:.1f} s, cell phase {t.span:.1f} s, busy {t.busy:.1f} s, "
        f"utilisation {t.utilisation:.2f} (cell phase {t.span_utilisation:.2f})"
    )


def summary(rounds: list[tuple[Timing, Timing]]) -> list[str]:
    """Best of the rounds, with the spread, for the two-host utilisation and the speedup."""

    def best(values: list[float]) -> str:
        return f"{max(values):.2f} (rounds {', '.join(f'{v:.2f}' for v in values)})"

    return [
        f"machine: {os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f}",
        f"utilisation, two hosts: {best([two.utilisation for _, two in rounds])}",
        f"utilisation, two hosts, cell phase: {best([two.span_utilisation for _, two in rounds])}",
        f"speedup two hosts vs one (wall): {best([one.wall / two.wall for one, two in rounds])}",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    for key, value in PREFECT_DEFAULTS.items():
        os.environ.setdefault(key, value)
    state = up(TOOLCHAINS)
    work = Path(tempfile.mkdtemp(prefix="basebench-multi-host-"))
    os.environ.setdefault("PREFECT_HOME", str(work / "prefect"))
    started: list[TlsHost] = []
    try:
        for name in ("bench-a", "bench-b"):
            started.append(start_tls_host(name, work / name, free_port()))
        pool = [h.host_config(max_parallel=1) for h in started]
        one = load_matrix(write_matrix(work, pool[:1], state.cache_dir))
        two = load_matrix(write_matrix(work, pool, state.cache_dir))
        print(f"{len(expand(two))} cells; pulling bases onto both hosts (untimed)", flush=True)
        warm_hosts(two)
        warm_prefect()
        rounds = []
        for round_ in range(1, args.rounds + 1):
            rounds.append((timed_run(one), timed_run(two)))
            for timing in rounds[-1]:
                print(f"round {round_}: {describe(timing)}", flush=True)
        print("\n".join(summary(rounds)))
        return 0 if all(t.ok == t.cells for pair in rounds for t in pair) else 1
    finally:
        for tls_host in started:
            stop_tls_host(tls_host)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
