"""basebench against a plain shell loop on the same 5-cell matrix, one host.

Runs `basebench run` with max_parallel 1 and 2, and benchmarks/shell_loop.sh (docker
build + trivy + curl, sequential), and prints wall times, the ratios and the peak
memory (max RSS) of the basebench process. Needs `basebench infra up` done first.

    .venv/bin/python benchmarks/matrix_vs_shell.py [--repeat 3] [--rounds 1]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASES = ["single-stage", "bookworm", "bookworm-slim", "distroless-static", "distroless-base"]
GO = "1.22.10"
REGISTRY = "127.0.0.1:5000"
CACHE = Path.home() / ".cache" / "basebench"


def matrix(folder: Path, max_parallel: int, repeat: int) -> Path:
    path = folder / f"bench-{max_parallel}.yaml"
    path.write_text(
        f"""name: bench
apps: [go-hello]
toolchains: ["{GO}"]
bases: [{", ".join(BASES)}]
repeat: {repeat}
hosts: [{{name: local, max_parallel: {max_parallel}}}]
output: {folder / "results"}
"""
    )
    return path


# Runs the basebench CLI in this wrapper process, then reports the peak RSS of the
# process itself and of its largest child (the embedded Prefect server).
PEAK_WRAPPER = """
import resource, sys
from cli.main import main
code = main(sys.argv[1:])
own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(f"peak-rss-kib {own} {child}", file=sys.stderr)
sys.exit(code)
"""


def timed(argv: list[str]) -> tuple[float, tuple[int, int]]:
    """Wall seconds, and (own, largest child) peak RSS in bytes when basebench reports it."""
    started = time.perf_counter()
    done = subprocess.run(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT, text=True
    )
    wall = time.perf_counter() - started
    if done.returncode not in (0, 1):  # 1: some cell failed, still a complete run
        sys.exit(f"{argv[0]} failed ({done.returncode}): {done.stderr[-2000:]}")
    peaks = [line.split()[1:] for line in done.stderr.splitlines() if line.startswith("peak-rss")]
    own, child = (int(peaks[0][0]) * 1024, int(peaks[0][1]) * 1024) if peaks else (0, 0)
    return wall, (own, child)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="startup timings per cell")
    parser.add_argument("--rounds", type=int, default=1, help="measure each variant this often")
    args = parser.parse_args()
    basebench = [str(ROOT / ".venv" / "bin" / "python"), "-c", PEAK_WRAPPER]
    shell = [
        "bash", str(ROOT / "benchmarks" / "shell_loop.sh"), str(ROOT / "apps" / "go-hello"),
        REGISTRY, GO, str(args.repeat), str(CACHE / "trivy"), *BASES,
    ]  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        runs = {
            "shell loop (sequential)": shell,
            "basebench max_parallel=1": [*basebench, "run", str(matrix(folder, 1, args.repeat))],
            "basebench max_parallel=2": [*basebench, "run", str(matrix(folder, 2, args.repeat))],
        }
        walls: dict[str, list[float]] = {name: [] for name in runs}
        own_peak = child_peak = 0
        for _ in range(args.rounds):
            for name, argv in runs.items():
                wall, (own, child) = timed(argv)
                walls[name].append(wall)
                own_peak, child_peak = max(own_peak, own), max(child_peak, child)
    shell_wall = min(walls["shell loop (sequential)"])
    print(f"{len(BASES)} cells, go {GO}, repeat {args.repeat}, best of {args.rounds}")
    for name, values in walls.items():
        best = min(values)
        rounds = ", ".join(f"{v:.1f}" for v in values)
        print(
            f"{name:<28} {best:7.1f} s   ratio to shell loop {best / shell_wall:.2f}"
            f"   (rounds: {rounds} s)"
        )
    print(f"peak RSS: basebench process {own_peak / 2**20:.0f} MiB, ", end="")
    print(f"its largest child (embedded Prefect server) {child_peak / 2**20:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
