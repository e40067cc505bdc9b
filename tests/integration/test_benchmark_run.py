"""End to end: `basebench run` on a small matrix, against the real engine, local registry,
Trivy with the fixture DB, embedded Prefect and the moto S3 server."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pandas as pd
import pytest

import cli.run
import flows.benchmark
from cli.main import main
from infra.trivydb.fixture import DEFAULT_ADVISORIES, write_fixture_db
from tasks import labels, matrix
from tasks.apps import APPS_DIR, load_app
from tasks.dataset.output import S3Config
from tasks.dataset.reader import list_runs, read_table
from tasks.dataset.stores import ResultStore, open_store
from tasks.render.html import build_report
from tasks.scanners import DOCUMENTS_FOLDER
from tests.integration.conftest import marked_pids

pytestmark = pytest.mark.integration

BROKEN_GO = "package main\n\nfunc main() { this is not go }\n"
RUN_MARKER = "BASEBENCH_TEST_RUN"  # in the environment of every process the run spawns
# Listens on the wrong port: the probe never gets an answer on 8080.
SILENT_GO = (
    'package main\n\nimport "net/http"\n\nfunc main() { _ = http.ListenAndServe(":9090", nil) }\n'
)


def make_apps(root: Path) -> Path:
    """go-hello as shipped, plus one app that cannot build and one that never answers."""
    shutil.copytree(APPS_DIR / "go-hello", root / "go-hello")
    for name, source in [("broken-build", BROKEN_GO), ("silent", SILENT_GO)]:
        shutil.copytree(APPS_DIR / "go-hello", root / name)
        (root / name / "main.go").write_text(source)
    return root


@dataclass
class Run:
    exit_code: int
    results: pd.DataFrame
    vulnerabilities: pd.DataFrame
    samples: pd.DataFrame
    packages: pd.DataFrame
    runs: list[dict[str, Any]]
    leftovers: int
    built_images: int
    archives_left: list[Path]
    prefect_servers_left: list[str]
    store: ResultStore
    local_documents_left: list[Path]  # scan documents of this run still in the cache dir
    plans: int  # how often the matrix was planned (expanded into cells)
    app_reads: Counter[str]  # app.yaml reads, by app


@pytest.fixture(scope="module")
def run(infra: Any, s3_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    tmp = tmp_path_factory.mktemp("run")
    # A DB of this checkout's advisories: the one in the cache dir is shared with other
    # checkouts, whose `infra up` rewrites it from their own advisories file.
    db_dir = write_fixture_db(DEFAULT_ADVISORIES, tmp / "trivy").parent
    config = tmp / "matrix.yaml"
    output = f"s3://{s3_server.bucket}/it"
    config.write_text(
        f"""
name: it
apps: [go-hello]
toolchains: ["1.22.10"]
bases: [single-stage, bookworm, distroless-static, distroless-base, alpine]
include:
  - {{app: broken-build, toolchain: "1.22.10", base: distroless-static}}
  - {{app: silent, toolchain: "1.22.10", base: distroless-static}}
repeat: 3
probe_timeout_seconds: 5
apps_dir: {make_apps(tmp / "apps")}
cache_dir: {infra.cache_dir}
scanner: {{db_dir: {db_dir}}}
hosts: [{{name: local, url: "{infra.docker_url}", max_parallel: 2}}]
output: {output}
s3: {{endpoint_url: "{s3_server.endpoint_url}"}}
"""
    )
    # Marks every process the run spawns, so its embedded Prefect server is told apart
    # from another checkout's on this machine.
    marker = uuid.uuid4().hex
    plans, app_reads = Counter[str](), Counter[str]()

    def counted(calls: Counter[str], key: Callable[..., str], real: Callable[..., Any]) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            calls[key(*args)] += 1
            return real(*args, **kwargs)

        return call

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(RUN_MARKER, marker)
        for module in (cli.run, flows.benchmark):  # everywhere a run may plan its matrix
            patch.setattr(module, "plan", counted(plans, lambda *_: "plan", matrix.plan))
        patch.setattr(matrix, "load_app", counted(app_reads, lambda name, *_: name, load_app))
        exit_code = main(["run", str(config)])
    store = open_store(output, S3Config(endpoint_url=s3_server.endpoint_url))
    runs = list_runs(store)
    run_id = runs[-1]["run_id"]
    # Everything the run makes carries its label: images (build stages included),
    # containers and the network.
    client = docker.DockerClient(base_url=infra.docker_url)
    label = {"label": f"{labels.RUN}={run_id}"}
    leftovers = [
        *client.containers.list(all=True, filters=label),
        *client.images.list(all=True, filters=label),
        *client.networks.list(filters=label),
    ]
    results = _index(read_table(store, "results"))
    built = [image_id for image_id in results["image_id"].dropna()]
    leftovers += [image_id for image_id in built if _exists(client, image_id)]
    client.close()
    yield Run(
        exit_code=exit_code,
        results=results,
        built_images=len(built),
        vulnerabilities=read_table(store, "vulnerabilities"),
        samples=read_table(store, "samples"),
        packages=read_table(store, "packages"),
        runs=runs,
        leftovers=len(leftovers),
        # Only this run's: a test in the other worker may be saving images of its own run.
        archives_left=list((infra.cache_dir / "archives").glob(f"{run_id}-*/*")),
        prefect_servers_left=_command_lines(marked_pids(RUN_MARKER, marker) - {os.getpid()}),
        store=store,
        local_documents_left=_documents_of(infra.cache_dir / DOCUMENTS_FOLDER, set(built)),
        plans=plans["plan"],
        app_reads=app_reads,
    )


def _documents_of(folder: Path, image_ids: set[str]) -> list[Path]:
    """Kept scan reports under ``folder`` that describe one of ``image_ids`` (other runs
    on this machine may keep their own there meanwhile)."""
    found = []
    for report in folder.glob("*/trivy.json"):
        try:
            image_id = json.loads(report.read_text())["Metadata"]["ImageID"]
        except (OSError, ValueError, KeyError):
            continue  # another run's scan, being written or removed right now
        if image_id in image_ids:
            found.append(report)
    return found


def _command_lines(pids: set[int]) -> list[str]:
    """Command lines of the live processes among ``pids``."""
    found = []
    for pid in pids:
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:  # the process ended meanwhile
            continue
        found.append(args.replace("\0", " ").strip())
    return found


def _exists(client: docker.DockerClient, image_id: str) -> bool:
    try:
        client.images.get(image_id)
    except docker.errors.ImageNotFound:
        return False
    return True


def _index(results: pd.DataFrame) -> pd.DataFrame:
    return results.set_index(results["app"] + "/" + results["base"])


def test_every_cell_has_one_row(run: Run) -> None:
    assert len(run.runs) == 1
    assert sorted(run.results.index) == [
        "broken-build/distroless-static",
        "go-hello/alpine",
        "go-hello/bookworm",
        "go-hello/distroless-base",
        "go-hello/distroless-static",
        "go-hello/single-stage",
        "silent/distroless-static",
    ]
    assert run.exit_code == 1  # two cells failed


def test_the_matrix_is_planned_once_and_each_app_read_once_by_the_plan(run: Run) -> None:
    # Seven cells of three apps: validating the file reads each app, then the plan does,
    # once; the stages take the plan's apps.
    assert run.plans == 1
    assert run.app_reads == {"go-hello": 2, "broken-build": 2, "silent": 2}


def test_sizes_follow_the_classic_comparison(run: Run) -> None:
    size = run.results["size_bytes"]
    static, single = size["go-hello/distroless-static"], size["go-hello/single-stage"]
    assert static < 15_000_000
    assert single >= 10 * static
    assert size["go-hello/distroless-base"] > static
    assert size["go-hello/bookworm"] > size["go-hello/distroless-base"]
    # The alpine stand-in (3 MB) sits between distroless static (2 MB) and base (21 MB).
    assert static < size["go-hello/alpine"] < size["go-hello/distroless-base"]
    compressed = run.results["compressed_bytes"]
    assert 0 < compressed["go-hello/distroless-static"] < static


def test_content_facts(run: Run) -> None:
    r = run.results
    assert not r.loc["go-hello/distroless-static", "has_shell"]
    assert not r.loc["go-hello/distroless-base", "has_shell"]
    assert r.loc["go-hello/bookworm", "has_shell"]
    assert r.loc["go-hello/single-stage", "has_package_manager"]
    assert not r.loc["go-hello/distroless-static", "has_package_manager"]
    assert r.loc["go-hello/single-stage", "builder_forged"]
    assert r.loc["go-hello/distroless-static", "base_forged"]
    assert r.loc["go-hello/bookworm", "os_family"] == "debian"
    # The forged alpine stand-in: busybox's shell, no apk.
    assert (r.loc["go-hello/alpine", "os_family"], r.loc["go-hello/alpine", "os_version"]) == (
        "alpine",
        "3.20.3",
    )
    assert r.loc["go-hello/alpine", "has_shell"]
    assert not r.loc["go-hello/alpine", "has_package_manager"]
    assert r.loc["go-hello/alpine", "base_forged"]


def test_fixture_cves_land_exactly_where_the_packages_are(run: Run) -> None:
    ids = run.vulnerabilities.merge(
        run.results.reset_index(drop=True)[["cell_id", "app", "base"]], on="cell_id"
    )
    found = ids.groupby(ids["app"] + "/" + ids["base"])["vulnerability_id"].apply(
        lambda s: sorted(set(s))
    )
    # Every go-hello binary is built by Go 1.22.10: stdlib 90031 (fixed in 1.23.0) and
    # 90032 (fixed in 1.24.12 / 1.25.6) beside its base's own advisories.
    stdlib = ["CVE-2026-90031", "CVE-2026-90032"]
    assert found["go-hello/distroless-static"] == ["CVE-2026-90004", *stdlib]
    assert found["go-hello/distroless-base"] == [
        "CVE-2026-90001",
        "CVE-2026-90002",
        "CVE-2026-90004",
        *stdlib,
    ]
    assert found["go-hello/bookworm"] == [
        "CVE-2026-90001",
        "CVE-2026-90003",
        "CVE-2026-90004",
        *stdlib,
    ]
    assert found["go-hello/alpine"] == ["CVE-2026-90002", "CVE-2026-90021", *stdlib]
    assert not {"CVE-2026-90005", "CVE-2026-90025"} & set(run.vulnerabilities["vulnerability_id"])
    base = run.results.loc["go-hello/distroless-base"]
    severities = ("vulns_critical", "vulns_high", "vulns_medium", "vulns_low")
    assert tuple(base[list(severities)]) == (1, 2, 1, 1)
    # The seed's alpine row: its ssl packages' HIGH findings (2 ids on libcrypto3 and
    # libssl3), plus the binary's stdlib ones.
    alpine = run.results.loc["go-hello/alpine"]
    assert tuple(alpine[list(severities)]) == (0, 3, 1, 0)
    alpine_findings = ids[ids["app"] + "/" + ids["base"] == "go-hello/alpine"]
    ssl = alpine_findings[alpine_findings["package"].isin(["libcrypto3", "libssl3"])]
    assert (len(ssl), set(ssl["severity"])) == (4, {"HIGH"})


def test_timings_are_positive_and_plausible(run: Run) -> None:
    ok = run.results[run.results["status"] == "ok"]
    assert len(ok) == 5
    assert ((ok["startup_seconds"] > 0.01) & (ok["startup_seconds"] < 10)).all()
    assert ((ok["idle_memory_bytes"] > 100_000) & (ok["idle_memory_bytes"] < 200_000_000)).all()
    assert ((ok["build_seconds"] > 0.5) & (ok["build_seconds"] < 600)).all()
    per_cell = run.samples.groupby("cell_id").size()
    assert set(per_cell) == {3}
    assert len(per_cell) == 5


def test_builds_ran_one_at_a_time_beside_analyses_and_probes_ran_alone(run: Run) -> None:
    # max_parallel 2 and the default single build lane: the next cell builds while the
    # last one is saved, inspected and scanned; never beside another build or a probe.
    built = run.results.dropna(subset=["image_id"])
    beside = [set(stages) for stages in built["build_concurrent_stages"]]
    assert len(beside) == 6  # every cell but the one that failed to build
    assert all(stages <= {"save", "inspect", "scan"} for stages in beside)
    assert any("save" in stages for stages in beside)
    probed = run.results.dropna(subset=["startup_concurrent_stages"])
    assert sorted(probed.index) == sorted(run.results[run.results["status"] == "ok"].index)
    assert [list(stages) for stages in probed["startup_concurrent_stages"]] == [[]] * 5
    assert [list(stages) for stages in run.samples["concurrent_stages"]] == [[]] * 15


def test_failures_are_recorded_and_the_rest_completes(run: Run) -> None:
    broken = run.results.loc["broken-build/distroless-static"]
    assert (broken["status"], broken["failed_stage"]) == ("failed", "build")
    assert broken["error"].startswith("build:")
    silent = run.results.loc["silent/distroless-static"]
    assert (silent["status"], silent["failed_stage"]) == ("failed", "probe")
    assert "no HTTP 200" in silent["error"]
    # The silent cell's earlier stages were measured and kept.
    assert silent["size_bytes"] > 0
    # The alpine stand-in is forged by infra up: its cell runs like the others.
    alpine = run.results.loc["go-hello/alpine"]
    assert alpine["status"] == "ok" and pd.isna(alpine["error"])


def test_nothing_left_behind(run: Run) -> None:
    assert run.built_images == 6  # five ok cells and the silent one
    assert run.leftovers == 0


def test_archives_and_the_embedded_prefect_server_are_gone(run: Run) -> None:
    assert run.archives_left == []
    assert run.prefect_servers_left == []


def test_packages_and_findings_know_their_layer_and_origin(run: Run) -> None:
    cells = run.results.reset_index(drop=True)[["cell_id", "app", "base", "status"]]
    packages = run.packages.merge(cells, on="cell_id")
    scanned = packages[packages["app"] == "go-hello"]
    assert set(scanned["base"]) == {
        "single-stage",
        "bookworm",
        "distroless-static",
        "distroless-base",
        "alpine",
    }
    # OS packages come with the base. Go binaries: the app's came with the build; the
    # single-stage image also holds the toolchain's own (go, gofmt, compile, ...), which
    # came with its base, the builder.
    assert set(scanned.loc[scanned["type"].isin(["debian", "alpine"]), "origin"]) == {"base"}
    gobinary = scanned[scanned["type"] == "gobinary"]
    single = gobinary["base"] == "single-stage"
    assert set(gobinary.loc[~single, "origin"]) == {"build"}
    assert set(gobinary.loc[single, "origin"]) == {"base", "build"}
    assert scanned["purl"].str.startswith("pkg:").all()
    assert scanned["layer_diff_id"].str.match(r"^sha256:[0-9a-f]{64}$").all()
    assert "pkg:golang/stdlib@v1.22.10" in set(scanned["purl"])
    # The Go stdlib advisories are in the binary the build added (and, single-stage, in the
    # toolchain's binaries too); every other finding came with the base's OS packages.
    vulns = run.vulnerabilities.merge(cells[["cell_id", "base"]], on="cell_id")
    stdlib = vulns["package"] == "stdlib"
    multi = vulns["base"] != "single-stage"
    assert set(vulns.loc[stdlib, "vulnerability_id"]) == {"CVE-2026-90031", "CVE-2026-90032"}
    assert set(vulns.loc[stdlib & multi, "origin"]) == {"build"}
    assert set(vulns.loc[stdlib & ~multi, "origin"]) == {"base", "build"}
    assert set(vulns.loc[~stdlib, "origin"]) == {"base"}
    for key in (
        "go-hello/distroless-static",
        "go-hello/bookworm",
        "go-hello/single-stage",
        "go-hello/alpine",
    ):
        row = run.results.loc[key]
        in_cell = scanned[scanned["cell_id"] == row["cell_id"]]
        assert row["packages_from_build"] == (in_cell["origin"] == "build").sum() >= 1, key
        assert row["packages_from_base"] == (in_cell["origin"] == "base").sum() >= 5, key
        found = vulns[vulns["cell_id"] == row["cell_id"]]
        assert row["vulns_from_build"] == 2, key  # the two stdlib ids
        from_base = found.loc[found["origin"] == "base", "vulnerability_id"].nunique()
        os_findings = found.loc[found["package"] != "stdlib", "vulnerability_id"].nunique()
        toolchain = 2 if key == "go-hello/single-stage" else 0  # the builder's stdlib ids
        assert row["vulns_from_base"] == from_base == os_findings + toolchain, key
    assert run.results.loc["go-hello/distroless-static", "vulns_from_base"] == 1  # tzdata


def test_each_scanned_cell_has_its_sbom_sarif_and_report_beside_the_tables(run: Run) -> None:
    scanned = run.results[run.results["scanner"].notna()]
    assert sorted(scanned.index) == [
        "go-hello/alpine",
        "go-hello/bookworm",
        "go-hello/distroless-base",
        "go-hello/distroless-static",
        "go-hello/single-stage",
        "silent/distroless-static",  # failed at the probe, after its scan
    ]
    for key, row in scanned.iterrows():
        cell = row["cell_id"]
        assert row["sbom_path"] == f"documents/{row['run_id']}/{cell}/sbom.cdx.json", key
        bom = json.loads(run.store.read(row["sbom_path"]))
        purls = {c["purl"] for c in bom["components"] if c.get("type") == "library"}
        assert purls == set(run.packages.loc[run.packages["cell_id"] == cell, "purl"]), key
        sarif = json.loads(run.store.read(row["sarif_path"]))
        findings = run.vulnerabilities[run.vulnerabilities["cell_id"] == cell]
        rules = Counter(r["ruleId"] for r in sarif["runs"][0]["results"])
        assert rules == Counter(findings["vulnerability_id"]), key
        report = json.loads(run.store.read(row["scan_report_path"]))
        assert report["Metadata"]["ImageID"] == row["image_id"], key
    assert pd.isna(run.results.loc["broken-build/distroless-static", "sbom_path"])  # no scan
    assert run.local_documents_left == []  # the local copies went once published


def test_the_report_is_written_beside_the_tables(run: Run) -> None:
    run_id = run.runs[-1]["run_id"]
    page = run.store.read(f"reports/{run_id}.html").decode()
    # The page `basebench report --run <id>` renders from the same store.
    assert page == build_report(run.store, run_id)[1]
    assert f"<h1>basebench report: run {run_id}</h1>" in page
