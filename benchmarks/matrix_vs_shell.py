"""basebench against a plain shell loop on the same 5-cell matrix, one host (P1, P1b, T).

For each startup count (``--repeat``, default 1 and 3), each round runs side by side:

- ``shell``: benchmarks/shell_loop.sh (BuildKit build, docker save, trivy, docker run +
  curl, one cell after the other);
- ``P1``: `basebench run` with ``max_parallel: 1``: one cell at a time, as the loop;
- ``P1b``: `basebench run` with ``max_parallel: 2`` and one build lane: the next build
  starts as soon as the last one ends, beside the last cell's save, inspect and scan.

and prints, best of ``--rounds`` with the spread of the rounds, each variant's wall time
and its ratio to the shell loop of the same round; the same without what happens before
the flow starts (importing basebench, the embedded Prefect server: the wall time minus
the time from launch to the run's ``started_at``); and T: the median ``build_seconds`` of
P1b over that of P1 (pipelined vs alone, the same cells), with the share of P1b builds
that had another cell's stages beside them; and the floor of one build lane: the sum of
P1's build times and startup samples, which no schedule with one build at a time and
probes alone can beat. Needs `basebench infra up` done first.

    python benchmarks/matrix_vs_shell.py [--repeat 1 --repeat 3] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from tasks.dataset.output import S3Config
from tasks.dataset.reader import list_runs, read_table
from tasks.dataset.stores import open_store

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent  # the virtualenv running this script
BASES = ["single-stage", "bookworm", "bookworm-slim", "distroless-static", "distroless-base"]
GO = "1.22.10"
REGISTRY = "127.0.0.1:5000"
CACHE = Path.home() / ".cache" / "basebench"
VARIANTS = {"P1": 1, "P1b": 2}  # name -> max_parallel (one build lane in both)


def matrix(folder: Path, name: str, max_parallel: int, repeat: int) -> Path:
    path = folder / f"{name}-{repeat}.yaml"
    path.write_text(
        f"""name: bench-{name.lower()}
apps: [go-hello]
toolchains: ["{GO}"]
bases: [{", ".join(BASES)}]
repeat: {repeat}
hosts: [{{name: local, max_parallel: {max_parallel}, max_builds: 1}}]
output: {folder / f"results-{name}-{repeat}"}
"""
    )
    return path


@dataclass(frozen=True)
class Measured:
    wall: float
    flow: float | None  # wall minus launch-to-flow-start (basebench only)
    builds: tuple[float, ...] = ()
    builds_beside: int = 0  # builds with another cell's stages beside them
    startups: float = 0.0  # sum of every startup sample of the run


def run_shell(repeat: int) -> Measured:
    argv = [
        "bash", str(ROOT / "benchmarks" / "shell_loop.sh"), str(ROOT / "apps" / "go-hello"),
        REGISTRY, GO, str(repeat), str(CACHE / "trivy"), *BASES,
    ]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(
        argv, env={**os.environ, "TRIVY": str(BIN / "trivy")}, capture_output=True, text=True
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"shell loop failed ({done.returncode}): {done.stderr[-2000:]}")
    return Measured(wall, wall)


def run_basebench(config: Path, output: Path) -> Measured:
    argv = [str(BIN / "python"), "-m", "cli.main", "run", str(config)]
    launched = datetime.now(UTC)
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"basebench failed ({done.returncode}): {done.stderr[-2000:]}")
    return read_run(output, launched, wall)


def read_run(output: Path, launched: datetime, wall: float) -> Measured:
    """The newest run in ``output``: its build times, and the wall time from flow start."""
    store = open_store(str(output), S3Config())
    run = list_runs(store)[-1]
    before_flow = (datetime.fromisoformat(run["started_at"]) - launched).total_seconds()
    results = read_table(store, "results", [run["run_id"]]).dropna(subset=["build_seconds"])
    builds = tuple(float(s) for s in results["build_seconds"])
    beside = sum(1 for stages in results["build_concurrent_stages"] if len(stages))
    startups = float(read_table(store, "samples", [run["run_id"]])["startup_seconds"].sum())
    return Measured(wall, wall - before_flow, builds, beside, startups)


def spread(values: list[float]) -> str:
    return f"{min(values):.1f} s (rounds {', '.join(f'{v:.1f}' for v in values)})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, action="append", help="startups per cell")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    repeats = args.repeat or [1, 3]
    measured: dict[tuple[str, int], list[Measured]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for round_ in range(1, args.rounds + 1):
            for repeat in repeats:
                measured.setdefault(("shell", repeat), []).append(run_shell(repeat))
                for name, max_parallel in VARIANTS.items():
                    config = matrix(folder, name, max_parallel, repeat)
                    output = folder / f"results-{name}-{repeat}"
                    measured.setdefault((name, repeat), []).append(run_basebench(config, output))
                line = ", ".join(
                    f"{n} {measured[(n, repeat)][-1].wall:.1f} s" for n in ("shell", *VARIANTS)
                )
                print(f"round {round_}, repeat {repeat}: {line}", flush=True)
    print(f"\n{len(BASES)} cells, go {GO}, best of {args.rounds} rounds; ratio = best / best loop")
    for repeat in repeats:
        shell = [m.wall for m in measured[("shell", repeat)]]
        print(f"\nrepeat {repeat}: shell loop {spread(shell)}")
        for name in VARIANTS:
            runs = measured[(name, repeat)]
            walls = [m.wall for m in runs]
            flows = [m.flow for m in runs if m.flow is not None]
            paired = [m.wall / s for m, s in zip(runs, shell, strict=True)]
            print(
                f"  {name:<4} wall {spread(walls)}  ratio {min(walls) / min(shell):.2f}"
                f" (paired per round {min(paired):.2f}-{max(paired):.2f})"
            )
            print(f"       from flow start {spread(flows)}  ratio {min(flows) / min(shell):.2f}")
        # One build lane and probes alone: no schedule beats the builds plus the timed
        # startups one after the other (container removal and the rest not counted).
        floors = [sum(m.builds) + m.startups for m in measured[("P1", repeat)]]
        print(
            f"  floor of one build lane (sum of P1's build_seconds and startup samples)"
            f" {spread(floors)}  ratio {min(floors) / min(shell):.2f}"
        )
        alone = [b for m in measured[("P1", repeat)] for b in m.builds]
        piped = [b for m in measured[("P1b", repeat)] for b in m.builds]
        beside = sum(m.builds_beside for m in measured[("P1b", repeat)])
        per_round = [
            statistics.median(b.builds) / statistics.median(a.builds)
            for a, b in zip(measured[("P1", repeat)], measured[("P1b", repeat)], strict=True)
        ]
        print(
            f"  T    median build_seconds P1b {statistics.median(piped):.2f} s /"
            f" P1 {statistics.median(alone):.2f} s = "
            f"{statistics.median(piped) / statistics.median(alone):.3f}"
            f" (per round {', '.join(f'{r:.3f}' for r in per_round)});"
            f" {beside} of {len(piped)} P1b builds had another cell's stages beside them"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
