"""Publishing a 720-cell run: the Delta table writer against the manifest-layout writer.

    .venv/bin/python benchmarks/publish_tables.py --rounds 3 [--history 20]

A synthetic run (720 cells over six bases, all five tables: about 47,000 package rows,
6,400 findings, 3,600 startup samples) is published to moto's S3 server (a child
process on 127.0.0.1) and to a local folder, by ``tasks.dataset.writer.publish`` (one
Delta commit per table) and by ``tasks.dataset.legacy.publish_manifest_layout`` (the
writer before it: one Parquet file per table, then a manifest). Each publish runs in a
fresh child process into an empty prefix or folder; reported per writer and target:
wall time of the publish call, the child's peak RSS above what it held just before the
call, and the S3 requests (from the server's request log) or the files written.
Every round's figures are kept: the median and the spread (min-max) are printed, with
the ratio new/today of the medians side by side. ``--history N`` first publishes N small
runs (six cells each, not measured) into the output, as a nightly output holds earlier
runs: reading the Delta log grows with the commits since its last checkpoint, and the
older writer lists every run's files when it replaces one.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tasks.child_server import ChildServer

ROOT = Path(__file__).resolve().parents[1]
# (base, packages, findings) per cell: sizes as the forged images have them.
BASES = (
    ("single-stage", 206, 24),
    ("bookworm", 88, 12),
    ("bookworm-slim", 80, 10),
    ("distroless-static", 5, 1),
    ("distroless-base", 7, 3),
    ("distroless-cc", 9, 3),
)
CELLS = 720
REPEAT = 5
WRITERS = ("today", "new")
TARGETS = ("s3", "local")
DUMMY_AWS = {
    "AWS_ACCESS_KEY_ID": "benchmark",
    "AWS_SECRET_ACCESS_KEY": "benchmark",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": "/dev/null",
    "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
}
REQUEST_LINE = re.compile(r'"(GET|PUT|POST|HEAD|DELETE) ')


def synthetic_run(run_id: str, cells_count: int = CELLS, day: int = 0) -> Any:
    """A RunRecord of ``cells_count`` ok cells with packages, findings and samples,
    started ``day`` days after 2026-11-28."""
    from tasks.records import (
        BuildResult,
        Cell,
        CellResult,
        Finding,
        InspectResult,
        Package,
        ProbeResult,
        RunRecord,
        ScanResult,
        Status,
    )

    start = datetime(2026, 11, 28, 2, tzinfo=UTC) + timedelta(days=day)
    base_layer, app_layer = "sha256:" + "1" * 64, "sha256:" + "2" * 64
    cells = []
    for index in range(cells_count):
        base, package_count, finding_count = BASES[index % len(BASES)]
        toolchain = f"1.{20 + index // 60}.{index // len(BASES) % 10}"
        stdlib = Package(
            "stdlib", f"v{toolchain}", "stdlib", "gobinary", "pkg:golang/stdlib", app_layer
        )
        packages = (
            *(
                Package(
                    f"pkg{n}",
                    f"1.{n}-1+deb12u1",
                    f"src{n // 2}",
                    "debian",
                    f"pkg:deb/debian/pkg{n}@1.{n}-1%2Bdeb12u1?arch=amd64&distro=debian-12.11",
                    base_layer,
                )
                for n in range(package_count - 1)
            ),
            stdlib,
        )
        findings = tuple(
            Finding(
                f"CVE-2026-{90000 + n}",
                f"pkg{n}",
                f"1.{n}-1+deb12u1",
                "" if n % 3 else f"1.{n}-1+deb12u2",
                ("CRITICAL", "HIGH", "MEDIUM", "LOW")[n % 4],
                "affected" if n % 3 else "fixed",
                f"pkg:deb/debian/pkg{n}@1.{n}-1%2Bdeb12u1?arch=amd64&distro=debian-12.11",
                base_layer,
            )
            for n in range(finding_count)
        )
        cell = Cell(
            f"cell{index:04d}",
            "go-hello",
            "go",
            toolchain,
            base,
            "single-stage" if base == "single-stage" else "multi-stage",
            f"127.0.0.1:5000/library/golang:{toolchain}-bookworm",
            f"127.0.0.1:5000/distroless/{base}",
            base != "distroless-static",
        )
        cells.append(
            CellResult(
                cell=cell,
                status=Status.OK,
                host="local",
                started_at=start + timedelta(seconds=index),
                finished_at=start + timedelta(seconds=index + 40),
                build=BuildResult(
                    run_id,
                    f"sha256:{index:064d}",
                    "t",
                    10.5,
                    "sha256:b",
                    "sha256:c",
                    base_layers=(base_layer,),
                ),
                inspect=InspectResult(
                    100_000_000 + index, 33_000_000, 4, "", True, True, True, 2, 9000, True, True, 3
                ),
                scan=ScanResult("debian", "12.11", packages, findings, "trivy", "0.76.0", start),
                probe=ProbeResult(tuple(0.22 + 0.01 * r for r in range(REPEAT)), 1_400_000),
            )
        )
    return RunRecord(
        run_id,
        "benchmark",
        "0123456789abcdef",
        start,
        start + timedelta(hours=2),
        {"basebench": "0.1.0"},
        ("local",),
        tuple(cells),
    )


def peak_rss_bytes() -> int:
    """This process's peak resident set so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def child(writer: str, output: str, endpoint: str | None, history: int) -> None:
    """Publish ``history`` small runs (not measured), or the synthetic run once and
    print what it took, as JSON."""
    from tasks.dataset.legacy import publish_manifest_layout
    from tasks.dataset.output import S3Config
    from tasks.dataset.stores import open_store
    from tasks.dataset.writer import publish

    store = open_store(output, S3Config(endpoint_url=endpoint))
    write = publish if writer == "new" else publish_manifest_layout
    if history:
        for day in range(history):
            write(synthetic_run(f"earlier-{day}", len(BASES), day - history), store)
        return
    run = synthetic_run(f"bench-{uuid.uuid4().hex[:8]}")
    before = peak_rss_bytes()
    started = time.perf_counter()
    write(run, store)
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "rss_before": before, "rss_peak": peak_rss_bytes()}))


def run_child(
    writer: str, output: str, endpoint: str | None, env: dict[str, str], history: int = 0
) -> dict[str, Any]:
    argv = [sys.executable, __file__, "--child", writer, "--output", output]
    argv += ["--history", str(history)]
    if endpoint:
        argv += ["--endpoint", endpoint]
    done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"{writer} -> {output} failed:\n{done.stderr[-3000:]}")
    if history:
        return {}
    measured: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return measured


def files_under(folder: Path) -> tuple[int, int]:
    files = [p for p in folder.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def spread(values: list[float], fmt: str) -> str:
    median = statistics.median(values)
    return f"{fmt.format(median)} ({fmt.format(min(values))}-{fmt.format(max(values))})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--history", type=int, default=0, help="earlier runs in the output")
    parser.add_argument("--child", choices=WRITERS, help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.output, args.endpoint, args.history if args.history else 0)
        return 0

    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")} | DUMMY_AWS
    env["PYTHONPATH"] = str(ROOT)
    server = ChildServer(
        lambda port: [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        "/moto-api/",
        env=env,
    )
    server.start()
    server.wait_ready(60)
    bucket = "benchmark-bucket"
    import boto3

    boto3.client(
        "s3",
        endpoint_url=server.base_url,
        region_name="us-east-1",
        aws_access_key_id="benchmark",
        aws_secret_access_key="benchmark",
    ).create_bucket(Bucket=bucket)
    figures: dict[tuple[str, str], dict[str, list[float]]] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="publish-bench-") as scratch:
            for round_number in range(args.rounds):
                # Alternate who goes first, so neither always meets a warmer machine.
                writers = WRITERS if round_number % 2 == 0 else WRITERS[::-1]
                for target in TARGETS:
                    for writer in writers:
                        key = (target, writer)
                        slot = figures.setdefault(key, {})
                        if target == "s3":
                            output = f"s3://{bucket}/{writer}-{round_number}"
                            if args.history:
                                run_child(writer, output, server.base_url, env, args.history)
                            log_before = len(server.output())
                            measured = run_child(writer, output, server.base_url, env)
                            requests = Counter(REQUEST_LINE.findall(server.output()[log_before:]))
                            slot.setdefault("requests", []).append(sum(requests.values()))
                            for method in ("GET", "PUT", "HEAD", "POST", "DELETE"):
                                slot.setdefault(method, []).append(requests.get(method, 0))
                        else:
                            folder = Path(scratch) / f"{writer}-{round_number}"
                            if args.history:
                                run_child(writer, str(folder), None, env, args.history)
                            files_before, bytes_before = files_under(folder)
                            measured = run_child(writer, str(folder), None, env)
                            count, size = files_under(folder)
                            slot.setdefault("files", []).append(count - files_before)
                            slot.setdefault("bytes", []).append(size - bytes_before)
                        slot.setdefault("seconds", []).append(measured["seconds"])
                        peak = (measured["rss_peak"] - measured["rss_before"]) / 2**20
                        slot.setdefault("rss_mib", []).append(peak)
                        slot.setdefault("rss_total_mib", []).append(measured["rss_peak"] / 2**20)
                        print(
                            f"round {round_number + 1} {target:<5} {writer:<5} "
                            f"{measured['seconds']:.2f} s, peak RSS +{peak:.0f} MiB",
                            flush=True,
                        )
    finally:
        server.stop()
    report(figures, args.rounds, args.history)
    return 0


def report(
    figures: dict[tuple[str, str], dict[str, list[float]]], rounds: int, history: int
) -> None:
    rows = [
        ("seconds", "wall time (s)", "{:.2f}"),
        ("rss_mib", "peak RSS over the call (MiB)", "{:.0f}"),
        ("rss_total_mib", "peak RSS of the process (MiB)", "{:.0f}"),
        ("requests", "S3 requests", "{:.0f}"),
        ("PUT", "  of which PUT", "{:.0f}"),
        ("GET", "  of which GET (incl. LIST)", "{:.0f}"),
        ("files", "files added", "{:.0f}"),
        ("bytes", "bytes added", "{:.0f}"),
    ]
    print(
        f"\n{CELLS}-cell run into an output holding {history} earlier run(s), {rounds} round(s): "
        "median (min-max); ratio new/today of medians"
    )
    print(f"{'target':<7}{'measure':<32}{'today':>26}{'new':>26}{'new/today':>11}")
    for target in TARGETS:
        today, new = figures[(target, "today")], figures[(target, "new")]
        for key, label, fmt in rows:
            if key not in today:
                continue
            ratio = statistics.median(new[key]) / max(statistics.median(today[key]), 1e-9)
            print(
                f"{target:<7}{label:<32}{spread(today[key], fmt):>26}"
                f"{spread(new[key], fmt):>26}{ratio:>11.2f}"
            )


if __name__ == "__main__":
    sys.exit(main())
