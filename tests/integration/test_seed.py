"""The seed post's comparison re-run with `basebench run`, on real containers.

go-seed is the post's Go web server with the post's three Dockerfiles. The alpine one
keeps cgo at its default (on, on the golang bookworm builder), so its binary asks for
glibc's loader, which alpine (here: the musl stand-in) does not have: the cell builds and
scans like the others and fails at the probe, at once, with the exit code and the
loader's line. The same program with `CGO_ENABLED=0` on alpine (go-seed-cgo-off: only
that line of the Dockerfile changed) starts. Go 1.22.10: a builder the shared infra
forges (configs/seed.yaml uses the oldest the forge supplies).

The run analyses on the host (``analysis: host``): every image is saved, inspected and
scanned by the analysis container beside it, so the values asserted here are that
path's; one test checks them against the local stages on the same image.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pandas as pd
import pytest

from cli.main import main
from infra.trivydb.fixture import DEFAULT_ADVISORIES, write_fixture_db
from tasks.apps import APPS_DIR, load_app
from tasks.dataset.output import S3Config
from tasks.dataset.reader import list_runs, read_table
from tasks.dataset.stores import open_store
from tasks.records import BuildResult, PulledImage
from tasks.scanners import make_scanner
from tasks.scanners.config import ScannerConfig
from tasks.sessions.session import create_run_network, remove_run_images, remove_run_network
from tasks.stages.inspect import inspect_image
from tasks.stages.probe import ContainerExited, ProbeTarget, probe_image
from tasks.stages.save import save_image

pytestmark = pytest.mark.integration

PROBE_TIMEOUT = 60
LOADER = "/lib64/ld-linux-x86-64.so.2"
EXITED = re.compile(
    r"^probe: the container exited with code 1 before answering GET / on port 8080 "
    r"\((?P<after>[0-9.]+) s after start\); last output: exec \./main: no such file or directory$"
)


def make_apps(root: Path) -> Path:
    """go-seed as shipped, and go-seed-cgo-off: its alpine Dockerfile with cgo turned off."""
    shutil.copytree(APPS_DIR / "go-seed", root / "go-seed")
    fixed = shutil.copytree(APPS_DIR / "go-seed", root / "go-seed-cgo-off")
    dockerfile = fixed / "Dockerfile.alpine"
    text = dockerfile.read_text()
    assert "RUN go build -o main .\n" in text
    dockerfile.write_text(text.replace("RUN go build", "RUN CGO_ENABLED=0 go build"))
    app = fixed / "app.yaml"
    app.write_text(
        app.read_text().replace(
            "alpine: {file: Dockerfile.alpine, linkage: dynamic}",
            "alpine: {file: Dockerfile.alpine, linkage: static}",
        )
    )
    return root


@dataclass
class SeedRun:
    exit_code: int
    summary: str
    results: pd.DataFrame
    run_id: str
    apps_dir: Path
    cache_dir: Path
    db_dir: Path
    vulnerabilities: pd.DataFrame


@pytest.fixture(scope="module")
def seed_run(infra: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeedRun]:
    tmp = tmp_path_factory.mktemp("seed")
    db_dir = write_fixture_db(DEFAULT_ADVISORIES, tmp / "trivy").parent
    apps_dir = make_apps(tmp / "apps")
    config = tmp / "seed.yaml"
    config.write_text(
        f"""
name: seed-it
apps: [go-seed]
toolchains: ["1.22.10"]
bases: [single-stage, alpine, distroless-static-debian12]
include:
  - {{app: go-seed-cgo-off, toolchain: "1.22.10", base: alpine}}
repeat: 2
probe_timeout_seconds: {PROBE_TIMEOUT}
keep_images: true
apps_dir: {apps_dir}
cache_dir: {tmp / "cache"}
scanner: {{db_dir: {db_dir}}}
hosts: [{{name: local, url: "{infra.docker_url}", max_parallel: 2, analysis: host}}]
output: {tmp / "results"}
"""
    )
    capture = tmp / "summary.txt"
    with capture.open("w") as out, contextlib.redirect_stdout(out):
        exit_code = main(["run", str(config)])
    store = open_store(str(tmp / "results"), S3Config())
    run_id = list_runs(store)[-1]["run_id"]
    results = read_table(store, "results")
    results = results.set_index(results["app"] + "/" + results["base"])
    vulnerabilities = read_table(store, "vulnerabilities")
    yield SeedRun(
        exit_code,
        capture.read_text(),
        results,
        run_id,
        apps_dir,
        tmp / "cache",
        db_dir,
        vulnerabilities,
    )
    client = docker.DockerClient(base_url=infra.docker_url)
    client.api.trust_env = False
    remove_run_images(client, run_id)  # kept for the probe test below
    client.close()


def test_the_alpine_cell_fails_at_the_probe_with_the_loader_reason(seed_run: SeedRun) -> None:
    assert seed_run.exit_code == 1  # one failed cell
    row = seed_run.results.loc["go-seed/alpine"]
    assert (row["status"], row["failed_stage"]) == ("failed", "probe")
    match = EXITED.match(row["error"])
    assert match, row["error"]
    assert float(match["after"]) < 2.0  # at once, not after the 60 s probe timeout
    assert pd.isna(row["startup_seconds"])
    # What the other stages measured is kept: size and the scan (the alpine stand-in's
    # two HIGH ssl ids, Go 1.22.10's stdlib 90031 HIGH and 90032 MEDIUM).
    assert 3_000_000 < row["size_bytes"] < 15_000_000
    severities = ["vulns_critical", "vulns_high", "vulns_medium", "vulns_low"]
    assert tuple(row[severities]) == (0, 3, 1, 0)
    assert (row["os_family"], row["os_version"]) == ("alpine", "3.20.3")


def test_the_run_summary_names_the_exit_code_and_the_loader_line(seed_run: SeedRun) -> None:
    # The console wraps long lines at its width (80 columns when not a terminal).
    text = " ".join(seed_run.summary.split())
    start = text.index("go-seed go1.22.10 alpine: failed: ")
    line = text[start:]
    assert text.count("go-seed go1.22.10 alpine: failed: ") == 1
    error = EXITED.pattern.removeprefix("^").removesuffix("$")
    assert re.match("go-seed go1\\.22\\.10 alpine: failed: " + error, line), line


def test_linkage_is_measured_from_each_binary(seed_run: SeedRun) -> None:
    columns = ["program_path", "program_linkage", "program_interpreter", "program_cgo"]
    measured = {
        key: (
            *(None if pd.isna(row[c]) else row[c] for c in columns),
            list(row["program_libraries"]),
        )
        for key, row in seed_run.results.iterrows()
    }
    assert measured == {
        "go-seed/single-stage": ("/app/main", "dynamic", LOADER, True, ["libc.so.6"]),
        "go-seed/alpine": ("/app/main", "dynamic", LOADER, True, ["libc.so.6"]),
        "go-seed/distroless-static-debian12": ("/app/main", "static", None, False, []),
        "go-seed-cgo-off/alpine": ("/app/main", "static", None, False, []),
    }
    planned = seed_run.results[["cgo_enabled", "linkage"]].to_dict("index")
    assert planned == {
        "go-seed/single-stage": {"cgo_enabled": True, "linkage": "dynamic"},
        "go-seed/alpine": {"cgo_enabled": True, "linkage": "dynamic"},
        "go-seed/distroless-static-debian12": {"cgo_enabled": False, "linkage": "static"},
        "go-seed-cgo-off/alpine": {"cgo_enabled": False, "linkage": "static"},
    }


def test_the_same_program_with_cgo_off_starts_on_alpine(seed_run: SeedRun) -> None:
    row = seed_run.results.loc["go-seed-cgo-off/alpine"]
    assert row["status"] == "ok"
    assert pd.isna(row["error"])
    assert 0.01 < row["startup_seconds"] < 10
    for key in ("go-seed/single-stage", "go-seed/distroless-static-debian12"):
        assert seed_run.results.loc[key, "status"] == "ok", key


def test_the_probe_stage_returns_well_before_its_timeout(infra: Any, seed_run: SeedRun) -> None:
    client = docker.DockerClient(base_url=infra.docker_url, timeout=300)
    client.api.trust_env = False
    row = seed_run.results.loc["go-seed/alpine"]
    build = BuildResult(
        run_id=seed_run.run_id,
        image_id=row["image_id"],
        tag="",
        build_seconds=0.0,
        builder_digest=None,
        base_digest=None,
    )
    network = create_run_network(client, seed_run.run_id)
    started = time.monotonic()
    try:
        with pytest.raises(ContainerExited) as exited:
            probe_image.fn(
                client,
                build,
                load_app("go-seed", seed_run.apps_dir),
                ProbeTarget(network, "127.0.0.1", PROBE_TIMEOUT),
                repeat=3,
            )
        elapsed = time.monotonic() - started
    finally:
        remove_run_network(client, seed_run.run_id)
        client.close()
    assert (exited.value.exit_code, exited.value.output) == (
        1,
        ["exec ./main: no such file or directory"],
    )
    assert elapsed < 5  # of a 60 s timeout


@pytest.mark.parametrize("cell", ["go-seed/alpine", "go-seed/distroless-static-debian12"])
def test_images_were_analysed_on_the_host_as_the_local_stages_would(
    infra: Any, seed_run: SeedRun, tmp_path: Path, cell: str
) -> None:
    # The local path saves every image under cache_dir/archives: nothing was saved here.
    assert not (seed_run.cache_dir / "archives").exists()
    assert len(list((seed_run.cache_dir / "toolbox").glob("toolbox-*.tar"))) == 1
    client = docker.DockerClient(base_url=infra.docker_url, timeout=300)
    client.api.trust_env = False
    row = seed_run.results.loc[cell]
    build = BuildResult(seed_run.run_id, row["image_id"], "", None, None, None)
    nothing = PulledImage(ref="", digest=None, forged=True, layers=())
    try:
        archive = save_image.fn(client, row["image_id"], tmp_path)
        inspected = inspect_image.fn(client, build, nothing, nothing, archive)
    finally:
        client.close()
    with make_scanner(ScannerConfig(db_dir=seed_run.db_dir), tmp_path) as scanner:
        scanned = scanner.scan(archive)
    here = {
        "size_bytes": inspected.size_bytes,
        "compressed_bytes": inspected.compressed_bytes,
        "layers": inspected.layers,
        "files": inspected.files,
        "setuid_files": inspected.setuid_files,
        "has_shell": inspected.has_shell,
        "program_path": inspected.program and inspected.program.path,
        "packages": len(scanned.packages),
        "os_family": scanned.os_family,
        "os_version": scanned.os_version,
    }
    assert {key: row[key] for key in here} == here
    found = seed_run.vulnerabilities
    on_host = found[found["cell_id"] == row["cell_id"]][["vulnerability_id", "package"]]
    assert sorted(map(tuple, on_host.to_numpy())) == sorted(
        (f.vulnerability_id, f.package) for f in scanned.findings
    )
